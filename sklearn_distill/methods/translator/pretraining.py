"""Stage 2 of the translator: training it (pre-training and adaptation share one jitted step)."""

import json
import os
import time
from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval, validate_params

from ..._jax import library_prng
from ..._sharding import DataParallel, data_parallel
from ..._training import centred_one_hot, run_loop, sample_rows, select_tree, tree_isfinite
from ..._validation import random_seed
from ...networks import features, init_variables, with_num_classes
from ..krr import masked_krr_loss
from .cache import TranslatorCache
from .network import (PretrainedTranslator, Translator, module_from_json, module_to_json,
                      _translate_apply)

__all__ = ["pretrain_translator", "train_translator"]


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
        rows = sample_rows(row_key, X_real.shape[0], config.batch_size)
        y_t = Y_real[rows]
    else:
        rows, y_t = bank["rows"][task], bank["targets"][task]
    variables = init_variables(config.model, net_key, X_real.shape[1:])
    x_t, y_t = config.placement.rows(X_real[rows]), config.placement.rows(y_t)
    feat_t = jax.lax.stop_gradient(features(config.model, variables, x_t))
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


def train_translator(translator, bank, X_real, Y_real, key, *, model, n_steps, learning_rate,
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
              "random_network": module_to_json(model), "validation_loss_before": before,
              "validation_loss_after": after, "seconds": seconds, "stop_reason": result.stop_reason,
              "history": {k: [float(v) for v in vals] for k, vals in result.history.items()}}
    metadata = json.loads(json.dumps(translator.metadata))
    metadata["trained_steps"] = int(metadata.get("trained_steps", 0)) + int(result.step)
    trained = PretrainedTranslator(translator.network, jax.device_get(params), translator.channels,
                                   metadata, translator.distillation_network)
    return trained, record


@validate_params({
    "cache": [TranslatorCache, str, os.PathLike],
    "n_steps": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "tasks_per_step": [Interval(Integral, 1, None, closed="left")],
    "ridge": [Interval(Real, 0, None, closed="left"), None],
    "n_eval": [Interval(Integral, 0, None, closed="left")],
    "log_every": [Interval(Integral, 1, None, closed="left")],
    "verbose": ["verbose"],
    "random_state": ["random_state"],
}, prefer_skip_nested_validation=False)
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
        With ``distillation_network`` set to the cache's fixed network, in which
        :class:`TranslatorDistiller` then distils the target.
    """
    if not isinstance(cache, TranslatorCache):
        cache = TranslatorCache.open(cache)
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
    model = module_from_json(cfg["model"]) if model is None else model
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
        trained, record = train_translator(
            translator, bank, X, np.zeros((len(X), 1), np.float32), jax.random.PRNGKey(seed),
            model=model, n_steps=n_steps, learning_rate=learning_rate, ridge=ridge,
            tasks_per_step=tasks_per_step, fresh_rows=False, batch_size=cfg["n_real"],
            precision=cfg["precision"], n_eval=n_eval, log_every=log_every, verbose=verbose,
            description="pre-training translator", placement=data_parallel(devices))
    record.update(cache_config=cfg, n_tasks=len(tasks), source=cache.data_info)
    trained.metadata.setdefault("pretraining", []).append(record)
    # The translator learned to translate distillations made in the cache's fixed network: keep
    # it, so that the target is distilled in the same one (Liu & Wang, Alg. 3).
    trained.distillation_network = cache.distillation_network()
    return trained
