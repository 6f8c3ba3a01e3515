r"""FRePo: dataset distillation by neural feature regression with a model pool.

Zhou, Nezhadarya & Ba, "Dataset Distillation using Neural Feature Regression", NeurIPS 2022
(https://arxiv.org/abs/2206.00719).

Each meta-step draws a network :math:`\theta` from a pool of online-trained networks, computes the
features :math:`F_s = f_\theta(X_s)` of the synthetic set and :math:`F_t = f_\theta(X_t)` of a
batch of real data, fits kernel ridge regression with the *conjugate kernel*
:math:`K_{ab} = F_a F_b^\top` on the synthetic set and scores it on the real batch:

.. math::

    \mathcal{L}(X_s, Y_s) = \frac{1}{2 n_t}
        \bigl\lVert Y_t - K_{ts} (K_{ss} + \lambda I)^{-1} Y_s \bigr\rVert_F^2
        + \mathcal{R}(Y_s),
    \qquad \lambda = \lambda_0 \frac{\operatorname{tr} K_{ss}}{n_s},

with centred one-hot real targets :math:`Y_t` and the label-margin regulariser
:math:`\mathcal{R}` (:func:`sklearn_distill._training.label_margin_loss`). Only the last layer is
solved in closed form, so the meta-gradient needs no unrolled inner loop. The synthetic images and
labels take one LAMB step on it; then the sampled network takes one Adam step on the synthetic set
(or is re-initialised after ``max_online_steps`` such steps, see :mod:`sklearn_distill._pool`).
"""

from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _backend, _pool
from .._precision import resolve_network_precision, with_network_precision
from .._sharding import DataParallel
from .._training import (centred_one_hot, init_labels, label_margin_loss, real_batch,
                         resolve_flip, scale_rows, select_tree, tree_isfinite)
from ..augment import flip_images
from ..base import DistillationResult
from ..kernels import feature_regression_loss
from ..networks import default_network, features
from .gradient import NETWORK_PRECISION_CONSTRAINT, PRECISION_CONSTRAINT, GradientDistiller

__all__ = ["FRePoDistiller"]

# Rows of the synthetic set per online step of a pool member (the official code's cap).
_ONLINE_BATCH = 1000
# Synthetic rows per rematerialised feature chunk (twice as many support points with flips),
# under the `remat_features` backend decision.
_FEATURE_CHUNK = 256


class _Config(NamedTuple):
    """Static configuration of the jitted meta-step (hashable: it is a jit static argument).

    Only what changes shapes or the traced program is static; the numeric hyperparameters travel
    as traced scalars (:func:`hyperparameters`), so fits that differ only in them (a grid search
    over ``max_online_steps``, say) share one compilation.
    """

    model: Any
    batch_size: int
    learn_labels: bool
    flip: bool
    precision: str
    placement: DataParallel
    # The resolved network_precision; ``model`` is then the network under it
    # (sklearn_distill._precision.with_network_precision). None: the network as given.
    network_precision: Optional[str] = None
    # Rows of the synthetic set whose features are computed per rematerialised chunk (0: all at
    # once); see `synthetic_features`.
    feature_chunk: int = 0
    solver: str = "auto"
    # Whether the jitted step donates its input state (the `donate_state` backend decision).
    donate_state: bool = True


def hyperparameters(n_steps, learning_rate, ridge, max_online_steps, online_learning_rate):
    """The traced hyperparameters of the meta-step, as a dict of scalar arrays."""
    return {"n_steps": jnp.asarray(n_steps, jnp.int32),
            "learning_rate": jnp.asarray(learning_rate, jnp.float32),
            "ridge": jnp.asarray(ridge, jnp.float32),
            "max_online_steps": jnp.asarray(max_online_steps, jnp.int32),
            "online_learning_rate": jnp.asarray(online_learning_rate, jnp.float32)}


