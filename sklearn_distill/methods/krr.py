r"""Dataset distillation by kernel ridge regression in random networks (the few-shot baseline).

Liu & Wang, "Few-Shot Dataset Distillation via Translative Pre-Training", ICCV 2023, Alg. 4.

The synthetic images :math:`X_s` and labels :math:`Y_s` are fitted by kernel ridge regression on
the penultimate features :math:`f(\cdot)` of *random* (untrained) networks. The run uses
:math:`R` networks (``n_networks``) for :math:`T` steps (``n_steps``): for each network the
features :math:`f(X_t)` of a batch of real rows are extracted once, then
:math:`\lfloor T/R \rfloor` Adam steps minimise

.. math::

    \mathcal{L}(X_s, Y_s) = \frac{1}{2 n_t} \bigl\lVert Y_t - f(X_t)\, w^* \bigr\rVert_F^2,
    \qquad w^* = f(X_s)^\top \bigl(f(X_s) f(X_s)^\top + \lambda I\bigr)^{-1} Y_s,
    \qquad \lambda = \lambda_0 \frac{\lVert f(X_s) \rVert_F^2}{n_s}.

:math:`R = T` (a new network every step) gives the better synthetic sets; :math:`R = 1` (one
network) is several times faster, since the real features are computed once, but the result
over-fits that one network -- the gap the translator (:mod:`sklearn_distill.methods.translator`)
closes. The KRR core here (:func:`krr_run`, :func:`single_network_distillation`) serves
:class:`KRRDistiller`, the translator's cache and :class:`~sklearn_distill.TranslatorDistiller`.

Synthetic sets of varying size (the cached sub-tasks) are zero-padded to a common shape with a
mask, which leaves the regression unchanged (padded rows have zero features and zero labels, and
the ridge is rescaled to the true number of rows), so one compilation serves every sub-task.
"""

from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval

from .._precision import resolve_network_precision, with_network_precision
from .._sharding import DataParallel, data_parallel
from .._training import (centred_one_hot, divergence_diagnosis, init_labels, init_synthetic,
                         run_loop, sample_rows, select_tree, tree_isfinite)
from ..base import BaseDistiller, DistillationResult
from ..kernels import feature_regression_loss
from ..networks import default_network, features, init_variables, with_num_classes
from .gradient import (GRADIENT_PARAMETER_CONSTRAINTS, NETWORK_PRECISION_CONSTRAINT,
                       OPTIMISATION_CONSTRAINTS, PRECISION_CONSTRAINT)

__all__ = ["KRRDistiller", "KRR_CONSTRAINTS", "default_random_network", "masked_krr_loss",
           "init_random_network", "krr_run", "single_network_distillation"]


# --------------------------------------------------------------------------------------------
# Shared pieces: the random-network family, the masked KRR loss
# --------------------------------------------------------------------------------------------

def default_random_network(sample_shape):
    """The random networks of the KRR objective: ConvNet without norm (depth 4 from 64 px), or an MLP."""
    return default_network(sample_shape)


def masked_krr_loss(model, variables, x_syn, y_syn, mask, feat_t, y_t, ridge, precision="highest"):
    r"""KRR loss of a zero-padded synthetic set in the network ``variables``.

    Rows with ``mask == 0`` get zero features and zero labels, which leaves the ridge regression
    of the other rows unchanged; the relative ridge is rescaled by ``n_padded / n_valid`` so that
    :math:`\lambda = \lambda_0 \lVert F_s \rVert_F^2 / n_{\text{valid}}`, as without padding.
    Padded label columns (zero in ``y_syn`` and ``y_t``) contribute nothing.
    """
    feat_s = features(model, variables, x_syn) * mask[:, None]
    y_s = y_syn * mask[:, None]
    n_valid = jnp.maximum(jnp.sum(mask), 1.0)
    reg = ridge * (mask.shape[0] / n_valid)
    return feature_regression_loss(feat_t, y_t, feat_s, y_s, reg, solver="auto", precision=precision)


