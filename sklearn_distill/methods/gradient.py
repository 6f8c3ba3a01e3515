"""The template of the gradient-based distillers (FRePo, RCIG, RaT-BPTT).

:class:`GradientDistiller` sits between :class:`~sklearn_distill.BaseDistiller` and the methods
that learn a synthetic set by gradient steps from an initial one. It owns what they share:

* the shared parameters and their constraints (:data:`GRADIENT_PARAMETER_CONSTRAINTS`);
* warm starts (Boost-DD's earlier blocks come first, training at a scaled rate);
* one checkpoint-configuration rule: every parameter except a declared set, plus the resolved
  network, the seed, the data's fingerprint and the warm start's;
* the whole ``_distill`` skeleton: network, initial set and labels, warm start, state,
  checkpoint restore, device placement, :func:`~sklearn_distill._training.run_loop`, result.

A method supplies hooks; everything else is inherited::

    _method_name            # "FRePo": progress bars and checkpoints
    _default_model(sample_shape)
    _initial_labels(y, n_classes)
    _start(X, y, model, synthetic, placement, keys) -> (state, run)
    _step_function(run, start_step) -> step(state) -> (state, loss)
        # or a jitted _meta_step(state, X_real, Y_real, hyper, config) attribute
    _block_function(run, start_step, k) -> block(state, n) -> (state, losses) or None
        # n <= k steps in one dispatch; by default for the _meta_step attribute
    _finish(result, run, synthetic) -> DistillationResult

and optionally ``_initial_set``, ``_warm_labels``, ``_check_data``, ``_fresh_state``,
``_checkpoint_extra`` (``_resolved_parameters``) and ``_checkpoint_exclude``. The evaluation loss
needs no hook: it follows from the kind of the learned labels (:mod:`sklearn_distill._labels`).
See the architecture page of the documentation for a whole method written in one file.
"""

import os
from numbers import Integral, Real
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .. import _backend
from .._precision import NETWORK_PRECISIONS
from .._sharding import DEVICES_CONSTRAINT, data_parallel
from .._training import (data_fingerprint, divergence_diagnosis, init_synthetic, restore_state,
                         run_loop, run_steps, seed_description)
from ..base import BaseDistiller
from ..networks import with_num_classes

__all__ = ["GradientDistiller", "SyntheticInit", "OPTIMISATION_CONSTRAINTS",
           "GRADIENT_PARAMETER_CONSTRAINTS", "PRECISION_CONSTRAINT",
           "NETWORK_PRECISION_CONSTRAINT"]

PRECISION_CONSTRAINT = [StrOptions({"highest", "high", "default"})]
# The precision policy of the distillation network (sklearn_distill._precision).
NETWORK_PRECISION_CONSTRAINT = [StrOptions(set(NETWORK_PRECISIONS))]

# The parameters of every distiller that optimises a synthetic set with a network (KRR and the
# translator included): same names, same meaning across methods.
OPTIMISATION_CONSTRAINTS = {
    "n_steps": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learn_labels": ["boolean"],
    "model": [HasMethods(["init", "apply"]), None],
    "log_every": [Interval(Integral, 1, None, closed="left")],
    "devices": DEVICES_CONSTRAINT,
    "verbose": ["verbose"],
}

# ... and of the checkpointed, warm-startable methods built on GradientDistiller.
GRADIENT_PARAMETER_CONSTRAINTS = {
    **OPTIMISATION_CONSTRAINTS,
    "init": [StrOptions({"real", "noise", "real+noise"})],
    "checkpoint": [str, os.PathLike, None],
    "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
}

# Parameters that never change the synthetic set a fit computes, so a checkpoint written with
# other values of them resumes (the network enters the configuration resolved, as its repr).
_NEUTRAL = frozenset({"checkpoint", "checkpoint_every", "log_every", "verbose", "n_eval_models",
                      "eval_steps", "eval_model", "eval_protocol", "model", "random_state",
                      "image_shape", "devices"})


