r"""Conjugate-kernel Gram matrices and kernel ridge regression (KRR) in JAX.

This module holds the closed-form regression machinery shared by the
kernel-based distillers (FRePo, RCIG and the KRR baseline). A feature
extractor :math:`f_\theta` maps inputs to penultimate-layer activations, the
*conjugate kernel* is the Gram matrix of those activations, and the synthetic
set is scored by how well a ridge regressor fitted on it predicts the labels of
real data:

.. math::

    \hat Y_t = K_{ts} \left( K_{ss} + \lambda I \right)^{-1} Y_s,
    \qquad K_{ab} = F_a F_b^\top,
    \qquad \lambda = \lambda_0 \, \frac{\operatorname{tr}(K_{ss})}{n_s}.

Every function is pure, accepts ``jax.jit``, is differentiable with respect
to its array arguments and keeps the dtype of its inputs: float32 arrays give
float32 results, float64 arrays (with ``jax_enable_x64`` on) give float64.

References
----------
.. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using Neural
   Feature Regression", NeurIPS 2022. https://arxiv.org/abs/2206.00719
"""

import numbers

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

__all__ = [
    "conjugate_kernel",
    "scaled_ridge",
    "krr_solve",
    "krr_predict",
    "krr_predict_from_features",
    "krr_mse_loss",
    "feature_regression_loss",
]

_PRECISIONS = {
    "default": jax.lax.Precision.DEFAULT,
    "high": jax.lax.Precision.HIGH,
    "highest": jax.lax.Precision.HIGHEST,
}

_SOLVERS = ("auto", "dual", "primal")


# ---------------------------------------------------------------------------
# validation helpers (run at trace time, on static Python values and shapes)
# ---------------------------------------------------------------------------


def check_precision(precision):
    """Map a precision name (or a ``jax.lax.Precision``) to ``jax.lax.Precision``."""
    if isinstance(precision, jax.lax.Precision):
        return precision
    if isinstance(precision, str) and precision.lower() in _PRECISIONS:
        return _PRECISIONS[precision.lower()]
    raise ValueError(
        "precision must be one of 'default', 'high', 'highest' or a "
        f"jax.lax.Precision, got {precision!r}."
    )


def _check_nonnegative(value, name):
    """Reject negative or non-finite Python/NumPy scalars.

    Arrays (including tracers under ``jit``) cannot be inspected without
    forcing a device sync or breaking tracing, so only concrete scalars are
    checked.
    """
    if isinstance(value, bool) or (
        isinstance(value, numbers.Real) and not 0.0 <= float(value) < float("inf")
    ):
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}.")


def _check_matrix(array, name):
    array = jnp.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got an array of shape {array.shape}.")
    return array


def _check_square(array, name):
    array = _check_matrix(array, name)
    if array.shape[0] != array.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got an array of shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} must not be empty.")
    return array


def _check_targets(y, n_rows, name, rows_name):
    y = jnp.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} must be a 1-D or 2-D array, got an array of shape {y.shape}.")
    if y.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {y.shape[0]} rows but {rows_name} has {n_rows}; they must match."
        )
    return y


