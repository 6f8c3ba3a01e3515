r"""Distribution matching as a sklearn_distill method: the whole method in one file.

Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV 2023. Each step draws a
freshly initialised network :math:`f` and moves the synthetic images so that, class by class, the
mean of their embeddings matches the mean embedding of a batch of real rows:

.. math::

    \mathcal{L}(X_s) = \sum_c \Bigl\lVert \frac{1}{|B_c|}\sum_{x \in B_c} f(x)
        - \frac{1}{|S_c|}\sum_{s \in S_c} f(s) \Bigr\rVert_2^2 .

Everything around the step -- parameters and their validation, the initial set, warm starts for
Boost-DD, checkpoints, devices, the loop with its progress bar and divergence guard, ``score`` --
comes from :class:`~sklearn_distill.methods.gradient.GradientDistiller`.
"""

from functools import partial
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval

from sklearn_distill._training import real_batch, scale_rows, select_tree, tree_isfinite
from sklearn_distill.base import DistillationResult
from sklearn_distill.methods.gradient import GradientDistiller
from sklearn_distill.networks import default_network, features, init_variables


@partial(jax.jit, static_argnames=("model", "batch_size", "placement"), donate_argnums=(0,))
def _step(state, X_real, Y_real, onehot_syn, hyper, *, model, batch_size, placement):
    """One guarded step: ``state -> (state, loss)`` (a non-finite loss freezes the state)."""
    key, net_key, batch_key = jax.random.split(state["key"], 3)
    variables = init_variables(model, net_key, X_real.shape[1:])
    x_real, y_real = real_batch(batch_key, X_real, Y_real, batch_size, placement)
    real_mean = y_real.T @ features(model, variables, x_real) / jnp.maximum(
        y_real.sum(0)[:, None], 1.0)

    def loss(x):
        syn_mean = onehot_syn.T @ features(model, variables, x) / onehot_syn.sum(0)[:, None]
        return jnp.sum((real_mean - syn_mean) ** 2)

    value, grad = jax.value_and_grad(loss)(state["x"])
    optimizer = optax.sgd(hyper["learning_rate"], momentum=hyper["momentum"])
    updates, opt = optimizer.update(grad, state["opt"])
    x = optax.apply_updates(state["x"], scale_rows(updates, hyper["row_scale"]))
    ok = state["ok"] & jnp.isfinite(value) & tree_isfinite(x)
    x, opt = select_tree(ok, (x, opt), (state["x"], state["opt"]))
    return ({**state, "x": x, "opt": opt, "key": jnp.where(ok, key, state["key"]), "ok": ok},
            jnp.where(ok, value, jnp.nan))


class DistributionMatchingDistiller(GradientDistiller):
    """Dataset distillation by matching mean embeddings in random networks (DM).

    Parameters
    ----------
    ipc, n_steps, learning_rate, batch_size, init, model, checkpoint, checkpoint_every,
    log_every, devices, verbose, image_shape, n_eval_models, eval_steps, eval_model,
    random_state :
        As for :class:`~sklearn_distill.FRePoDistiller` (``learn_labels`` is accepted for the
        shared interface; DM keeps hard labels).
    momentum : float, default=0.5
        Momentum of the SGD on the synthetic images (a method-specific parameter, declared in
        ``_parameter_constraints``).
    """

    _parameter_constraints = {
        **GradientDistiller._parameter_constraints,
        "momentum": [Interval(Real, 0, 1, closed="left")],
    }
    _method_name = "DM"

    def __init__(self, ipc=1, *, n_steps=1000, learning_rate=1.0, batch_size=256,
                 learn_labels=False, init="real", model=None, momentum=0.5,
                 image_shape=None, n_eval_models=5, eval_steps="auto", eval_model=None,
                 checkpoint=None, checkpoint_every=1000, log_every=100, devices=None, verbose=0,
                 random_state=None):
        self.ipc = ipc
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.learn_labels = learn_labels
        self.init = init
        self.model = model
        self.momentum = momentum
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    # -- the hooks ------------------------------------------------------------------------------

    def _default_model(self, sample_shape):
        return default_network(sample_shape, norm="instance")

    def _initial_labels(self, y, n_classes):
        return np.eye(n_classes, dtype=np.float32)[y]

    def _start(self, X, y, model, synthetic, placement, keys):
        n_classes = len(self.classes_)
        x = jnp.asarray(synthetic.x)
        state = {"x": x, "opt": optax.sgd(1.0, momentum=0.5).init(x), "key": keys[0],
                 "ok": jnp.asarray(True)}
        X_real, Y_real, onehot, hyper = placement.put((
            np.asarray(X, np.float32), np.eye(n_classes, dtype=np.float32)[y], synthetic.labels,
            {"learning_rate": np.float32(self.learning_rate), "momentum": np.float32(self.momentum),
             "row_scale": synthetic.row_scale}))
        return state, {"X_real": X_real, "Y_real": Y_real, "onehot": onehot, "hyper": hyper,
                       "static": dict(model=model, placement=placement,
                                      batch_size=placement.batch_size(self.batch_size, len(X)))}

    def _step_function(self, run, start_step):
        return lambda s: _step(s, run["X_real"], run["Y_real"], run["onehot"], run["hyper"],
                               **run["static"])

    def _finish(self, result, run, synthetic):
        return DistillationResult(X=np.asarray(jax.device_get(result.state["x"]), np.float32),
                                  y=synthetic.y, n_iter=result.step, history=result.history)
