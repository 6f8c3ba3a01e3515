"""Input validation shared by every estimator of the package.

The distillers accept three layouts and hand their methods one internal layout:

* 2-D rows ``(n_samples, n_features)`` with ``image_shape=None`` -> tabular, kept 2-D;
* 2-D rows with ``image_shape=(H, W, C)`` -> reshaped to NHWC images;
* image arrays ``(n, H, W)`` or ``(n, H, W, C)`` -> NHWC images.

:class:`InputLayout` remembers which one came in so that the synthetic set can be handed back in
the caller's layout. Everything here is NumPy: JAX only sees clean float32 arrays.
"""

import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

__all__ = ["InputLayout", "check_image_shape", "check_channels_last", "looks_channels_first",
           "check_random_key", "child_seed", "random_seed", "validate_training_data",
           "validate_input", "warn_unseen_classes", "encode_labels", "check_ipc", "check_target",
           "check_dense"]


@dataclass(frozen=True)
class InputLayout:
    """How ``X`` was given to ``fit``, so outputs can be returned the same way.

    Attributes
    ----------
    kind : {"tabular", "rows", "images"}
        Tabular 2-D data, images flattened to rows, or image arrays.
    sample_shape : tuple of int
        Shape of one sample in the internal layout: ``(d,)`` or ``(H, W, C)``.
    input_ndim : int
        Number of dimensions of the ``X`` given to ``fit`` (2, 3 or 4).
    """

    kind: str
    sample_shape: tuple
    input_ndim: int

    @property
    def is_image(self):
        return self.kind != "tabular"

    def to_input(self, X):
        """Convert internal-layout samples back to the layout given to ``fit``.

        A sparse matrix (tabular rows only) is returned as it is.
        """
        if sparse.issparse(X):
            return X
        X = np.asarray(X)
        n = X.shape[0]
        if self.kind in ("tabular", "rows"):
            return X.reshape(n, -1)
        if self.input_ndim == 3:
            return X.reshape((n,) + self.sample_shape[:2])
        return X.reshape((n,) + self.sample_shape)

    def to_internal(self, X):
        """Convert validated input-layout samples to the internal layout (float32).

        Sparse tabular rows stay sparse, as a float32 CSR matrix.
        """
        if sparse.issparse(X):
            return sparse.csr_matrix(X, dtype=np.float32)
        X = np.asarray(X, dtype=np.float32)
        return X.reshape((X.shape[0],) + self.sample_shape)


def check_image_shape(image_shape, n_features=None, param="image_shape"):
    """Validate an ``(H, W, C)`` or ``(H, W)`` image shape against a number of features."""
    if image_shape is None:
        return None
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`{param}` must be a tuple (H, W) or (H, W, C) of positive integers; "
                         f"got {image_shape!r}.") from None
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`{param}` must be a tuple (H, W) or (H, W, C) of positive integers; "
                         f"got {image_shape!r}.")
    if n_features is not None and int(np.prod(shape)) != n_features:
        raise ValueError(f"`{param}`={shape} implies {int(np.prod(shape))} features per row, but X has "
                         f"{n_features} features.")
    return shape


def looks_channels_first(shape):
    """Whether an image-array shape ``(n, A, B, C)`` looks channels-first ``(n, C, H, W)``.

    True when the second axis is 1 or 3 (greyscale or RGB) and the last one is neither.
    """
    shape = tuple(shape)
    return len(shape) == 4 and shape[1] in (1, 3) and shape[-1] not in (1, 3)


def check_channels_last(shape, param="X"):
    """Raise when an image array looks channels-first; image arrays are ``(n, H, W, C)``.

    A ``(n, 3, 32, 32)`` array read as channels-last would be 32-channel images of 3 x 32 pixels:
    every convolution, augmentation and per-channel statistic would silently be wrong.

    Raises
    ------
    ValueError
        When :func:`looks_channels_first` holds for ``shape``.
    """
    if looks_channels_first(shape):
        n, c, h, w = tuple(shape)
        raise ValueError(
            f"`{param}` has shape {tuple(shape)}, which looks channels-first (n, C, H, W); image "
            f"arrays are read channels-last (n, H, W, C). Pass np.moveaxis({param}, 1, -1) (shape "
            f"{(n, h, w, c)}), or, if these really are {w}-channel images of {c} x {h} pixels, "
            f"say so with image_shape={(c, h, w)}.")


