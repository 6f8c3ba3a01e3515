"""Training networks from scratch: one optimiser step, and many networks at once.

The trainer behind the evaluation protocol (:mod:`sklearn_distill.evaluation`), the model pools
of FRePo and RCIG (:mod:`sklearn_distill._pool`) and RaT-BPTT's hardness sampler. Several networks
are trained at once: their parameters are stacked on a leading axis and one ``jax.jit``-compiled
step updates all of them under ``jax.vmap``, so training five networks costs one compilation and
one dispatch per step, not five separate fits.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .networks import has_batch_norm, init_variables
from .protocols import EvalProtocol

__all__ = ["network_loss", "apply_network", "train_step", "train_networks",
           "predict_networks"]



def network_loss(logits, targets, loss, weights=None):
    """Per-batch loss. ``targets`` is an (n, n_classes) matrix: one-hot, soft or learned labels.

    ``weights`` (n,), when given, weighs the rows (0 for padding rows of a smaller batch).
    """
    if loss == "mse":
        # Half the squared error summed over outputs, averaged over rows (kernel-regression view).
        rows = 0.5 * jnp.sum((logits - targets) ** 2, axis=-1)
    else:
        rows = optax.softmax_cross_entropy(logits, targets)
    if weights is None:
        return jnp.mean(rows)
    return jnp.sum(weights * rows) / jnp.maximum(jnp.sum(weights), 1.0)


def apply_network(model, variables, x, train):
    """Apply a network; returns ``(logits, new_variables)`` handling batch statistics."""
    if has_batch_norm(model) and train:
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return logits, {**variables, **updates}
    return model.apply(variables, x, train=train), variables


def train_step(model, optimizer, variables, opt_state, x, targets, loss, weights=None):
    """One optimiser step of a network on a batch; returns ``(variables, opt_state, loss_value)``.

    Shared by the evaluation trainer and the online updates of a model pool. Batch statistics
    (``norm="batch"``) are taken from the batch and their running averages updated.
    """
    def objective(params):
        logits, new_vars = apply_network(model, {**variables, "params": params}, x, True)
        return network_loss(logits, targets, loss, weights), new_vars

    (value, new_vars), grads = jax.value_and_grad(objective, has_aux=True)(variables["params"])
    updates, opt_state = optimizer.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], updates)
    return {**new_vars, "params": params}, opt_state, value


_STATIC = ("model", "n_steps", "loss", "augmentation", "protocol")


@partial(jax.jit, static_argnames=("model", "sample_shape", "n_steps", "protocol", "augmented"))
def _init_stacked(keys, *, model, sample_shape, n_steps, protocol, augmented):
    optimizer = protocol.make_optimizer(n_steps, augmented)

    def init_one(key):
        variables = init_variables(model, key, sample_shape)
        return variables, optimizer.init(variables["params"])

    return jax.vmap(init_one)(keys)


@partial(jax.jit, static_argnames=_STATIC, donate_argnums=(0, 1))
def _train_step_stacked(variables, opt_state, key, step, X, targets, *, model, n_steps, loss,
                        augmentation, protocol):
    """One optimisation step of every stacked network (vmapped); returns their losses."""
    n = X.shape[0]
    optimizer = protocol.make_optimizer(n_steps, augmentation is not None)
    padded = protocol.batch == "epoch" and protocol.batch_rows(n) < n

    def step_one(variables, opt_state, key, epoch_base):
        batch_key, aug_key = jax.random.split(key)
        epoch_key = partial(jax.random.fold_in, epoch_base)
        idx, weights = protocol.select_batch(batch_key, epoch_key, step, n)
        if idx.shape[0] == n:  # the whole set, in any order
            xb, tb = X, targets
        else:
            xb, tb = X[idx], targets[idx]
        if augmentation is not None:
            xb = augmentation(aug_key, xb)
        return train_step(model, optimizer, variables, opt_state, xb, tb, loss,
                          weights if padded else None)

    n_models = jax.tree.leaves(variables)[0].shape[0]
    keys = jax.random.split(jax.random.fold_in(key, step), n_models)
    # Per-network keys that stay fixed across steps: an epoch's permutation derives from them.
    epoch_bases = jax.random.split(jax.random.fold_in(key, 2**31 - 1), n_models)
    return jax.vmap(step_one)(variables, opt_state, keys, epoch_bases)


def train_networks(key, model, X, targets, *, n_models=1, n_steps=1000, batch_size=256, loss="mse",
                   augmentation=None, learning_rate=1e-3, weight_decay=0.0, progress=None,
                   protocol=None):
    """Train ``n_models`` networks from scratch at once.

    Parameters
    ----------
    key : jax.Array
        PRNG key; each network gets its own initialisation, batches and augmentation draws.
    model : flax.linen.Module
        Network with ``num_classes`` set.
    X : array of shape (n, ...)
        Training inputs in the internal layout (NHWC images or 2-D rows).
    targets : array of shape (n, n_classes)
        One-hot, soft or learned labels.
    n_models, n_steps, batch_size : int
    loss : {"mse", "ce"}
    augmentation : callable ``(key, images) -> images`` or None
    learning_rate, weight_decay : float
    progress : str or None
        Show a progress bar with this description (no device synchronisation per step).
    protocol : EvalProtocol or None
        Optimiser, schedule and batch sampling (:func:`~sklearn_distill.get_protocol`); it replaces
        ``batch_size``, ``learning_rate`` and ``weight_decay``. ``None``: the ``"library"``
        protocol with those three values.

    Returns
    -------
    variables : pytree
        The networks' variables stacked on a leading axis of size ``n_models``.
    losses : array of shape (n_models, n_steps)
        Training loss per step.
    """
    # A Python loop over one jitted step, not lax.scan: XLA's CPU backend runs convolutions
    # inside while-loops several times slower, and dispatch is asynchronous, so the host never
    # waits on the device until the losses are read at the end.
    if protocol is None:
        protocol = EvalProtocol("library", learning_rate=float(learning_rate),
                                weight_decay=float(weight_decay), batch_size=int(batch_size))
    init_key, loop_key = jax.random.split(key)
    config = dict(model=model, n_steps=int(n_steps), protocol=protocol)
    variables, opt_state = _init_stacked(jax.random.split(init_key, n_models),
                                         sample_shape=tuple(X.shape[1:]),
                                         augmented=augmentation is not None, **config)
    X = jnp.asarray(X, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    losses = []
    steps = range(int(n_steps))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=progress, leave=False)
    for step in steps:
        variables, opt_state, value = _train_step_stacked(
            variables, opt_state, loop_key, step, X, targets, loss=loss, augmentation=augmentation,
            **config)
        losses.append(value)
    return variables, jnp.stack(losses, axis=1)


@partial(jax.jit, static_argnames=("model",))
def _predict_stacked(model, variables, x):
    return jax.vmap(lambda v: model.apply(v, x, train=False))(variables)


def predict_networks(model, variables, X, chunk_size=256):
    """Logits of stacked networks, shape ``(n_models, n, n_classes)``, evaluated in fixed chunks.

    Every chunk is padded to ``chunk_size`` rows, so any number of rows reuses one compilation
    and a row's output does not depend on which other rows were predicted with it.
    """
    X = np.asarray(X, np.float32)
    n = X.shape[0]
    size = chunk_size
    out = []
    for start in range(0, n, size):
        chunk = X[start:start + size]
        pad = size - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        out.append(_predict_stacked(model, variables, jnp.asarray(chunk))[:, :size - pad])
    # One transfer to the host at the end: the chunks' dispatches do not wait on each other.
    return np.concatenate([np.asarray(o) for o in jax.device_get(out)], axis=1)
