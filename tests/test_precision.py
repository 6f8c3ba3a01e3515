"""Tests for the network precision policy (sklearn_distill._precision, ``network_precision``)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone

from sklearn_distill import (MLP, ConvNet, FRePoDistiller, KRRDistiller, RaTBPTTDistiller,
                             RCIGDistiller, load_digits_images)
from sklearn_distill._precision import (PrecisionNetwork, resolve_network_precision,
                                        with_network_precision)
from sklearn_distill._training import centred_one_hot
from sklearn_distill.methods import frepo as F
from sklearn_distill.methods import gradient as G
from sklearn_distill.methods import krr as K
from sklearn_distill.networks import init_variables, with_num_classes


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:300], y[:300]


def frepo(**kw):
    params = dict(ipc=1, n_steps=4, batch_size=64, pool_size=2, max_online_steps=3, log_every=2,
                  model=ConvNet(width=8, depth=2, norm="batch"), random_state=0)
    return FRePoDistiller(**{**params, **kw})


def rcig(**kw):
    params = dict(ipc=1, n_steps=4, batch_size=64, pool_size=2, max_online_steps=6,
                  online_steps=2, n_inner=2, n_hinv=2, inner_learning_rate=1e-3,
                  hinv_learning_rate=1e-3, log_every=2,
                  model=ConvNet(width=8, depth=2, activation="softplus"), random_state=0)
    return RCIGDistiller(**{**params, **kw})


def ratbptt(**kw):
    params = dict(ipc=1, n_steps=4, window=2, unroll=3, batch_size=64, log_every=2,
                  prefix_loop="device", model=ConvNet(width=8, depth=2, norm="instance"),
                  random_state=0)
    return RaTBPTTDistiller(**{**params, **kw})


def krr(**kw):
    params = dict(ipc=1, n_steps=4, batch_size=128, log_every=2, model=ConvNet(width=8, depth=2),
                  random_state=0)
    return KRRDistiller(**{**params, **kw})


METHODS = {"frepo": frepo, "rcig": rcig, "ratbptt": ratbptt, "krr": krr}


# -- the parameter ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", METHODS.values(), ids=METHODS)
def test_parameter_is_validated_and_round_trips(make, digits):
    X, y = digits
    assert make().get_params()["network_precision"] == "auto"
    est = make(network_precision="bfloat16")
    assert clone(est).get_params()["network_precision"] == "bfloat16"
    assert est.set_params(network_precision="tf32").network_precision == "tf32"
    with pytest.raises(ValueError, match="network_precision"):
        make(network_precision="float16").fit(X, y)
    # float64 only with 64-bit JAX, with an error that says how to turn it on.
    with pytest.raises(ValueError, match="jax_enable_x64"):
        make(network_precision="float64").fit(X, y)


def test_resolution_and_the_wrapper():
    auto = "float32" if jax.default_backend() == "cpu" else "tf32"
    assert resolve_network_precision("auto") == auto
    assert resolve_network_precision("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="jax_enable_x64"):
        resolve_network_precision("float64")
    with jax.enable_x64(True):
        assert resolve_network_precision("float64") == "float64"
    net = ConvNet(width=4, depth=2, norm="batch", num_classes=3)
    wrapped = with_network_precision(with_network_precision(net, "tf32"), "bfloat16")
    assert wrapped == PrecisionNetwork(net, "bfloat16") and wrapped.module is net  # not nested
    assert hash(wrapped) == hash(PrecisionNetwork(net, "bfloat16"))  # a jit static argument
    assert wrapped.norm == "batch"  # attributes read through
    with pytest.raises(ValueError, match="precision of a network"):
        PrecisionNetwork(net, "auto")


def test_bfloat16_training_keeps_float32_parameters_and_batch_statistics():
    net = ConvNet(width=4, depth=2, norm="batch", num_classes=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    variables = jax.jit(net.init)(jax.random.PRNGKey(0), x)
    mixed = with_network_precision(net, "bfloat16")

    def loss(params):
        out, updates = mixed.apply({**variables, "params": params}, x, train=True,
                                   mutable=["batch_stats"])
        return jnp.sum(out ** 2), (out, updates)

    grads, (out, updates) = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    assert out.dtype == jnp.float32
    for leaf in jax.tree.leaves((grads, updates)):
        assert leaf.dtype == jnp.float32
    # ... while the layers computed in bfloat16: the result differs from float32 by its rounding.
    exact = jax.jit(lambda v: net.apply(v, x, train=True, mutable=["batch_stats"])[0])(variables)
    assert 0 < float(jnp.max(jnp.abs(out - exact))) < 0.1 * float(jnp.max(jnp.abs(exact)))


# -- what a fit compiles --------------------------------------------------------------------------

class _Stop(Exception):
    pass


def _compiled_step(make, monkeypatch, digits, **kw):
    """The step function, state and checkpoint configuration a fit hands to ``run_loop``."""
    captured = {}

    def capture(step, state, **kwargs):
        captured.update(step=step, state=state, config=kwargs.get("checkpoint_config"))
        raise _Stop

    est = make(**kw)
    monkeypatch.setattr(K if isinstance(est, KRRDistiller) else G, "run_loop", capture)
    with pytest.raises(_Stop):
        est.fit(*digits)
    return captured


def _dtypes(jaxpr, primitive):
    """Output dtypes of every ``primitive`` equation in a printed jaxpr (nested ones included),
    except those on a batch of one row: the forward pass that flax's ``init`` traces on one zero
    row when a pool member is re-initialised (dead code that XLA drops) runs as the network
    defines it, so that variables are created in their own dtype under every policy."""
    found = re.findall(rf":(\w+)\[(\d+)[\d,]*\] = {primitive}\b", str(jaxpr))
    return [dtype for dtype, rows in found if rows != "1"]


@pytest.mark.parametrize("make", METHODS.values(), ids=METHODS)
def test_bfloat16_network_and_float32_kernel_regression(make, monkeypatch, digits):
    run = _compiled_step(make, monkeypatch, digits, network_precision="bfloat16")
    jaxpr = jax.make_jaxpr(run["step"])(run["state"])
    convs = _dtypes(jaxpr, "conv_general_dilated")
    # Forward and backward convolutions of the network (meta-gradient, online training), all
    # in bfloat16; the factorisations and solves of the regression in float32.
    assert len(convs) >= 4 and set(convs) == {"bf16"}
    solves = _dtypes(jaxpr, "cholesky") + _dtypes(jaxpr, "triangular_solve")
    assert set(solves) <= {"f32"} and (solves or make is ratbptt)
    # Under float32, nothing is computed in bfloat16.
    exact = _compiled_step(make, monkeypatch, digits, network_precision="float32")
    assert "bf16" not in str(jax.make_jaxpr(exact["step"])(exact["state"]))


@pytest.mark.parametrize("make", [frepo, rcig, ratbptt], ids=["frepo", "rcig", "ratbptt"])
def test_checkpoint_configuration_records_the_resolved_precision(make, monkeypatch, digits):
    auto = _compiled_step(make, monkeypatch, digits)["config"]
    assert auto["network_precision"] == resolve_network_precision("auto")
    mixed = _compiled_step(make, monkeypatch, digits, network_precision="bfloat16")["config"]
    assert mixed["network_precision"] == "bfloat16"  # not neutral: a checkpoint must not mix them


# -- fits -------------------------------------------------------------------------------------------

@pytest.mark.skipif(jax.default_backend() != "cpu", reason="TF32 equals float32 on the CPU only")
def test_frepo_fits_under_every_precision(digits):
    fits = {p: frepo(network_precision=p).fit(*digits) for p in ("float32", "tf32", "bfloat16")}
    with jax.enable_x64(True):
        fits["float64"] = frepo(network_precision="float64").fit(*digits)
    for fit in fits.values():
        assert fit.n_iter_ == 4 and fit.synthetic_X_.dtype == np.float32
        assert np.all(np.isfinite(fit.synthetic_X_)) and np.all(np.isfinite(fit.history_["loss"]))
    np.testing.assert_array_equal(fits["float32"].synthetic_X_, fits["tf32"].synthetic_X_)
    np.testing.assert_array_equal(fits["float32"].synthetic_y_soft_,
                                  fits["tf32"].synthetic_y_soft_)
    # Four LAMB steps at rate 3e-4 move each pixel by up to about 1e-3, and LAMB's normalised
    # steps pass on any change of the gradient's numerics at that size: bfloat16 and float64
    # networks take different steps without sending the fit elsewhere.
    for precision in ("bfloat16", "float64"):
        gap = np.abs(fits[precision].synthetic_X_ - fits["float32"].synthetic_X_)
        assert 0 < gap.max() < 1e-2


# RaT-BPTT's bfloat16 step is shown compiled above; its fit is left out to keep the suite fast.
@pytest.mark.parametrize("make", [rcig, krr], ids=["rcig", "krr"])
def test_bfloat16_fit_is_finite(make, digits):
    fit = make(network_precision="bfloat16").fit(*digits)
    assert fit.n_iter_ == 4 and np.all(np.isfinite(fit.synthetic_X_))
    assert np.all(np.isfinite(fit.history_["loss"]))


# -- the float64 path ------------------------------------------------------------------------------

def test_float64_network_agrees_with_float32_and_checks_gradients():
    with jax.enable_x64(True):
        model = with_num_classes(MLP(hidden_sizes=(8,)), 3)
        variables = init_variables(model, jax.random.PRNGKey(1), (4,))  # float32 parameters
        rng = np.random.default_rng(1)
        syn = {"x": jnp.asarray(rng.normal(size=(3, 4))),
               "y": jnp.asarray(centred_one_hot(np.arange(3), 3), jnp.float64)}
        x_t = jnp.asarray(rng.normal(size=(6, 4)))
        y_t = jnp.asarray(centred_one_hot(rng.integers(0, 3, 6), 3), jnp.float64)

        def loss_under(precision, dtype):
            config = F._Config(with_network_precision(model, precision), 6, True, False,
                               "highest", None, network_precision=precision)
            xt, yt = x_t.astype(dtype), y_t.astype(dtype)
            return jax.jit(lambda s: F.meta_loss(s, variables, xt, yt, config, 1e-2)[0])

        # Under the float64 policy the layers compute in float64 even on float32 inputs, and
        # return float32 to the float32 code around them.
        wide = with_network_precision(model, "float64")
        x32 = x_t.astype(jnp.float32)
        jaxpr = jax.make_jaxpr(lambda x: wide.apply(variables, x, return_features=True))(x32)
        assert set(_dtypes(jaxpr, "dot_general")) == {"f64"}
        assert jaxpr.out_avals[0].dtype == jnp.float32
        loss64 = loss_under("float64", jnp.float64)
        # float64 inputs: the network computes (and returns) float64, so the whole meta-loss
        # is float64 and its gradient matches central finite differences.
        assert loss64(syn).dtype == jnp.float64
        grads = jax.jit(jax.grad(loss64))(syn)
        direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), syn)
        eps = 1e-6
        plus, minus = (loss64(jax.tree.map(lambda a, d: a + sign * eps * d, syn, direction))
                       for sign in (1, -1))
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                       jax.tree.leaves(direction)))
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-6)
        # The float32 network on float32 data agrees with it to float32 accuracy.
        loss32 = loss_under("float32", jnp.float32)(
            jax.tree.map(lambda a: a.astype(jnp.float32), syn))
        assert loss32.dtype == jnp.float32
        assert float(loss32) == pytest.approx(float(loss64(syn)), rel=1e-4)
