"""Checked, resumable downloads of dataset files (the machinery under :mod:`sklearn_distill.datasets`).

`pooch <https://www.fatiando.org/pooch>`_ does the checking: it streams a download into a
temporary file beside the target, compares its hash with the known one, and moves it into place
only when they match, so no half-written or corrupted file is ever left under the target name
(a mismatch deletes the download and raises). The one thing pooch lacks is resuming, which a
1.3 GB file on a slow link needs: :class:`ResumableHTTPDownloader`, the downloader handed to
pooch, keeps the bytes received so far in ``<target>.part`` and asks the server only for the
rest (an HTTP ``Range`` request) when it is called again. The progress bar is tqdm's.
"""

import os
from pathlib import Path

__all__ = ["ResumableHTTPDownloader", "fetch_file", "file_matches", "DownloadError"]

# Small enough that an interrupted transfer loses at most this much of what it received.
_CHUNK = 1 << 16


class DownloadError(OSError):
    """A download failed or was interrupted; the message says what to do next."""


class ResumableHTTPDownloader:
    """Download ``url`` into pooch's temporary file, resuming from ``part`` when it exists.

    Parameters
    ----------
    part : path-like
        Where the bytes received so far are kept between calls (``<target>.part``).
    progress : bool, default=True
        Show a tqdm progress bar (bytes, with the resumed part counted as done).
    timeout : float, default=60
        Seconds to wait for the server to answer or send the next bytes.
    """

    def __init__(self, part, progress=True, timeout=60.0):
        self.part = Path(part)
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url, output_file, pooch):
        import requests
        from tqdm.auto import tqdm

        offset = self.part.stat().st_size if self.part.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if offset and response.status_code == 416:
                # Range Not Satisfiable: the part is already whole (a call stopped between the
                # last byte and the hand-over). The hash check decides whether it is good.
                os.replace(self.part, output_file)
                return
            response.raise_for_status()
            if offset and response.status_code != 206:
                offset = 0  # the server ignored the Range request and sends the whole file
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(self.part, "ab" if offset else "wb") as fh, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.part.name[:-len(".part")], disable=not self.progress,
                    leave=False) as bar:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
        # Complete: pooch checks the hash of its temporary file and moves it into place.
        os.replace(self.part, output_file)


def file_matches(path, known_hash):
    """Whether the file at ``path`` has the hash ``known_hash`` (``"sha256:..."``, ``"md5:..."``)."""
    from pooch.hashes import hash_matches

    return hash_matches(os.fspath(path), known_hash)


def fetch_file(url, path, known_hash, progress=True):
    """Download ``url`` to ``path`` unless it is there, checking ``known_hash``.

    Parameters
    ----------
    url : str
    path : pathlib.Path
        Target file; its folder is created. ``<path>.part`` holds an interrupted download.
    known_hash : str
        ``"sha256:<hex>"`` (or ``"md5:<hex>"`` where no SHA-256 is published).
    progress : bool, default=True

    Returns
    -------
    pathlib.Path
        ``path``, holding a file whose hash is ``known_hash``.

    Raises
    ------
    ValueError
        If the downloaded bytes do not have the known hash: the message names the file and the
        expected hash; nothing is kept, so the next call downloads the file again.
    DownloadError
        If the connection fails or breaks off; the bytes received so far are kept in
        ``<path>.part`` and the next call resumes from them.
    """
    import pooch
    import requests

    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    downloader = ResumableHTTPDownloader(part, progress=progress)
    logger = pooch.get_logger()
    level = logger.level
    if not progress:
        logger.setLevel("WARNING")  # pooch's "Downloading data from ..." line
    try:
        pooch.retrieve(url, known_hash, fname=path.name, path=path.parent, downloader=downloader)
    except ValueError as exc:
        raise ValueError(
            f"The download of {url} to {str(path)!r} is corrupted: its checksum is not the "
            f"expected {known_hash}. It was deleted; call again to download it anew. ({exc})"
        ) from None
    except requests.exceptions.RequestException as exc:
        got = part.stat().st_size if part.is_file() else 0
        raise DownloadError(
            f"Downloading {url} to {str(path)!r} failed after {got} bytes ({exc}). The bytes "
            f"received are kept in {str(part)!r}; call again to resume, or set "
            "SKLEARN_DISTILL_MIRROR / base_url to a mirror.") from exc
    finally:
        logger.setLevel(level)
    return path
