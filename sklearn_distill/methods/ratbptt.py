r"""RaT-BPTT: dataset distillation by random truncated backpropagation through time.

Feng, Vedantam & Kempe, "Embarrassingly Simple Dataset Distillation", ICLR 2024
(https://arxiv.org/abs/2311.07025).

Dataset distillation as the bilevel problem it is: train a freshly initialised network on the
synthetic set :math:`(X_s, Y_s)` for :math:`N` steps of Adam, score the trained network
:math:`\theta_N` on real data, and differentiate that score with respect to the synthetic set
through the inner training:

.. math::

    \min_{X_s, Y_s} \; \mathcal{L}_{\text{real}}\bigl(\theta_N(X_s, Y_s)\bigr), \qquad
    \theta_{i+1} = \operatorname{Adam}\bigl(\theta_i,
        \nabla_\theta \ell(\theta_i; \mathcal{A}_i(X_s^{(i)}), Y_s^{(i)})\bigr),

where :math:`X_s^{(i)}` is a class-balanced minibatch of the synthetic set and :math:`\mathcal{A}_i`
a random differentiable augmentation. Each meta-step draws the unroll length :math:`N` uniformly
from :math:`[M, T]` (``window`` :math:`M`, ``unroll`` :math:`T`) and backpropagates only through the
last :math:`M` inner steps: the first :math:`N - M` steps run without gradient, and the network and
its Adam state are carried across the boundary. The random end point covers the whole trajectory
over many meta-steps while each gradient stays as cheap and as stable as an :math:`M`-step one.

The backpropagated window is a :func:`jax.lax.scan` whose body is wrapped in :func:`jax.checkpoint`:
the backward pass keeps only the network and optimiser state of each of the :math:`M` steps and
recomputes the activations, so memory grows with :math:`M` (times the parameter count) and not
with the activations of every step. The gradient of the real-data loss with respect to
:math:`\theta_N` is accumulated over chunks of the real batch, then pulled back through the
window with one vector-Jacobian product.

Boost-DD, which grows a synthetic set block by block with a gradient-based distiller such as this
one, is :class:`~sklearn_distill.BoostedDistiller` (:mod:`sklearn_distill.methods.boosting`).
"""

from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .. import _backend
from .._precision import resolve_network_precision, with_network_precision
from .._sharding import DataParallel
from .._trainer import apply_network, predict_networks, train_step
from .._training import (init_synthetic, key_data, real_batch, run_steps, scale_rows, select_tree,
                         tree_isfinite)
from ..augment import ImageAugmentation
from ..base import DistillationResult
from ..networks import default_network, init_variables
from .gradient import NETWORK_PRECISION_CONSTRAINT, GradientDistiller

__all__ = ["RaTBPTTDistiller", "hardness_weights"]

# eps_root of the inner Adam: the square root of the second moment is differentiated, and it is
# exactly zero for parameters without gradient (e.g. a convolution bias before instance norm).
_EPS_ROOT = 1e-8
# Decay of the moving average of the image meta-gradient norm, and the clipping factor on it.
_EMA_DECAY = 0.9
_CLIP_FACTOR = 2.0


class _Config(NamedTuple):
    """Static configuration of the jitted meta-step (hashable: a jit static argument).

    The numeric hyperparameters (the learning rates) travel as traced scalars and the unroll
    length as a traced argument, so fits that differ only in them share one compilation.
    """

    model: Any
    window: int
    unroll: int
    schedule: str
    per_class: int
    batch_size: int
    chunk_size: int
    augmentation: Optional[ImageAugmentation]
    learn_labels: bool
    remat: bool
    hardness: bool
    placement: DataParallel = DataParallel(None, None)
    # The resolved network_precision; ``model`` is then the network under it
    # (sklearn_distill._precision.with_network_precision). None: the network as given.
    network_precision: Optional[str] = None
    # Steps of the backpropagated window per trip of its scan (lax.scan's unroll; 1: rolled).
    window_unroll: int = 1
    # Classes drawn per inner step (0: every class), as ``task_sampler_nc`` of the official code.
    step_classes: int = 0


def hyperparameters(n_steps, learning_rate, inner_learning_rate):
    """The traced hyperparameters of the meta-step, as a dict of scalar arrays."""
    return {"n_steps": jnp.asarray(n_steps, jnp.int32),
            "learning_rate": jnp.asarray(learning_rate, jnp.float32),
            "inner_learning_rate": jnp.asarray(inner_learning_rate, jnp.float32)}


def inner_optimizer(learning_rate):
    """Adam of the inner training (``eps_root`` keeps its square root differentiable at zero)."""
    return optax.adam(learning_rate, eps_root=_EPS_ROOT)


def _outer_optimizer(learning_rate):
    return optax.adam(learning_rate)


# --------------------------------------------------------------------------------------------
# The inner training
# --------------------------------------------------------------------------------------------

def label_targets(labels, learn_labels):
    """Targets of the inner cross-entropy: the label rows themselves, learned or not.

    Learned labels start one-hot and stay non-negative but unnormalised (clipped at zero after
    every outer step): they weigh the log-probabilities directly, ``-sum_k y_k log p_k``, with no
    softmax over them (``base.py`` and ``distill_higher.py`` of the official code).
    """
    del learn_labels  # the same targets either way
    return labels


