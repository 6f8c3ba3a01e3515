r"""A pool of online-trained networks, stacked into one pytree (FRePo and RCIG).

FRePo (Zhou et al., 2022) and RCIG (Loo et al., 2023) compute their meta-gradient with a network
drawn from a *pool* of :math:`m` networks at different stages of training, instead of a single
network or a fresh one every step. After each meta-step the network used is trained one step on
the current synthetic set; once it has taken :math:`K` such online steps it is replaced by a new
random initialisation. The pool starts with staggered step counters,
:math:`\lfloor K/m \rfloor \cdot i` for member :math:`i`, so the members are replaced at different
times and the pool always covers early and late stages of training.

The pool is one pytree whose leaves have a leading axis of size :math:`m` (variables, optimiser
states and step counters), so a member is picked with a traced index inside a jitted step and no
Python-side state is involved. Everything here is a pure function.
"""

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import _backend
from ._training import select_tree
from ._trainer import train_step
from .networks import init_variables

__all__ = ["ModelPool", "pool_optimizer", "init_member", "init_pool", "new_pool", "get_member",
           "sample_index", "online_update"]


class ModelPool(NamedTuple):
    """The stacked state of ``m`` networks.

    Attributes
    ----------
    variables : pytree
        Network variables (``params`` and, with batch norm, ``batch_stats``), leading axis ``m``.
    opt_state : pytree
        Online optimiser state of each member, leading axis ``m``.
    steps : jax.Array of int32, shape (m,)
        Online updates each member has taken since its last (re-)initialisation.
    """

    variables: Any
    opt_state: Any
    steps: jax.Array


def pool_optimizer(learning_rate):
    """The online optimiser: Adam with a constant learning rate."""
    return optax.adam(learning_rate)


def init_member(key, model, sample_shape, optimizer):
    """Fresh variables and optimiser state of one member."""
    variables = init_variables(model, key, sample_shape)
    return variables, optimizer.init(variables["params"])


