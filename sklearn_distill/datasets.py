"""Dataset loaders: scikit-learn's bundled digits as images, and the image benchmarks of the papers.

The digits need no files at all, which makes them the default for examples and tests.
:func:`load_benchmark` fetches MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, SVHN and Tiny ImageNet
from their public locations, in the style of scikit-learn's ``fetch_*`` functions: the original
files are downloaded once into a data folder (resumable, with a progress bar), checked against the
checksums in :data:`SOURCES`, decoded without pickle (IDX, the CIFAR binary versions, SVHN's
MATLAB files through SciPy, Tiny ImageNet's JPEGs through Pillow) and cached as one ``.npz`` per
dataset, which later calls read directly.
"""

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

from .io import atomic_savez

__all__ = ["load_digits_images", "load_benchmark", "get_data_home", "BENCHMARKS", "SOURCES"]

_KEYS = ("X_train", "y_train", "X_test", "y_test", "classes")
_MIRROR_VARIABLE = "SKLEARN_DISTILL_MIRROR"
_DIGITS_DESCR = """\
8x8 handwritten digits as images
--------------------------------

scikit-learn's bundled optical recognition of handwritten digits data set (1797 images of the
digits 0-9, 8x8 pixels, originally integer intensities 0-16), returned as float32 images of
shape (n, 8, 8, 1) scaled to [0, 1]. See ``sklearn.datasets.load_digits`` for the source.
"""


