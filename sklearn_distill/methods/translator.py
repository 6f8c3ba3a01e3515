r"""Few-shot dataset distillation by translative pre-training, and its KRR baseline.

Liu & Wang, "Few-Shot Dataset Distillation via Translative Pre-Training", ICCV 2023.

**The baseline** (:class:`KRRDistiller`). The synthetic images :math:`X_s` and labels
:math:`Y_s` are fitted by kernel ridge regression on the penultimate features :math:`f(\cdot)` of
*random* (untrained) networks. The run uses :math:`R` networks (``n_networks``) for
:math:`T` steps (``n_steps``): for each network the features :math:`f(X_t)` of a batch of real rows
are extracted once, then :math:`\lfloor T/R \rfloor` Adam steps minimise

.. math::

    \mathcal{L}(X_s, Y_s) = \frac{1}{2 n_t} \bigl\lVert Y_t - f(X_t)\, w^* \bigr\rVert_F^2,
    \qquad w^* = f(X_s)^\top \bigl(f(X_s) f(X_s)^\top + \lambda I\bigr)^{-1} Y_s,
    \qquad \lambda = \lambda_0 \frac{\lVert f(X_s) \rVert_F^2}{n_s}.

:math:`R = T` (a new network every step) gives the better synthetic sets; :math:`R = 1` (one
network) is several times faster, since the real features are computed once, but the result
over-fits that one network.

**The translator** (:class:`TranslatorDistiller`) closes that gap: a small fully convolutional,
residual image-to-image network :math:`G` (:class:`Translator`) maps the fast single-network result
to a set that does well in *other* random networks. Three stages, each usable on its own:

1. caching (:class:`TranslatorCache`): many random sub-tasks of a source dataset (a random number
   of classes :math:`C`, a random ipc, :math:`M` real rows) are distilled in one fixed random
   network, in parallel through joblib, and stored on disk;
2. pre-training (:func:`pretrain_translator`): :math:`G` is trained so that its outputs, fed to
   KRR in freshly sampled random networks, predict the real rows of the cached sub-tasks;
3. adaptation (``TranslatorDistiller(adapt_steps=...)``): a few steps of the same objective on
   single-network distillations of the *target* dataset at a list of ipc values; after that,
   :math:`G` turns a single-network distillation at any ipc into the final synthetic set.

A (pre-)trained translator is a :class:`PretrainedTranslator`: parameters as NumPy arrays, saved
to one ``.npz`` file with a JSON metadata block (no pickle). Being fully convolutional, it applies
to images of any resolution with the same number of channels.

Every step is one jitted function; synthetic sets of varying size (the cached sub-tasks) are
zero-padded to a common shape with a mask, which leaves the regression unchanged (padded rows have
zero features and zero labels, and the ridge is rescaled to the true number of rows), so one
compilation serves every sub-task.
"""

import dataclasses
import glob
import json
import os
import time
from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .._jax import library_prng
from .._sharding import DEVICES_CONSTRAINT, DataParallel, data_parallel
from .._training import (centred_one_hot, data_fingerprint, init_labels, init_synthetic, run_loop,
                         select_tree, tree_isfinite)
from .._validation import random_seed
from ..base import BaseDistiller, DistillationResult
from ..io import atomic_savez
from ..kernels import feature_regression_loss
from ..networks import MLP, ConvNet, _Spec, init_variables, with_num_classes

__all__ = ["KRRDistiller", "TranslatorDistiller", "Translator", "PretrainedTranslator",
           "TranslatorCache", "CachedTask", "pretrain_translator"]

_TRANSLATOR_FORMAT = "sklearn_distill.translator/1"
_CACHE_FORMAT = "sklearn_distill.translator_cache/1"


# --------------------------------------------------------------------------------------------
# Shared pieces: the random-network family, the masked KRR loss
# --------------------------------------------------------------------------------------------

def default_random_network(sample_shape):
    """The random networks of the KRR objective: ConvNet without norm (depth 4 from 64 px), or an MLP."""
    if len(sample_shape) == 1:
        return MLP(hidden_sizes=(256, 256))
    depth = 4 if min(sample_shape[:2]) >= 64 else 3
    return ConvNet(width=128, depth=depth, norm="none")


def _features(model, variables, x):
    return model.apply(variables, x, train=False, return_features=True)


def masked_krr_loss(model, variables, x_syn, y_syn, mask, feat_t, y_t, ridge, precision="highest"):
    r"""KRR loss of a zero-padded synthetic set in the network ``variables``.

    Rows with ``mask == 0`` get zero features and zero labels, which leaves the ridge regression
    of the other rows unchanged; the relative ridge is rescaled by ``n_padded / n_valid`` so that
    :math:`\lambda = \lambda_0 \lVert F_s \rVert_F^2 / n_{\text{valid}}`, as without padding.
    Padded label columns (zero in ``y_syn`` and ``y_t``) contribute nothing.
    """
    feat_s = _features(model, variables, x_syn) * mask[:, None]
    y_s = y_syn * mask[:, None]
    n_valid = jnp.maximum(jnp.sum(mask), 1.0)
    reg = ridge * (mask.shape[0] / n_valid)
    return feature_regression_loss(feat_t, y_t, feat_s, y_s, reg, solver="auto", precision=precision)


@partial(jax.jit, static_argnums=(0, 2))
def _init_network(model, key, sample_shape):
    return init_variables(model, key, sample_shape)


def _sample_rows(key, n, batch_size):
    if batch_size < n:
        return jax.random.choice(key, n, (batch_size,), replace=False)
    return jnp.arange(n)


def _module_to_json(module):
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.name not in ("parent", "name")}
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}
    return {"class": type(module).__name__, "fields": fields}


def _module_from_json(spec):
    classes = {"ConvNet": ConvNet, "MLP": MLP, "Translator": Translator}
    if spec.get("class") not in classes:
        raise ValueError(f"Unknown network class {spec.get('class')!r} in a saved file; expected one "
                         f"of {sorted(classes)}.")
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["fields"].items()}
    if spec["class"] == "Translator":
        # Translators saved before the moment anchor existed were trained without it.
        fields.setdefault("match_moments", False)
    return classes[spec["class"]](**fields)


