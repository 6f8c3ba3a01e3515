"""Files without pickle: the library's one container, and synthetic sets.

Every file the library writes -- synthetic sets, checkpoints, translators, the translator cache's
sub-tasks -- is one container (:func:`save_container`, :func:`load_container`): an ``.npz`` of
plain arrays plus one entry holding a JSON document, written atomically.

A synthetic set is written as one ``.npz`` file of plain arrays (``X``, ``y``, optional
``y_soft``, ``classes``) plus a ``metadata`` entry holding a JSON document (method, parameters,
classes, preprocessing, library version, layout). Loading uses ``allow_pickle=False``
throughout, so a file received from someone else cannot execute code; any framework that reads
NumPy files (PyTorch, TensorFlow, R's RcppCNPy) can use the arrays directly.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ._version import __version__

__all__ = ["SyntheticSet", "save_synthetic_set", "load_synthetic_set", "save_container",
           "load_container", "atomic_savez"]

FORMAT_VERSION = 1


def atomic_savez(path, arrays, prefix=".tmp-"):
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (shared by every writer here).

    The data goes to a temporary file in the same folder, is flushed to disk and moved into place
    with :func:`os.replace`, so an interruption never leaves a half-written file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


META_KEY = "__meta__"


def save_container(path, arrays, meta, *, key=META_KEY, prefix=".tmp-"):
    """Write the library's one file container: plain arrays plus a JSON document, atomically.

    Every file the library writes (synthetic sets, checkpoints, translators, cached sub-tasks) is
    an ``.npz`` of plain arrays with one more entry, ``key``, holding a JSON document (its
    ``"format"`` names the kind of file). Nothing is pickled.

    Parameters
    ----------
    path : str or path-like
    arrays : dict of str to ndarray
    meta : dict
        JSON-serialisable.
    key : str, default="__meta__"
        The entry of the JSON document (synthetic sets use ``"metadata"``).
    prefix : str
        Prefix of the temporary file (see :func:`atomic_savez`).

    Returns
    -------
    path : str
    """
    if key in arrays:
        raise ValueError(f"The array name {key!r} is reserved for the metadata document.")
    return atomic_savez(path, {**arrays, key: np.asarray(json.dumps(meta))}, prefix=prefix)


def load_container(path, *, key=META_KEY, format=None, what="sklearn_distill file"):
    """Read a file of :func:`save_container` (``allow_pickle=False``); returns ``(arrays, meta)``.

    Raises a ``ValueError`` naming the file when it has no JSON document or, with ``format``,
    one of another format. Documents stored as UTF-8 bytes (files of earlier versions) are read
    too.
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if key not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not a {what} (no metadata block).")
        raw = data[key]
        text = bytes(raw).decode("utf-8") if raw.dtype == np.uint8 else str(raw)
        arrays = {k: data[k] for k in data.files if k != key}
    meta = json.loads(text)
    if format is not None and meta.get("format") != format:
        raise ValueError(f"{os.fspath(path)!r} has format {meta.get('format')!r}, expected "
                         f"{format!r}.")
    return arrays, meta


@dataclass
class SyntheticSet:
    """A loaded synthetic set.

    Attributes
    ----------
    X : ndarray
        Synthetic inputs, in the layout the distiller was fitted on.
    y : ndarray
        Hard labels.
    soft_labels : ndarray or None
        Learned label matrix (columns ordered as ``classes``), if the method learned labels.
    classes : ndarray
    metadata : dict
        Method, parameters, preprocessing, library version, layout.
    """

    X: np.ndarray
    y: np.ndarray
    soft_labels: object = None
    classes: np.ndarray = None
    metadata: dict = field(default_factory=dict)


def _jsonable(value):
    """Parameters as JSON: plain values as they are, anything else as its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _plain_array(values, what):
    arr = np.asarray(values)
    if arr.dtype == object:
        try:
            arr = np.asarray(arr.tolist())
        except (TypeError, ValueError):
            pass
    if arr.dtype == object:
        raise ValueError(f"The {what} cannot be stored without pickle (mixed or object values); "
                         f"encode them as numbers or strings first.")
    return arr


def save_synthetic_set(path, distiller, metadata=None):
    """Write a fitted distiller's synthetic set to ``path`` (``.npz``).

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended by NumPy if missing.
    distiller : fitted BaseDistiller
    metadata : dict, default=None
        Extra JSON-serialisable entries (e.g. ``{"preprocessing": "ZCAWhitening(0.1)"}``).

    Returns
    -------
    path : str
        The file written.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn_distill import RandomDistiller, load_digits_images, load_synthetic_set
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = RandomDistiller(ipc=2, random_state=0).fit(X, y)
    >>> path = d.save(os.path.join(tempfile.mkdtemp(), "digits_ipc2.npz"))
    >>> s = load_synthetic_set(path)
    >>> s.X.shape, s.metadata["method"]
    ((20, 8, 8, 1), 'RandomDistiller')
    """
    classes = _plain_array(distiller.classes_, "class labels")
    meta = {
        "format_version": FORMAT_VERSION,
        "library": "sklearn_distill",
        "library_version": __version__,
        "method": type(distiller).__name__,
        "parameters": _jsonable(distiller.get_params(deep=False)),
        "classes": _jsonable(classes.tolist()),
        "layout": {"kind": distiller.layout_.kind, "sample_shape": list(distiller.layout_.sample_shape),
                   "input_ndim": distiller.layout_.input_ndim},
        "n_iter": int(getattr(distiller, "n_iter_", 0)),
    }
    if hasattr(distiller, "feature_names_in_"):
        meta["feature_names"] = [str(c) for c in distiller.feature_names_in_]
    meta.update(_jsonable(metadata or {}))
    arrays = {"X": np.asarray(distiller.synthetic_X_), "y": _plain_array(distiller.synthetic_y_, "labels"),
              "classes": classes}
    if getattr(distiller, "synthetic_y_soft_", None) is not None:
        arrays["y_soft"] = np.asarray(distiller.synthetic_y_soft_)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    return save_container(path, arrays, meta, key="metadata", prefix=".synthetic-")


def load_synthetic_set(path):
    """Read a synthetic set written by :func:`save_synthetic_set` (never unpickles).

    Returns
    -------
    SyntheticSet
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        missing = {"X", "y", "classes", "metadata"} - set(data.files)
    if missing:
        raise ValueError(f"{path} is not a synthetic-set file: missing entries {sorted(missing)}.")
    arrays, metadata = load_container(path, key="metadata", what="synthetic-set file")
    return SyntheticSet(X=arrays["X"], y=arrays["y"], soft_labels=arrays.get("y_soft"),
                        classes=arrays["classes"], metadata=metadata)