def load_digits_images(return_X_y=False):
    """Load scikit-learn's 8x8 digits as ``NHWC`` images in ``[0, 1]``.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` (float32, shape ``(1797, 8, 8, 1)``, intensities divided by 16), ``target``
        (int, shape ``(1797,)``), ``target_names`` (the digits 0-9) and ``DESCR``.
    (images, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Examples
    --------
    >>> X, y = load_digits_images(return_X_y=True)
    >>> X.shape, X.dtype, float(X.max())
    ((1797, 8, 8, 1), dtype('float32'), 1.0)
    >>> load_digits_images().target_names.tolist()
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    target = np.asarray(digits.target)
    if return_X_y:
        return images, target
    return Bunch(images=images, target=target, target_names=np.asarray(digits.target_names),
                 DESCR=_DIGITS_DESCR)

# --------------------------------------------------------------------------------------------
# Where each benchmark comes from
# --------------------------------------------------------------------------------------------

class Source(NamedTuple):
    """One benchmark's public files: where they are, their checksums and how to cite them.

    ``files`` maps each file name to its hash, ``"sha256:<hex>"``; where the publisher gives only
    an MD5 and no SHA-256 of the official file is published, ``"md5:<hex>"``. ``optional`` names
    files fetched only on request (SVHN's extra split).
    """

    url: str
    files: dict
    optional: tuple
    title: str
    size: str
    licence: str
    citation: str


# The SHA-256 values are those published in TensorFlow Datasets' checksum tables for the same
# official files (same URLs, same byte counts). The original MNIST page (yann.lecun.com) has
# been unreliable; its four files are fetched from the Google Cloud mirror those checksums
# were published for.
SOURCES = {
    "mnist": Source(
        url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        files={
            "train-images-idx3-ubyte.gz":
                "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz":
                "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz":
                "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz":
                "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        optional=(),
        title="MNIST handwritten digits (LeCun, Cortes and Burges; http://yann.lecun.com/exdb/mnist/)",
        size="60,000 train / 10,000 test greyscale images of 28x28, 10 classes; 11.6 MB download",
        licence="Creative Commons Attribution-Share Alike 3.0 (copyright Yann LeCun and Corinna "
                "Cortes)",
        citation="Y. LeCun, L. Bottou, Y. Bengio and P. Haffner. Gradient-based learning applied "
                 "to document recognition. Proceedings of the IEEE, 86(11):2278-2324, 1998."),
    "fashion_mnist": Source(
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files={
            "train-images-idx3-ubyte.gz":
                "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz":
                "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz":
                "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz":
                "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        optional=(),
        title="Fashion-MNIST, Zalando article images (https://github.com/zalandoresearch/"
              "fashion-mnist)",
        size="60,000 train / 10,000 test greyscale images of 28x28, 10 classes; 30.9 MB download",
        licence="MIT licence (copyright Zalando SE)",
        citation="H. Xiao, K. Rasul and R. Vollgraf. Fashion-MNIST: a novel image dataset for "
                 "benchmarking machine learning algorithms. arXiv:1708.07747, 2017."),
    "cifar10": Source(
        url="https://www.cs.toronto.edu/~kriz/",
        files={"cifar-10-binary.tar.gz":
               "sha256:c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"},
        optional=(),
        title="CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html)",
        size="50,000 train / 10,000 test colour images of 32x32, 10 classes; 170.1 MB download",
        licence="no licence stated; the authors ask users to cite the technical report",
        citation="A. Krizhevsky. Learning multiple layers of features from tiny images. "
                 "Technical report, University of Toronto, 2009."),
    "cifar100": Source(
        url="https://www.cs.toronto.edu/~kriz/",
        files={"cifar-100-binary.tar.gz":
               "sha256:58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"},
        optional=(),
        title="CIFAR-100, binary version (https://www.cs.toronto.edu/~kriz/cifar.html)",
        size="50,000 train / 10,000 test colour images of 32x32, 100 fine classes in 20 coarse "
             "superclasses; 168.5 MB download",
        licence="no licence stated; the authors ask users to cite the technical report",
        citation="A. Krizhevsky. Learning multiple layers of features from tiny images. "
                 "Technical report, University of Toronto, 2009."),
    "svhn": Source(
        url="http://ufldl.stanford.edu/housenumbers/",
        files={
            "train_32x32.mat":
                "sha256:435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
            "test_32x32.mat":
                "sha256:cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
            "extra_32x32.mat":
                "sha256:a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",
        },
        optional=("extra_32x32.mat",),
        title="SVHN, Street View House Numbers, cropped digits (http://ufldl.stanford.edu/"
              "housenumbers/)",
        size="73,257 train / 26,032 test colour images of 32x32, 10 classes (246.3 MB download); "
             "531,131 extra images on request (1.33 GB)",
        licence="non-commercial use only (terms of the dataset's page)",
        citation="Y. Netzer, T. Wang, A. Coates, A. Bissacco, B. Wu and A. Y. Ng. Reading digits "
                 "in natural images with unsupervised feature learning. NIPS Workshop on Deep "
                 "Learning and Unsupervised Feature Learning, 2011."),
    # Only an MD5 is published for this file (by the dataset's users; Stanford publishes no
    # checksum at all) and no SHA-256 of it could be found, so it is checked by MD5.
    "tiny_imagenet": Source(
        url="http://cs231n.stanford.edu/",
        files={"tiny-imagenet-200.zip": "md5:90528d7ca1a48142e341f4ef8d21d0de"},
        optional=(),
        title="Tiny ImageNet, Stanford CS231n (http://cs231n.stanford.edu/)",
        size="100,000 train / 10,000 validation (used as test) colour images of 64x64, "
             "200 classes",
        licence="images from ImageNet: non-commercial research and educational use (ImageNet "
                "terms of access)",
        citation="Y. Le and X. Yang. Tiny ImageNet visual recognition challenge. CS231N course "
                 "report, Stanford University, 2015."),
}

#: Names accepted by :func:`load_benchmark`.
BENCHMARKS = tuple(SOURCES)

_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")


def get_data_home(data_home=None):
    """Folder that holds the benchmarks' downloaded files and decoded ``.npz`` caches.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Explicit folder. When None, the environment variable ``SKLEARN_DISTILL_DATA`` is used,
        and ``~/sklearn_distill_data`` when that is unset or empty.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> str(get_data_home("/tmp/data"))
    '/tmp/data'
    """
    if data_home is None:
        data_home = os.environ.get("SKLEARN_DISTILL_DATA") or os.path.join("~",
                                                                           "sklearn_distill_data")
    return Path(os.path.expanduser(os.fspath(data_home)))


# --------------------------------------------------------------------------------------------
# Decoders of the official formats (none of them unpickles anything)
# --------------------------------------------------------------------------------------------

def _read_idx(path, magic):
    """An IDX file (gzip-compressed) as a uint8 array; ``magic`` is 2049 (labels) or 2051 (images)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = magic - 2048
    found = int(np.frombuffer(data, dtype=">u4", count=1)[0]) if len(data) >= 4 else None
    if len(data) < 4 * (1 + ndim) or found != magic:
        raise ValueError(f"{str(path)!r} is not an IDX file of {ndim}-d unsigned bytes "
                         f"(magic number {found}, expected {magic}).")
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    shape = tuple(int(d) for d in header[1:])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim))
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{str(path)!r} holds {array.size} bytes of data; its header says "
                         f"{shape}.")
    return array.reshape(shape)