def _as_internal(X, image_shape=None, param="X"):
    """Images as float32 NHWC (tabular rows stay 2-D), as the estimators' internal layout."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2 and image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        shape = shape + (1,) if len(shape) == 2 else shape
        X = X.reshape((len(X),) + shape)
    elif X.ndim == 3:
        X = X[..., None]
    if X.ndim not in (2, 4):
        raise ValueError(f"`{param}` must be 2-D rows or an image array (n, H, W[, C]); got shape "
                         f"{X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"`{param}` contains NaN or infinite values.")
    return X


def _as_images(x):
    """Tabular rows become 1x1 images with one channel per feature (the translator's view)."""
    return x.reshape(x.shape[0], 1, 1, x.shape[1]) if x.ndim == 2 else x


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


def _renew_impl(state, X_real, Y_real, config, new_network):
    """Draw a new random network (unless ``new_network`` is False) and a real batch; cache its features."""
    key, net_key, batch_key = jax.random.split(state["key"], 3)
    variables = (init_variables(config.model, net_key, X_real.shape[1:]) if new_network
                 else state["net"])
    rows = _sample_rows(batch_key, X_real.shape[0], config.batch_size)
    # The real batch, and so its cached features, split over the devices.
    feat_t = _features(config.model, variables, config.placement.rows(X_real[rows]))
    return {**state, "key": key, "net": variables, "feat_t": feat_t,
            "y_t": config.placement.rows(Y_real[rows])}


_renew = jax.jit(_renew_impl, static_argnames=("config", "new_network"))


def _krr_step_impl(state, X_real, Y_real, mask, hyper, config):
    if config.renew_every_step:
        # Step 0 uses the network and batch that _krr_run prepared; every later step a new one.
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


def _krr_run(X_real, Y_real, x0, labels0, mask, key, *, model, n_networks, steps_per_network,
             batch_size, learning_rate, ridge, learn_labels, precision="highest",
             fixed_variables=None, log_every=100, verbose=0, description="KRR",
             placement=DataParallel(None, None)):
    """Run Alg. 4 from ``(x0, labels0)``; returns ``(x, labels, LoopResult)`` as NumPy arrays.

    ``fixed_variables`` replaces the first random network (the cache's fixed network); with
    ``n_networks=1`` it is the only one. ``placement`` splits the real batches over devices.
    """
    config = _KRRConfig(model, placement.batch_size(batch_size, X_real.shape[0]),
                        bool(learn_labels), precision, placement,
                        renew_every_step=int(steps_per_network) == 1)
    net_key, loop_key = jax.random.split(key)
    X_real, Y_real = placement.put((np.asarray(X_real, np.float32), np.asarray(Y_real, np.float32)))
    variables = (_init_network(model, net_key, tuple(X_real.shape[1:])) if fixed_variables is None
                 else jax.tree.map(jnp.asarray, fixed_variables))
    synthetic = {"x": jnp.asarray(x0, jnp.float32), "y": jnp.asarray(labels0, jnp.float32)}
    state = {**synthetic, "opt": optax.adam(1.0).init(synthetic), "key": jnp.array(loop_key, copy=True),
             "ok": jnp.asarray(True), "step": jnp.asarray(0, jnp.int32), "net": variables}
    state = _renew(placement.put(state), X_real, Y_real, config=config, new_network=False)
    hyper = placement.put({"learning_rate": np.float32(learning_rate), "ridge": np.float32(ridge),
                           "steps_per_network": np.int32(steps_per_network)})
    mask = placement.put(np.asarray(mask, np.float32))
    result = run_loop(lambda s: _krr_step(s, X_real, Y_real, mask, hyper, config), state,
                      n_steps=int(n_networks) * int(steps_per_network), log_every=log_every,
                      verbose=verbose, description=description)
    out = jax.device_get({"x": result.state["x"], "y": result.state["y"]})
    return np.asarray(out["x"], np.float32), np.asarray(out["y"], np.float32), result


def _single_network(X, y, n_classes, ipc, key, *, model, n_steps, batch_size, learning_rate, ridge,
                    learn_labels, precision, init="real", log_every=100, verbose=0,
                    description="single network", placement=DataParallel(None, None)):
    """The fast single-network distillation (Alg. 4 with R = 1) of ``ipc`` rows per class."""
    init_key, run_key = jax.random.split(key)
    x0, y_syn = init_synthetic(init_key, X, y, n_classes, ipc, init)
    labels0 = init_labels(y_syn, n_classes, scale=False)
    x, labels, result = _krr_run(X, centred_one_hot(y, n_classes), x0, labels0,
                                 np.ones(len(x0), np.float32), run_key, model=model, n_networks=1,
                                 steps_per_network=n_steps, batch_size=batch_size,
                                 learning_rate=learning_rate, ridge=ridge,
                                 learn_labels=learn_labels, precision=precision,
                                 log_every=log_every, verbose=verbose, description=description,
                                 placement=placement)
    return x, y_syn, labels, result


_KRR_CONSTRAINTS = {
    "n_steps": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learn_labels": ["boolean"],
    "model": [HasMethods(["init", "apply"]), None],
    "ridge": [Interval(Real, 0, None, closed="left")],
    "devices": DEVICES_CONSTRAINT,
    "precision": [StrOptions({"highest", "high", "default"})],
    "log_every": [Interval(Integral, 1, None, closed="left")],
    "verbose": ["verbose"],
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
    image_shape : tuple or None, default=None
        ``(H, W, C)`` when images are given as 2-D rows.
    n_eval_models : int, default=5
        Networks trained from scratch by :meth:`score`.
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
        Evaluation network; ``None``: ``model`` without normalisation (the protocol's ConvNet).
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
        **_KRR_CONSTRAINTS,
        "n_networks": [Interval(Integral, 1, None, closed="left"), None],
        "init": [StrOptions({"real", "noise", "real+noise"})],
    }

    def __init__(self, ipc=1, *, n_steps=1000, n_networks=None, learning_rate=0.01, batch_size=1024,
                 learn_labels=True, init="real", model=None, ridge=1e-6, precision="highest",
                 image_shape=None, n_eval_models=5, eval_steps="auto", eval_model=None,
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
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
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
        x, labels, result = _krr_run(
            X, centred_one_hot(y, n_classes), x0, labels0, np.ones(len(x0), np.float32), run_key,
            model=model, n_networks=n_networks, steps_per_network=self.n_steps // n_networks,
            batch_size=self.batch_size, learning_rate=self.learning_rate, ridge=self.ridge,
            learn_labels=self.learn_labels, precision=self.precision, log_every=self.log_every,
            verbose=self.verbose, description=f"KRR (R={n_networks})",
            placement=data_parallel(self.devices))
        self.n_networks_ = n_networks
        self.stop_reason_ = result.stop_reason
        return DistillationResult(X=x, y=y_syn, soft_labels=labels, n_iter=result.step,
                                  history=result.history)


# --------------------------------------------------------------------------------------------
# The translator network and its saved form
# --------------------------------------------------------------------------------------------

class Translator(_Spec, nn.Module):
    r"""Fully convolutional residual encoder-decoder: ``x -> x + delta(x)``.

    A 3x3 stem of ``width`` channels, ``depth`` stride-2 3x3 blocks doubling the width, and a
    decoder that resizes back to each skip connection's size (any resolution works, odd sizes
    included), concatenates it and applies a 3x3 convolution. The last 3x3 convolution predicts
    the change to the input and is initialised to zero, so an untrained translator is exactly
    the identity.

    The KRR objective in random ReLU networks without normalisation barely changes when the
    images are rescaled, so nothing in the loss holds the translator's output scale, and Adam's
    noise lets it drift (the pixel std of CIFAR-10 images grew more than tenfold in a short
    pre-training and adaptation). With ``match_moments`` (the default) each output sample is
    therefore shifted and rescaled to the mean and standard deviation of its input sample,
    taken over all its pixels and channels:

    .. math::

        \tilde x = x + \delta(x), \qquad
        T(x) = \mu_x + \frac{\sigma_x}{\sigma_{\tilde x}} (\tilde x - \mu_{\tilde x}),

    with :math:`\sigma^2` the variance plus :math:`10^{-12}`, so that constant (e.g. zero-padded)
    samples keep a finite gradient. The identity start is exact either way.

    Parameters
    ----------
    width : int, default=32
        Channels of the stem.
    depth : int, default=2
        Down-sampling blocks.
    match_moments : bool, default=True
        Give each translated sample its input's mean and standard deviation (the scale anchor
        above). ``False`` returns :math:`x + \delta(x)` unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_distill import PretrainedTranslator, Translator
    >>> t = PretrainedTranslator.identity(Translator(width=8, depth=2), channels=1)
    >>> x = np.random.default_rng(0).normal(size=(2, 7, 7, 1)).astype(np.float32)
    >>> bool(np.array_equal(t.translate(x), x))  # the identity before training
    True
    """

    width: int = 32
    depth: int = 2
    match_moments: bool = True

    def __post_init__(self):
        if int(self.width) < 1 or int(self.depth) < 0:
            raise ValueError(f"Translator needs width >= 1 and depth >= 0; got width={self.width}, "
                             f"depth={self.depth}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"Translator expects NHWC images; got shape {x.shape}.")
        h = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME", name="stem")(x))
        skips = []
        for i in range(self.depth):
            skips.append(h)
            width = self.width * 2 ** (i + 1)
            h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", name=f"down_{i}")(h))
            h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"mid_{i}")(h))
        for i in reversed(range(self.depth)):
            skip = skips[i]
            h = jax.image.resize(h, skip.shape[:3] + (h.shape[-1],), "nearest")
            h = jnp.concatenate([h, skip], axis=-1)
            h = nn.relu(nn.Conv(self.width * 2 ** i, (3, 3), padding="SAME", name=f"up_{i}")(h))
        delta = nn.Conv(x.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros,
                        bias_init=nn.initializers.zeros, name="out")(h)
        if not self.match_moments:
            return x + delta
        return x + _moment_matched_change(x, delta)


def _moment_matched_change(x, delta, eps=1e-12):
    """``T(x) - x`` for the moment-anchored output (see :class:`Translator`), per sample.

    Written in the centred change ``d`` rather than as ``mu + s * (x + delta - m)`` so that a
    zero ``delta`` gives a change of exactly zero: XLA may reduce ``x`` and ``x + 0`` in a
    different order, and the untrained translator must be the identity bit for bit.
    """
    axes = tuple(range(1, x.ndim))
    x_c = x - jnp.mean(x, axis=axes, keepdims=True)
    d = delta - jnp.mean(delta, axis=axes, keepdims=True)
    var_x = jnp.mean(jnp.square(x_c), axis=axes, keepdims=True)
    var_out = var_x + jnp.mean(d * (2.0 * x_c + d), axis=axes, keepdims=True)
    ratio = jnp.sqrt((var_x + eps) / jnp.maximum(var_out + eps, eps))
    return (ratio - 1.0) * (x_c + d) + d


def _translate_apply(network, params, x):
    """Apply the translator to images or tabular rows (as 1x1 images)."""
    return network.apply({"params": params}, _as_images(x)).reshape(x.shape)


@partial(jax.jit, static_argnums=(0,))
def _translate_jit(network, params, x):
    return _translate_apply(network, params, x)


@partial(jax.jit, static_argnums=(0, 2))
def _init_translator(network, key, channels):
    return network.init(key, jnp.zeros((1, 4, 4, channels), jnp.float32))["params"]


class PretrainedTranslator:
    """A translator network with its parameters (NumPy arrays) and a metadata record.

    Built by :meth:`identity`, :func:`pretrain_translator` or a fitted
    :class:`TranslatorDistiller` (``translator_``); saved with :meth:`save` and read with
    :meth:`load` (an ``.npz`` of the parameters plus a JSON block; no pickle).

    Parameters
    ----------
    network : Translator
        The architecture.
    params : dict
        Nested dict of parameter arrays, as ``network.init(...)["params"]``.
    channels : int
        Channels of the images it translates (features, for tabular rows).
    metadata : dict or None
        JSON-serialisable record (pre-training and adaptation settings and losses).

    Examples
    --------
    >>> import numpy as np
    >>> t = PretrainedTranslator.identity(Translator(width=4, depth=1), channels=1, random_state=0)
    >>> x = np.ones((3, 8, 8, 1), np.float32)
    >>> bool(np.array_equal(t.translate(x), x))
    True
    """

    def __init__(self, network, params, channels, metadata=None):
        self.network = network
        self.params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
        self.channels = int(channels)
        self.metadata = dict(metadata or {})

    @classmethod
    def identity(cls, network=None, channels=1, random_state=0):
        """An untrained translator (exactly the identity map) for images with ``channels`` channels."""
        network = Translator() if network is None else network
        if not isinstance(network, Translator):
            raise ValueError(f"`network` must be a Translator; got {network!r}.")
        key = jax.random.PRNGKey(random_seed(random_state))
        with library_prng():
            params = _init_translator(network, key, int(channels))
        return cls(network, jax.device_get(params), channels, {"trained_steps": 0})

    @property
    def n_parameters(self):
        return int(sum(np.size(a) for a in jax.tree.leaves(self.params)))

    def check_channels(self, n_channels, param="translator"):
        if int(n_channels) != self.channels:
            raise ValueError(f"`{param}` translates images with {self.channels} channel(s) but the data "
                             f"has {n_channels}; a translator transfers across resolutions, not "
                             f"across channel counts.")

    def translate(self, X):
        """Translate samples in the internal layout: NHWC images (or ``(n, H, W)``), or 2-D rows."""
        X = np.asarray(X, np.float32)
        squeeze = X.ndim == 3
        X = X[..., None] if squeeze else X
        self.check_channels(X.shape[-1], "X")
        with library_prng():
            out = np.asarray(_translate_jit(self.network, jax.tree.map(jnp.asarray, self.params),
                                            jnp.asarray(X)))
        return out[..., 0] if squeeze else out

    def save(self, path):
        """Write to ``path`` (``.npz``, appended if missing) atomically; returns the path."""
        flat = traverse_util.flatten_dict(self.params, sep="/")
        meta = {"format": _TRANSLATOR_FORMAT, "network": _module_to_json(self.network),
                "channels": self.channels, "parameters": sorted(flat), "metadata": self.metadata}
        arrays = {"param:" + k: np.asarray(v) for k, v in flat.items()}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        path = os.fspath(path)
        path = path if path.endswith(".npz") else path + ".npz"
        return atomic_savez(path, arrays, prefix=".translator-")

    @classmethod
    def load(cls, path):
        """Read a translator written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ValueError(f"{os.fspath(path)!r} is not a saved translator (no metadata block).")
            meta = json.loads(bytes(data["__meta__"]).decode("utf-8"))
            if meta.get("format") != _TRANSLATOR_FORMAT:
                raise ValueError(f"{os.fspath(path)!r} has format {meta.get('format')!r}, expected "
                                 f"{_TRANSLATOR_FORMAT!r}.")
            flat = {k: data["param:" + k] for k in meta["parameters"]}
        params = traverse_util.unflatten_dict(flat, sep="/")
        return cls(_module_from_json(meta["network"]), params, meta["channels"], meta["metadata"])

    def copy(self):
        return PretrainedTranslator(self.network, jax.tree.map(np.copy, self.params), self.channels,
                                    json.loads(json.dumps(self.metadata)))

    def __repr__(self):
        steps = self.metadata.get("trained_steps", 0)
        net = self.network
        anchor = "" if net.match_moments else ", match_moments=False"
        return (f"PretrainedTranslator(Translator(width={net.width}, depth={net.depth}{anchor}), "
                f"channels={self.channels}, n_parameters={self.n_parameters}, trained_steps={steps})")


# --------------------------------------------------------------------------------------------
# Training the translator (pre-training and adaptation share one jitted step)
# --------------------------------------------------------------------------------------------

class _TranslatorConfig(NamedTuple):
    """Static configuration of the jitted translator step."""

    network: Any
    model: Any
    tasks_per_step: int
    fresh_rows: bool  # adaptation: a fresh real batch per step; pre-training: the task's rows
    batch_size: int
    precision: str
    placement: DataParallel = DataParallel(None, None)


def _task_loss(params, task, net_key, row_key, bank, X_real, Y_real, ridge, config):
    """KRR loss of translated bank entry ``task`` in a fresh random network."""
    x, labels, mask = bank["x"][task], bank["labels"][task], bank["mask"][task]
    if config.fresh_rows:
        rows = _sample_rows(row_key, X_real.shape[0], config.batch_size)
        y_t = Y_real[rows]
    else:
        rows, y_t = bank["rows"][task], bank["targets"][task]
    variables = init_variables(config.model, net_key, X_real.shape[1:])
    x_t, y_t = config.placement.rows(X_real[rows]), config.placement.rows(y_t)
    feat_t = jax.lax.stop_gradient(_features(config.model, variables, x_t))
    x_translated = _translate_apply(config.network, params, x)
    return masked_krr_loss(config.model, variables, x_translated, labels, mask, feat_t, y_t, ridge,
                           config.precision)


def _translator_step_impl(state, bank, X_real, Y_real, hyper, config):
    key, task_key, net_key, row_key = jax.random.split(state["key"], 4)
    k = config.tasks_per_step
    tasks = jax.random.randint(task_key, (k,), 0, bank["x"].shape[0])
    net_keys, row_keys = jax.random.split(net_key, k), jax.random.split(row_key, k)

    def objective(params):
        # An unrolled loop, not vmap: XLA's CPU backend runs convolutions with per-example
        # (vmapped) kernels much slower than separate ones.
        losses = [_task_loss(params, tasks[i], net_keys[i], row_keys[i], bank, X_real, Y_real,
                             hyper["ridge"], config) for i in range(k)]
        return jnp.mean(jnp.stack(losses))

    loss, grads = jax.value_and_grad(objective)(state["params"])
    updates, opt_state = optax.adam(hyper["learning_rate"]).update(grads, state["opt"],
                                                                    state["params"])
    params = optax.apply_updates(state["params"], updates)
    ok = state["ok"] & jnp.isfinite(loss) & tree_isfinite(params)
    params, opt_state = select_tree(ok, (params, opt_state), (state["params"], state["opt"]))
    state = {"params": params, "opt": opt_state, "key": jnp.where(ok, key, state["key"]), "ok": ok}
    return state, jnp.where(ok, loss, jnp.nan)


_translator_step = jax.jit(_translator_step_impl, static_argnames=("config",), donate_argnums=(0,))


@partial(jax.jit, static_argnames=("config",))
def _task_loss_jit(params, task, net_key, row_key, bank, X_real, Y_real, ridge, config):
    return _task_loss(params, task, net_key, row_key, bank, X_real, Y_real, ridge, config)


def _validation_loss(params, bank, X_real, Y_real, ridge, config, key, n_draws):
    """Mean loss over ``n_draws`` fixed (entry, network, batch) draws: comparable across training."""
    n_entries = bank["x"].shape[0]
    losses = []
    for i in range(n_draws):
        net_key, row_key = jax.random.split(jax.random.fold_in(key, i))
        losses.append(_task_loss_jit(params, jnp.asarray(i % n_entries), net_key, row_key, bank,
                                     X_real, Y_real, ridge, config))
    return float(np.mean(jax.device_get(losses)))


def _train_translator(translator, bank, X_real, Y_real, key, *, model, n_steps, learning_rate,
                      ridge, tasks_per_step, fresh_rows, batch_size, precision, n_eval, log_every,
                      verbose, description, placement=DataParallel(None, None)):
    """Adam on the translator's parameters; returns ``(PretrainedTranslator, record)``."""
    if fresh_rows:
        batch_size = placement.batch_size(batch_size, X_real.shape[0])
    config = _TranslatorConfig(translator.network, model, int(tasks_per_step), bool(fresh_rows),
                               int(min(batch_size, X_real.shape[0])), precision, placement)
    bank, X_real, Y_real, ridge_arr, params = placement.put(
        (bank, np.asarray(X_real, np.float32), np.asarray(Y_real, np.float32), np.float32(ridge),
         translator.params))
    eval_key, loop_key = jax.random.split(key)
    before = (_validation_loss(params, bank, X_real, Y_real, ridge_arr, config, eval_key, n_eval)
              if n_eval else None)
    state = {"params": params, "opt": optax.adam(1.0).init(params),
             "key": jnp.array(loop_key, copy=True), "ok": jnp.asarray(True)}
    state = placement.put(state)
    hyper = {"learning_rate": placement.put(np.float32(learning_rate)), "ridge": ridge_arr}
    start = time.perf_counter()
    result = run_loop(lambda s: _translator_step(s, bank, X_real, Y_real, hyper, config), state,
                      n_steps=int(n_steps), log_every=log_every, verbose=verbose,
                      description=description)
    seconds = time.perf_counter() - start
    params = result.state["params"]
    after = (_validation_loss(params, bank, X_real, Y_real, ridge_arr, config, eval_key, n_eval)
             if n_eval else None)
    record = {"steps": int(result.step), "learning_rate": float(learning_rate),
              "tasks_per_step": int(tasks_per_step), "ridge": float(ridge),
              "random_network": _module_to_json(model), "validation_loss_before": before,
              "validation_loss_after": after, "seconds": seconds, "stop_reason": result.stop_reason,
              "history": {k: [float(v) for v in vals] for k, vals in result.history.items()}}
    metadata = json.loads(json.dumps(translator.metadata))
    metadata["trained_steps"] = int(metadata.get("trained_steps", 0)) + int(result.step)
    trained = PretrainedTranslator(translator.network, jax.device_get(params), translator.channels,
                                   metadata)
    return trained, record


def _pad_bank(xs, labels, n_rows, n_columns):
    """Stack synthetic sets of different sizes, zero-padded to ``n_rows`` x ``n_columns``, with masks."""
    sample_shape = xs[0].shape[1:]
    x = np.zeros((len(xs), n_rows) + sample_shape, np.float32)
    lab = np.zeros((len(xs), n_rows, n_columns), np.float32)
    mask = np.zeros((len(xs), n_rows), np.float32)
    for i, (xi, li) in enumerate(zip(xs, labels)):
        x[i, :len(xi)] = xi
        lab[i, :len(li), :li.shape[1]] = li
        mask[i, :len(xi)] = 1.0
    return {"x": x, "labels": lab, "mask": mask}


# --------------------------------------------------------------------------------------------
# Stage 1: the cache of single-network distillations of random sub-tasks
# --------------------------------------------------------------------------------------------

class CachedTask(NamedTuple):
    """One cached sub-task.

    Attributes
    ----------
    index : int
    classes : ndarray of int
        The sub-task's classes, as indices into the cache's class list.
    rows : ndarray of int, shape (n_real,)
        Indices of the real rows it was distilled from (and is scored on).
    X : ndarray
        The synthetic samples of the single-network distillation.
    y : ndarray of int
        Their class, as positions in ``classes``.
    labels : ndarray of shape (n_synthetic, n_task_classes)
        Their learned labels.
    ipc : int
    loss_first, loss_last : float
        KRR loss at the first and the last logged step.
    """

    index: int
    classes: np.ndarray
    rows: np.ndarray
    X: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    ipc: int
    loss_first: float
    loss_last: float


def _task_plan(seed, index, class_counts, c_min, c_max, max_images):
    """The random sub-task ``index``: its classes and ipc (a function of the seed and index only)."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    n_classes = len(class_counts)
    c = int(rng.integers(c_min, min(c_max, n_classes) + 1))
    classes = np.sort(rng.choice(n_classes, c, replace=False))
    ipc_max = max(1, min(max_images // c, int(class_counts[classes].min())))
    return classes, int(rng.integers(1, ipc_max + 1)), rng


def _cache_task(index, X, y, directory, config, fixed_variables):
    """Distil sub-task ``index`` in the fixed network and write it to the cache (a joblib job)."""
    with library_prng():
        counts = np.bincount(y)
        classes, ipc, rng = _task_plan(config["random_state"], index, counts, config["c_min"],
                                       config["c_max"], config["max_images"])
        pool = np.flatnonzero(np.isin(y, classes))
        rows = rng.choice(pool, config["n_real"], replace=len(pool) < config["n_real"])
        local = np.searchsorted(classes, y)  # position of each row's class within `classes`
        init_rows = np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False)
                                    for c in classes])
        c = len(classes)
        x0 = X[init_rows]
        y_syn = np.repeat(np.arange(c, dtype=np.int32), ipc)
        c_max, n_max = config["c_max"], config["max_images"]
        padded = _pad_bank([x0], [init_labels(y_syn, c, scale=False)], n_max, c_max)
        targets = np.zeros((len(rows), c_max), np.float32)
        targets[:, :c] = centred_one_hot(local[rows], c)
        model = _module_from_json(config["model"])
        key = jax.random.fold_in(jax.random.PRNGKey(int(config["random_state"])), index)
        x, labels, result = _krr_run(
            X[rows], targets, padded["x"][0], padded["labels"][0], padded["mask"][0], key,
            model=model, n_networks=1, steps_per_network=config["n_steps"],
            batch_size=config["n_real"], learning_rate=config["learning_rate"],
            ridge=config["ridge"], learn_labels=config["learn_labels"],
            precision=config["precision"], fixed_variables=fixed_variables,
            log_every=max(1, config["n_steps"] // 4), description=f"cache task {index}")
        n = c * ipc
        losses = result.history["loss"]
        arrays = dict(index=np.asarray(index), classes=classes.astype(np.int64),
                      rows=rows.astype(np.int64), X=x[:n], y=y_syn, labels=labels[:n, :c],
                      ipc=np.asarray(ipc), loss_first=np.asarray(losses[0] if losses else np.nan),
                      loss_last=np.asarray(losses[-1] if losses else np.nan))
        atomic_savez(os.path.join(directory, f"task_{index:06d}.npz"), arrays, prefix=".task-")
        return index


class TranslatorCache:
    r"""Stage 1: single-network distillations of random sub-tasks, stored on disk for pre-training.

    Sub-task :math:`i` draws a number of classes :math:`C \in [c_{min}, c_{max}]`, :math:`C`
    classes, an ipc in :math:`[1, \lfloor I_{max} / C \rfloor]` (``max_images`` = :math:`I_{max}`)
    and ``n_real`` (:math:`M`) real rows of those classes; starting from ipc real images per class,
    it takes ``n_steps`` Adam steps of the KRR objective (:class:`KRRDistiller`) in *one fixed*
    random network shared by every sub-task, regressing on the :math:`M` rows. Each sub-task is a
    function of ``random_state`` and :math:`i` alone, so a cache is extended (or an interrupted
    build resumed) by computing only the missing indices. Sub-tasks run in parallel through
    joblib (threads by default; ``joblib.parallel_config`` selects another backend, a Dask or Ray
    cluster included).

    The directory holds ``cache.json`` (the configuration and the data's fingerprint) and one
    ``task_NNNNNN.npz`` per sub-task (:class:`CachedTask`: real row indices, synthetic samples,
    labels), each written atomically. Opening an existing directory with another configuration,
    or extending it with other data, raises a ``ValueError``.

    Parameters
    ----------
    directory : str or path-like
    c_min, c_max : int, default=2, 10
        Range of the number of classes per sub-task (``c_max`` at most the data's classes).
    max_images : int, default=100
        :math:`I_{max}`: at most this many synthetic samples per sub-task.
    n_real : int, default=1024
        :math:`M`: real rows per sub-task (drawn with replacement when the classes have fewer).
    n_steps : int, default=100
        KRR steps per sub-task; use the ``n_steps`` of the :class:`TranslatorDistiller` that will
        use the translator, so that its inputs look like those it was trained on.
    learning_rate : float, default=0.01
    learn_labels : bool, default=True
    model : flax.linen.Module or None, default=None
        Random-network family (see :class:`KRRDistiller`).
    ridge : float, default=1e-6
    precision : {"highest", "high", "default"}, default="highest"
    random_state : int, default=0
        Seeds the fixed network and every sub-task.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_distill import ConvNet, TranslatorCache, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> cache = TranslatorCache(tempfile.mkdtemp(), c_min=2, c_max=4, max_images=8, n_real=64,
    ...                         n_steps=4, model=ConvNet(width=8, depth=2))
    >>> len(cache.extend(X, y, n_tasks=2))
    2
    >>> task = cache[0]
    >>> task.X.shape[1:], len(task.rows)
    ((8, 8, 1), 64)
    """

    def __init__(self, directory, *, c_min=2, c_max=10, max_images=100, n_real=1024, n_steps=100,
                 learning_rate=0.01, learn_labels=True, model=None, ridge=1e-6, precision="highest",
                 random_state=0):
        self.directory = os.fspath(directory)
        checks = [("c_min", c_min, 2), ("c_max", c_max, 2), ("max_images", max_images, 1),
                  ("n_real", n_real, 1), ("n_steps", n_steps, 1)]
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
        if c_min > c_max:
            raise ValueError(f"`c_min`={c_min} is larger than `c_max`={c_max}.")
        if max_images < c_min:
            raise ValueError(f"`max_images`={max_images} is smaller than `c_min`={c_min}: a sub-task "
                             f"needs at least one synthetic sample per class.")
        if not isinstance(learning_rate, Real) or not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be a positive number; got {learning_rate!r}.")
        if not isinstance(ridge, Real) or ridge < 0:
            raise ValueError(f"`ridge` must be a non-negative number; got {ridge!r}.")
        if precision not in ("highest", "high", "default"):
            raise ValueError(f"`precision` must be 'highest', 'high' or 'default'; got {precision!r}.")
        if model is not None and not isinstance(model, (ConvNet, MLP)):
            raise ValueError(f"`model` must be a ConvNet, an MLP or None; got {model!r}.")
        if isinstance(random_state, bool) or not isinstance(random_state, Integral):
            raise ValueError(f"`random_state` must be an integer (the cache is reproducible and "
                             f"extensible); got {random_state!r}.")
        self.config = {"c_min": int(c_min), "c_max": int(c_max), "max_images": int(max_images),
                       "n_real": int(n_real), "n_steps": int(n_steps),
                       "learning_rate": float(learning_rate), "learn_labels": bool(learn_labels),
                       "model": None if model is None else _module_to_json(model),
                       "ridge": float(ridge), "precision": precision,
                       "random_state": int(random_state)}
        self._data = None
        path = os.path.join(self.directory, "cache.json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if saved.get("format") != _CACHE_FORMAT:
                raise ValueError(f"`directory`={self.directory!r} holds no translator cache of format "
                                 f"{_CACHE_FORMAT!r}.")
            stored = saved["config"]
            mine = json.loads(json.dumps(self.config))
            if mine["model"] is None:  # "the default" matches the default that was resolved
                mine["model"] = stored["model"]
            diff = [f"{k}: cache has {stored.get(k)!r}, given {mine.get(k)!r}"
                    for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)]
            if diff:
                raise ValueError(f"`directory`={self.directory!r} holds a cache built with another "
                                 f"configuration ({'; '.join(diff)}). Use TranslatorCache.open() to "
                                 f"reuse it, or another directory.")
            self.config, self._data = stored, saved.get("data")

    @classmethod
    def open(cls, directory):
        """Open an existing cache with the configuration it was built with."""
        path = os.path.join(os.fspath(directory), "cache.json")
        if not os.path.exists(path):
            raise ValueError(f"`directory`={os.fspath(directory)!r} holds no translator cache "
                             f"(no cache.json).")
        with open(path) as f:
            config = json.load(f)["config"]
        model = None if config["model"] is None else _module_from_json(config["model"])
        kwargs = {k: v for k, v in config.items() if k != "model"}
        return cls(directory, model=model, **kwargs)

    # -- contents -------------------------------------------------------------------------------

    def _files(self):
        return sorted(glob.glob(os.path.join(self.directory, "task_*.npz")))

    def indices(self):
        """Indices of the sub-tasks present."""
        return [int(os.path.basename(p)[5:11]) for p in self._files()]

    def __len__(self):
        return len(self._files())

    def __getitem__(self, index):
        path = os.path.join(self.directory, f"task_{int(index):06d}.npz")
        if not os.path.exists(path):
            raise IndexError(f"sub-task {index} is not in the cache at {self.directory!r}.")
        with np.load(path, allow_pickle=False) as d:
            return CachedTask(int(d["index"]), d["classes"], d["rows"], d["X"], d["y"], d["labels"],
                              int(d["ipc"]), float(d["loss_first"]), float(d["loss_last"]))

    def tasks(self):
        """Every cached sub-task, by index."""
        return [self[i] for i in self.indices()]

    @property
    def data_info(self):
        """The fingerprint, classes and sample shape of the data the cache was built from."""
        return self._data

    def __repr__(self):
        return f"TranslatorCache({self.directory!r}, n_tasks={len(self)})"

    # -- building -------------------------------------------------------------------------------

    def _check_data(self, X, y):
        X = _as_internal(X)
        y = np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}.")
        classes, y_enc = np.unique(y, return_inverse=True)
        info = {"fingerprint": data_fingerprint(X, y_enc), "n_samples": int(len(X)),
                "sample_shape": list(X.shape[1:]), "classes": [str(c) for c in classes]}
        if self._data is not None and self._data["fingerprint"] != info["fingerprint"]:
            raise ValueError(f"The cache at {self.directory!r} was built from other data "
                             f"({self._data['n_samples']} rows of shape {self._data['sample_shape']}); "
                             f"give the same X and y, or use another directory.")
        if self.config["c_max"] > len(classes):
            raise ValueError(f"`c_max`={self.config['c_max']} is larger than the number of classes in "
                             f"the data ({len(classes)}).")
        return X, y_enc.astype(np.int32), info

    def extend(self, X, y, n_tasks, *, n_jobs=None, verbose=0):
        """Make sure sub-tasks ``0 .. n_tasks-1`` are cached, computing only the missing ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W[, C]) or (n_samples, n_features)
            The source data (always the same for one cache).
        y : array-like of shape (n_samples,)
        n_tasks : int
        n_jobs : int or None
            joblib workers (threads by default; see ``joblib.parallel_config``).
        verbose : int, default=0
            joblib's verbosity.

        Returns
        -------
        self
        """
        from joblib import Parallel, delayed

        if isinstance(n_tasks, bool) or not isinstance(n_tasks, Integral) or n_tasks < 0:
            raise ValueError(f"`n_tasks` must be a non-negative integer; got {n_tasks!r}.")
        X, y, info = self._check_data(X, y)
        config = dict(self.config)
        if config["model"] is None:
            config["model"] = _module_to_json(default_random_network(X.shape[1:]))
        os.makedirs(self.directory, exist_ok=True)
        if self._data is None:
            meta = {"format": _CACHE_FORMAT, "config": config, "data": info}
            tmp = os.path.join(self.directory, ".cache.json.tmp")
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=1)
            os.replace(tmp, os.path.join(self.directory, "cache.json"))
            self.config, self._data = config, info
        missing = sorted(set(range(int(n_tasks))) - set(self.indices()))
        if not missing:
            return self
        model = with_num_classes(_module_from_json(config["model"]), config["c_max"])
        config = {**config, "model": _module_to_json(model)}
        with library_prng():
            key = jax.random.fold_in(jax.random.PRNGKey(config["random_state"]), 2**31 - 1)
            fixed = jax.device_get(_init_network(model, key, tuple(X.shape[1:])))
        Parallel(n_jobs=n_jobs, prefer="threads", verbose=verbose)(
            delayed(_cache_task)(i, X, y, self.directory, config, fixed) for i in missing)
        return self

    def bank(self):
        """The cached sub-tasks as padded arrays (``x``, ``labels``, ``mask``, ``rows``, ``targets``)."""
        tasks = self.tasks()
        if not tasks:
            raise ValueError(f"The cache at {self.directory!r} is empty; call extend() first.")
        c_max, n_max = self.config["c_max"], self.config["max_images"]
        bank = _pad_bank([t.X for t in tasks], [t.labels for t in tasks], n_max, c_max)
        bank["rows"] = np.stack([t.rows for t in tasks]).astype(np.int32)
        return bank


def pretrain_translator(cache, X, y, *, translator=None, n_steps=1000, learning_rate=1e-3,
                        tasks_per_step=4, model=None, ridge=None, n_eval=8, log_every=50,
                        devices=None, verbose=0, random_state=0):
    r"""Stage 2: train a translator on a :class:`TranslatorCache`.

    Each step draws ``tasks_per_step`` cached sub-tasks and, for each, a fresh random network
    :math:`f`; the sub-task's synthetic samples go through the translator :math:`G`, and the loss
    is how badly KRR on :math:`f(G(X_s))` with the cached labels predicts the sub-task's real rows
    (centred one-hot targets over its classes):

    .. math::

        \min_G \; \mathbb{E}_{\text{task}, f}\; \frac{1}{2M} \bigl\lVert Y_t -
            f(X_t) f(G(X_s))^\top \bigl(f(G(X_s)) f(G(X_s))^\top + \lambda I\bigr)^{-1} Y_s
            \bigr\rVert_F^2 .

    Parameters
    ----------
    cache : TranslatorCache or path-like
        The cache (or its directory).
    X, y : array-like
        The source data the cache was built from (checked by fingerprint).
    translator : Translator, PretrainedTranslator or None, default=None
        Architecture to train from its identity start (``None``: ``Translator()``), or a
        translator to continue training.
    n_steps : int, default=1000
    learning_rate : float, default=1e-3
        Adam learning rate of the translator.
    tasks_per_step : int, default=4
    model : flax.linen.Module or None, default=None
        Random-network family; ``None``: the cache's.
    ridge : float or None, default=None
        ``None``: the cache's.
    n_eval : int, default=8
        Fixed (sub-task, network) draws on which the loss is measured before and after training
        (``metadata["pretraining"]["validation_loss_before"/"_after"]``); 0 skips it.
    log_every : int, default=50
    devices : int, list of jax.Device or None, default=None
        Devices to shard each sub-task's real rows over (``None``: the default device).
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    PretrainedTranslator
    """
    if not isinstance(cache, TranslatorCache):
        cache = TranslatorCache.open(cache)
    for name, value, low in (("n_steps", n_steps, 1), ("tasks_per_step", tasks_per_step, 1),
                             ("n_eval", n_eval, 0), ("log_every", log_every, 1)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    if not isinstance(learning_rate, Real) or not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be a positive number; got {learning_rate!r}.")
    X, y_enc, _ = cache._check_data(X, y)
    if cache.data_info is None:
        raise ValueError(f"The cache at {cache.directory!r} is empty; call extend() first.")
    cfg = cache.config
    channels = X.shape[-1]
    seed = random_seed(random_state)
    if translator is None or isinstance(translator, Translator):
        translator = PretrainedTranslator.identity(translator, channels, seed)
    elif not isinstance(translator, PretrainedTranslator):
        raise ValueError(f"`translator` must be None, a Translator or a PretrainedTranslator; got "
                         f"{translator!r}.")
    translator.check_channels(channels)
    model = _module_from_json(cfg["model"]) if model is None else model
    model = with_num_classes(model, cfg["c_max"])
    ridge = cfg["ridge"] if ridge is None else float(ridge)
    bank = cache.bank()
    tasks = cache.tasks()
    targets = np.zeros(bank["rows"].shape + (cfg["c_max"],), np.float32)
    for i, t in enumerate(tasks):
        local = np.searchsorted(t.classes, y_enc[t.rows])
        targets[i, :, :len(t.classes)] = centred_one_hot(local, len(t.classes))
    bank["targets"] = targets
    with library_prng():
        trained, record = _train_translator(
            translator, bank, X, np.zeros((len(X), 1), np.float32), jax.random.PRNGKey(seed),
            model=model, n_steps=n_steps, learning_rate=learning_rate, ridge=ridge,
            tasks_per_step=tasks_per_step, fresh_rows=False, batch_size=cfg["n_real"],
            precision=cfg["precision"], n_eval=n_eval, log_every=log_every, verbose=verbose,
            description="pre-training translator", placement=data_parallel(devices))
    record.update(cache_config=cfg, n_tasks=len(tasks), source=cache.data_info)
    trained.metadata.setdefault("pretraining", []).append(record)
    return trained


# --------------------------------------------------------------------------------------------
# Stage 3 and the estimator
# --------------------------------------------------------------------------------------------

class TranslatorDistiller(BaseDistiller):
    r"""Few-shot dataset distillation with a (pre-trained) translator.

    ``fit`` (i) distils ``ipc`` samples per class in *one* random network (:class:`KRRDistiller`
    with :math:`R = 1`, ``n_steps`` steps: fast, since the real rows pass through one network
    once), (ii) optionally adapts the translator to the data, and (iii) returns the translator's
    output on that set; the labels are those of the single-network distillation.

    Adaptation (stage 3, ``adapt_steps > 0``): single-network distillations of the data at each
    ipc of ``adapt_ipc`` are made, and the translator takes ``adapt_steps`` Adam steps so that its
    outputs, fed to KRR in freshly sampled random networks, predict random batches of the real
    data. The adapted translator (``translator_``) then serves any ipc, also ones it was not
    adapted at: pass it as ``translator=`` with ``adapt_steps=0``.

    Parameters
    ----------
    ipc : int, default=1
    translator : PretrainedTranslator, Translator, str, path-like or None, default=None
        A pre-trained translator (:func:`pretrain_translator`, or a fitted ``translator_``), the
        path of a saved one, or an architecture to start untrained (the identity; ``None``:
        ``Translator()``).
    n_steps : int, default=100
        Steps of each single-network distillation (match the cache's ``n_steps``).
    learning_rate : float, default=0.01
        Adam rate of the single-network distillations.
    batch_size : int, default=1024
        Real rows per single-network distillation, and per adaptation step.
    learn_labels : bool, default=True
    model : flax.linen.Module or None, default=None
        Random-network family (see :class:`KRRDistiller`).
    ridge : float, default=1e-6
    precision : {"highest", "high", "default"}, default="highest"
    adapt_ipc : tuple of int or None, default=None
        The ipc values of the adaptation distillations; ``None``: ``(ipc,)``.
    adapt_steps : int, default=100
        Translator steps on the data; 0 skips adaptation.
    adapt_learning_rate : float, default=1e-3
        Adam rate of the translator during adaptation.
    image_shape : tuple or None, default=None
    n_eval_models : int, default=5
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
    log_every : int, default=100
    devices : int, list of jax.Device or None, default=None
        ``None``: the default device. An int ``k`` (the first ``k`` devices) or a list of devices:
        the real batch is sharded over them (the synthetic set and networks are replicated), and
        ``batch_size`` is rounded down to a multiple of their number.
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    synthetic_X_, synthetic_y_, synthetic_y_soft_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.
    single_network_X_ : ndarray
        The single-network distillation before translation (same layout as ``synthetic_X_``).
    translator_ : PretrainedTranslator
        The translator used (after adaptation); NumPy arrays only.
    adaptation_ : dict or None
        Adaptation record: steps, seconds, loss history, loss on fixed draws before and after.
    n_iter_ : int
        Steps of the single-network distillation.
    history_ : dict of list
        Its loss history.
    stop_reason_ : str

    See Also
    --------
    TranslatorCache, pretrain_translator : stages 1 and 2.
    KRRDistiller : the baseline.

    References
    ----------
    .. [1] S. Liu and X. Wang, "Few-Shot Dataset Distillation via Translative Pre-Training",
       ICCV 2023.

    Examples
    --------
    >>> from sklearn_distill import ConvNet, Translator, TranslatorDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> td = TranslatorDistiller(ipc=1, translator=Translator(width=4, depth=1), n_steps=5,
    ...                          batch_size=200, adapt_steps=3, model=ConvNet(width=8, depth=2),
    ...                          random_state=0).fit(X, y)
    >>> td.synthetic_X_.shape, td.translator_.metadata["trained_steps"]
    ((10, 8, 8, 1), 3)
    """

    _parameter_constraints = {
        **BaseDistiller._parameter_constraints,
        **_KRR_CONSTRAINTS,
        "translator": [None, str, os.PathLike, HasMethods(["translate", "save"]),
                       HasMethods(["init", "apply"])],
        "adapt_ipc": [tuple, list, None],
        "adapt_steps": [Interval(Integral, 0, None, closed="left")],
        "adapt_learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, ipc=1, *, translator=None, n_steps=100, learning_rate=0.01, batch_size=1024,
                 learn_labels=True, model=None, ridge=1e-6, precision="highest", adapt_ipc=None,
                 adapt_steps=100, adapt_learning_rate=1e-3, image_shape=None, n_eval_models=5,
                 eval_steps="auto", eval_model=None, log_every=100, devices=None, verbose=0,
                 random_state=None):
        self.ipc = ipc
        self.translator = translator
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.learn_labels = learn_labels
        self.model = model
        self.ridge = ridge
        self.precision = precision
        self.adapt_ipc = adapt_ipc
        self.adapt_steps = adapt_steps
        self.adapt_learning_rate = adapt_learning_rate
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.log_every = log_every
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    def _resolve_translator(self, channels, key):
        t = self.translator
        if t is None or isinstance(t, Translator):
            seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
            t = PretrainedTranslator.identity(t, channels, seed)
        elif isinstance(t, (str, os.PathLike)):
            t = PretrainedTranslator.load(t)
        elif isinstance(t, PretrainedTranslator):
            t = t.copy()
        else:
            raise ValueError(f"`translator` must be None, a Translator, a PretrainedTranslator or the "
                             f"path of a saved one; got {t!r}.")
        t.check_channels(channels)
        return t

    def _adapt_ipcs(self, y):
        ipcs = (self.ipc,) if self.adapt_ipc is None else tuple(self.adapt_ipc)
        if not ipcs or any(isinstance(a, bool) or not isinstance(a, Integral) or a < 1 for a in ipcs):
            raise ValueError(f"`adapt_ipc` must be None or a non-empty list of positive integers; got "
                             f"{self.adapt_ipc!r}.")
        smallest = int(np.bincount(y).min())
        if max(ipcs) > smallest:
            raise ValueError(f"`adapt_ipc`={list(ipcs)} asks for {max(ipcs)} samples per class but the "
                             f"smallest class has {smallest} rows.")
        return ipcs

    def _distill(self, X, y, key):
        n_classes = len(self.classes_)
        channels = X.shape[-1]
        model = with_num_classes(self.model if self.model is not None
                                 else default_random_network(X.shape[1:]), n_classes)
        ipcs = self._adapt_ipcs(y) if self.adapt_steps > 0 else ()
        single_key, adapt_key, translator_key = jax.random.split(key, 3)
        translator = self._resolve_translator(channels, translator_key)
        common = dict(model=model, n_steps=self.n_steps, batch_size=self.batch_size,
                      learning_rate=self.learning_rate, ridge=self.ridge,
                      learn_labels=self.learn_labels, precision=self.precision,
                      placement=data_parallel(self.devices))
        x1, y1, labels1, result = _single_network(X, y, n_classes, self.ipc, single_key,
                                                  log_every=self.log_every, verbose=self.verbose,
                                                  **common)
        self.adaptation_ = None
        if ipcs:
            xs, labs = [], []
            for a in ipcs:
                if a == self.ipc:
                    xa, la = x1, labels1
                else:
                    xa, _, la, _ = _single_network(X, y, n_classes, a, jax.random.fold_in(adapt_key, a),
                                                   log_every=max(1, self.n_steps), **common)
                xs.append(xa)
                labs.append(la)
            bank = _pad_bank(xs, labs, n_classes * max(ipcs), n_classes)
            translator, record = _train_translator(
                translator, bank, X, centred_one_hot(y, n_classes), jax.random.fold_in(adapt_key, 0),
                model=model, n_steps=self.adapt_steps, learning_rate=self.adapt_learning_rate,
                ridge=self.ridge, tasks_per_step=1, fresh_rows=True, batch_size=self.batch_size,
                precision=self.precision, n_eval=2 * len(ipcs), log_every=self.log_every,
                verbose=self.verbose, description="adapting translator",
                placement=common["placement"])
            record["adapt_ipc"] = list(ipcs)
            translator.metadata.setdefault("adaptation", []).append(
                {k: v for k, v in record.items() if k != "history"})
            self.adaptation_ = record
        x_out = translator.translate(x1)
        self.translator_ = translator
        self.single_network_X_ = self.layout_.to_input(x1)
        self.stop_reason_ = result.stop_reason
        return DistillationResult(X=x_out, y=y1, soft_labels=labels1, n_iter=result.step,
                                  history=result.history)