def _sample_rows(key, class_rows, per_class, step_classes=0):
    """Class-balanced minibatch: ``per_class`` distinct rows of every class (flat row indices).

    With ``0 < step_classes < n_classes`` only that many distinct classes, drawn uniformly, take
    part in the step (the official ``get_task_indices``); the targets keep every class.
    """
    n_classes, n_per_class = class_rows.shape
    if 0 < step_classes < n_classes:
        class_key, key = jax.random.split(key)
        chosen = jnp.argsort(jax.random.uniform(class_key, (n_classes,)))[:step_classes]
        class_rows = class_rows[jnp.sort(chosen)]
        n_classes = step_classes
    if per_class >= n_per_class:
        return class_rows.reshape(-1)
    order = jnp.argsort(jax.random.uniform(key, (n_classes, n_per_class)), axis=1)[:, :per_class]
    return jnp.take_along_axis(class_rows, order, axis=1).reshape(-1)


def inner_step(config, inner_lr, x_syn, targets, class_rows, carry, key):
    """One Adam step of the inner network on an augmented class-balanced synthetic minibatch.

    ``carry`` is ``(variables, opt_state)``; returns the new carry and the minibatch loss.
    """
    variables, opt_state = carry
    batch_key, aug_key = jax.random.split(key)
    rows = _sample_rows(batch_key, class_rows, config.per_class, config.step_classes)
    xb, tb = x_syn[rows], targets[rows]
    if config.augmentation is not None:
        xb = config.augmentation(aug_key, xb)
    variables, opt_state, loss = train_step(config.model, inner_optimizer(inner_lr), variables,
                                            opt_state, xb, tb, "ce")
    return (variables, opt_state), loss


def init_network(config, key, sample_shape, inner_lr, dtype=jnp.float32):
    """A freshly initialised inner network (in ``dtype``) and its Adam state."""
    variables = jax.tree.map(lambda a: a.astype(dtype),
                             init_variables(config.model, key, sample_shape))
    return variables, inner_optimizer(inner_lr).init(variables["params"])


def run_prefix(config, inner_lr, x_syn, targets, class_rows, carry, base_key, n):
    """``n`` inner steps without gradient (a traced trip count), steps ``0..n-1`` of the unroll."""
    x_syn, targets = jax.lax.stop_gradient((x_syn, targets))

    def body(i, c):
        return inner_step(config, inner_lr, x_syn, targets, class_rows, c,
                          jax.random.fold_in(base_key, i))[0]

    return jax.lax.fori_loop(0, n, body, carry)


def run_window(config, inner_lr, x_syn, targets, class_rows, carry, base_key, start):
    """The ``window`` backpropagated inner steps ``start..start+M-1``, as a rematerialised scan."""
    keys = jax.vmap(lambda j: jax.random.fold_in(base_key, start + j))(jnp.arange(config.window))

    def body(c, key):
        return inner_step(config, inner_lr, x_syn, targets, class_rows, c, key)

    if config.remat:
        body = jax.checkpoint(body)
    carry, losses = jax.lax.scan(body, carry, keys, unroll=config.window_unroll)
    return carry, losses


def _ce(model, variables, x, y_onehot):
    logits, _ = apply_network(model, variables, x, False)
    return optax.softmax_cross_entropy(logits, y_onehot)


def real_loss_and_grad(config, variables, x_real, y_real):
    """Mean cross-entropy on the real batch and its gradient w.r.t. the network variables.

    The batch is processed in chunks of ``config.chunk_size`` rows (padded rows weigh zero), so
    the activations of only one chunk are alive at a time. Over several devices each chunk's
    rows are split between them.
    """
    n = x_real.shape[0]
    chunk = config.chunk_size
    if chunk >= n:
        return jax.value_and_grad(lambda v: jnp.mean(_ce(config.model, v, x_real, y_real)))(variables)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    weights = jnp.concatenate([jnp.full((n,), 1.0 / n), jnp.zeros((pad,))])
    xs = jnp.concatenate([x_real, jnp.zeros((pad,) + x_real.shape[1:], x_real.dtype)])
    ys = jnp.concatenate([y_real, jnp.zeros((pad,) + y_real.shape[1:], y_real.dtype)])
    xs = xs.reshape((n_chunks, chunk) + x_real.shape[1:])
    ys = ys.reshape((n_chunks, chunk) + y_real.shape[1:])
    weights = weights.reshape(n_chunks, chunk)
    xs, ys, weights = (config.placement.rows(a, axis=1) for a in (xs, ys, weights))

    def body(acc, batch):
        xc, yc, wc = batch
        value, grad = jax.value_and_grad(
            lambda v: jnp.sum(wc * _ce(config.model, v, xc, yc)))(variables)
        return jax.tree.map(jnp.add, acc, (value, grad)), None

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, variables))
    (value, grad), _ = jax.lax.scan(body, zero, (xs, ys, weights))
    return value, grad


def unroll_length(schedule, window, unroll, step, n_steps, seed, period=1):
    """The unroll length N of meta-step ``step`` under the window schedule (drawn on the host).

    ``"random"`` draws N uniformly from ``window..unroll`` with a NumPy generator seeded by
    ``(seed, step // period)``, so N is a function of the run's key and the step alone (a resumed
    run draws the same lengths) and the host never waits on the device for it; ``period``
    meta-steps in a row share one N (the official code draws once per epoch of its real loader).

    Examples
    --------
    >>> [unroll_length("moving", 2, 6, s, 5, 0) for s in range(5)]
    [2, 3, 4, 5, 6]
    >>> unroll_length("fixed", 2, 6, 3, 5, 0)
    6
    >>> len({unroll_length("random", 2, 60, s, 10, 0, period=4) for s in range(4)})
    1
    """
    if schedule == "fixed" or window == unroll:
        return int(unroll)
    if schedule == "moving":
        frac = min(step, max(n_steps - 1, 1)) / max(n_steps - 1, 1)
        return int(window + np.floor((unroll - window) * frac + 0.5))
    draw = int(step) // max(int(period), 1)
    return int(np.random.default_rng([int(seed), draw]).integers(window, unroll + 1))