def _layout_of(X, image_shape):
    if sparse.issparse(X) and image_shape is not None:
        raise ValueError(f"Sparse X cannot be read as images (`image_shape`={tuple(image_shape)}); give "
                         f"the images as a dense array.")
    if X.ndim == 2:
        shape = check_image_shape(image_shape, X.shape[1])
        if shape is None:
            return InputLayout("tabular", (X.shape[1],), 2)
        return InputLayout("rows", shape, 2)
    if X.ndim in (3, 4):
        shape = X.shape[1:] + ((1,) if X.ndim == 3 else ())
        if image_shape is not None and check_image_shape(image_shape) != shape:
            raise ValueError(f"`image_shape`={tuple(image_shape)} does not match the shape of the image "
                             f"array X, {X.shape[1:]}; leave image_shape=None for image arrays.")
        if image_shape is None:
            check_channels_last(X.shape)
        return InputLayout("images", shape, X.ndim)
    raise ValueError(f"X must be 2-D (n_samples, n_features) or an image array (n, H, W) or (n, H, W, C); "
                     f"got an array with {X.ndim} dimensions, shape {X.shape}.")


def encode_labels(y):
    """Return ``(classes, y_encoded)`` for any hashable labels, rejecting a single class."""
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); distillation needs at least two "
                         f"classes.")
    return classes, y_enc.astype(np.int32)


def check_ipc(y_encoded, ipc, classes):
    """Check every class has at least ``ipc`` rows (a coreset or real-image init needs them)."""
    counts = np.bincount(y_encoded, minlength=len(classes))
    small = np.flatnonzero(counts < ipc)
    if small.size:
        names = np.asarray(classes).tolist()
        detail = ", ".join(f"{names[i]!r}: {counts[i]}" for i in small[:5])
        raise ValueError(f"`ipc`={ipc} is larger than the number of rows of some classes ({detail}); "
                         f"lower ipc or give more data for those classes.")


def check_target(y):
    """Return the class labels of a classification target, and whether it was one-hot.

    ``y`` may hold one label per sample or be a one-hot (label-indicator) matrix of shape
    ``(n_samples, n_classes)`` with exactly one 1 per row, the encoding imbalanced-learn's
    samplers accept. A one-hot ``y`` becomes the column index of each row's 1, so its classes are
    column indices. Other targets are returned unchanged for ``validate_data`` to check (which
    warns about a column vector, as scikit-learn does).

    Returns
    -------
    labels : array-like
        ``y`` itself, or the column indices of a one-hot ``y``.
    one_hot : bool

    Raises
    ------
    ValueError
        If ``y`` is a label-indicator matrix whose rows do not each hold exactly one 1
        (multilabel targets).
    """
    if type_of_target(y, input_name="y") == "multilabel-indicator":
        Y = y.toarray() if sparse.issparse(y) else np.asarray(y)
        per_row = Y.sum(axis=1)
        if np.any(per_row != 1):
            row = int(np.flatnonzero(per_row != 1)[0])
            raise ValueError(f"y is a label-indicator matrix, but row {row} holds {int(per_row[row])} "
                             f"ones: multilabel targets are not supported. Give one label per sample, "
                             f"as a 1-D array or a one-hot matrix with exactly one 1 per row.")
        return Y.argmax(axis=1), True
    return y, False


def check_dense(X, who):
    """Raise a ``TypeError`` naming ``who`` if ``X`` is a sparse matrix or has sparse columns."""
    dtypes = getattr(X, "dtypes", None)
    if sparse.issparse(X) or (dtypes is not None and np.ndim(X) == 2 and any(
            type(dtype).__name__ == "SparseDtype" for dtype in dtypes)):
        raise TypeError(f"{who} does not take sparse X: it needs dense data. Convert it with "
                        f"X.toarray() (or DataFrame.sparse.to_dense()).")