def init_pool(key, model, sample_shape, pool_size, max_online_steps, optimizer, stagger=True):
    r"""Initialise ``pool_size`` members with staggered step counters.

    Member :math:`i` starts with :math:`\lfloor K/m \rfloor \cdot i` steps on its counter (its
    weights are fresh like every other member's), so with :math:`m \le K` the first
    re-initialisations are spread over the first :math:`K` updates instead of all coinciding
    (FRePo). With ``stagger=False`` every counter starts at 0 (RCIG, ``algorithms.py:83-90`` of
    yolky/RCIG at a9fb1fa).
    """
    keys = jax.random.split(key, pool_size)
    variables, opt_state = jax.vmap(lambda k: init_member(k, model, sample_shape, optimizer))(keys)
    steps = ((max_online_steps // pool_size) * jnp.arange(pool_size, dtype=jnp.int32) if stagger
             else jnp.zeros((pool_size,), jnp.int32))
    return ModelPool(variables, opt_state, steps)


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def new_pool(key, max_online_steps, model, sample_shape, pool_size, stagger=True):
    """:func:`init_pool` with the online optimiser (:func:`pool_optimizer`), compiled once.

    Adam's state does not depend on the learning rate, so the pool is built with rate 1 and the
    meta-step's own rate is applied when it trains a member.
    """
    return init_pool(key, model, sample_shape, pool_size, max_online_steps, pool_optimizer(1.0),
                     stagger=stagger)


def get_member(tree, index):
    """Member ``index`` (a traced integer is fine) of a stacked pytree."""
    return jax.tree.map(lambda a: a[index], tree)


def _set_member(tree, index, member):
    return jax.tree.map(lambda a, b: a.at[index].set(b), tree, member)


def sample_index(key, pool_size):
    """A member drawn uniformly at random (with replacement across steps)."""
    return jax.random.randint(key, (), 0, pool_size)


def online_update(pool, index, key, X, targets, *, model, optimizer, max_online_steps,
                  batch_size=None, keep=True, n_steps=1, max_steps=None, branch_free=None,
                  replace="on_visit"):
    r"""Advance member ``index`` by ``n_steps`` online steps, or re-initialise it.

    A member whose counter has reached ``max_online_steps`` (:math:`K`) is replaced by a fresh
    initialisation (new weights, new optimiser state, counter 0) and not trained this time, so
    every member takes about :math:`K` online updates per life (its first life may be shorter,
    see :func:`init_pool`). With ``replace="after_training"`` the member is trained and then
    replaced at once if its counter has reached :math:`K`, so no member with :math:`K` or more
    updates ever serves a meta-gradient (RCIG, ``algorithms.py:247-255`` of yolky/RCIG).
    Otherwise it takes ``n_steps`` optimiser steps (FRePo: one; RCIG: a random number per
    meta-step) on

    .. math::

        \frac{1}{2b} \sum_{i=1}^{b} \lVert f_\theta(x_i) - y_i \rVert_2^2

    over a batch of the synthetic set and its (learned) labels, in training mode (batch
    statistics are used and the running averages updated).

    Parameters
    ----------
    pool : ModelPool
    index : int or traced int
    key : jax.Array
        For the re-initialisation and the batch.
    X, targets : arrays of shape (n, ...) and (n, n_classes)
        The current synthetic set and its labels (no gradient flows to them).
    model : flax.linen.Module
    optimizer : optax.GradientTransformation
    max_online_steps : int
    batch_size : int or None, default=None
        Rows per online step, drawn without replacement; ``None`` or ``>= n`` uses all rows.
    keep : bool or traced bool, default=True
        When false the pool is returned unchanged (used by guarded steps whose meta-step failed).
    n_steps : int or traced int, default=1
        Optimiser steps this time, all on the same rows; the counter advances by ``n_steps``.
    max_steps : int or None, default=None
        A static bound on a traced ``n_steps``: the loop is then unrolled into ``max_steps``
        steps (XLA's CPU backend runs convolutions in while loops slowly), each computed and
        masked (``branch_free``) or put in a ``lax.cond``.
    branch_free : bool or None, default=None
        Mask the optional steps instead of branching; ``None``: the ``branch_free`` decision of
        :mod:`sklearn_distill._backend` when the step is traced (on the CPU, whose backend runs
        convolutions inside a conditional many times slower).
    replace : {"on_visit", "after_training"}, default="on_visit"
        When a member whose counter reached :math:`K` is re-initialised (see above).

    Returns
    -------
    ModelPool
    """
    if replace not in ("on_visit", "after_training"):
        raise ValueError(f"`replace` must be 'on_visit' or 'after_training'; got {replace!r}.")
    init_key, batch_key = jax.random.split(key)
    X = jax.lax.stop_gradient(X)
    targets = jax.lax.stop_gradient(targets)
    n = X.shape[0]
    if batch_size is not None and batch_size < n:
        rows = jax.random.choice(batch_key, n, (batch_size,), replace=False)
        X, targets = X[rows], targets[rows]
    variables = get_member(pool.variables, index)
    opt_state = get_member(pool.opt_state, index)
    count = pool.steps[index]

    def reset():
        new_vars, new_opt = init_member(init_key, model, X.shape[1:], optimizer)
        return new_vars, new_opt, jnp.zeros((), jnp.int32)

    def train():
        if isinstance(n_steps, int) and n_steps == 1:
            new_vars, new_opt, _loss = train_step(model, optimizer, variables, opt_state, X,
                                                  targets, "mse")
            return new_vars, new_opt, count + 1

        def body(_, carry):
            return train_step(model, optimizer, *carry, X, targets, "mse")[:2]

        if max_steps is not None:
            masked = _backend.branch_free() if branch_free is None else bool(branch_free)
            carry = (variables, opt_state)
            for i in range(int(max_steps)):
                if masked:
                    carry = select_tree(i < n_steps, body(i, carry), carry)
                else:
                    carry = jax.lax.cond(i < n_steps, partial(body, i), lambda c: c, carry)
            new_vars, new_opt = carry
        else:
            new_vars, new_opt = jax.lax.fori_loop(0, n_steps, body, (variables, opt_state))
        return new_vars, new_opt, count + jnp.asarray(n_steps, jnp.int32)

    # Both outcomes are computed and one is selected, rather than branching with lax.cond: XLA's
    # CPU backend runs convolutions inside a conditional about 15x slower (FRePo's online step,
    # MNIST, width 16, 500 images: 5.0 s in a cond, 0.32 s outside), and a re-initialisation
    # costs next to nothing beside a training step on any backend.
    if replace == "after_training":
        trained = train()
        new_vars, new_opt, new_count = select_tree(trained[2] >= max_online_steps, reset(), trained)
    else:
        new_vars, new_opt, new_count = select_tree(count >= max_online_steps, reset(), train())
    new_vars, new_opt, new_count = select_tree(jnp.asarray(keep), (new_vars, new_opt, new_count),
                                          (variables, opt_state, count))
    return ModelPool(_set_member(pool.variables, index, new_vars),
                     _set_member(pool.opt_state, index, new_opt),
                     pool.steps.at[index].set(new_count))