def _decode_idx(folder, classes):
    out = {"classes": np.asarray(classes)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        out[f"X_{split}"] = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051)[..., None]
        out[f"y_{split}"] = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049).astype(
            np.int64)
    return out


def _cifar_records(tar, member, n_labels):
    """Records of a CIFAR binary file: ``n_labels`` label bytes, then 3 x 32 x 32 pixel bytes."""
    data = np.frombuffer(tar.extractfile(member).read(), dtype=np.uint8)
    width = n_labels + 3 * 32 * 32
    if data.size % width:
        raise ValueError(f"{member} holds {data.size} bytes, not a whole number of "
                         f"{width}-byte records.")
    records = data.reshape(-1, width)
    images = records[:, n_labels:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, :n_labels].astype(np.int64)


def _names(tar, member):
    text = tar.extractfile(member).read().decode("utf-8")
    return np.asarray([line.strip() for line in text.splitlines() if line.strip()])


def _decode_cifar10(folder):
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "r:gz") as tar:
        root = "cifar-10-batches-bin/"
        parts = [_cifar_records(tar, f"{root}data_batch_{i}.bin", 1) for i in range(1, 6)]
        X_test, y_test = _cifar_records(tar, f"{root}test_batch.bin", 1)
        classes = _names(tar, f"{root}batches.meta.txt")
    return {"X_train": np.concatenate([p[0] for p in parts]),
            "y_train": np.concatenate([p[1][:, 0] for p in parts]),
            "X_test": X_test, "y_test": y_test[:, 0], "classes": classes}


def _decode_cifar100(folder):
    with tarfile.open(folder / "cifar-100-binary.tar.gz", "r:gz") as tar:
        root = "cifar-100-binary/"
        X_train, y_train = _cifar_records(tar, f"{root}train.bin", 2)
        X_test, y_test = _cifar_records(tar, f"{root}test.bin", 2)
        fine = _names(tar, f"{root}fine_label_names.txt")
        coarse = _names(tar, f"{root}coarse_label_names.txt")
    # Each record starts with the coarse label, then the fine one.
    return {"X_train": X_train, "y_train": y_train[:, 1], "X_test": X_test,
            "y_test": y_test[:, 1], "classes": fine, "y_train_coarse": y_train[:, 0],
            "y_test_coarse": y_test[:, 0], "coarse_classes": coarse}


def _read_svhn(path):
    from scipy.io import loadmat

    mat = loadmat(path)
    if "X" not in mat or "y" not in mat or mat["X"].shape[:3] != (32, 32, 3):
        raise ValueError(f"{str(path)!r} is not an SVHN cropped-digits file (a MATLAB file with "
                         "X of shape 32 x 32 x 3 x n and y of shape n x 1).")
    X = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    y = np.asarray(mat["y"], dtype=np.int64).ravel()
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return X, y


def _decode_svhn(folder):
    X_train, y_train = _read_svhn(folder / "train_32x32.mat")
    X_test, y_test = _read_svhn(folder / "test_32x32.mat")
    return {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
            "classes": np.asarray(list("0123456789"))}


def _decode_svhn_extra(folder):
    X_extra, y_extra = _read_svhn(folder / "extra_32x32.mat")
    return {"X_extra": X_extra, "y_extra": y_extra}


def _decode_tiny_imagenet(folder, progress=True):
    from PIL import Image
    from tqdm.auto import tqdm

    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(folder / "tiny-imagenet-200.zip") as archive:
        read_text = lambda name: archive.read(root + name).decode("utf-8")  # noqa: E731
        # Classes in sorted WordNet-id order (as an image-folder reader orders them).
        wnids = sorted(line.strip() for line in read_text("wnids.txt").splitlines()
                       if line.strip())
        words = dict(line.split("\t", 1) for line in read_text("words.txt").splitlines()
                     if "\t" in line)
        label = {wnid: i for i, wnid in enumerate(wnids)}
        train = sorted((name, label[name.split("/")[2]]) for name in archive.namelist()
                       if name.startswith(root + "train/") and name.endswith(".JPEG"))
        test = []
        for line in read_text("val/val_annotations.txt").splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                test.append((f"{root}val/images/{fields[0]}", label[fields[1]]))

        def decode(items, split):
            X = np.empty((len(items), 64, 64, 3), dtype=np.uint8)
            for i, (name, _) in enumerate(tqdm(items, desc=f"decoding tiny_imagenet {split}",
                                               disable=not progress, leave=False)):
                # A few of the JPEGs are greyscale.
                X[i] = np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB"))
            return X, np.asarray([c for _, c in items], dtype=np.int64)

        X_train, y_train = decode(train, "train")
        X_test, y_test = decode(test, "test")
    return {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
            "classes": np.asarray([words.get(w, w).strip() for w in wnids]),
            "wnids": np.asarray(wnids)}