def _split(key):
    """The keys of one meta-step: next state key, network init, inner batches, real batch."""
    return jax.random.split(key, 4)


def window_meta_gradient(config, hyper, synthetic, class_rows, x_real, y_real, carry, inner_key,
                         start):
    """Meta-loss and gradient w.r.t. ``synthetic`` backpropagated through the window only.

    ``carry`` is the inner network and Adam state after ``start`` inner steps (no gradient flows
    into it); the window runs inner steps ``start..start+window-1`` and the real-batch gradient
    of the resulting network is pulled back through them with one vector-Jacobian product.
    """
    inner_lr = hyper["inner_learning_rate"]

    def window_fn(syn):
        tg = label_targets(syn["y"], config.learn_labels)
        (variables, _), _ = run_window(config, inner_lr, syn["x"], tg, class_rows, carry,
                                       inner_key, start)
        return variables

    variables, pullback = jax.vjp(window_fn, synthetic)
    loss, grad_variables = real_loss_and_grad(config, variables, x_real, y_real)
    (grads,) = pullback(grad_variables)
    return loss, grads


def truncated_meta_gradient(config, hyper, synthetic, class_rows, x_real, y_real, init_key,
                            inner_key, n_unroll):
    r"""The meta-loss and its gradient w.r.t. ``synthetic = {"x", "y"}`` for one unroll.

    A network initialised from ``init_key`` trains ``n_unroll`` inner steps (step ``i`` uses
    ``fold_in(inner_key, i)``); the first ``n_unroll - window`` run without gradient, the last
    ``window`` are backpropagated. ``x_real`` (already augmented) and the one-hot ``y_real``
    give the meta-loss. Returns ``(loss, grads)``.
    """
    inner_lr = hyper["inner_learning_rate"]
    carry = init_network(config, init_key, synthetic["x"].shape[1:], inner_lr,
                         synthetic["x"].dtype)
    start = n_unroll - config.window
    targets = label_targets(synthetic["y"], config.learn_labels)
    carry = run_prefix(config, inner_lr, synthetic["x"], targets, class_rows, carry, inner_key,
                       start)
    return window_meta_gradient(config, hyper, synthetic, class_rows, x_real, y_real, carry,
                                inner_key, start)


def _real_batch(config, key, X_real, Y_real, weights):
    """The real batch (drawn with the hardness ``weights``, if any), augmented."""
    batch_key, aug_key = jax.random.split(key)
    transform = None if config.augmentation is None else partial(config.augmentation, aug_key)
    return real_batch(batch_key, X_real, Y_real, config.batch_size, config.placement, p=weights,
                      transform=transform)


def _meta_gradient(state, n_unroll, X_real, Y_real, class_rows, hyper, config, carry=None):
    """Loss and gradient of one meta-step; ``carry`` is the network after a host-run prefix."""
    key, init_key, inner_key, real_key = _split(state["key"])
    x_real, y_real = _real_batch(config, real_key, X_real, Y_real,
                                 state["weights"] if config.hardness else None)
    synthetic = {"x": state["x"], "y": state["y"]}
    if carry is None:
        loss, grads = truncated_meta_gradient(config, hyper, synthetic, class_rows, x_real,
                                              y_real, init_key, inner_key, n_unroll)
    else:
        loss, grads = window_meta_gradient(config, hyper, synthetic, class_rows, x_real, y_real,
                                           carry, inner_key, n_unroll - config.window)
    return loss, grads, key


@partial(jax.jit, static_argnames=("config",))
def meta_gradient(state, n_unroll, X_real, Y_real, class_rows, hyper, config):
    """Meta-loss and gradient of the meta-step ``state`` is at, for unroll length ``n_unroll``."""
    loss, grads, _ = _meta_gradient(state, n_unroll, X_real, Y_real, class_rows, hyper, config)
    return loss, grads


def clip_by_moving_norm(grads, ema):
    r"""Update the moving average of the gradient norm, then clip ``grads`` at twice it.

    With :math:`g` the Euclidean norm of ``grads`` (all leaves together), the average first
    absorbs the current, unclipped norm, :math:`a \leftarrow 0.9\,a + 0.1\,g`, and the gradient
    is then scaled by :math:`\min(1, 2a / (g + 10^{-6}))` (PyTorch's ``clip_grad_norm_``), as
    ``base.py`` (``train``) and ``distill_higher.py`` (``ema_update``) of the official code do.
    ``ema == 0`` means no average yet: it starts at the norm (so the first step is not clipped).
    Returns ``(grads, new_ema, norm)``.

    Examples
    --------
    >>> g, a, n = clip_by_moving_norm(jnp.array([30.0, 40.0]), jnp.asarray(5.0))
    >>> round(float(a), 4), [round(float(v), 4) for v in g]  # a = 0.9 * 5 + 0.1 * 50
    (9.5, [11.4, 15.2])
    """
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    new_ema = jnp.where(ema > 0, _EMA_DECAY * ema + (1.0 - _EMA_DECAY) * norm, norm)
    factor = jnp.minimum(1.0, _CLIP_FACTOR * new_ema / (norm + 1e-6))
    grads = jax.tree.map(lambda g: g * factor.astype(g.dtype), grads)
    return grads, new_ema, norm


