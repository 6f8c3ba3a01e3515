"""Dataset loaders: scikit-learn's bundled digits as images, and the MNIST / CIFAR-10 benchmarks.

The digits need no files at all, which makes them the default for examples and tests. The
benchmarks are read from plain ``.npz`` files (``X_train, y_train, X_test, y_test, classes``)
that the ``materialize.py`` script of the shared datasets folder writes into a data folder.
"""

import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

__all__ = ["load_digits_images", "load_benchmark", "get_data_home"]

BENCHMARKS = ("mnist", "cifar10")
_KEYS = ("X_train", "y_train", "X_test", "y_test", "classes")

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


def get_data_home(data_home=None):
    """Folder that holds the benchmark ``.npz`` files.

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


def load_benchmark(name, data_home=None, return_X_y=False):
    """Load a benchmark dataset written by the shared ``materialize.py`` script.

    Reads ``{data_home}/{name}.npz``. Images are returned as uint8 ``NHWC`` arrays, unscaled (the
    caller decides how to scale); MNIST, stored without a channel axis, gets one.

    Parameters
    ----------
    name : {"mnist", "cifar10"}
        Which benchmark (case-insensitive).
    data_home : str or path-like, default=None
        Folder holding the ``.npz`` files; defaults to ``$SKLEARN_DISTILL_DATA``, else
        ``~/sklearn_distill_data``.
    return_X_y : bool, default=False
        If True, return ``(X_train, y_train, X_test, y_test)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train``, ``y_train``, ``X_test``, ``y_test`` and ``classes`` (the class names, indexed
        by the integer labels).
    (X_train, y_train, X_test, y_test) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``name`` is not a known benchmark, or the file lacks one of the expected arrays.
    FileNotFoundError
        If the file is missing; the message says where it looked and how to create it.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> home = tempfile.mkdtemp()
    >>> np.savez(f"{home}/mnist.npz", X_train=np.zeros((4, 28, 28), np.uint8),
    ...          y_train=np.arange(4), X_test=np.zeros((2, 28, 28), np.uint8),
    ...          y_test=np.arange(2), classes=np.array(list("0123456789")))
    >>> data = load_benchmark("mnist", data_home=home)
    >>> data.X_train.shape, data.X_train.dtype
    ((4, 28, 28, 1), dtype('uint8'))
    """
    if not isinstance(name, str) or name.lower() not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark name={name!r}; valid names are {list(BENCHMARKS)}.")
    name = name.lower()
    home = get_data_home(data_home)
    path = home / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"Benchmark file {str(path)!r} not found (looked in data_home={str(home)!r}). Create it "
            f"with `python materialize.py {str(home)}` run from the shared datasets folder, or "
            "point data_home or the SKLEARN_DISTILL_DATA environment variable at a folder that "
            f"holds {name}.npz.")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{str(path)!r} lacks the arrays {missing}; expected {list(_KEYS)}.")
        arrays = {k: npz[k] for k in _KEYS}
    for split in ("train", "test"):
        X = arrays[f"X_{split}"]
        if X.ndim == 3:
            # Greyscale files store n x H x W; the package works in NHWC.
            X = X[..., np.newaxis]
        if X.ndim != 4:
            raise ValueError(f"{str(path)!r}: X_{split} has shape {X.shape}; expected n x H x W "
                             "or n x H x W x C images.")
        if len(arrays[f"y_{split}"]) != len(X):
            raise ValueError(f"{str(path)!r}: X_{split} has {len(X)} images but y_{split} has "
                             f"{len(arrays[f'y_{split}'])} labels.")
        arrays[f"X_{split}"] = X
    if return_X_y:
        return arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"]
    return Bunch(**arrays)