def _lamb(hyper):
    """LAMB with cosine decay to a tenth of the initial rate over ``n_steps``, no warm-up."""
    total = jnp.maximum(hyper["n_steps"], 1).astype(jnp.float32)
    rate = hyper["learning_rate"]

    def schedule(count):
        progress = jnp.minimum(count.astype(jnp.float32), total) / total
        return rate * (0.1 + 0.9 * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))

    return optax.lamb(schedule)


def meta_loss(synthetic, variables, x_real, y_real, config, ridge):
    r"""FRePo's meta-loss of the synthetic set ``{"x", "y"}`` under one network.

    Returns ``(total, kernel_loss)``: the KRR loss plus the label-margin term, and the KRR loss
    alone. The real features carry no gradient.
    """
    x, y = synthetic["x"], synthetic["y"]
    margin = label_margin_loss(y) if config.learn_labels else 0.0
    if not config.learn_labels:
        y = jax.lax.stop_gradient(y)
    if config.flip:
        # The mirrored copies enter the regression as extra support points with the same labels.
        y = jnp.concatenate([y, y])
    # Inference mode: batch norm uses the running statistics of the member's online training,
    # and no statistics are taken from the real or the synthetic batch.
    feat_t = jax.lax.stop_gradient(features(config.model, variables, x_real))
    feat_s = synthetic_features(config.model, variables, x, config.flip, config.feature_chunk)
    # "auto" solves in primal form when the synthetic set outnumbers the features: the dual Gram
    # matrix is then rank-deficient and its float32 Cholesky fails under the tiny ridge.
    kernel_loss = feature_regression_loss(feat_t, y_real, feat_s, y, ridge, solver=config.solver,
                                          precision=config.precision)
    return kernel_loss + margin, kernel_loss