def clip_meta_gradient(grads, ema):
    """Clip the image part ``grads["x"]`` of the meta-gradient (:func:`clip_by_moving_norm`).

    The label gradient ``grads["y"]`` is left as it is, as in the official code, and does not
    enter the norm. Returns ``(grads, new_ema)``.
    """
    grad_x, ema, _ = clip_by_moving_norm(grads["x"], ema)
    return {**grads, "x": grad_x}, ema


def _meta_step_impl(state, n_unroll, X_real, Y_real, class_rows, row_scale, hyper, config,
                    carry=None):
    loss, grads, key = _meta_gradient(state, n_unroll, X_real, Y_real, class_rows, hyper, config,
                                      carry)
    if not config.learn_labels:
        grads = {"x": grads["x"], "y": jnp.zeros_like(grads["y"])}
    grads, ema = clip_meta_gradient(grads, state["ema"])
    synthetic = {"x": state["x"], "y": state["y"]}
    updates, opt_state = _outer_optimizer(hyper["learning_rate"]).update(grads, state["opt"],
                                                                          synthetic)
    # Boost-DD: earlier blocks train with their learning rate scaled (0 leaves them unchanged).
    updates = scale_rows(updates, row_scale)
    new = optax.apply_updates(synthetic, updates)
    if config.learn_labels:
        # The learned labels stay non-negative (unnormalised) target weights.
        new = {"x": new["x"], "y": jnp.maximum(new["y"], 0.0)}
    else:
        new = {"x": new["x"], "y": synthetic["y"]}
    ok = state["ok"] & jnp.isfinite(loss) & tree_isfinite(new)
    new, opt_state, ema = select_tree(ok, (new, opt_state, ema),
                                      (synthetic, state["opt"], state["ema"]))
    out = {**state, "x": new["x"], "y": new["y"], "opt": opt_state, "ema": ema,
           "key": jnp.where(ok, key, state["key"]), "ok": ok}
    return out, jnp.where(ok, loss, jnp.nan)


# The whole meta-step, prefix included (a device loop), or -- for the host-driven prefix -- the
# window, the meta-gradient and the update after a prefix run step by step from Python.
_meta_step = jax.jit(_meta_step_impl, static_argnames=("config",), donate_argnums=(0,))


@partial(jax.jit, static_argnames=("config",))
def _start_network(state, hyper, config):
    _, init_key, _, _ = _split(state["key"])
    return init_network(config, init_key, state["x"].shape[1:], hyper["inner_learning_rate"])


@partial(jax.jit, static_argnames=("config",), donate_argnums=(0,))
def _prefix_step(carry, state, i, class_rows, hyper, config):
    """Inner step ``i`` of the no-gradient prefix (for the host-driven loop)."""
    _, _, inner_key, _ = _split(state["key"])
    targets = label_targets(state["y"], config.learn_labels)
    return inner_step(config, hyper["inner_learning_rate"], state["x"], targets, class_rows,
                      carry, jax.random.fold_in(inner_key, i))[0]


def init_state(x_syn, labels, key, n_real=None):
    """The RaT-BPTT state: synthetic set, labels, Adam state, gradient-norm average, key, step."""
    synthetic = {"x": jnp.asarray(x_syn, jnp.float32), "y": jnp.asarray(labels, jnp.float32)}
    state = {"x": synthetic["x"], "y": synthetic["y"],
             "opt": _outer_optimizer(1.0).init(synthetic), "ema": jnp.zeros((), jnp.float32),
             "key": jnp.array(key, copy=True), "ok": jnp.asarray(True)}
    if n_real is not None:
        state["weights"] = jnp.full((n_real,), 1.0 / n_real, jnp.float32)
    return state


# --------------------------------------------------------------------------------------------
# Hardness sampler
# --------------------------------------------------------------------------------------------

def hardness_weights(n_wrong, n_models, floor=0.2):
    r"""Sampling weights of real rows from how many of ``n_models`` networks misclassify them.

    With hardness :math:`h = n_\text{wrong} / n_\text{models} \in [0, 1]` the weight is
    :math:`w(h) = f + (1 - f)\,4h(1 - h)`: 1 at medium hardness, the ``floor`` :math:`f` for rows
    every network gets right (the easiest) or wrong (the hardest, often atypical or mislabelled).
    The weights are normalised to sum to one.

    Examples
    --------
    >>> w = hardness_weights(np.array([0, 1, 2, 3, 4]), 4)
    >>> [round(float(v), 2) for v in w / w.max()]
    [0.2, 0.8, 1.0, 0.8, 0.2]
    """
    h = np.asarray(n_wrong, np.float64) / float(n_models)
    w = floor + (1.0 - floor) * 4.0 * h * (1.0 - h)
    return (w / w.sum()).astype(np.float32)


@partial(jax.jit, static_argnames=("config", "n_models"))
def _init_hardness_networks(key, x_syn, hyper, config, n_models):
    keys = jax.random.split(key, n_models)
    return jax.vmap(lambda k: init_network(config, k, x_syn.shape[1:],
                                           hyper["inner_learning_rate"]))(keys)


@partial(jax.jit, static_argnames=("config",), donate_argnums=(0,))
def _hardness_train_step(carry, keys, x_syn, targets, class_rows, hyper, config):
    def one(c, k):
        return inner_step(config, hyper["inner_learning_rate"], x_syn, targets, class_rows, c, k)[0]

    return jax.vmap(one)(carry, keys)