class SyntheticInit(NamedTuple):
    """The synthetic set a fit starts from, earlier (warm-start) rows first.

    Attributes
    ----------
    x : ndarray of float32, shape (n_synthetic, *sample_shape)
    y : ndarray of int, shape (n_synthetic,)
        Class index of each row.
    labels : ndarray of float32, shape (n_synthetic, n_classes)
        The initial learned labels (:meth:`GradientDistiller._initial_labels`).
    row_scale : ndarray of float32, shape (n_synthetic,)
        Learning-rate factor of each row: the warm start's ``learning_rate_scale`` for the
        earlier rows, 1 for the new ones.
    n_earlier : int
        Rows that came from the warm start.
    warm_start : WarmStart or None
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    row_scale: np.ndarray
    n_earlier: int
    warm_start: object


def _jsonable(value):
    if isinstance(value, (str, bool, type(None))):
        return value
    if isinstance(value, (Integral, Real)):
        return float(value)
    return repr(value)


class GradientDistiller(BaseDistiller):
    """Base class of the gradient-based distillers. Not to be used directly.

    Subclasses list their parameters in ``__init__`` (scikit-learn's rule), extend
    ``_parameter_constraints`` and implement the hooks listed in the module docstring.
    """

    _parameter_constraints = {**BaseDistiller._parameter_constraints,
                              **GRADIENT_PARAMETER_CONSTRAINTS}
    _supports_warm_start = True

    # The method's name in progress bars and checkpoint configurations.
    _method_name = None
    # Parameters left out of the checkpoint configuration besides the shared neutral ones.
    _checkpoint_exclude = frozenset()
    # Parameters recorded in checkpoint configurations as resolved by the fit (see
    # _checkpoint_extra), e.g. ("flip",).
    _resolved_parameters = ()
    # Whether the method's ``ridge`` parameter regularises a kernel solve that a divergence
    # diagnosis should name (FRePo).
    _diagnose_ridge = False

    # -- hooks ----------------------------------------------------------------------------------

    def _default_model(self, sample_shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def _initial_labels(self, y, n_classes):  # pragma: no cover - abstract
        """Initial learned labels of rows of classes ``y``: float32, (len(y), n_classes)."""
        raise NotImplementedError

    def _start(self, X, y, model, synthetic, placement, keys):  # pragma: no cover - abstract
        """Build the initial state (a pytree) and whatever the step needs (``run``)."""
        raise NotImplementedError

    def _step_function(self, run, start_step):
        """The function ``state -> (state, loss)`` that :func:`run_loop` calls.

        Default: the method's jitted ``_meta_step(state, X_real, Y_real, hyper, config)`` on the
        entries of ``run`` that :meth:`_put_real_data` and ``_start`` made.
        """
        step = type(self)._meta_step
        X_real, Y_real, hyper, config = run["X_real"], run["Y_real"], run["hyper"], run["config"]
        return lambda s: step(s, X_real, Y_real, hyper, config)

    def _block_function(self, run, start_step, k):
        """The function ``(state, n) -> (state, losses)`` running ``n <= k`` steps in one
        compiled call (:func:`~sklearn_distill._training.run_steps`), or ``None`` where steps
        must be dispatched one at a time.

        Default: the ``_meta_step`` of the default :meth:`_step_function`; ``None`` for a method
        that overrides :meth:`_step_function` (its step may run host code between meta-steps).
        """
        if type(self)._step_function is not GradientDistiller._step_function:
            return None
        step = type(self)._meta_step
        operands, config = (run["X_real"], run["Y_real"], run["hyper"]), run["config"]
        return lambda s, n: run_steps(s, n, operands, step=step, config=config, k=k)

    def _finish(self, result, run, synthetic):  # pragma: no cover - abstract
        """Turn the loop's :class:`~sklearn_distill._training.LoopResult` into the result."""
        raise NotImplementedError

    def _check_data(self, X, y, n_synthetic):
        """Method-specific checks of the parameters against the data (raise ``ValueError``)."""

    def _initial_set(self, key, X, y, n_classes):
        """The new rows: ``ipc`` per class, from ``init`` (real rows and/or noise)."""
        return init_synthetic(key, X, y, n_classes, self.ipc, self.init)

    def _warm_labels(self, warm_start, n_classes):
        """Label state of the earlier rows: their soft labels, or the initial ones."""
        if warm_start.soft_labels is None:
            return self._initial_labels(np.asarray(warm_start.y), n_classes)
        return np.asarray(warm_start.soft_labels, np.float32)

    def _fresh_state(self, state, run):
        """Adjust the initial state of a fit that does not resume from a checkpoint."""
        return state

    def _checkpoint_extra(self, run):
        """Resolved values that the configuration records instead of their parameters.

        Default: the ``_resolved_parameters`` (e.g. ``("flip",)``: ``"auto"`` resolved) as the
        static configuration ``run["config"]`` holds them.
        """
        return {name: getattr(run["config"], name) for name in self._resolved_parameters}

    def _diagnosis(self, X):
        """What :func:`run_loop` calls with ``(state, steps_taken)`` when a step fails: the
        causes of the failure it can detect (:func:`divergence_causes`) in the synthetic rows
        ``state["x"]`` and the real data ``X``. Methods with a kernel ridge pass it on."""
        ridge = getattr(self, "ridge", None) if self._diagnose_ridge else None
        return divergence_diagnosis(X, ridge=ridge, learning_rate=self.learning_rate)

    # -- the shared pieces ----------------------------------------------------------------------

    def _distill_model(self, sample_shape):
        return self.model if self.model is not None else self._default_model(sample_shape)

    def _eval_model(self):
        """``eval_model``; else the distillation network without normalisation (ReLU)."""
        if self.eval_model is None and self.model is None:
            if not self.layout_.is_image:
                return None  # the protocol's MLP
            return self._default_model(self.layout_.sample_shape).clone(
                norm="none", activation="relu", parent=None)
        return super()._eval_model()

    def _synthetic_init(self, key, X, y, n_classes, warm_start):
        x, y_syn = self._initial_set(key, X, y, n_classes)
        labels = self._initial_labels(y_syn, n_classes)
        if warm_start is None:
            return SyntheticInit(x, y_syn, labels, np.ones(len(x), np.float32), 0, None)
        x_old = np.asarray(warm_start.X, np.float32)
        if x_old.shape[1:] != np.shape(x)[1:]:
            raise ValueError(f"The earlier synthetic rows have sample shape {x_old.shape[1:]}, the "
                             f"data {np.shape(x)[1:]}.")
        y_old = np.asarray(warm_start.y)
        labels_old = self._warm_labels(warm_start, n_classes)
        scale = np.concatenate([np.full(len(x_old), warm_start.learning_rate_scale, np.float32),
                                np.ones(len(x), np.float32)])
        return SyntheticInit(np.concatenate([x_old, np.asarray(x, np.float32)]),
                             np.concatenate([y_old, y_syn]),
                             np.concatenate([labels_old, np.asarray(labels, np.float32)]),
                             scale, len(x_old), warm_start)

    @staticmethod
    def _put_real_data(placement, X, targets, hyper, synthetic):
        """The real data and targets, and ``hyper``, on the device(s) once (batches are gathered
        there); a warm start's per-row learning-rate factors join ``hyper`` as ``"row_scale"``."""
        if synthetic.warm_start is not None:
            hyper = {**hyper, "row_scale": jnp.asarray(synthetic.row_scale)}
        return placement.put((np.asarray(X, np.float32), targets, hyper))

    def _checkpoint_config(self, X, y, model, run, warm_start):
        """What a checkpoint must match to be resumed: one rule for every method."""
        extra = self._checkpoint_extra(run)
        skip = _NEUTRAL | self._checkpoint_exclude | set(extra)
        params = {k: _jsonable(v) for k, v in self.get_params(deep=False).items() if k not in skip}
        return {"method": self._method_name, **params, **extra,
                "model": repr(model), "random_state": seed_description(self.random_state),
                "data": data_fingerprint(X, y),
                "warm_start": None if warm_start is None else {
                    "rows": data_fingerprint(np.asarray(warm_start.X), np.asarray(warm_start.y)),
                    "learning_rate_scale": float(warm_start.learning_rate_scale)}}

    def _distill(self, X, y, key, warm_start=None):
        n_classes = len(self.classes_)
        model = with_num_classes(self._distill_model(tuple(X.shape[1:])), n_classes)
        n_new = n_classes * self.ipc
        self._check_data(X, y, n_new + (0 if warm_start is None else len(warm_start.X)))
        init_key, *keys = jax.random.split(key, 3)
        synthetic = self._synthetic_init(init_key, X, y, n_classes, warm_start)
        placement = data_parallel(self.devices)
        state, run = self._start(X, y, model, synthetic, placement, tuple(keys))

        ckpt_config = self._checkpoint_config(X, y, model, run, warm_start)
        start_step, history = 0, None
        if self.checkpoint is not None and os.path.exists(self.checkpoint):
            state, start_step, extra = restore_state(self.checkpoint, state, ckpt_config)
            history = extra.get("history")
        else:
            state = self._fresh_state(state, run)
        # Distinct buffers for every leaf (the steps donate their state), on the device(s).
        state = placement.put(jax.tree.map(lambda a: jnp.array(a, copy=True), state))

        k = _backend.steps_per_dispatch()
        block = self._block_function(run, start_step, k) if k > 1 else None
        result = run_loop(self._step_function(run, start_step), state, n_steps=self.n_steps,
                          start_step=start_step, log_every=self.log_every,
                          checkpoint=self.checkpoint, checkpoint_every=self.checkpoint_every,
                          checkpoint_config=ckpt_config, history=history, verbose=self.verbose,
                          description=self._method_name, diagnose=self._diagnosis(X),
                          block_fn=block, steps_per_dispatch=k if block is not None else 1)
        self.stop_reason_ = result.stop_reason
        return self._finish(result, run, synthetic)
