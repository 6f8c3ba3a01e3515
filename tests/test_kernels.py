"""Tests for sklearn_distill.kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill.kernels import (
    conjugate_kernel,
    feature_regression_loss,
    krr_mse_loss,
    krr_predict,
    krr_predict_from_features,
    krr_solve,
    scaled_ridge,
)

# Everything numeric below runs under jax.jit: one XLA compilation per
# function and shape is much cheaper than eager mode's one per primitive.
_predict = jax.jit(krr_predict_from_features, static_argnames=("solver", "precision"))
_solve = jax.jit(krr_solve)


def _problem(n_t=5, n_s=4, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    f_t = rng.normal(size=(n_t, d))
    f_s = rng.normal(size=(n_s, d))
    y_t = rng.normal(size=(n_t, c))
    y_s = rng.normal(size=(n_s, c))
    return f_t, f_s, y_t, y_s


def _numpy_reference(f_t, f_s, y_t, y_s, reg):
    """Float64 closed form of the trace-scaled KRR predictor and its loss."""
    f_t, f_s, y_t, y_s = (np.asarray(a, dtype=np.float64) for a in (f_t, f_s, y_t, y_s))
    k_ss = f_s @ f_s.T
    k_ts = f_t @ f_s.T
    lam = reg * np.trace(k_ss) / k_ss.shape[0]
    pred = k_ts @ np.linalg.solve(k_ss + lam * np.eye(k_ss.shape[0]), y_s)
    loss = 0.5 * np.sum((pred - y_t) ** 2) / y_t.shape[0]
    return pred, loss


@jax.jit
def _all_solvers(f_t, f_s, y_s):
    return tuple(
        krr_predict_from_features(f_t, f_s, y_s, 1e-3, solver=solver)
        for solver in ("dual", "primal", "auto")
    )


# --------------------------------------------------------------------------- values


def test_conjugate_kernel_matches_numpy():
    f_t, f_s, _, _ = _problem()
    k_ss, k_ts = jax.jit(lambda a, b: (conjugate_kernel(b), conjugate_kernel(a, b)))(f_t, f_s)
    np.testing.assert_allclose(k_ss, f_s @ f_s.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(k_ts, f_t @ f_s.T, rtol=1e-5, atol=1e-5)


def test_scaled_ridge_is_trace_over_n():
    k = jnp.array([[2.0, 1.0], [1.0, 4.0]])
    ridge = jax.jit(scaled_ridge)(k, 0.5)
    assert float(ridge) == pytest.approx(0.5 * 6.0 / 2)


def test_prediction_and_loss_match_numpy_float32():
    f_t, f_s, y_t, y_s = _problem()
    pred_ref, loss_ref = _numpy_reference(f_t, f_s, y_t, y_s, reg=1e-2)

    @jax.jit
    def pred_and_loss(f_t, f_s, y_t, y_s):
        return tuple(
            (
                krr_predict_from_features(f_t, f_s, y_s, 1e-2, solver=solver),
                feature_regression_loss(f_t, y_t, f_s, y_s, 1e-2, solver=solver),
            )
            for solver in ("dual", "primal")
        )

    args = (jnp.asarray(a, jnp.float32) for a in (f_t, f_s, y_t, y_s))
    for pred, loss in pred_and_loss(*args):
        assert pred.dtype == jnp.float32 and loss.dtype == jnp.float32
        np.testing.assert_allclose(pred, pred_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-4)


def test_prediction_and_loss_match_numpy_float64():
    f_t, f_s, y_t, y_s = _problem()
    pred_ref, loss_ref = _numpy_reference(f_t, f_s, y_t, y_s, reg=1e-3)
    with jax.enable_x64(True):

        @jax.jit
        def pred_and_loss(f_t, f_s, y_t, y_s):
            k_ts = conjugate_kernel(f_t, f_s)
            k_ss = conjugate_kernel(f_s)
            pred = krr_predict(k_ts, k_ss, y_s, reg=1e-3)
            return pred, krr_mse_loss(pred, y_t)

        pred, loss = pred_and_loss(*(jnp.asarray(a) for a in (f_t, f_s, y_t, y_s)))
        assert pred.dtype == jnp.float64 and loss.dtype == jnp.float64
        np.testing.assert_allclose(pred, pred_ref, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-11)


def test_krr_mse_loss_scaling():
    y_pred = jnp.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    loss = jax.jit(krr_mse_loss)
    # Summed over outputs, averaged over rows, halved: (1 + 4 + 9) / (2 * 2).
    assert float(loss(y_pred, jnp.zeros((2, 3)))) == pytest.approx(3.5)
    assert float(loss(y_pred[:, 0], jnp.zeros(2))) == pytest.approx(0.25)


def test_vector_targets():
    f_t, f_s, _, y_s = _problem()
    pred_vec = _predict(f_t, f_s, y_s[:, 0], 1e-2)
    pred_mat = _predict(f_t, f_s, y_s[:, :1], 1e-2)
    assert pred_vec.shape == (f_t.shape[0],)
    np.testing.assert_allclose(pred_vec, pred_mat[:, 0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- properties


def test_ridge_is_trace_scaled():
    # Scaling the features by c scales the kernel and the ridge by c**2, so the
    # predictor is unchanged (for both closed forms).
    f_t, f_s, _, y_s = _problem()
    with jax.enable_x64(True):
        f_t, f_s, y_s = (jnp.asarray(a) for a in (f_t, f_s, y_s))
        base = _all_solvers(f_t, f_s, y_s)
        for c in (1e-3, 50.0):
            for scaled, ref in zip(_all_solvers(c * f_t, c * f_s, y_s), base):
                np.testing.assert_allclose(scaled, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("n_s,d", [(4, 9), (9, 4)])
def test_primal_and_dual_agree(n_s, d):
    f_t, f_s, _, y_s = _problem(n_s=n_s, d=d)
    with jax.enable_x64(True):
        dual, primal, auto = _all_solvers(*(jnp.asarray(a) for a in (f_t, f_s, y_s)))
        np.testing.assert_allclose(primal, dual, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(auto, dual, rtol=1e-9, atol=1e-10)


def test_asymmetric_gram_is_symmetrised():
    _, f_s, _, y_s = _problem()
    k = f_s @ f_s.T
    noise = np.triu(np.full_like(k, 1e-3), 1)
    np.testing.assert_allclose(
        _solve(k + noise, y_s, 1e-2),
        _solve(k + 0.5 * (noise + noise.T), y_s, 1e-2),
        rtol=1e-5,
        atol=1e-5,
    )


def test_jitter_adds_to_relative_ridge():
    _, f_s, _, y_s = _problem()
    k = f_s @ f_s.T
    np.testing.assert_allclose(
        _solve(k, y_s, 1e-2, jitter=1e-3), _solve(k, y_s, 1.1e-2), rtol=1e-5
    )


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("solver,n_s,d", [("dual", 4, 6), ("primal", 7, 3)])
def test_gradient_matches_finite_differences(solver, n_s, d):
    f_t, f_s, y_t, y_s = _problem(n_s=n_s, d=d)
    with jax.enable_x64(True):
        f_t, f_s, y_t, y_s = (jnp.asarray(a) for a in (f_t, f_s, y_t, y_s))

        def loss(theta):
            # Synthetic features and labels packed in one vector, so a single
            # batched evaluation covers every finite-difference direction.
            fs = theta[: f_s.size].reshape(f_s.shape)
            ys = theta[f_s.size :].reshape(y_s.shape)
            return feature_regression_loss(f_t, y_t, fs, ys, 1e-2, solver=solver)

        @jax.jit
        def grad_and_central_differences(theta, eps=1e-6):
            steps = eps * jnp.eye(theta.size, dtype=theta.dtype)
            values = jax.vmap(loss)(jnp.concatenate([theta + steps, theta - steps]))
            fd = (values[: theta.size] - values[theta.size :]) / (2 * eps)
            return jax.grad(loss)(theta), fd

        theta = jnp.concatenate([f_s.ravel(), y_s.ravel()])
        grad, fd = grad_and_central_differences(theta)
        assert grad.dtype == jnp.float64
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_x64_does_not_leak():
    assert jnp.ones(2).dtype == jnp.float32


# --------------------------------------------------------------------------- transforms


def test_jit_and_vmap_over_a_model_pool():
    f_t, f_s, y_t, y_s = _problem()
    # One feature set per pool member, stacked on a leading axis; reg is a
    # traced argument here.
    members = [f_s, 2.0 * f_s, np.tanh(f_s)]
    per_model = jax.jit(jax.vmap(feature_regression_loss, in_axes=(None, None, 0, None, None)))(
        f_t, y_t, jnp.asarray(np.stack(members), jnp.float32), y_s, 1e-2
    )
    expected = [_numpy_reference(f_t, m, y_t, y_s, reg=1e-2)[1] for m in members]
    np.testing.assert_allclose(per_model, expected, rtol=1e-4)


@pytest.mark.parametrize(
    "precision,expected",
    [
        ("default", jax.lax.Precision.DEFAULT),
        ("high", jax.lax.Precision.HIGH),
        ("highest", jax.lax.Precision.HIGHEST),
        ("HIGHEST", jax.lax.Precision.HIGHEST),
        (jax.lax.Precision.HIGH, jax.lax.Precision.HIGH),
    ],
)
def test_precision_reaches_the_matmuls(precision, expected):
    f_t, f_s, _, y_s = _problem()
    jaxpr = jax.make_jaxpr(
        lambda a, b, y: krr_predict_from_features(a, b, y, precision=precision)
    )(f_t, f_s, y_s)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 3
    for eqn in dots:
        assert eqn.params["precision"] in (expected, (expected, expected))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda a: conjugate_kernel(a[1], precision="fast"), "precision"),
        (lambda a: conjugate_kernel(a[1][0]), "features_a"),
        (lambda a: conjugate_kernel(a[1], a[1][:, :2]), "features_b"),
        (lambda a: scaled_ridge(a[1], reg=0.1), "k_ss"),
        (lambda a: scaled_ridge(a[1] @ a[1].T, reg=-1.0), "reg"),
        (lambda a: krr_solve(a[1] @ a[1].T, a[3][:2]), "y_s"),
        (lambda a: krr_solve(a[1] @ a[1].T, a[3], jitter=float("nan")), "jitter"),
        (lambda a: krr_predict(a[0] @ a[0].T, a[1] @ a[1].T, a[3]), "k_ts"),
        (lambda a: krr_predict_from_features(a[0], a[1], a[3], solver="qr"), "solver"),
        (lambda a: krr_predict_from_features(a[0][:, :2], a[1], a[3]), "features_t"),
        (lambda a: krr_mse_loss(a[2], a[2][:, :1]), "y_true"),
        (lambda a: feature_regression_loss(a[0], a[2][:, :1], a[1], a[3]), "y_t"),
        (lambda a: feature_regression_loss(a[0], a[2][:2], a[1], a[3]), "y_t"),
    ],
)
def test_invalid_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(_problem())