def misclassification_counts(config, hyper, state, class_rows, X_real, y_real, key, n_models):
    """Train ``n_models`` inner networks on the current synthetic set; count their errors per row.

    Each network trains ``unroll`` inner steps (the longest unroll of the distillation); the
    steps are dispatched from Python, the networks of a step run together under ``vmap``.
    """
    targets = label_targets(state["y"], config.learn_labels)
    init_key, train_key = jax.random.split(key)
    carry = _init_hardness_networks(init_key, state["x"], hyper, config, n_models)
    for i in range(config.unroll):
        keys = jax.random.split(jax.random.fold_in(train_key, i), n_models)
        carry = _hardness_train_step(carry, keys, state["x"], targets, class_rows, hyper, config)
    logits = predict_networks(config.model, carry[0], X_real)
    return np.sum(np.argmax(logits, axis=2) != np.asarray(y_real)[None, :], axis=0)


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------

def _unit_norm_noise(key, n, sample_shape):
    """Gaussian samples, each scaled to unit Euclidean norm."""
    rng = np.random.default_rng(np.asarray(key_data(key)).ravel().tolist())
    eps = rng.standard_normal((n,) + tuple(sample_shape))
    norms = np.sqrt(np.sum(eps.reshape(n, -1) ** 2, axis=1)).reshape((n,) + (1,) * len(sample_shape))
    return (eps / norms).astype(np.float32)