_DECODERS = {"mnist": lambda folder, progress: _decode_idx(folder, list("0123456789")),
             "fashion_mnist": lambda folder, progress: _decode_idx(folder, _FASHION_CLASSES),
             "cifar10": lambda folder, progress: _decode_cifar10(folder),
             "cifar100": lambda folder, progress: _decode_cifar100(folder),
             "svhn": lambda folder, progress: _decode_svhn(folder),
             "tiny_imagenet": _decode_tiny_imagenet}


# --------------------------------------------------------------------------------------------
# The cache and the public loader
# --------------------------------------------------------------------------------------------

def _base_url(name, base_url):
    if base_url is not None:
        return str(base_url).rstrip("/") + "/"
    mirror = os.environ.get(_MIRROR_VARIABLE)
    if mirror:
        return f"{mirror.rstrip('/')}/{name}/"
    return SOURCES[name].url


def _fetch_files(name, files, home, download, base_url, progress):
    """Make sure every file of ``files`` is in ``home/name/`` with its known hash."""
    from ._download import fetch_file, file_matches

    folder = home / name
    source = SOURCES[name]
    url = _base_url(name, base_url)
    for fname in files:
        path, known_hash = folder / fname, source.files[fname]
        if path.is_file():
            if not file_matches(path, known_hash):
                path.unlink()
                raise ValueError(
                    f"{str(path)!r} is corrupted: its checksum is not the expected {known_hash}. "
                    "It was deleted; call again to download it anew.")
            continue
        if not download:
            raise FileNotFoundError(
                f"Benchmark {name!r} is not in data_home={str(home)!r}: neither {name}.npz nor "
                f"the original file {str(path)!r} is there. Call load_benchmark({name!r}) with "
                f"download=True to fetch it from {url + fname}, or put that file there, or "
                "point data_home or the SKLEARN_DISTILL_DATA environment variable at a folder "
                f"that holds {name}.npz.")
        fetch_file(url + fname, path, known_hash, progress=progress)
    return folder


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(path)!r} cannot be read ({exc}); delete it and call "
                         "load_benchmark again to rebuild it.") from exc


def _describe(name):
    source = SOURCES[name]
    title = f"{name}: {source.title}"
    return (f"{title}\n{'-' * len(title)}\n\n{source.size}.\n\nImages are uint8 NHWC arrays, "
            f"labels int64 indices into ``classes``.\n\nLicence: {source.licence}.\n\n"
            f"Citation: {source.citation}\n")