def _common_float_dtype(*arrays):
    """The floating dtype the computation runs in (float32 unless inputs are wider)."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(dtype, jnp.float32)
    return dtype


# ---------------------------------------------------------------------------
# kernels and ridge
# ---------------------------------------------------------------------------


def conjugate_kernel(features_a, features_b=None, *, precision="highest"):
    r"""Conjugate-kernel Gram matrix of two sets of feature vectors.

    The conjugate kernel (also called the empirical NNGP kernel) of a network
    is the inner product of its penultimate-layer activations. For feature
    matrices :math:`F_a \in \mathbb{R}^{n_a \times d}` and
    :math:`F_b \in \mathbb{R}^{n_b \times d}`:

    .. math::

        K_{ab} = F_a F_b^\top, \qquad
        (K_{ab})_{ij} = \langle f(x^a_i), f(x^b_j) \rangle .

    Parameters
    ----------
    features_a : array of shape (n_a, d)
        Feature vectors, one row per example.
    features_b : array of shape (n_b, d), default=None
        Second set of feature vectors. ``None`` means ``features_a`` (the
        symmetric Gram matrix :math:`F_a F_a^\top`).
    precision : {"highest", "high", "default"} or jax.lax.Precision, default="highest"
        Matmul precision. ``"highest"`` asks accelerators for full float32
        accumulation instead of reduced-precision (bf16/TF32) passes, which
        the subsequent linear solve is sensitive to. It has no effect on CPU.

    Returns
    -------
    gram : array of shape (n_a, n_b)
        The Gram matrix, in the inputs' floating dtype.

    Raises
    ------
    ValueError
        If an input is not 2-D, the feature dimensions differ, or
        ``precision`` is not recognised.

    See Also
    --------
    krr_predict_from_features : KRR prediction straight from features.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import conjugate_kernel
    >>> f = jnp.array([[1.0, 0.0], [1.0, 2.0]])
    >>> conjugate_kernel(f).tolist()
    [[1.0, 1.0], [1.0, 5.0]]
    >>> conjugate_kernel(f, jnp.array([[0.0, 1.0]])).tolist()
    [[0.0], [2.0]]

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022, Eq. 2.
       https://arxiv.org/abs/2206.00719
    """
    precision = check_precision(precision)
    features_a = _check_matrix(features_a, "features_a")
    if features_b is None:
        features_b = features_a
    else:
        features_b = _check_matrix(features_b, "features_b")
        if features_b.shape[1] != features_a.shape[1]:
            raise ValueError(
                "features_a and features_b must have the same number of columns, got "
                f"{features_a.shape[1]} and {features_b.shape[1]}."
            )
    dtype = _common_float_dtype(features_a, features_b)
    return jnp.matmul(
        features_a.astype(dtype), features_b.astype(dtype).T, precision=precision
    )


def scaled_ridge(k_ss, reg=1e-6):
    r"""Trace-scaled ridge :math:`\lambda = \lambda_0 \operatorname{tr}(K_{ss}) / n_s`.

    The ridge is expressed relative to the mean eigenvalue (equivalently the
    mean diagonal entry) of the support Gram matrix, so ``reg`` is a
    dimensionless :math:`\lambda_0`:

    .. math::

        \lambda = \lambda_0 \, \frac{\operatorname{tr}(K_{ss})}{n_s}
                = \lambda_0 \, \frac{1}{n_s} \sum_{i=1}^{n_s} \lVert f(x^s_i) \rVert^2 .

    Rescaling the features by :math:`c` multiplies every kernel entry and the
    ridge by :math:`c^2`, so the KRR predictor
    :math:`K_{ts}(K_{ss} + \lambda I)^{-1} Y_s` is unchanged: the
    regularisation strength does not depend on the scale of the feature
    extractor, which drifts as the networks of a model pool train.

    Parameters
    ----------
    k_ss : array of shape (n_s, n_s)
        Gram matrix of the support (synthetic) set.
    reg : float or scalar array, default=1e-6
        Relative ridge :math:`\lambda_0 \ge 0`. FRePo uses ``1e-6``.

    Returns
    -------
    ridge : scalar array
        :math:`\lambda`, in the dtype of ``k_ss``.

    Raises
    ------
    ValueError
        If ``k_ss`` is not a non-empty square matrix or ``reg`` is a negative
        or non-finite Python number.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import scaled_ridge
    >>> k = jnp.array([[2.0, 1.0], [1.0, 4.0]])
    >>> round(float(scaled_ridge(k, reg=0.1)), 6)  # 0.1 * (2 + 4) / 2
    0.3

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022.
       https://arxiv.org/abs/2206.00719
    """
    _check_nonnegative(reg, "reg")
    k_ss = _check_square(k_ss, "k_ss")
    dtype = _common_float_dtype(k_ss)
    k_ss = k_ss.astype(dtype)
    return jnp.asarray(reg, dtype) * jnp.trace(k_ss) / k_ss.shape[0]


def cholesky_solve(k_ss, y_s, diag):
    """Solve ``(sym(k_ss) + diag I) X = y_s`` with a Cholesky factorisation."""
    n = k_ss.shape[0]
    # Round-off makes F F^T slightly asymmetric; Cholesky reads only one
    # triangle, so symmetrising keeps the solve (and its gradient) consistent.
    k_sym = 0.5 * (k_ss + k_ss.T)
    k_reg = k_sym + diag * jnp.eye(n, dtype=k_ss.dtype)
    factor = jsl.cho_factor(k_reg, lower=True)
    return jsl.cho_solve(factor, y_s)


def krr_solve(k_ss, y_s, reg=1e-6, *, jitter=0.0):
    r"""Dual KRR coefficients :math:`\alpha = (K_{ss} + \lambda I)^{-1} Y_s`.

    Solves the regularised normal equations by a Cholesky factorisation of the
    symmetrised, ridge-shifted Gram matrix:

    .. math::

        \alpha = \left( \tfrac12 (K_{ss} + K_{ss}^\top)
                 + (\lambda_0 + \epsilon) \, \tfrac{\operatorname{tr}(K_{ss})}{n_s} I
                 \right)^{-1} Y_s ,

    where :math:`\lambda_0` is ``reg`` (the model's ridge, see
    :func:`scaled_ridge`) and :math:`\epsilon` is ``jitter``, an optional
    extra trace-scaled diagonal that only guards the factorisation (e.g. when
    ``reg=0`` or the synthetic set holds duplicated points).

    Parameters
    ----------
    k_ss : array of shape (n_s, n_s)
        Support Gram matrix (positive semi-definite).
    y_s : array of shape (n_s, n_outputs) or (n_s,)
        Support targets (e.g. learned soft labels).
    reg : float or scalar array, default=1e-6
        Relative ridge :math:`\lambda_0 \ge 0`.
    jitter : float or scalar array, default=0.0
        Extra relative diagonal :math:`\epsilon \ge 0` for numerical safety.

    Returns
    -------
    alpha : array with the shape of ``y_s``
        Dual coefficients.

    Raises
    ------
    ValueError
        On shape mismatches or a negative ``reg`` / ``jitter``.

    Notes
    -----
    A singular shifted matrix (zero ridge on a rank-deficient kernel) makes
    the Cholesky factor contain NaNs, which propagate to the result rather
    than raising, as is usual under ``jax.jit``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import krr_solve
    >>> k = jnp.array([[2.0, 0.0], [0.0, 4.0]])
    >>> y = jnp.array([[1.0], [2.0]])
    >>> jnp.round(krr_solve(k, y, reg=0.0), 6).tolist()
    [[0.5], [0.5]]

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022, Eq. 2.
       https://arxiv.org/abs/2206.00719
    """
    _check_nonnegative(reg, "reg")
    _check_nonnegative(jitter, "jitter")
    k_ss = _check_square(k_ss, "k_ss")
    y_s = _check_targets(y_s, k_ss.shape[0], "y_s", "k_ss")
    dtype = _common_float_dtype(k_ss, y_s)
    k_ss, y_s = k_ss.astype(dtype), y_s.astype(dtype)
    mean_diag = jnp.trace(k_ss) / k_ss.shape[0]
    diag = (jnp.asarray(reg, dtype) + jnp.asarray(jitter, dtype)) * mean_diag
    return cholesky_solve(k_ss, y_s, diag)


def krr_predict(k_ts, k_ss, y_s, reg=1e-6, *, jitter=0.0, precision="highest"):
    r"""KRR predictions :math:`\hat Y_t = K_{ts} (K_{ss} + \lambda I)^{-1} Y_s`.

    .. math::

        \hat Y_t = K_{ts} \, \alpha, \qquad
        \alpha = \left( K_{ss} + \lambda_0 \tfrac{\operatorname{tr}(K_{ss})}{n_s} I
                 \right)^{-1} Y_s .

    Parameters
    ----------
    k_ts : array of shape (n_t, n_s)
        Cross Gram matrix between target (real) and support (synthetic) points.
    k_ss : array of shape (n_s, n_s)
        Support Gram matrix.
    y_s : array of shape (n_s, n_outputs) or (n_s,)
        Support targets.
    reg : float or scalar array, default=1e-6
        Relative ridge :math:`\lambda_0 \ge 0` (see :func:`scaled_ridge`).
    jitter : float or scalar array, default=0.0
        Extra relative diagonal for numerical safety (see :func:`krr_solve`).
    precision : {"highest", "high", "default"} or jax.lax.Precision, default="highest"
        Precision of the :math:`K_{ts}\alpha` matmul.

    Returns
    -------
    y_pred : array of shape (n_t, n_outputs) or (n_t,)
        Predicted targets.

    Raises
    ------
    ValueError
        On shape mismatches, a negative ``reg`` / ``jitter`` or an unknown
        ``precision``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import conjugate_kernel, krr_predict
    >>> f_s = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y_s = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> f_t = jnp.array([[2.0, 0.0]])
    >>> k_ts, k_ss = conjugate_kernel(f_t, f_s), conjugate_kernel(f_s)
    >>> jnp.round(krr_predict(k_ts, k_ss, y_s, reg=0.0), 6).tolist()
    [[2.0, -2.0]]

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022, Eq. 2.
       https://arxiv.org/abs/2206.00719
    """
    precision = check_precision(precision)
    k_ts = _check_matrix(k_ts, "k_ts")
    k_ss = _check_square(k_ss, "k_ss")
    if k_ts.shape[1] != k_ss.shape[0]:
        raise ValueError(
            f"k_ts has {k_ts.shape[1]} columns but k_ss has {k_ss.shape[0]} rows; "
            "they must match."
        )
    alpha = krr_solve(k_ss, y_s, reg, jitter=jitter)
    return jnp.matmul(k_ts.astype(alpha.dtype), alpha, precision=precision)


def krr_predict_from_features(
    features_t,
    features_s,
    y_s,
    reg=1e-6,
    *,
    solver="auto",
    jitter=0.0,
    precision="highest",
):
    r"""KRR predictions from feature matrices, in dual or primal form.

    With the linear (conjugate) kernel, ridge regression has two equivalent
    closed forms:

    .. math::

        \text{dual:}\quad
        \hat Y_t = F_t F_s^\top \left( F_s F_s^\top + \lambda I_{n_s} \right)^{-1} Y_s,

        \text{primal:}\quad
        \hat Y_t = F_t \left( F_s^\top F_s + \lambda I_d \right)^{-1} F_s^\top Y_s,

    with the same :math:`\lambda = \lambda_0 \operatorname{tr}(F_s F_s^\top)/n_s
    = \lambda_0 \lVert F_s \rVert_F^2 / n_s` in both (the push-through
    identity :math:`F^\top (F F^\top + \lambda I)^{-1} = (F^\top F + \lambda I)^{-1} F^\top`).
    The dual solves an :math:`n_s \times n_s` system and the primal a
    :math:`d \times d` one, so the primal is cheaper when the synthetic set is
    larger than the feature dimension.

    Parameters
    ----------
    features_t : array of shape (n_t, d)
        Features of the target (real) points.
    features_s : array of shape (n_s, d)
        Features of the support (synthetic) points.
    y_s : array of shape (n_s, n_outputs) or (n_s,)
        Support targets.
    reg : float or scalar array, default=1e-6
        Relative ridge :math:`\lambda_0 \ge 0`.
    solver : {"auto", "dual", "primal"}, default="auto"
        ``"auto"`` picks ``"primal"`` when ``n_s > d`` and ``"dual"``
        otherwise (decided from static shapes, so it is free under ``jit``).
    jitter : float or scalar array, default=0.0
        Extra relative diagonal for numerical safety (see :func:`krr_solve`).
    precision : {"highest", "high", "default"} or jax.lax.Precision, default="highest"
        Precision of every matmul.

    Returns
    -------
    y_pred : array of shape (n_t, n_outputs) or (n_t,)
        Predicted targets.

    Raises
    ------
    ValueError
        On shape mismatches, an unknown ``solver`` or ``precision``, or a
        negative ``reg`` / ``jitter``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import krr_predict_from_features
    >>> f_s = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> y_s = jnp.array([[1.0], [0.0], [1.0]])
    >>> f_t = jnp.array([[1.0, 0.0]])
    >>> dual = krr_predict_from_features(f_t, f_s, y_s, reg=0.1, solver="dual")
    >>> primal = krr_predict_from_features(f_t, f_s, y_s, reg=0.1, solver="primal")
    >>> bool(jnp.allclose(dual, primal, atol=1e-5))
    True

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022.
       https://arxiv.org/abs/2206.00719
    """
    precision = check_precision(precision)
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}.")
    _check_nonnegative(reg, "reg")
    _check_nonnegative(jitter, "jitter")
    features_t = _check_matrix(features_t, "features_t")
    features_s = _check_matrix(features_s, "features_s")
    if features_t.shape[1] != features_s.shape[1]:
        raise ValueError(
            "features_t and features_s must have the same number of columns, got "
            f"{features_t.shape[1]} and {features_s.shape[1]}."
        )
    if features_s.shape[0] == 0:
        raise ValueError("features_s must not be empty.")
    y_s = _check_targets(y_s, features_s.shape[0], "y_s", "features_s")
    n_s, d = features_s.shape
    if solver == "auto":
        solver = "primal" if n_s > d else "dual"

    if solver == "dual":
        k_ss = conjugate_kernel(features_s, precision=precision)
        k_ts = conjugate_kernel(features_t, features_s, precision=precision)
        return krr_predict(k_ts, k_ss, y_s, reg, jitter=jitter, precision=precision)

    dtype = _common_float_dtype(features_t, features_s, y_s)
    features_t, features_s, y_s = (a.astype(dtype) for a in (features_t, features_s, y_s))
    # tr(F^T F) = tr(F F^T); dividing by n_s (not d) keeps lambda identical to the
    # dual form, so both solvers fit the same regressor.
    mean_diag = jnp.sum(features_s * features_s) / n_s
    diag = (jnp.asarray(reg, dtype) + jnp.asarray(jitter, dtype)) * mean_diag
    gram = jnp.matmul(features_s.T, features_s, precision=precision)
    rhs = jnp.matmul(features_s.T, y_s, precision=precision)
    weights = cholesky_solve(gram, rhs, diag)
    return jnp.matmul(features_t, weights, precision=precision)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def krr_mse_loss(y_pred, y_true):
    r"""Half squared error, summed over outputs and averaged over examples.

    .. math::

        \mathcal{L}(\hat Y, Y) = \frac{1}{2 n} \sum_{i=1}^{n}
            \lVert \hat y_i - y_i \rVert_2^2
            = \frac{1}{2n} \lVert \hat Y - Y \rVert_F^2 .

    This is FRePo's meta-loss scaling (Eq. 2 of [1]_, averaged over the real
    batch): the squared error is *summed* over the label dimension, not
    averaged, so the loss grows with the number of classes. One-dimensional
    inputs are treated as a single output per example.

    Parameters
    ----------
    y_pred : array of shape (n, n_outputs) or (n,)
        Predictions.
    y_true : array of the same shape as ``y_pred``
        Targets.

    Returns
    -------
    loss : scalar array

    Raises
    ------
    ValueError
        If the shapes differ, or the arrays are not 1-D or 2-D.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import krr_mse_loss
    >>> y_pred = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> y_true = jnp.array([[0.0, 0.0], [0.0, 2.0]])
    >>> float(krr_mse_loss(y_pred, y_true))  # (1 + 4) / (2 * 2)
    1.25

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022, Eq. 2.
       https://arxiv.org/abs/2206.00719
    """
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true)
    if y_pred.ndim not in (1, 2):
        raise ValueError(f"y_pred must be a 1-D or 2-D array, got shape {y_pred.shape}.")
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_pred and y_true must have the same shape, got {y_pred.shape} and {y_true.shape}."
        )
    if y_pred.shape[0] == 0:
        raise ValueError("y_pred must not be empty.")
    dtype = _common_float_dtype(y_pred, y_true)
    diff = y_pred.astype(dtype) - y_true.astype(dtype)
    return 0.5 * jnp.sum(diff * diff) / y_pred.shape[0]


def feature_regression_loss(
    features_t,
    y_t,
    features_s,
    y_s,
    reg=1e-6,
    *,
    solver="auto",
    jitter=0.0,
    precision="highest",
):
    r"""FRePo's neural-feature-regression meta-loss.

    Fits ridge regression on the support (synthetic) features and labels and
    scores it on the target (real) batch:

    .. math::

        \mathcal{L}(X_s, Y_s) = \frac{1}{2 n_t} \left\lVert Y_t
            - K_{ts} \left( K_{ss} + \lambda_0
              \tfrac{\operatorname{tr}(K_{ss})}{n_s} I \right)^{-1} Y_s
            \right\rVert_F^2 ,
        \qquad K_{ab} = F_a F_b^\top .

    Differentiate it with respect to ``features_s`` (through the feature
    extractor, to the synthetic inputs) and ``y_s`` (learned labels); the
    target features are data and normally carry no gradient.

    Parameters
    ----------
    features_t : array of shape (n_t, d)
        Features of the real batch.
    y_t : array of shape (n_t, n_outputs) or (n_t,)
        Targets of the real batch (e.g. centred one-hot labels).
    features_s : array of shape (n_s, d)
        Features of the synthetic set.
    y_s : array of shape (n_s, n_outputs) or (n_s,)
        Labels of the synthetic set.
    reg : float or scalar array, default=1e-6
        Relative ridge :math:`\lambda_0 \ge 0`.
    solver : {"auto", "dual", "primal"}, default="auto"
        See :func:`krr_predict_from_features`.
    jitter : float or scalar array, default=0.0
        Extra relative diagonal for numerical safety.
    precision : {"highest", "high", "default"} or jax.lax.Precision, default="highest"
        Precision of every matmul.

    Returns
    -------
    loss : scalar array

    Raises
    ------
    ValueError
        On shape mismatches or invalid options.

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from sklearn_distill.kernels import feature_regression_loss
    >>> f_t = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y_t = jnp.array([[0.5, -0.5], [-0.5, 0.5]])
    >>> f_s, y_s = f_t, y_t
    >>> round(float(feature_regression_loss(f_t, y_t, f_s, y_s, reg=0.0)), 6)
    0.0
    >>> grad = jax.grad(feature_regression_loss, argnums=2)(f_t, y_t, 2.0 * f_s, y_s)
    >>> grad.shape
    (2, 2)

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using
       Neural Feature Regression", NeurIPS 2022, Eq. 2.
       https://arxiv.org/abs/2206.00719
    """
    features_t = _check_matrix(features_t, "features_t")
    y_t = _check_targets(y_t, features_t.shape[0], "y_t", "features_t")
    if y_t.shape[1:] != jnp.shape(y_s)[1:]:
        raise ValueError(
            f"y_t has shape {y_t.shape} and y_s has shape {jnp.shape(y_s)}; "
            "they must have the same number of outputs."
        )
    y_pred = krr_predict_from_features(
        features_t,
        features_s,
        y_s,
        reg,
        solver=solver,
        jitter=jitter,
        precision=precision,
    )
    return krr_mse_loss(y_pred, y_t)