class RaTBPTTDistiller(GradientDistiller):
    r"""Dataset distillation by random truncated backpropagation through time (RaT-BPTT).

    Learns ``ipc`` synthetic samples per class (and optionally their labels) by differentiating
    the loss on real data of a network *trained on them*. Per meta-step:

    1. initialise a fresh network (``model``) and draw an unroll length :math:`N` from the window
       schedule, by default uniformly from :math:`[M, T]` (``window`` :math:`M`, ``unroll``
       :math:`T`);
    2. train it :math:`N` steps with Adam (``inner_learning_rate``) on class-balanced minibatches
       of the synthetic set (``inner_batch_size``), each randomly flipped or rotated;
       the first :math:`N - M` steps run without gradient, the last :math:`M` are recorded (a
       rematerialised :func:`jax.lax.scan`), and the network and its Adam state carry over;
    3. compute the cross-entropy of the trained network on an augmented batch of
       ``batch_size`` real rows and backpropagate it through the :math:`M` recorded steps to
       the synthetic images (and labels with ``learn_labels``);
    4. clip the image meta-gradient at twice a moving average (decay 0.9) of its norm and take
       an Adam step (``learning_rate``) on the synthetic set.

    Parameters
    ----------
    ipc : int, default=1
        Synthetic samples per class.
    n_steps : int, default=1000
        Meta-steps. The paper runs tens of thousands on GPUs.
    learning_rate : float, default=1e-3
        Adam learning rate of the synthetic images (and labels).
    batch_size : int, default=256
        Real rows per meta-step, drawn without replacement (capped at the data size).
    window : int, default=20
        :math:`M`, the inner steps backpropagated through; memory grows with it.
    unroll : int, default=60
        :math:`T`, the longest unroll. Must be at least ``window``.
    schedule : {"random", "fixed", "moving"}, default="random"
        Where the window ends: ``"random"``, :math:`N \sim U\{M, \dots, T\}` every meta-step
        (RaT-BPTT); ``"fixed"``, always :math:`N = T` (plain truncated BPTT); ``"moving"``,
        :math:`N` grows linearly from :math:`M` to :math:`T` over the run.
    unroll_draw : {"step", "epoch"}, default="step"
        How often ``schedule="random"`` draws a new :math:`N`: every meta-step (the paper's
        Algorithm 1), or once per epoch of the real data, i.e. every
        ``ceil(n_samples / batch_size)`` meta-steps (the official code's ``--cctype 2`` without
        ``--complete_random``).
    inner_learning_rate : float, default=1e-3
        Adam learning rate of the inner network.
    inner_batch_size : int or None, default=None
        Synthetic rows per inner step, split equally over the classes of the step (at least one
        per class); ``None``: every row of those classes.
    n_classes_per_step : int or None, default=None
        Classes drawn (uniformly, without replacement) for each inner step; the minibatch holds
        rows of those classes only, the targets keep every class. ``None``: every class. The
        official code's ``--task_sampler_nc`` (50 of 200 for Tiny ImageNet in its README).
    learn_labels : bool, default=False
        Learn the labels along with the images. They start one-hot and are the target weights
        of the inner cross-entropy, :math:`-\sum_k y_k \log p_k`, without normalisation; they
        are clipped at zero after every meta-step, so they stay non-negative (the paper's
        appendix C: "labels retain their positive real value").
    augment : {"auto", "none"}, ImageAugmentation or None, default="auto"
        Differentiable augmentation of the synthetic minibatches and of the real batch.
        ``"auto"``: the official ``flip_rotate``, one of the two operations for the whole batch
        (each inner step's minibatch, each meta-step's real batch), each image drawing its own
        flip (probability 1/2) or angle (uniform within 15 degrees either way), grey images
        included; ``"none"`` / ``None``: none. Tabular data is never augmented.
    init : {"noise", "real", "real+noise"}, default="noise"
        Initial synthetic set: Gaussian noise with each sample scaled to unit norm (the paper's),
        random real rows of each class, or real rows plus a little noise.
    model : flax.linen.Module or None, default=None
        The inner network. ``None``: the official ConvNet, ``ConvNet(width=128, depth=3,
        norm="instance", weight_init="pytorch", norm_epsilon=1e-5)`` (depth 4 from 64 pixels),
        or ``MLP(hidden_sizes=(256, 256), weight_init="pytorch")`` for tabular rows. Any
        network of :mod:`sklearn_distill.networks` works (batch norm uses batch statistics while
        training and its running averages in the meta-loss).
    network_precision : {"auto", "float32", "tf32", "bfloat16", "float64"}, default="auto"
        Precision of the inner network's convolutions and dense layers, forward and backward:
        the unrolled inner training, the real-batch loss and the hardness networks (see
        :mod:`sklearn_distill._precision`). The parameters, the Adam states and the loss
        reductions stay float32; :meth:`score`'s evaluation networks are not affected.
        ``"auto"``: ``"float32"`` on the CPU, ``"tf32"`` on accelerators; as for
        :class:`~sklearn_distill.FRePoDistiller`.
    rematerialize : bool, default=True
        Wrap each recorded inner step in :func:`jax.checkpoint`: the backward pass recomputes
        the activations instead of storing them for all :math:`M` steps. Same gradient.
    prefix_loop : {"auto", "device", "host"}, default="auto"
        How the :math:`N - M` inner steps without gradient run: ``"device"``, a
        :func:`jax.lax.fori_loop` inside the one jitted meta-step; ``"host"``, a Python loop over
        one jitted inner step, then the jitted window and update. ``"auto"``: the ``host_loops``
        backend decision (``sklearn_distill._backend``), ``"host"`` on the CPU backend, where XLA
        runs convolutions inside loops 3 to 12 times slower than the same step dispatched from
        Python (measured on this project's ConvNets), ``"device"`` elsewhere.
    real_chunk_size : int, default=1024
        The gradient of the real-batch loss is accumulated over chunks of at most this many rows.
    hardness_sampling : bool, default=False
        Draw the real batch with weights that favour rows of medium hardness
        (:func:`hardness_weights`): every ``hardness_every`` meta-steps, ``hardness_models``
        networks are trained on the current synthetic set and each real row's hardness is the
        fraction of them that misclassify it.
    hardness_models : int, default=4
    hardness_every : int, default=200
    image_shape : tuple or None, default=None
        ``(H, W, C)`` when images are given as 2-D rows.
    n_eval_models : int, default=5
        Networks trained from scratch by :meth:`score`.
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
        Evaluation network; ``None``: ``model`` without normalisation layers (the project's
        protocol; the paper evaluates with the instance-norm network itself, pass it here to
        reproduce that).
    eval_protocol : str or EvalProtocol, default="ratbptt"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is RaT-BPTT's own evaluation (its ``test``).
    checkpoint : str, path-like or None, default=None
        File to save the full state to (synthetic set, labels, optimiser state, step, PRNG key,
        hardness weights); ``fit`` resumes from it when it was written with the same parameters
        and data, and raises a ``ValueError`` otherwise.
    checkpoint_every : int, default=500
    log_every : int, default=50
        Meta-steps between reads of the loss (progress bar, ``history_``, divergence check).
    devices : int, list of jax.Device or None, default=None
        ``None``: the default device. An int ``k`` (the first ``k`` devices) or a list of devices:
        the real batch is sharded over them (the synthetic set and networks are replicated);
        ``batch_size`` and ``real_chunk_size`` are rounded down to multiples of their number.
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    synthetic_X_, synthetic_y_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.
    synthetic_y_soft_ : ndarray of shape (n_synthetic, n_classes) or None
        The learned labels (``learn_labels=True``), else ``None``: non-negative, unnormalised
        target weights, so :meth:`score`, :class:`~sklearn_distill.DistilledClassifier` and the
        class-incremental evaluation all train on them with cross-entropy against the rows as
        they are (the package's rule, :func:`~sklearn_distill._labels.loss_for_labels`).
    n_iter_ : int
    history_ : dict of list
        ``"step"``, ``"time"``, ``"loss"`` (mean real-batch cross-entropy since the last log).
    stop_reason_ : {"done", "interrupted", "diverged"}
    unroll_lengths_ : ndarray of int
        The unroll length :math:`N` of each meta-step of this fit.
    hardness_counts_ : ndarray of int of shape (n_samples,)
        With ``hardness_sampling``: how many of the ``hardness_models`` networks of the last
        refresh misclassified each training row.
    hardness_weights_ : ndarray of shape (n_samples,)
        With ``hardness_sampling``: the sampling weights of the last refresh.

    See Also
    --------
    BoostedDistiller : grow a RaT-BPTT set block by block (Boost-DD).

    References
    ----------
    .. [1] Y. Feng, R. Vedantam and J. Kempe, "Embarrassingly Simple Dataset Distillation",
       ICLR 2024. https://arxiv.org/abs/2311.07025

    Examples
    --------
    >>> from sklearn_distill import ConvNet, RaTBPTTDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> rat = RaTBPTTDistiller(ipc=1, n_steps=5, window=2, unroll=4, batch_size=64,
    ...                        model=ConvNet(width=8, depth=2, norm="instance"), random_state=0)
    >>> X_syn, y_syn = rat.fit_resample(X, y)
    >>> X_syn.shape, y_syn[:3].tolist()
    ((10, 8, 8, 1), [0, 1, 2])
    """

    _parameter_constraints = {
        **GradientDistiller._parameter_constraints,
        "window": [Interval(Integral, 1, None, closed="left")],
        "unroll": [Interval(Integral, 1, None, closed="left")],
        "schedule": [StrOptions({"random", "fixed", "moving"})],
        "unroll_draw": [StrOptions({"step", "epoch"})],
        "inner_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "inner_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_classes_per_step": [Interval(Integral, 1, None, closed="left"), None],
        "augment": [StrOptions({"auto", "none"}), HasMethods(["sample_params", "apply"]), None],
        "rematerialize": ["boolean"],
        "prefix_loop": [StrOptions({"auto", "device", "host"})],
        "real_chunk_size": [Interval(Integral, 1, None, closed="left")],
        "hardness_sampling": ["boolean"],
        "hardness_models": [Interval(Integral, 1, None, closed="left")],
        "hardness_every": [Interval(Integral, 1, None, closed="left")],
        "network_precision": NETWORK_PRECISION_CONSTRAINT,
    }

    def __init__(self, ipc=1, *, n_steps=1000, learning_rate=1e-3, batch_size=256, window=20,
                 unroll=60, schedule="random", unroll_draw="step", inner_learning_rate=1e-3,
                 inner_batch_size=None, n_classes_per_step=None, learn_labels=False,
                 augment="auto", init="noise", model=None, network_precision="auto",
                 rematerialize=True,
                 prefix_loop="auto", real_chunk_size=1024, hardness_sampling=False, hardness_models=4,
                 hardness_every=200, image_shape=None, n_eval_models=5, eval_steps="auto",
                 eval_model=None, checkpoint=None, checkpoint_every=500, log_every=50, devices=None,
                 eval_protocol="ratbptt",
                 verbose=0, random_state=None):
        self.ipc = ipc
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.window = window
        self.unroll = unroll
        self.schedule = schedule
        self.unroll_draw = unroll_draw
        self.inner_learning_rate = inner_learning_rate
        self.inner_batch_size = inner_batch_size
        self.n_classes_per_step = n_classes_per_step
        self.learn_labels = learn_labels
        self.augment = augment
        self.init = init
        self.model = model
        self.network_precision = network_precision
        self.rematerialize = rematerialize
        self.prefix_loop = prefix_loop
        self.real_chunk_size = real_chunk_size
        self.hardness_sampling = hardness_sampling
        self.hardness_models = hardness_models
        self.hardness_every = hardness_every
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.eval_protocol = eval_protocol
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    # -- the hooks of GradientDistiller ---------------------------------------------------------

    _method_name = "RaT-BPTT"
    _resolved_parameters = ("network_precision",)
    # How the prefix runs and the real batch is chunked never changes the synthetic set.
    _checkpoint_exclude = frozenset({"rematerialize", "prefix_loop", "real_chunk_size"})

    def _default_model(self, sample_shape):
        # The official ConvNet: PyTorch's default initialisation, GroupNorm's epsilon (1e-5).
        return default_network(sample_shape, norm="instance", weight_init="pytorch",
                               norm_epsilon=1e-5)

    def _augmentation(self, sample_shape):
        if len(sample_shape) == 1 or self.augment is None or self.augment == "none":
            return None
        if self.augment == "auto":
            # The official flip_rotate: one of the two operations per batch (grey images too).
            return ImageAugmentation(flip=True, crop=False, scale=False, rotate=True,
                                     colour=False, cutout=False, rotate_degrees=15.0,
                                     mode="one_per_batch")
        return self.augment

    def _check_data(self, X, y, n_synthetic):
        if self.window > self.unroll:
            raise ValueError(f"`window`={self.window} must not exceed `unroll`={self.unroll}: the "
                             f"backpropagated window is the end of an unroll of at most `unroll` "
                             f"inner steps.")
        n_classes = len(self.classes_)
        if self.n_classes_per_step is not None and self.n_classes_per_step > n_classes:
            raise ValueError(f"`n_classes_per_step`={self.n_classes_per_step} exceeds the "
                             f"{n_classes} classes of `y`.")

    def _initial_labels(self, y, n_classes):
        # One-hot rows, learned or not: learned ones are the cross-entropy's target weights.
        return np.eye(n_classes, dtype=np.float32)[y]

    def _initial_set(self, key, X, y, n_classes):
        if self.init == "noise":
            x = _unit_norm_noise(key, n_classes * self.ipc, X.shape[1:])
            return x, np.repeat(np.arange(n_classes, dtype=np.int32), self.ipc)
        return init_synthetic(key, X, y, n_classes, self.ipc, self.init)

    def _warm_labels(self, warm_start, n_classes):
        """Label state of the earlier rows: their soft labels as they are, or the initial ones."""
        y_old = np.asarray(warm_start.y)
        if warm_start.soft_labels is None:
            return self._initial_labels(y_old, n_classes)
        p = np.asarray(warm_start.soft_labels, np.float64)
        if p.shape != (len(y_old), n_classes) or not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError(f"The earlier synthetic rows' soft labels must be non-negative label "
                             f"weights of shape ({len(y_old)}, {n_classes}), as RaT-BPTT learns "
                             f"them; got shape {p.shape} with smallest entry {np.min(p):.3g}.")
        return p.astype(np.float32)

    def _start(self, X, y, model, synthetic, placement, keys):
        n_classes = len(self.classes_)
        # Rows of each class (equal counts: every block is class-balanced).
        counts = np.bincount(synthetic.y, minlength=n_classes)
        if np.any(counts != counts[0]):
            raise ValueError(f"The synthetic set must hold equally many rows of every class for "
                             f"class-balanced inner batches; got {counts.tolist()}.")
        class_rows = np.stack([np.flatnonzero(synthetic.y == c)
                               for c in range(n_classes)]).astype(np.int32)
        step_classes = (n_classes if self.n_classes_per_step is None
                        else int(self.n_classes_per_step))
        per_class = (counts[0] if self.inner_batch_size is None
                     else int(np.clip(self.inner_batch_size // step_classes, 1, counts[0])))
        batch_size = placement.batch_size(self.batch_size, len(X))
        network_precision = resolve_network_precision(self.network_precision)
        config = _Config(model=with_network_precision(model, network_precision),
                         window=int(self.window), unroll=int(self.unroll),
                         schedule=self.schedule, per_class=int(per_class), batch_size=batch_size,
                         chunk_size=placement.batch_size(self.real_chunk_size, batch_size,
                                                         "real_chunk_size"),
                         augmentation=self._augmentation(tuple(X.shape[1:])),
                         learn_labels=bool(self.learn_labels), remat=bool(self.rematerialize),
                         hardness=bool(self.hardness_sampling), placement=placement,
                         network_precision=network_precision,
                         step_classes=0 if step_classes == n_classes else step_classes)
        hyper = hyperparameters(self.n_steps, self.learning_rate, self.inner_learning_rate)
        loop_key, hard_key = keys
        state = init_state(synthetic.x, synthetic.labels, loop_key,
                           len(X) if config.hardness else None)
        # The real data goes to the device(s) once; batches are gathered there.
        X_real, Y_real, class_rows, row_scale, hyper = placement.put(
            (np.asarray(X, np.float32), np.eye(n_classes, dtype=np.float32)[y], class_rows,
             synthetic.row_scale, hyper))
        return state, {"config": config, "hyper": hyper, "X": X, "y": y, "X_real": X_real,
                       "Y_real": Y_real, "class_rows": class_rows, "row_scale": row_scale,
                       "hard_key": hard_key, "lengths": [],
                       "seed": int(np.asarray(key_data(loop_key)).ravel()[-1])}

    def _step_function(self, run, start_step):
        config, hyper, class_rows = run["config"], run["hyper"], run["class_rows"]
        X_real, Y_real, row_scale = run["X_real"], run["Y_real"], run["row_scale"]
        # "auto": the host_loops backend decision (see the prefix_loop parameter for the reason).
        host_prefix = (self.prefix_loop == "host"
                       or (self.prefix_loop == "auto" and _backend.host_loops()))
        counter = [start_step]
        # "epoch": one N per pass over the real data, as many meta-steps as its batches.
        period = (1 if self.unroll_draw == "step"
                  else max(1, -(-len(run["X"]) // config.batch_size)))

        def step_fn(s):
            step = counter[0]
            if config.hardness and step % self.hardness_every == 0:
                wrong = misclassification_counts(
                    config, hyper, s, class_rows, run["X"], run["y"],
                    jax.random.fold_in(run["hard_key"], step), int(self.hardness_models))
                self.hardness_counts_ = wrong
                self.hardness_weights_ = hardness_weights(wrong, self.hardness_models)
                s = {**s, "weights": jnp.asarray(self.hardness_weights_)}
            n_unroll = unroll_length(config.schedule, config.window, config.unroll, step,
                                     int(self.n_steps), run["seed"], period)
            run["lengths"].append(n_unroll)
            n_arg = jnp.asarray(n_unroll, jnp.int32)
            if host_prefix:
                carry = _start_network(s, hyper, config)
                for i in range(n_unroll - config.window):
                    carry = _prefix_step(carry, s, i, class_rows, hyper, config)
                s, loss = _meta_step(s, n_arg, X_real, Y_real, class_rows, row_scale, hyper,
                                     config, carry)
            else:
                s, loss = _meta_step(s, n_arg, X_real, Y_real, class_rows, row_scale, hyper,
                                     config)
            counter[0] += 1
            return s, loss

        return step_fn

    def _block_function(self, run, start_step, k):
        # k meta-steps per dispatch only when the whole meta-step runs on the device: the host
        # prefix and the hardness sampler run host code between meta-steps.
        config = run["config"]
        if config.hardness or self.prefix_loop == "host" or (
                self.prefix_loop == "auto" and _backend.host_loops()):
            return None
        operands = (run["X_real"], run["Y_real"], run["class_rows"], run["row_scale"],
                    run["hyper"])
        counter = [start_step]

        def block(s, n):
            lengths = np.zeros(k, np.int32)
            lengths[:n] = [unroll_length(config.schedule, config.window, config.unroll,
                                         counter[0] + i, int(self.n_steps), run["seed"])
                           for i in range(n)]
            run["lengths"].extend(lengths[:n].tolist())
            counter[0] += n
            return run_steps(s, n, operands, step=_meta_step, config=config, k=k,
                             per_step=(jnp.asarray(lengths),))

        return block

    def _finish(self, result, run, synthetic):
        self.unroll_lengths_ = np.asarray(run["lengths"], dtype=np.int64)
        final = jax.device_get({"x": result.state["x"], "y": result.state["y"]})
        soft = None
        if self.learn_labels:
            soft = np.array(final["y"], np.float32)  # non-negative, unnormalised
            warm = synthetic.warm_start
            if warm is not None and warm.soft_labels is not None and warm.learning_rate_scale == 0:
                # The earlier rows' labels exactly unchanged.
                soft[:synthetic.n_earlier] = np.asarray(warm.soft_labels, np.float32)
        return DistillationResult(X=np.asarray(final["x"], np.float32), y=synthetic.y,
                                  soft_labels=soft, n_iter=result.step, history=result.history)