def load_benchmark(name, data_home=None, download=True, return_X_y=False, *, base_url=None,
                   extra=False, progress=True):
    """Load an image benchmark, downloading and caching it on first use.

    The first call downloads the dataset's original files (:data:`SOURCES` lists them with their
    checksums) into ``{data_home}/{name}/``, checks each file's checksum, decodes it and caches
    the arrays as ``{data_home}/{name}.npz``; later calls read that file only. Downloads show a
    progress bar, resume where an interrupted one stopped, and are moved into place only once
    their checksum matches, so no half-written or corrupted file is ever trusted. Any ``.npz``
    with the arrays ``X_train, y_train, X_test, y_test, classes`` placed at
    ``{data_home}/{name}.npz`` is used as it is.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "tiny_imagenet"}
        Which benchmark (case-insensitive; ``-`` may stand for ``_``).
    data_home : str or path-like, default=None
        Folder of the cache; defaults to ``$SKLEARN_DISTILL_DATA``, else
        ``~/sklearn_distill_data`` (see :func:`get_data_home`).
    download : bool, default=True
        Fetch missing files. If False, a missing file raises :class:`FileNotFoundError`.
    return_X_y : bool, default=False
        If True, return ``(X_train, y_train, X_test, y_test)`` instead of a Bunch.
    base_url : str, default=None
        URL of a folder holding this dataset's files under their official names, used instead
        of the official location. When None, the environment variable
        ``SKLEARN_DISTILL_MIRROR`` (a folder with one sub-folder per dataset name) is used if
        set, else the official location.
    extra : bool, default=False
        ``svhn`` only: also load the 531,131-image extra split (``X_extra``, ``y_extra``;
        a 1.3 GB download, cached as ``svhn_extra.npz``).
    progress : bool, default=True
        Show progress bars while downloading and decoding.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train``, ``X_test`` (uint8, ``(n, H, W, C)``: 28 x 28 x 1 for MNIST and
        Fashion-MNIST, 32 x 32 x 3 for CIFAR and SVHN, 64 x 64 x 3 for Tiny ImageNet),
        ``y_train``, ``y_test`` (int64 class indices), ``classes`` (the class names, indexed by
        the labels) and ``DESCR`` (source, size, licence and citation). ``cifar100`` adds
        ``y_train_coarse``, ``y_test_coarse`` and ``coarse_classes`` (the 20 superclasses);
        ``tiny_imagenet`` adds ``wnids`` (the WordNet ids of the classes, in label order; its
        official validation split is the test split); ``svhn`` with ``extra=True`` adds
        ``X_extra`` and ``y_extra``.
    (X_train, y_train, X_test, y_test) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``name`` is not a known benchmark; if a file's checksum is not the expected one (the
        message names the file and the checksum; the file is deleted, so the next call
        downloads it again); if a cached ``.npz`` lacks an expected array.
    FileNotFoundError
        If ``download=False`` and the data are missing; the message says where it looked and how
        to get them.
    OSError
        If a download fails or breaks off (:class:`sklearn_distill._download.DownloadError`); the
        next call resumes it.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> home = tempfile.mkdtemp()
    >>> np.savez(f"{home}/mnist.npz", X_train=np.zeros((4, 28, 28), np.uint8),
    ...          y_train=np.arange(4), X_test=np.zeros((2, 28, 28), np.uint8),
    ...          y_test=np.arange(2), classes=np.array(list("0123456789")))
    >>> data = load_benchmark("mnist", data_home=home, download=False)
    >>> data.X_train.shape, data.X_train.dtype
    ((4, 28, 28, 1), dtype('uint8'))
    """
    if not isinstance(name, str) or name.lower().replace("-", "_") not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark name={name!r}; valid names are {list(BENCHMARKS)}.")
    name = name.lower().replace("-", "_")
    if extra and name != "svhn":
        raise ValueError(f"extra=True applies to 'svhn' only; got name={name!r}.")
    home = get_data_home(data_home)
    source = SOURCES[name]
    caches = [(home / f"{name}.npz", [f for f in source.files if f not in source.optional],
               lambda folder: _DECODERS[name](folder, progress))]
    if extra:
        caches.append((home / "svhn_extra.npz", ["extra_32x32.mat"], _decode_svhn_extra))
    arrays = {}
    for path, files, decode in caches:
        if not path.is_file():
            folder = _fetch_files(name, files, home, download, base_url, progress)
            atomic_savez(path, decode(folder), prefix=f".{path.name}-")
        arrays.update(_read_npz(path))
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{str(caches[0][0])!r} lacks the arrays {missing}; expected "
                         f"{list(_KEYS)}.")
    for split in ("train", "test", "extra"):
        if f"X_{split}" not in arrays:
            continue
        X = arrays[f"X_{split}"]
        if X.ndim == 3:
            # Greyscale files may store n x H x W; the package works in NHWC.
            X = X[..., np.newaxis]
        if X.ndim != 4:
            raise ValueError(f"{str(caches[0][0])!r}: X_{split} has shape {X.shape}; expected "
                             "n x H x W or n x H x W x C images.")
        if len(arrays[f"y_{split}"]) != len(X):
            raise ValueError(f"{str(caches[0][0])!r}: X_{split} has {len(X)} images but "
                             f"y_{split} has {len(arrays[f'y_{split}'])} labels.")
        arrays[f"X_{split}"] = X
    if return_X_y:
        return arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"]
    return Bunch(**arrays, DESCR=_describe(name))