def validate_training_data(estimator, X, y, image_shape=None, accept_sparse=False):
    """Validate ``X, y`` for ``fit``; set ``n_features_in_``/``feature_names_in_`` on ``estimator``.

    ``y`` may be one-hot (see :func:`check_target`). ``accept_sparse=True`` lets sparse tabular
    rows through as a float32 CSR matrix (the coresets select rows of it); otherwise sparse ``X``
    is refused with an error that says so.

    Returns
    -------
    X_internal : ndarray of float32, shape (n, d) or (n, H, W, C), or CSR matrix of shape (n, d)
    y_encoded : ndarray of int32
    classes : ndarray
    layout : InputLayout
    """
    y, _ = check_target(y)
    # The finiteness check runs on float32, the dtype the computation uses: a float64 value
    # beyond float32's range (1e39) is rejected here instead of turning into inf on the cast.
    with np.errstate(over="ignore"):
        X, y = validate_data(estimator, X, y, allow_nd=True, dtype=np.float32,
                             ensure_all_finite=True, ensure_min_samples=2, y_numeric=False,
                             multi_output=False,
                             accept_sparse=["csr", "csc"] if accept_sparse else False)
    check_classification_targets(y)
    layout = _layout_of(X, image_shape)
    classes, y_enc = encode_labels(y)
    return layout.to_internal(X), y_enc, classes, layout


def validate_input(estimator, X, layout, accept_sparse=False):
    """Validate ``X`` at predict/score time against the layout seen in ``fit``.

    The finiteness check runs in float32, as in :func:`validate_training_data`. With
    ``accept_sparse=True`` sparse rows are accepted and made dense (networks need dense inputs).
    """
    with np.errstate(over="ignore"):
        X = validate_data(estimator, X, reset=False, allow_nd=True, dtype=np.float32,
                          ensure_all_finite=True,
                          accept_sparse=["csr", "csc"] if accept_sparse else False)
    if sparse.issparse(X):
        X = X.toarray()
    expected = layout.to_input(np.zeros((1,) + layout.sample_shape)).shape[1:]
    if X.shape[1:] != expected:
        raise ValueError(f"X has shape {X.shape[1:]} per sample, but the estimator was fitted on samples "
                         f"of shape {expected}.")
    return layout.to_internal(X)


def warn_unseen_classes(y, classes, who="the distiller"):
    """Warn when the test labels ``y`` hold classes absent from ``classes`` (those seen in fit).

    Networks trained on a synthetic set of ``classes`` cannot predict the others, so every test
    row of such a class counts as an error: the score is then mostly a statement about the split
    (typically a non-stratified split of class-sorted data), not about the method.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        return
    seen = set(np.asarray(classes).tolist())
    unseen = sorted({label for label in np.unique(y).tolist() if label not in seen}, key=repr)
    if unseen:
        share = float(np.mean([label not in seen for label in y.tolist()]))
        warnings.warn(f"y holds {len(unseen)} classes that {who} never saw in fit "
                      f"({unseen[:5]!r}{'...' if len(unseen) > 5 else ''}; {100 * share:.0f}% of "
                      f"the rows): they can only be predicted wrong. Split with every class in "
                      f"each training fold (an integer cv over a distiller is stratified; pass "
                      f"StratifiedKFold for a custom split).", UserWarning, stacklevel=3)


def random_seed(random_state):
    """Turn a scikit-learn ``random_state`` into one 32-bit integer seed.

    ``None`` draws fresh entropy from the operating system (not NumPy's global generator), an
    integer is used as is, a ``RandomState`` instance is advanced by one draw.
    """
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, Integral):
        return int(random_state) % (2**32)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def child_seed(seed, *path):
    """A 32-bit seed for a sub-computation, split from ``seed`` with :class:`numpy.random.SeedSequence`.

    ``path`` (non-negative integers) names the sub-computation, so every child of one seed gets
    an independent stream. Never ``seed + 1``: that overflows the 32-bit range scikit-learn
    accepts for ``random_state`` (``2**32 - 1`` is valid) and makes the child of one seed the
    parent stream of the next.

    Parameters
    ----------
    seed : int
        Non-negative integer seed (e.g. :func:`random_seed` of a ``random_state``).
    *path : int
        Which child.

    Returns
    -------
    int
        In ``[0, 2**32 - 1]``, a valid ``random_state``.

    Examples
    --------
    >>> 0 <= child_seed(2**32 - 1, 1) < 2**32
    True
    >>> child_seed(0, 1) == child_seed(0, 1) != child_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=tuple(int(p) for p in path))
               .generate_state(1)[0])


def check_random_key(random_state):
    """Return a JAX PRNG key derived from a scikit-learn ``random_state``."""
    import jax

    return jax.random.PRNGKey(random_seed(random_state))
