"""Tests for KRRDistiller and the KRR core it shares with the translator."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill import MLP, ConvNet, KRRDistiller, load_digits_images
from sklearn_distill._jax import library_prng
from sklearn_distill._training import centred_one_hot
from sklearn_distill.methods import krr as T
from sklearn_distill.networks import init_variables, with_num_classes

TINY = ConvNet(width=8, depth=2)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:400], y[:400]


def krr(**kw):
    params = dict(ipc=1, n_steps=6, batch_size=128, model=TINY, log_every=2, n_eval_models=1,
                  eval_steps=20, random_state=0)
    params.update(kw)
    return KRRDistiller(**params)


def test_padded_krr_loss_equals_numpy_closed_form():
    model = with_num_classes(MLP(hidden_sizes=(16,)), 3)
    variables = init_variables(model, jax.random.PRNGKey(0), (5,))
    rng = np.random.default_rng(0)
    x_s, x_t = rng.normal(size=(4, 5)), rng.normal(size=(9, 5))
    y_s, y_t = rng.normal(size=(4, 2)), centred_one_hot(rng.integers(0, 2, 9), 2)
    feats = lambda x: np.asarray(model.apply(variables, jnp.asarray(x, jnp.float32),  # noqa: E731
                                             return_features=True), np.float64)
    f_s, f_t = feats(x_s), feats(x_t)
    lam = 1e-2 * np.trace(f_s @ f_s.T) / 4
    w = f_s.T @ np.linalg.solve(f_s @ f_s.T + lam * np.eye(4), y_s)  # w* of Alg. 4
    expected = 0.5 * np.sum((f_t @ w - y_t) ** 2) / 9
    # Two zero rows and one zero label column of padding leave the loss unchanged.
    x_pad = np.concatenate([x_s, np.zeros((2, 5))])
    y_pad = np.zeros((6, 3))
    y_pad[:4, :2] = y_s
    y_t_pad = np.concatenate([y_t, np.zeros((9, 1))], axis=1)
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    loss = jax.jit(T.masked_krr_loss, static_argnums=0)(
        model, variables, jnp.asarray(x_pad, jnp.float32), jnp.asarray(y_pad, jnp.float32),
        jnp.asarray(mask), jnp.asarray(f_t, jnp.float32), jnp.asarray(y_t_pad, jnp.float32), 1e-2)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_krr_network_schedule(digits):
    X, y = digits
    one = krr(n_networks=1).fit(X, y)
    every = krr().fit(X, y)  # R = T
    three = krr(n_networks=4, learn_labels=False).fit(X, y)  # floor(6 / 4) = 1 step per network
    assert one.n_networks_ == 1 and every.n_networks_ == 6 and three.n_iter_ == 4
    assert one.n_iter_ == every.n_iter_ == 6 and one.history_["step"] == [2, 4, 6]
    # One fixed network and target batch: the loss it minimises goes down step after step.
    assert np.all(np.diff(one.history_["loss"]) < 0)
    assert not np.allclose(one.synthetic_X_, every.synthetic_X_)
    np.testing.assert_array_equal(three.synthetic_y_soft_, centred_one_hot(np.arange(10), 10))
    assert not np.allclose(one.synthetic_y_soft_, three.synthetic_y_soft_)
    assert one.synthetic_X_.shape == (10, 8, 8, 1) and one.synthetic_y_soft_.shape == (10, 10)
    np.testing.assert_array_equal(krr(n_networks=1).fit(X, y).synthetic_X_, one.synthetic_X_)
    clone = pickle.loads(pickle.dumps(one))
    np.testing.assert_array_equal(clone.synthetic_X_, one.synthetic_X_)


def test_krr_renews_the_network_every_floor_t_over_r_steps(digits):
    X, y = digits
    model = with_num_classes(TINY, 10)
    x0, labels0 = X[:10], centred_one_hot(y[:10], 10)
    key = jax.random.PRNGKey(3)
    with library_prng():
        first = T._init_network(model, jax.random.split(key)[0], (8, 8, 1))
        kw = dict(model=model, batch_size=128, learning_rate=1e-2, ridge=1e-6, learn_labels=True,
                  log_every=3)
        args = (X, centred_one_hot(y, 10), x0, labels0, np.ones(10, np.float32), key)
        _, _, single = T._krr_run(*args, n_networks=1, steps_per_network=3, **kw)
        _, _, two = T._krr_run(*args, n_networks=2, steps_per_network=3, **kw)
    same = jax.tree.map(np.array_equal, jax.device_get(single.state["net"]), jax.device_get(first))
    assert all(jax.tree.leaves(same))
    for layer in ("conv_0", "conv_1"):  # (the biases start at zero in every network)
        assert not np.array_equal(two.state["net"]["params"][layer]["kernel"],
                                  first["params"][layer]["kernel"])


def test_krr_with_a_new_network_every_step_matches_the_branched_renewal(digits, monkeypatch):
    # R = T renews without lax.cond (slow around convolutions on the CPU); it must draw the same
    # networks and batches as the general, branched schedule.
    X, y = digits
    model = with_num_classes(TINY, 10)
    args = (X, centred_one_hot(y, 10), X[:10], centred_one_hot(y[:10], 10),
            np.ones(10, np.float32), jax.random.PRNGKey(5))
    kw = dict(model=model, n_networks=4, steps_per_network=1, batch_size=128,
              learning_rate=1e-2, ridge=1e-6, learn_labels=True, log_every=2)
    with library_prng():
        x_fast, y_fast, fast = T._krr_run(*args, **kw)
        original = T._KRRConfig
        monkeypatch.setattr(T, "_KRRConfig",
                            lambda *a, **k: original(*a, **{**k, "renew_every_step": False}))
        x_ref, y_ref, ref = T._krr_run(*args, **kw)
    np.testing.assert_allclose(x_fast, x_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-5, atol=1e-6)
    first = T._init_network(model, jax.random.split(jax.random.PRNGKey(5))[0], (8, 8, 1))
    assert not np.array_equal(np.asarray(fast.state["net"]["params"]["conv_0"]["kernel"]),
                              np.asarray(first["params"]["conv_0"]["kernel"]))


@pytest.mark.parametrize("make, match", [
    (lambda: krr(ipc=100), "ipc"),
    (lambda: krr(n_networks=7), "n_networks"),
    (lambda: krr(ridge=-1.0), "ridge"),
])
def test_bad_parameters(digits, make, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        make().fit(X, y)