@partial(jax.jit, static_argnums=(0, 2))
def init_random_network(model, key, sample_shape):
    """A freshly initialised network of the random family (jitted; ``model`` is static)."""
    return init_variables(model, key, sample_shape)


# --------------------------------------------------------------------------------------------
# The KRR distillation core (Alg. 4), shared by KRRDistiller, the cache and TranslatorDistiller
# --------------------------------------------------------------------------------------------

class _KRRConfig(NamedTuple):
    """Static configuration of the jitted KRR step."""

    model: Any
    batch_size: int
    learn_labels: bool
    precision: str
    placement: DataParallel = DataParallel(None, None)
    # A new network every step (R = T): renewing then needs no lax.cond, inside which XLA's CPU
    # backend runs the real batch's convolutions several times slower (KRR, MNIST, 500 images:
    # 164 ms per step with the cond, 123 ms without renewing at all).
    renew_every_step: bool = False
    # The resolved network_precision; ``model`` is then the network under it
    # (sklearn_distill._precision.with_network_precision). None: the network as given.
    network_precision: Optional[str] = None


def _renew_impl(state, X_real, Y_real, config, new_network):
    """Draw a new random network (unless ``new_network`` is False) and a real batch; cache its features."""
    key, net_key, batch_key = jax.random.split(state["key"], 3)
    variables = (init_variables(config.model, net_key, X_real.shape[1:]) if new_network
                 else state["net"])
    rows = sample_rows(batch_key, X_real.shape[0], config.batch_size)
    # The real batch, and so its cached features, split over the devices.
    feat_t = features(config.model, variables, config.placement.rows(X_real[rows]))
    return {**state, "key": key, "net": variables, "feat_t": feat_t,
            "y_t": config.placement.rows(Y_real[rows])}


_renew = jax.jit(_renew_impl, static_argnames=("config", "new_network"))


def _krr_step_impl(state, X_real, Y_real, mask, hyper, config):
    if config.renew_every_step:
        # Step 0 uses the network and batch that krr_run prepared; every later step a new one.
        renewed = _renew_impl(state, X_real, Y_real, config, True)
        state = select_tree(state["step"] > 0, renewed, state)
    else:
        renew = (state["step"] > 0) & (state["step"] % hyper["steps_per_network"] == 0)
        state = jax.lax.cond(renew, lambda s: _renew_impl(s, X_real, Y_real, config, True),
                             lambda s: s, state)
    synthetic = {"x": state["x"], "y": state["y"]}

    def objective(syn):
        y_s = syn["y"] if config.learn_labels else jax.lax.stop_gradient(syn["y"])
        return masked_krr_loss(config.model, state["net"], syn["x"], y_s, mask, state["feat_t"],
                               state["y_t"], hyper["ridge"], config.precision)

    loss, grads = jax.value_and_grad(objective)(synthetic)
    updates, opt_state = optax.adam(hyper["learning_rate"]).update(grads, state["opt"], synthetic)
    new = optax.apply_updates(synthetic, updates)
    if not config.learn_labels:
        new = {"x": new["x"], "y": synthetic["y"]}
    ok = state["ok"] & jnp.isfinite(loss) & tree_isfinite(new)
    new, opt_state = select_tree(ok, (new, opt_state), (synthetic, state["opt"]))
    state = {**state, "x": new["x"], "y": new["y"], "opt": opt_state, "ok": ok,
             "step": jnp.where(ok, state["step"] + 1, state["step"])}
    return state, jnp.where(ok, loss, jnp.nan)


_krr_step = jax.jit(_krr_step_impl, static_argnames=("config",), donate_argnums=(0,))