def synthetic_features(model, variables, x, flip, chunk=0):
    """Features of the synthetic images ``x`` (then of their mirror images with ``flip``).

    Returns an array of shape ``(n, d)``, or ``(2 n, d)`` with ``flip`` (the ``n`` mirrored rows
    after the ``n`` original ones). With ``chunk > 0`` the rows are processed ``chunk`` at a time
    in a ``lax.map`` whose body is rematerialised (``jax.checkpoint``): the backward pass keeps
    only each chunk's input and recomputes its activations, so the activation memory of the
    meta-gradient is that of one chunk instead of the whole (doubled) set, at the price of a
    second forward pass. The mirrored copies exist one chunk at a time. Features are computed
    row by row (inference mode), so the result is the unchunked one up to float32 rounding.
    """
    n = x.shape[0]
    if chunk <= 0 or chunk >= n:
        return features(model, variables, jnp.concatenate([x, flip_images(x)]) if flip else x)

    @jax.checkpoint
    def block(rows):
        if flip:
            rows = jnp.concatenate([rows, flip_images(rows)])
        return features(model, variables, rows)

    n_chunks = -(-n // chunk)
    chunk = -(-n // n_chunks)  # the same number of chunks, as little padding as possible
    padded = jnp.pad(x, [(0, n_chunks * chunk - n)] + [(0, 0)] * (x.ndim - 1))
    out = jax.lax.map(block, padded.reshape((n_chunks, chunk) + x.shape[1:]))
    if not flip:
        return out.reshape((n_chunks * chunk, -1))[:n]
    out = out.reshape((n_chunks, 2, chunk, -1)).swapaxes(0, 1).reshape((2, n_chunks * chunk, -1))
    return out[:, :n].reshape((2 * n, -1))


def _meta_gradient(state, X_real, Y_real, hyper, config):
    """Meta-loss, its gradient, the member index and the keys of one step (no update)."""
    key, batch_key, index_key, online_key = jax.random.split(state["key"], 4)
    index = _pool.sample_index(index_key, state["pool"].steps.shape[0])
    variables = _pool.get_member(state["pool"].variables, index)
    x_real, y_real = real_batch(batch_key, X_real, Y_real, config.batch_size, config.placement)
    synthetic = {"x": state["x"], "y": state["y"]}
    (loss, _), grads = jax.value_and_grad(meta_loss, has_aux=True)(
        synthetic, variables, x_real, y_real, config, hyper["ridge"])
    return loss, grads, index, key, online_key


@partial(jax.jit, static_argnames=("config",))
def meta_gradient(state, X_real, Y_real, hyper, config):
    """The meta-loss and its gradient with respect to ``{"x", "y"}`` for the step ``state`` is at."""
    loss, grads, *_ = _meta_gradient(state, X_real, Y_real, hyper, config)
    return loss, grads


def _meta_step_impl(state, X_real, Y_real, hyper, config):
    loss, grads, index, key, online_key = _meta_gradient(state, X_real, Y_real, hyper, config)
    synthetic = {"x": state["x"], "y": state["y"]}
    updates, opt_state = _lamb(hyper).update(grads, state["opt"], synthetic)
    if "row_scale" in hyper:
        # Earlier blocks of a boosted set train at a scaled rate (0: frozen exactly).
        updates = scale_rows(updates, hyper["row_scale"])
    new = optax.apply_updates(synthetic, updates)
    if not config.learn_labels:
        new = {"x": new["x"], "y": synthetic["y"]}
    ok = state["ok"] & jnp.isfinite(loss) & tree_isfinite(new)
    new, opt_state = select_tree(ok, (new, opt_state), (synthetic, state["opt"]))
    n_syn = new["x"].shape[0]
    pool = _pool.online_update(
        state["pool"], index, online_key, new["x"], new["y"], model=config.model,
        optimizer=_pool.pool_optimizer(hyper["online_learning_rate"]),
        # The official code replaces a member once its counter *exceeds* K: K + 1 updates a life.
        max_online_steps=hyper["max_online_steps"] + 1,
        batch_size=_ONLINE_BATCH if n_syn > _ONLINE_BATCH else None, keep=ok)
    state = {"x": new["x"], "y": new["y"], "opt": opt_state, "pool": pool,
             "key": jnp.where(ok, key, state["key"]), "ok": ok}
    return state, jnp.where(ok, loss, jnp.nan)


class _MetaStep:
    """The jitted meta-step, ``(state, X_real, Y_real, hyper, config) -> (state, loss)``.

    With ``config.donate_state`` the state is donated, so that the pool member is updated in place
    instead of the whole pool being copied every step; without it (the CPU default of the
    ``donate_state`` backend decision, where that program was measured faster) the same program
    is compiled without donation. Both give the same states.
    """

    def __init__(self):
        self.donated = jax.jit(_meta_step_impl, static_argnames=("config",), donate_argnums=(0,))
        self.kept = jax.jit(_meta_step_impl, static_argnames=("config",))

    def _jitted(self, config):
        return self.donated if config.donate_state else self.kept

    def __call__(self, state, X_real, Y_real, hyper, config):
        return self._jitted(config)(state, X_real, Y_real, hyper, config)

    def lower(self, state, X_real, Y_real, hyper, config):
        return self._jitted(config).lower(state, X_real, Y_real, hyper, config)


_meta_step = _MetaStep()


class FRePoDistiller(GradientDistiller):
    r"""Dataset distillation by neural feature regression with a model pool (FRePo).

    Learns ``ipc`` synthetic samples per class, and their labels, such that kernel ridge
    regression on the features of a network trained for a while (the conjugate kernel of its
    penultimate layer) predicts real data well. Per meta-step:

    1. draw a network :math:`\theta` uniformly from a pool of ``pool_size`` online-trained ones
       and a batch :math:`(X_t, Y_t)` of ``batch_size`` real rows (centred one-hot targets);
    2. compute the loss, with :math:`F = f_\theta(\cdot)` the penultimate activations,

       .. math::

           \mathcal{L}(X_s, Y_s) = \frac{1}{2 n_t}
               \bigl\lVert Y_t - F_t F_s^\top
               \bigl(F_s F_s^\top + \lambda_0 \tfrac{\operatorname{tr}(F_s F_s^\top)}{n_s} I
               \bigr)^{-1} Y_s \bigr\rVert_F^2
               - \frac{1}{n_s} \sum_i \min\bigl(y_{i,(1)} - y_{i,(2)}, \tfrac1C\bigr),

       where the second term (only with ``learn_labels``) keeps a margin of :math:`1/C` between
       the two largest entries of each learned label; for RGB images the horizontally flipped
       synthetic images join the regression as extra support points (``flip``);
    3. take one LAMB step (cosine decay from ``learning_rate`` to a tenth of it over
       ``n_steps``) on the synthetic images and labels;
    4. train :math:`\theta` one Adam step (``online_learning_rate``) on the updated synthetic
       set and labels, or re-initialise it if it has taken ``max_online_steps`` such steps.

    The network is used in inference mode in the meta-loss (batch norm with the running
    statistics of its online training); the synthetic set is evaluated with the same family
    without normalisation (:meth:`score`). Data should be preprocessed as in the paper: per-channel
    standardisation for MNIST-like data, standardisation then ZCA whitening for RGB images
    (:class:`~sklearn_distill.ImageStandardizer`, :class:`~sklearn_distill.ZCAWhitening`).

    Parameters
    ----------
    ipc : int, default=1
        Synthetic samples per class.
    n_steps : int, default=1000
        Meta-steps (the length of the cosine schedule). The paper trains for up to several
        hundred thousand steps on GPUs; a few thousand already beat the coreset baselines.
    learning_rate : float, default=3e-4
        Initial LAMB learning rate of the synthetic images and labels.
    batch_size : int, default=1024
        Real rows per meta-step, drawn without replacement (capped at the data size; with several
        ``devices`` rounded down to a multiple of their number).
    learn_labels : bool, default=True
        Learn the labels along with the images. They start as centred one-hot vectors divided by
        :math:`\sqrt{C/10}`.
    flip : {"auto"} or bool, default="auto"
        Add horizontally flipped copies of the synthetic images to the regression. ``"auto"``:
        on for RGB (3-channel) images, off otherwise (and always off for tabular data), except
        where the official code turns it off (``script/distill.py:147-189`` of
        yongchao97/FRePo at 9b98c65): CIFAR-100-shaped data (32 x 32 x 3, 100 classes) from
        ipc 10, Tiny-ImageNet-shaped data (64 x 64 x 3, 200 classes) from ipc 10 and ImageNet
        64 x 64 (1000 classes); see :func:`sklearn_distill._training.resolve_flip`.
    init : {"real", "noise", "real+noise"}, default="real"
        Initial synthetic set: random real rows of each class, Gaussian noise with the data's
        per-feature mean and deviation, or real rows plus 0.1 of that noise.
    model : flax.linen.Module or None, default=None
        The network whose features define the kernel (its ``num_classes`` is set from the data).
        ``None``: FRePo's official layout, ``ConvNet(width=128, depth=3, norm="batch",
        width_doubling=True, norm_position="before", norm_momentum=0.1)`` for images (depth 4
        from 64 pixels), ``MLP(hidden_sizes=(256, 256))`` for tabular rows.
    pool_size : int, default=10
        Networks in the model pool (:math:`m`).
    max_online_steps : int, default=100
        A pool member is re-initialised once it has taken more than :math:`K` online updates
        (:math:`K + 1` per life, as in the official code).
    online_learning_rate : float, default=3e-4
        Adam learning rate of the pool members' online training.
    ridge : float, default=1e-6
        Relative ridge :math:`\lambda_0`; the regulariser is :math:`\lambda_0 \operatorname{tr}
        (K_{ss}) / n_s`.
    precision : {"highest", "high", "default"}, default="highest"
        Matmul precision of the Gram matrices and the solve (matters on GPUs/TPUs only).
    network_precision : {"auto", "float32", "tf32", "bfloat16", "float64"}, default="auto"
        Precision of the network's convolutions and dense layers, forward and backward, in the
        meta-loss and the pool's online training (:mod:`sklearn_distill._precision`):
        float32 with full-precision matmuls, TensorFloat-32 matmuls (GPUs; on the CPU the same
        as float32), bfloat16 compute with float32 parameters, or float64 (only with
        ``jax_enable_x64``, for tests). The Gram matrices, the solve and the loss stay float32 at
        ``precision``; :meth:`score`'s evaluation networks are not affected. ``"auto"``:
        ``"float32"`` on the CPU (where bfloat16 measured 1.2x slower per meta-step), ``"tf32"`` on
        accelerators (pending a GPU measurement).
    image_shape : tuple or None, default=None
        ``(H, W, C)`` when images are given as 2-D rows.
    n_eval_models : int, default=5
        Networks trained from scratch by :meth:`score`.
    eval_steps : int or "auto", default="auto"
        Training steps of each evaluation network.
    eval_model : flax.linen.Module or None, default=None
        Evaluation network; ``None``: ``model`` without normalisation layers (the protocol).
    eval_protocol : str or EvalProtocol, default="frepo"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is FRePo's own evaluation (``script/eval.py``).
    checkpoint : str, path-like or None, default=None
        File to save the full state to (synthetic set, labels, optimiser states, model pool, step,
        PRNG key; an ``.npz`` without pickle). When the file exists, ``fit`` resumes from it if it
        was written with the same parameters and data, and raises a ``ValueError`` otherwise.
    checkpoint_every : int, default=1000
        Steps between checkpoints (one is also written when the run ends or is interrupted).
    log_every : int, default=100
        Steps between reads of the loss: the progress bar, ``history_`` and the divergence check
        are updated then; in between the device runs ahead of the host.
    devices : int, list of jax.Device or None, default=None
        ``None``: the default device. An int ``k`` (the first ``k`` devices) or a list of devices:
        the real batch is sharded over them (the synthetic set and networks are replicated).
    verbose : int, default=0
        ``> 0`` shows a progress bar with the meta-loss.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial synthetic set, the pool, the batches and the evaluation.

    Attributes
    ----------
    synthetic_X_, synthetic_y_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.
    synthetic_y_soft_ : ndarray of shape (n_synthetic, n_classes)
        The learned labels (the initial ones when ``learn_labels=False``); :meth:`score` trains
        on them with a squared loss.
    n_iter_ : int
        Meta-steps taken (fewer than ``n_steps`` if the run was interrupted or diverged).
    history_ : dict of list
        Per logged step: ``"step"``, ``"time"`` (seconds) and ``"loss"`` (mean meta-loss since
        the previous log).
    stop_reason_ : {"done", "interrupted", "diverged"}
    flip_ : bool
        Whether flipped copies were used (``flip`` resolved).

    See Also
    --------
    sklearn_distill.kernels.feature_regression_loss : the KRR meta-loss.

    References
    ----------
    .. [1] Y. Zhou, E. Nezhadarya and J. Ba, "Dataset Distillation using Neural Feature
       Regression", NeurIPS 2022. https://arxiv.org/abs/2206.00719

    Examples
    --------
    >>> from sklearn_distill import ConvNet, FRePoDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> frepo = FRePoDistiller(ipc=1, n_steps=20, batch_size=256, pool_size=2,
    ...                        model=ConvNet(width=8, depth=2, norm="batch"), random_state=0)
    >>> X_syn, y_syn = frepo.fit_resample(X, y)
    >>> X_syn.shape, frepo.synthetic_y_soft_.shape
    ((10, 8, 8, 1), (10, 10))
    """

    _parameter_constraints = {
        **GradientDistiller._parameter_constraints,
        "flip": [StrOptions({"auto"}), "boolean"],
        "pool_size": [Interval(Integral, 1, None, closed="left")],
        "max_online_steps": [Interval(Integral, 1, None, closed="left")],
        "online_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "precision": PRECISION_CONSTRAINT,
        "network_precision": NETWORK_PRECISION_CONSTRAINT,
    }

    def __init__(self, ipc=1, *, n_steps=1000, learning_rate=3e-4, batch_size=1024,
                 learn_labels=True, flip="auto", init="real", model=None, pool_size=10,
                 max_online_steps=100, online_learning_rate=3e-4, ridge=1e-6, precision="highest",
                 network_precision="auto", image_shape=None, n_eval_models=5, eval_steps="auto", eval_model=None,
                 eval_protocol="frepo",
                 checkpoint=None, checkpoint_every=1000, log_every=100, devices=None, verbose=0,
                 random_state=None):
        self.ipc = ipc
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.learn_labels = learn_labels
        self.flip = flip
        self.init = init
        self.model = model
        self.pool_size = pool_size
        self.max_online_steps = max_online_steps
        self.online_learning_rate = online_learning_rate
        self.ridge = ridge
        self.precision = precision
        self.network_precision = network_precision
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

    _method_name = "FRePo"
    _meta_step = staticmethod(_meta_step)
    _resolved_parameters = ("flip", "network_precision")
    _diagnose_ridge = True

    def _default_model(self, sample_shape):
        # The official layout: batch norm on the input of convolutions 2..d, momentum 0.1.
        return default_network(sample_shape, norm="batch", width_doubling=True,
                               norm_position="before", norm_momentum=0.1)

    def _initial_labels(self, y, n_classes):
        return init_labels(y, n_classes)

    def _start(self, X, y, model, synthetic, placement, keys):
        n_classes = len(self.classes_)
        flip = resolve_flip(self.flip, tuple(X.shape[1:]), n_classes=n_classes,
                            ipc=len(synthetic.x) // n_classes, method="frepo")
        network_precision = resolve_network_precision(self.network_precision)
        config = _Config(model=with_network_precision(model, network_precision),
                         batch_size=placement.batch_size(self.batch_size, len(X)),
                         learn_labels=bool(self.learn_labels), flip=flip,
                         precision=self.precision, placement=placement,
                         network_precision=network_precision,
                         feature_chunk=_FEATURE_CHUNK if _backend.remat_features() else 0,
                         donate_state=_backend.donate_state())
        hyper = hyperparameters(self.n_steps, self.learning_rate, self.ridge,
                                self.max_online_steps, self.online_learning_rate)
        pool_key, loop_key = keys
        state = init_state(synthetic.x, synthetic.labels, pool_key, loop_key, model,
                           self.pool_size, self.max_online_steps)
        X_real, Y_real, hyper = self._put_real_data(placement, X, centred_one_hot(y, n_classes),
                                                    hyper, synthetic)
        return state, {"config": config, "hyper": hyper, "X_real": X_real, "Y_real": Y_real}


    def _finish(self, result, run, synthetic):
        self.flip_ = run["config"].flip
        final = jax.device_get({"x": result.state["x"], "y": result.state["y"]})
        return DistillationResult(X=np.asarray(final["x"], np.float32), y=synthetic.y,
                                  soft_labels=np.asarray(final["y"], np.float32),
                                  n_iter=result.step, history=result.history)


def init_state(x_syn, y_syn, pool_key, loop_key, model, pool_size, max_online_steps):
    """The full FRePo state: synthetic set, labels, LAMB state, model pool, key, ``ok`` flag."""
    synthetic = {"x": jnp.asarray(x_syn, jnp.float32), "y": jnp.asarray(y_syn, jnp.float32)}
    pool = _pool.new_pool(pool_key, jnp.asarray(max_online_steps, jnp.int32), model,
                          tuple(x_syn.shape[1:]), int(pool_size))
    # The LAMB state does not depend on the hyperparameters' values.
    opt_state = _lamb(hyperparameters(1, 1.0, 0.0, 1, 1.0)).init(synthetic)
    return {"x": synthetic["x"], "y": synthetic["y"], "opt": opt_state,
            "pool": pool, "key": jnp.array(loop_key, copy=True), "ok": jnp.asarray(True)}
