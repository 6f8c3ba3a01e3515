"""Row-preserving preprocessing used in front of a distiller: ZCA whitening and standardising.

Both transformers accept 2-D rows ``(n_samples, n_features)`` as well as image arrays
``(n, H, W)`` / ``(n, H, W, C)`` and return an array of the same shape, so they slot into a
:class:`~sklearn.pipeline.Pipeline` in front of a distiller or a classifier whatever the layout.
The numerics are NumPy in float64 (whitening needs an accurate eigendecomposition); the output keeps
the input's floating dtype.
"""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from ._validation import check_channels_last

__all__ = ["ZCAWhitening", "ImageStandardizer"]

# Rows per block when accumulating statistics: bounds the float64 working copy of large datasets.
_CHUNK = 4096

# Published per-channel (mean, standard deviation) of pixel intensities in [0, 1], by name: the
# constants of FRePo's and RCIG's data loaders (lib/dataset/dataloader.py:15-26 of
# yongchao97/FRePo at 9b98c65, dataloader.py:17-28 of yolky/RCIG at a9fb1fa), and those of
# RaT-BPTT's (framework/config.py:181-237 of fengyzpku/Simple_Dataset_Distillation), which uses
# other deviations for CIFAR-10 and ImageNet's statistics for Tiny ImageNet.
CHANNEL_STATISTICS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2861,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny_imagenet": ((0.4759, 0.4481, 0.3926), (0.2763, 0.2687, 0.2813)),
    "imagenet32": ((0.4811, 0.4575, 0.4079), (0.2604, 0.2532, 0.2682)),
    "imagenet64": ((0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)),
    "imagenette": ((0.4626, 0.4588, 0.4251), (0.2790, 0.2745, 0.2973)),
    "imagewoof": ((0.4917, 0.4613, 0.3931), (0.2513, 0.2442, 0.2530)),
    "cub200": ((0.4810, 0.4964, 0.4245), (0.2129, 0.2084, 0.2468)),
    "cifar10_ratbptt": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100_ratbptt": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class _ShapePreservingTransformer(TransformerMixin, BaseEstimator):
    """Validation shared by transformers that map each sample to a sample of the same shape."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate(self, X, reset):
        X = validate_data(self, X, reset=reset, allow_nd=True,
                          dtype=[np.float64, np.float32], ensure_all_finite=True)
        if X.ndim > 4:
            raise ValueError(f"X must be 2-D rows or n x H x W [x C] images, got shape {X.shape}.")
        if reset:
            self.sample_shape_ = tuple(X.shape[1:])
        elif tuple(X.shape[1:]) != self.sample_shape_:
            raise ValueError(f"X has samples of shape {tuple(X.shape[1:])}, but "
                             f"{type(self).__name__} was fitted on samples of shape "
                             f"{self.sample_shape_}.")
        return X

    def get_feature_names_out(self, input_features=None):
        """Output feature names (one per input feature), for 2-D input only.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input feature names; defaults to ``feature_names_in_`` or ``x0, x1, ...``.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        if len(self.sample_shape_) != 1:
            raise ValueError("Feature names are only defined for 2-D input; this transformer was "
                             f"fitted on samples of shape {self.sample_shape_}.")
        return _check_feature_names_in(self, input_features)


def _map_rows(function, Z):
    """``function`` applied to blocks of rows, written into an array of ``Z``'s dtype.

    The float64 temporaries then stay one block in size, whatever the dataset size.
    """
    out = np.empty_like(Z)
    for start in range(0, Z.shape[0], _CHUNK):
        out[start:start + _CHUNK] = function(Z[start:start + _CHUNK].astype(np.float64))
    return out


def _standardize_block(block):
    mean = np.mean(block, axis=1, keepdims=True)
    std = np.std(block, axis=1, keepdims=True)
    std[std == 0] = 1.0
    return (block - mean) / std


def _standardize_rows(Z):
    """Each row to zero mean and unit standard deviation (constant rows become zeros)."""
    return _map_rows(_standardize_block, Z)


