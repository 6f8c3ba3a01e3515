"""Saving and loading synthetic sets without pickle.

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

__all__ = ["SyntheticSet", "save_synthetic_set", "load_synthetic_set"]

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
              "classes": classes, "metadata": np.asarray(json.dumps(meta))}
    if getattr(distiller, "synthetic_y_soft_", None) is not None:
        arrays["y_soft"] = np.asarray(distiller.synthetic_y_soft_)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    return atomic_savez(path, arrays, prefix=".synthetic-")


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
        metadata = json.loads(str(data["metadata"]))
        soft = data["y_soft"] if "y_soft" in data.files else None
        return SyntheticSet(X=data["X"], y=data["y"], soft_labels=soft, classes=data["classes"],
                            metadata=metadata)