def krr_run(X_real, Y_real, x0, labels0, mask, key, *, model, n_networks, steps_per_network,
             batch_size, learning_rate, ridge, learn_labels, precision="highest",
             fixed_variables=None, log_every=100, verbose=0, description="KRR",
             placement=DataParallel(None, None), renew_every_step=None, network_precision=None):
    """Run Alg. 4 from ``(x0, labels0)``; returns ``(x, labels, LoopResult)`` as NumPy arrays.

    ``fixed_variables`` replaces the first random network (the cache's fixed network); with
    ``n_networks=1`` it is the only one. ``placement`` splits the real batches over devices.
    ``renew_every_step`` renews without ``lax.cond`` (see ``_KRRConfig``); ``None``: when every
    step takes a new network (``steps_per_network == 1``), the only case where it is right.
    ``network_precision`` (resolved, see :mod:`sklearn_distill._precision`) runs the networks
    under that policy; ``None``: as given.
    """
    if renew_every_step is None:
        renew_every_step = int(steps_per_network) == 1
    network = model if network_precision is None else with_network_precision(model,
                                                                             network_precision)
    config = _KRRConfig(network, placement.batch_size(batch_size, X_real.shape[0]),
                        bool(learn_labels), precision, placement,
                        renew_every_step=bool(renew_every_step),
                        network_precision=network_precision)
    net_key, loop_key = jax.random.split(key)
    X_host = X_real
    X_real, Y_real = placement.put((np.asarray(X_real, np.float32), np.asarray(Y_real, np.float32)))
    variables = (init_random_network(model, net_key, tuple(X_real.shape[1:]))
                 if fixed_variables is None else jax.tree.map(jnp.asarray, fixed_variables))
    synthetic = {"x": jnp.asarray(x0, jnp.float32), "y": jnp.asarray(labels0, jnp.float32)}
    state = {**synthetic, "opt": optax.adam(1.0).init(synthetic), "key": jnp.array(loop_key, copy=True),
             "ok": jnp.asarray(True), "step": jnp.asarray(0, jnp.int32), "net": variables}
    state = _renew(placement.put(state), X_real, Y_real, config=config, new_network=False)
    hyper = placement.put({"learning_rate": np.float32(learning_rate), "ridge": np.float32(ridge),
                           "steps_per_network": np.int32(steps_per_network)})
    mask = placement.put(np.asarray(mask, np.float32))
    result = run_loop(lambda s: _krr_step(s, X_real, Y_real, mask, hyper, config), state,
                      n_steps=int(n_networks) * int(steps_per_network), log_every=log_every,
                      verbose=verbose, description=description,
                      diagnose=divergence_diagnosis(X_host, ridge=ridge,
                                                    learning_rate=learning_rate))
    out = jax.device_get({"x": result.state["x"], "y": result.state["y"]})
    return np.asarray(out["x"], np.float32), np.asarray(out["y"], np.float32), result


def single_network_distillation(X, y, n_classes, ipc, key, *, model, n_steps, batch_size,
                                learning_rate, ridge, learn_labels, precision, init="real",
                                log_every=100, verbose=0, description="single network",
                                placement=DataParallel(None, None), fixed_variables=None):
    """The fast single-network distillation (Alg. 4 with R = 1) of ``ipc`` rows per class.

    ``fixed_variables``: the network's variables (a pre-trained translator's distillation
    network); ``None`` draws a random one from ``key``.
    """
    init_key, run_key = jax.random.split(key)
    x0, y_syn = init_synthetic(init_key, X, y, n_classes, ipc, init)
    labels0 = init_labels(y_syn, n_classes, scale=False)
    x, labels, result = krr_run(X, centred_one_hot(y, n_classes), x0, labels0,
                                np.ones(len(x0), np.float32), run_key, model=model, n_networks=1,
                                steps_per_network=n_steps, batch_size=batch_size,
                                learning_rate=learning_rate, ridge=ridge,
                                learn_labels=learn_labels, precision=precision,
                                log_every=log_every, verbose=verbose, description=description,
                                placement=placement, fixed_variables=fixed_variables)
    return x, y_syn, labels, result