class ZCAWhitening(_ShapePreservingTransformer):
    r"""ZCA whitening with trace-relative regularisation, as used in dataset distillation.

    Each sample is flattened to :math:`x_i \in \mathbb{R}^d` and optionally standardised:

    * ``standardize="image"`` (layer-norm-like, as KIP / RaT-BPTT): :math:`\tilde x_i = (x_i - m_i)
      / \sigma_i` with :math:`m_i, \sigma_i` the mean and standard deviation of the :math:`d`
      entries of :math:`x_i` (stateless, applied to every sample);
    * ``standardize="feature"``: :math:`\tilde x_{ij} = (x_{ij} - \mu_j) / s_j` with per-feature
      mean and standard deviation learned in ``fit``;
    * ``standardize=None``: :math:`\tilde x_i = x_i`.

    Then, on the training set,

    .. math::

        \mu = \frac1n \sum_i \tilde x_i, \qquad
        \Sigma = \frac1n \sum_i (\tilde x_i - \mu)(\tilde x_i - \mu)^\top, \qquad
        \lambda = \varepsilon \, \frac{\operatorname{tr}\Sigma}{d},

    (:math:`\mu = 0` when ``center=False``, so that :math:`\Sigma` is the uncentred
    second-moment matrix; :math:`\lambda = \varepsilon` when
    ``relative_regularization=False``), and with the
    eigendecomposition :math:`\Sigma + \lambda I = U \operatorname{diag}(s_1 \ge \dots \ge s_d)
    U^\top`,

    .. math::

        W = U \operatorname{diag}(w) U^\top, \qquad
        w_k = s_k^{-1/2} \text{ for } k \le n, \quad w_k = 1 \text{ for } k > n,

    and the transform is :math:`z_i = W(\tilde x_i - \mu)`. The regulariser is relative to the
    mean eigenvalue :math:`\operatorname{tr}\Sigma / d`, so :math:`\varepsilon` means the same
    thing for any scaling of the data, and it damps the amplification of low-variance (noisy)
    directions: directions with variance far above :math:`\lambda` come out with unit variance,
    those far below are scaled by :math:`\lambda^{-1/2}`. The :math:`w_k = 1` rule ("rank
    control") leaves alone the :math:`d - n` directions that the training set cannot estimate when
    it has fewer samples than features; directions whose regularised eigenvalue is numerically zero
    (only possible with ``regularization=0``) are also left alone.

    This is the FRePo recipe, which RCIG reuses unchanged (mean-centred covariance,
    :math:`\lambda = 0.1\, \operatorname{tr}\Sigma / d`, rank control), where the images are first
    standardised with dataset-wide per-channel statistics; ``make_pipeline(ImageStandardizer(
    "channel", statistics="cifar10"), ZCAWhitening(standardize=None))`` reproduces it on CIFAR-10
    pixels in [0, 1]. KIP and RaT-BPTT use the per-image standardisation
    (``standardize="image"``, the default); RaT-BPTT's official code (``framework/config.py:369-411``
    of fengyzpku/Simple_Dataset_Distillation) also leaves the feature mean in the second-moment
    matrix and in the transform, which ``ZCAWhitening(standardize="image", center=False)``
    reproduces (its per-image scaling to unit norm instead of unit deviation does not change
    the output under the relative ridge).

    Parameters
    ----------
    regularization : float, default=0.1
        :math:`\varepsilon` above, non-negative.
    standardize : {"image", "feature"} or None, default="image"
        Standardisation applied before whitening (see above).
    relative_regularization : bool, default=True
        If True, the added ridge is ``regularization * trace(cov) / d``; if False it is
        ``regularization`` itself.
    center : bool, default=True
        Remove the training feature mean :math:`\mu` before the covariance and the transform.
        ``False``: :math:`\mu = 0`, the uncentred second-moment matrix (RaT-BPTT's official
        ZCA).

    Attributes
    ----------
    mean_ : ndarray of shape (d,)
        Mean :math:`\mu` of the (standardised) flattened training samples (zeros with
        ``center=False``).
    whitening_ : ndarray of shape (d, d)
        The symmetric matrix :math:`W`.
    coloring_ : ndarray of shape (d, d)
        Its inverse :math:`W^{-1} = U \operatorname{diag}(1/w) U^\top`.
    eigenvalues_ : ndarray of shape (d,)
        Regularised eigenvalues :math:`s_k`, in decreasing order.
    regularization_ : float
        The ridge :math:`\lambda` actually added.
    feature_mean_, feature_scale_ : ndarray of shape (d,)
        Per-feature statistics, only with ``standardize="feature"``.
    sample_shape_ : tuple of int
        Shape of one sample seen in ``fit``; ``transform`` requires the same.
    n_features_in_ : int
        Size of the second axis of ``X`` seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    ImageStandardizer : per-channel or per-image standardisation.

    Notes
    -----
    ``inverse_transform`` undoes the whitening exactly (up to rounding). With
    ``standardize=None`` or ``"feature"`` it therefore recovers the input; with ``"image"`` it
    returns the per-image standardised input, since each image's own mean and scale are not kept.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 4, 4, 1))
    >>> zca = ZCAWhitening(regularization=1e-6, standardize=None).fit(X)
    >>> Z = zca.transform(X)
    >>> Z.shape
    (200, 4, 4, 1)
    >>> cov = np.cov(Z.reshape(200, -1), rowvar=False, bias=True)
    >>> bool(np.allclose(cov, np.eye(16), atol=1e-4))
    True
    >>> bool(np.allclose(zca.inverse_transform(Z), X))
    True
    """

    _parameter_constraints = {
        "regularization": [Interval(Real, 0, None, closed="left")],
        "standardize": [StrOptions({"image", "feature"}), None],
        "relative_regularization": ["boolean"],
        "center": ["boolean"],
    }

    def __init__(self, regularization=0.1, standardize="image", relative_regularization=True,
                 center=True):
        self.regularization = regularization
        self.standardize = standardize
        self.relative_regularization = relative_regularization
        self.center = center

    def fit(self, X, y=None):
        """Learn the mean and the whitening matrix from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Training samples.
        y : None
            Ignored.

        Returns
        -------
        self : ZCAWhitening
        """
        self._validate_params()
        X = self._validate(X, reset=True)
        n = X.shape[0]
        Z = X.reshape(n, -1)
        d = Z.shape[1]
        if self.standardize == "feature":
            self.feature_mean_ = np.mean(Z, axis=0, dtype=np.float64)
            scale = np.std(Z, axis=0, dtype=np.float64)
            scale[scale == 0] = 1.0
            self.feature_scale_ = scale
        Z = self._standardize(Z)

        self.mean_ = np.mean(Z, axis=0, dtype=np.float64) if self.center else np.zeros(d)
        cov = np.zeros((d, d))
        for start in range(0, n, _CHUNK):
            block = Z[start:start + _CHUNK].astype(np.float64) - self.mean_
            cov += block.T @ block
        cov /= n

        ridge = float(self.regularization)
        if self.relative_regularization:
            ridge *= np.trace(cov) / d
        self.regularization_ = ridge
        eigenvalues, eigenvectors = np.linalg.eigh(cov + ridge * np.eye(d))
        eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
        eigenvectors = eigenvectors[:, ::-1]
        # Directions beyond the sample count, or numerically null, carry no usable variance
        # estimate: rescaling them would only amplify noise, so they keep unit gain.
        tol = max(eigenvalues.max(initial=0.0), 0.0) * d * np.finfo(np.float64).eps
        keep = (np.arange(d) < n) & (eigenvalues > tol)
        gain = np.ones(d)
        gain[keep] = eigenvalues[keep] ** -0.5
        self.eigenvalues_ = eigenvalues
        self.whitening_ = (eigenvectors * gain) @ eigenvectors.T
        self.coloring_ = (eigenvectors / gain) @ eigenvectors.T
        return self

    def _standardize(self, Z):
        if self.standardize == "image":
            return _standardize_rows(Z)
        if self.standardize == "feature":
            return _map_rows(lambda b: (b - self.feature_mean_) / self.feature_scale_, Z)
        return Z

    def transform(self, X):
        """Whiten ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Samples with the shape seen in ``fit``.

        Returns
        -------
        ndarray of the same shape as ``X``
            Whitened samples, float32 for float32 input and float64 otherwise.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        Z = self._standardize(X.reshape(X.shape[0], -1))
        W = self.whitening_.astype(Z.dtype, copy=False)
        out = (Z - self.mean_.astype(Z.dtype)) @ W
        return out.reshape(X.shape)

    def inverse_transform(self, X):
        """Undo the whitening (and ``standardize="feature"``; see Notes of the class).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Whitened samples.

        Returns
        -------
        ndarray of the same shape as ``X``
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        Z = X.reshape(X.shape[0], -1)
        C = self.coloring_.astype(Z.dtype, copy=False)
        out = Z @ C + self.mean_.astype(Z.dtype)
        if self.standardize == "feature":
            out = (out * self.feature_scale_ + self.feature_mean_).astype(Z.dtype, copy=False)
        return out.reshape(X.shape)


class ImageStandardizer(_ShapePreservingTransformer):
    """Standardise images per channel (dataset statistics) or per image (own statistics).

    ``axis="channel"`` is the usual MNIST / CIFAR normalisation: ``fit`` learns the mean and
    standard deviation of every channel over all training pixels, and ``transform`` maps each
    pixel to ``(x - mean[c]) / std[c]``. ``axis="image"`` standardises every image by the mean and
    standard deviation of its own pixels (all channels together); it learns nothing.

    The channel axis is the last one of ``(n, H, W, C)`` images. ``(n, H, W)`` images have one
    channel. 2-D rows are one-channel images unless ``image_shape=(H, W, C)`` says how they are
    laid out (row-major ``H, W, C`` order, as ``images.reshape(n, -1)`` produces).

    With ``statistics`` the channel statistics are fixed instead of estimated, e.g. the
    published constants that the official FRePo and RCIG code standardise with: they then do
    not depend on which rows ``fit`` sees (a subset, a few classes).

    Parameters
    ----------
    axis : {"channel", "image"}, default="channel"
        Which statistics to standardise with.
    image_shape : tuple of int (H, W, C), default=None
        Layout of 2-D rows; ignored for image arrays.
    statistics : str or (mean, std) or None, default=None
        Fixed per-channel statistics (``axis="channel"`` only). A name gives published
        constants for intensities in [0, 1] (``fit`` and ``transform`` raise a ``ValueError``
        for data outside [0, 1], e.g. uint8 pixels): ``"mnist"``, ``"fashion_mnist"``,
        ``"cifar10"``, ``"cifar100"``, ``"tiny_imagenet"``, ``"imagenet32"``,
        ``"imagenet64"``, ``"imagenette"``, ``"imagewoof"``, ``"cub200"`` (those of the
        official FRePo and RCIG data loaders, ``lib/dataset/dataloader.py:15-26`` of
        yongchao97/FRePo at 9b98c65), ``"cifar10_ratbptt"``, ``"cifar100_ratbptt"`` and
        ``"imagenet"`` (those of RaT-BPTT's official code, ``framework/config.py:181-237`` of
        fengyzpku/Simple_Dataset_Distillation, which uses ImageNet's for Tiny ImageNet). A pair
        ``(mean, std)`` of sequences of one value per channel (positive deviations) is used
        as given, in the data's units. ``None``: estimated by ``fit``.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_channels,)
        Per-channel mean and standard deviation (``axis="channel"`` only; estimated ones that
        are zero are replaced by 1), the fixed ones with ``statistics``.
    n_channels_ : int
        Number of channels found in ``fit``.
    sample_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    n_features_in_ : int
        Size of the second axis of ``X`` seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    ZCAWhitening : whitening, which can also standardise per image first.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(size=(10, 4, 4, 3))
    >>> scaler = ImageStandardizer().fit(X)
    >>> scaler.mean_.shape
    (3,)
    >>> Z = scaler.transform(X)
    >>> bool(np.allclose(Z.mean(axis=(0, 1, 2)), 0)), bool(np.allclose(Z.std(axis=(0, 1, 2)), 1))
    (True, True)
    >>> bool(np.allclose(scaler.inverse_transform(Z), X))
    True
    >>> ImageStandardizer(statistics="cifar10").fit(X).scale_
    array([0.247 , 0.2435, 0.2616])
    """

    _parameter_constraints = {
        "axis": [StrOptions({"channel", "image"})],
        "image_shape": [tuple, list, None],
        "statistics": [StrOptions(set(CHANNEL_STATISTICS)), tuple, list, None],
    }

    def __init__(self, axis="channel", image_shape=None, statistics=None):
        self.axis = axis
        self.image_shape = image_shape
        self.statistics = statistics

    def _fixed_statistics(self, n_channels):
        """The ``statistics`` as (mean, std) float64 arrays of length ``n_channels``, checked."""
        if self.axis != "channel":
            raise ValueError(f"`statistics` needs axis='channel'; got axis={self.axis!r}.")
        if isinstance(self.statistics, str):
            mean, std = CHANNEL_STATISTICS[self.statistics]
        elif len(self.statistics) == 2:
            mean, std = self.statistics
        else:
            raise ValueError("`statistics` must be a name or a pair (mean, std); got "
                             f"{self.statistics!r}.")
        try:
            mean, std = (np.asarray(v, np.float64).reshape(-1) for v in (mean, std))
        except (TypeError, ValueError):
            raise ValueError("`statistics` must hold numbers, one mean and one std per channel; "
                             f"got {self.statistics!r}.") from None
        if mean.shape != (n_channels,) or std.shape != (n_channels,):
            raise ValueError(f"`statistics`={self.statistics!r} has {mean.size} mean(s) and "
                             f"{std.size} deviation(s); the data has {n_channels} channel(s).")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"`statistics`={self.statistics!r} needs finite means and positive, "
                             "finite deviations.")
        return mean, std

    def _check_range(self, X):
        """Named statistics are for intensities in [0, 1]: refuse data on another scale."""
        if isinstance(self.statistics, str) and X.size:
            low, high = float(np.min(X)), float(np.max(X))
            if low < 0.0 or high > 1.0:
                raise ValueError(f"`statistics`={self.statistics!r} holds statistics of pixel "
                                 f"intensities in [0, 1], but X has values in [{low:g}, {high:g}]; "
                                 "scale the images to [0, 1] first (e.g. divide uint8 pixels "
                                 "by 255).")

    def _channels(self, X):
        """Number of channels of ``X`` (validated) and ``X`` reshaped to (n, pixels, channels)."""
        if X.ndim == 4:
            if self.image_shape is None or tuple(self.image_shape) != X.shape[1:]:
                check_channels_last(X.shape)
            c = X.shape[-1]
        elif X.ndim == 3 or self.image_shape is None:
            c = 1
        else:
            shape = tuple(self.image_shape)
            if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0
                                          for s in shape):
                raise ValueError(f"image_shape must be a tuple (H, W, C) of positive ints, got "
                                 f"{self.image_shape!r}.")
            if int(np.prod(shape)) != X.shape[1]:
                raise ValueError(f"image_shape={shape} has {int(np.prod(shape))} values but X has "
                                 f"{X.shape[1]} features.")
            c = shape[-1]
        return c, X.reshape(X.shape[0], -1, c)

    def fit(self, X, y=None):
        """Learn per-channel statistics (``axis="channel"``) or just check ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Training images.
        y : None
            Ignored.

        Returns
        -------
        self : ImageStandardizer
        """
        self._validate_params()
        X = self._validate(X, reset=True)
        self.n_channels_, P = self._channels(X)
        if self.statistics is not None:
            self.mean_, self.scale_ = self._fixed_statistics(self.n_channels_)
            self._check_range(X)
        elif self.axis == "channel":
            self.mean_ = np.mean(P, axis=(0, 1), dtype=np.float64)
            scale = np.std(P, axis=(0, 1), dtype=np.float64)
            scale[scale == 0] = 1.0
            self.scale_ = scale
        return self

    def transform(self, X):
        """Standardise ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Images with the shape seen in ``fit``.

        Returns
        -------
        ndarray of the same shape as ``X``
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        if self.axis == "image":
            return _standardize_rows(X.reshape(X.shape[0], -1)).reshape(X.shape)
        self._check_range(X)
        _, P = self._channels(X)
        out = (P - self.mean_.astype(X.dtype)) / self.scale_.astype(X.dtype)
        return out.reshape(X.shape)

    @available_if(lambda self: self.axis == "channel")
    def inverse_transform(self, X):
        """Map standardised images back (``axis="channel"`` only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, H, W[, C])
            Standardised images.

        Returns
        -------
        ndarray of the same shape as ``X``
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        _, P = self._channels(X)
        out = P * self.scale_.astype(X.dtype) + self.mean_.astype(X.dtype)
        return out.reshape(X.shape)