# The parameters KRRDistiller and TranslatorDistiller share.
KRR_CONSTRAINTS = {
    **OPTIMISATION_CONSTRAINTS,
    "ridge": [Interval(Real, 0, None, closed="left")],
    "precision": PRECISION_CONSTRAINT,
}


class KRRDistiller(BaseDistiller):
    r"""Dataset distillation by kernel ridge regression in random networks (the few-shot baseline).

    Alg. 4 of Liu & Wang (2023). The synthetic set starts from real images. For each of
    ``n_networks`` (:math:`R`) freshly initialised networks, the penultimate features
    :math:`f(X_t)` of ``batch_size`` random real rows are extracted once, then
    :math:`\lfloor T/R \rfloor` Adam steps (:math:`T` = ``n_steps``) are taken on the synthetic
    images (and labels) to minimise

    .. math::

        \mathcal{L} = \frac{1}{2 n_t} \bigl\lVert Y_t - f(X_t)\, w^* \bigr\rVert_F^2,
        \qquad w^* = f(X_s)^\top \bigl(f(X_s) f(X_s)^\top + \lambda I\bigr)^{-1} Y_s,

    with centred one-hot targets :math:`Y_t` and the trace-scaled ridge
    :math:`\lambda = \lambda_0 \operatorname{tr}(f(X_s) f(X_s)^\top) / n_s`. ``n_networks=None``
    (:math:`R = T`) uses a new network every step; ``n_networks=1`` a single network, which is
    much faster (the real rows pass through a network once) and what
    :class:`TranslatorDistiller` starts from.

    Parameters
    ----------
    ipc : int, default=1
        Synthetic samples per class.
    n_steps : int, default=1000
        Total Adam steps :math:`T`; the run takes :math:`R \lfloor T/R \rfloor` of them.
    n_networks : int or None, default=None
        Random networks :math:`R` (at most ``n_steps``); ``None`` means :math:`R = T`.
    learning_rate : float, default=0.01
        Adam learning rate of the synthetic images and labels (constant).
    batch_size : int, default=1024
        Real rows whose features are extracted per network (capped at the data size).
    learn_labels : bool, default=True
        Learn the labels, which start as centred one-hot vectors.
    init : {"real", "noise", "real+noise"}, default="real"
        Initial synthetic set (see :func:`sklearn_distill._training.init_synthetic`).
    model : flax.linen.Module or None, default=None
        The random-network family (its penultimate layer gives the features). ``None``:
        ``ConvNet(width=128, depth=3, norm="none")`` (depth 4 from 64 pixels), or
        ``MLP(hidden_sizes=(256, 256))`` for tabular rows.
    ridge : float, default=1e-6
        Relative ridge :math:`\lambda_0`.
    precision : {"highest", "high", "default"}, default="highest"
        Matmul precision of the regression (matters on GPUs/TPUs only).
    network_precision : {"auto", "float32", "tf32", "bfloat16", "float64"}, default="auto"
        Precision of the random networks' convolutions and dense layers, forward and backward
        (see :mod:`sklearn_distill._precision`). The Gram matrices, the solve and the loss stay
        float32 at ``precision``; :meth:`score`'s evaluation networks are not affected.
        ``"auto"``: ``"float32"`` on the CPU, ``"tf32"`` on accelerators; as for
        :class:`~sklearn_distill.FRePoDistiller`.
    image_shape : tuple or None, default=None
        ``(H, W, C)`` when images are given as 2-D rows.
    n_eval_models : int, default=5
        Networks trained from scratch by :meth:`score`.
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
        Evaluation network; ``None``: ``model`` without normalisation (the protocol's ConvNet).
    eval_protocol : str or EvalProtocol, default="library"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is the library's (KRR has no evaluation code of its own to follow).
    log_every : int, default=100
        Steps between reads of the loss (``history_``, progress bar, divergence check).
    devices : int, list of jax.Device or None, default=None
        ``None``: the default device. An int ``k`` (the first ``k`` devices) or a list of devices:
        the real batch is sharded over them (the synthetic set and networks are replicated), and
        ``batch_size`` is rounded down to a multiple of their number.
    verbose : int, default=0
        ``> 0`` shows a progress bar.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    synthetic_X_, synthetic_y_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.
    synthetic_y_soft_ : ndarray of shape (n_synthetic, n_classes)
        The learned labels (the initial centred one-hot ones when ``learn_labels=False``).
    n_iter_ : int
        Steps taken.
    n_networks_ : int
        :math:`R` used.
    history_ : dict of list
        Per logged step: ``"step"``, ``"time"`` and ``"loss"``.
    stop_reason_ : {"done", "interrupted", "diverged"}

    See Also
    --------
    TranslatorDistiller : the translator that improves the ``n_networks=1`` result.

    References
    ----------
    .. [1] S. Liu and X. Wang, "Few-Shot Dataset Distillation via Translative Pre-Training",
       ICCV 2023.

    Examples
    --------
    >>> from sklearn_distill import ConvNet, KRRDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> krr = KRRDistiller(ipc=1, n_steps=10, n_networks=2, batch_size=200,
    ...                    model=ConvNet(width=8, depth=2), random_state=0)
    >>> X_syn, y_syn = krr.fit_resample(X, y)
    >>> X_syn.shape, krr.n_iter_, krr.n_networks_
    ((10, 8, 8, 1), 10, 2)
    """

    _parameter_constraints = {
        **BaseDistiller._parameter_constraints,
        **KRR_CONSTRAINTS,
        "n_networks": [Interval(Integral, 1, None, closed="left"), None],
        "init": GRADIENT_PARAMETER_CONSTRAINTS["init"],
        "network_precision": NETWORK_PRECISION_CONSTRAINT,
    }

    def __init__(self, ipc=1, *, n_steps=1000, n_networks=None, learning_rate=0.01, batch_size=1024,
                 learn_labels=True, init="real", model=None, ridge=1e-6, precision="highest",
                 network_precision="auto", image_shape=None, n_eval_models=5, eval_steps="auto", eval_model=None,
                 eval_protocol="library",
                 log_every=100, devices=None, verbose=0, random_state=None):
        self.ipc = ipc
        self.n_steps = n_steps
        self.n_networks = n_networks
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.learn_labels = learn_labels
        self.init = init
        self.model = model
        self.ridge = ridge
        self.precision = precision
        self.network_precision = network_precision
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.eval_protocol = eval_protocol
        self.log_every = log_every
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    def _distill(self, X, y, key):
        n_networks = self.n_steps if self.n_networks is None else int(self.n_networks)
        if n_networks > self.n_steps:
            raise ValueError(f"`n_networks`={self.n_networks} is larger than `n_steps`={self.n_steps}; "
                             f"each network takes floor(n_steps / n_networks) >= 1 steps.")
        n_classes = len(self.classes_)
        model = with_num_classes(self.model if self.model is not None
                                 else default_random_network(X.shape[1:]), n_classes)
        init_key, run_key = jax.random.split(key)
        x0, y_syn = init_synthetic(init_key, X, y, n_classes, self.ipc, self.init)
        labels0 = init_labels(y_syn, n_classes, scale=False)
        x, labels, result = krr_run(
            X, centred_one_hot(y, n_classes), x0, labels0, np.ones(len(x0), np.float32), run_key,
            model=model, n_networks=n_networks, steps_per_network=self.n_steps // n_networks,
            batch_size=self.batch_size, learning_rate=self.learning_rate, ridge=self.ridge,
            learn_labels=self.learn_labels, precision=self.precision, log_every=self.log_every,
            verbose=self.verbose, description=f"KRR (R={n_networks})",
            placement=data_parallel(self.devices),
            network_precision=resolve_network_precision(self.network_precision))
        self.n_networks_ = n_networks
        self.stop_reason_ = result.stop_reason
        return DistillationResult(X=x, y=y_syn, soft_labels=labels, n_iter=result.step,
                                  history=result.history)
