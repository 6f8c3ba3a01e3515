r"""Implicit differentiation of an inner optimum (the only module that imports jaxopt).

Let :math:`\Delta^\star(\psi)` minimise an inner loss :math:`L(\Delta, \psi)`, so that
:math:`F(\Delta^\star, \psi) = \nabla_\Delta L(\Delta^\star, \psi) = 0`. By the implicit function
theorem the gradient of an outer loss :math:`\mathcal{L}(\Delta^\star(\psi), \psi)` is

.. math::

    \frac{d\mathcal{L}}{d\psi} = \frac{\partial\mathcal{L}}{\partial\psi}
        - \Bigl(\frac{\partial F}{\partial\psi}\Bigr)^{\!\top} v,
    \qquad H v = g, \quad H = \nabla^2_\Delta L, \quad g = \frac{\partial\mathcal{L}}{\partial\Delta}.

:func:`implicit_vjp` returns the second term, the *implicit gradient*
:math:`-\partial_\psi \langle F(\Delta^\star, \psi), v\rangle`, through jaxopt's
:func:`jaxopt.implicit_diff.root_vjp` with one of two solvers of the Hessian-inverse-vector
product (:func:`make_solver`):

* ``"cg"``: conjugate gradient on Hessian-vector products
  (:func:`jaxopt.linear_solve.solve_cg`), ``n_steps`` iterations;
* ``"adam"``: RCIG's truncated solve, ``n_steps`` Adam steps on the quadratic
  :math:`q(v) = \tfrac12 v^\top H v - g^\top v` from :math:`v = 0`, whose gradient is
  :math:`Hv - g`.

Both return a trace for diagnostics: the values :math:`2q(v_i)` along the Adam path (which
decrease while the learning rate is stable), or the final relative residual
:math:`\lVert Hv - g\rVert / \lVert g\rVert` of CG. Keeping jaxopt behind these two functions
means a different implicit-differentiation backend changes this file only.
"""

import jax
import jax.numpy as jnp
import optax
from jaxopt import implicit_diff, linear_solve

__all__ = ["SOLVERS", "make_solver", "implicit_vjp", "tree_vdot"]

SOLVERS = ("adam", "cg")


def tree_vdot(a, b):
    """:math:`\\sum` over leaves of the elementwise product of two pytrees."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _sub(a, b):
    return jax.tree.map(jnp.subtract, a, b)


def make_solver(method, n_steps, learning_rate=None, unroll=False):
    """A linear solver ``solve(matvec, b) -> (x, trace)`` for a symmetric positive definite system.

    Parameters
    ----------
    method : {"adam", "cg"}
    n_steps : int
        Adam steps or CG iterations (``0`` returns ``x = 0``).
    learning_rate : float or traced scalar
        Adam's learning rate (``"adam"`` only).
    unroll : bool or int, default=False
        Unroll the Adam loop (faster on XLA's CPU backend, slower to compile); an int ``k``
        unrolls ``k`` iterations per loop trip (``lax.fori_loop``'s partial unroll).
    """
    if method not in SOLVERS:
        raise ValueError(f"`hinv_solver` must be one of {SOLVERS}; got {method!r}.")
    n_steps = int(n_steps)

    if method == "cg":
        def solve_cg(matvec, b):
            # A tiny relative tolerance: CG stops once converged (an exactly zero residual would
            # otherwise divide 0 by 0) and runs all ``n_steps`` iterations in float32.
            x = linear_solve.solve_cg(matvec, b, maxiter=n_steps, tol=1e-10) if n_steps else \
                jax.tree.map(jnp.zeros_like, b)
            residual = _sub(matvec(x), b)
            rel = jnp.sqrt(tree_vdot(residual, residual) / jnp.maximum(tree_vdot(b, b), 1e-30))
            return x, rel.reshape(1)

        return solve_cg

    def solve_adam(matvec, b):
        optimizer = optax.adam(learning_rate)
        x = jax.tree.map(jnp.zeros_like, b)

        def body(i, carry):
            x, opt_state, trace = carry
            hx = matvec(x)
            # 2 q(x) = x^T (Hx - 2b): zero at the start, decreasing while the solve is stable.
            trace = trace.at[i].set(tree_vdot(x, _sub(hx, jax.tree.map(lambda v: 2 * v, b))))
            updates, opt_state = optimizer.update(_sub(hx, b), opt_state, x)
            return optax.apply_updates(x, updates), opt_state, trace

        trace = jnp.zeros(n_steps + 1, jax.tree.leaves(b)[0].dtype)
        x, _, trace = jax.lax.fori_loop(0, n_steps, body, (x, optimizer.init(x), trace),
                                        unroll=unroll if n_steps > 0 else False)
        final = tree_vdot(x, _sub(matvec(x), jax.tree.map(lambda v: 2 * v, b))) if n_steps else 0.0
        return x, trace.at[n_steps].set(final)

    return solve_adam


def implicit_vjp(optimality_fun, solution, args, cotangent, solver):
    r"""The implicit gradient :math:`-(\partial F/\partial\psi)^\top H^{-1} g` for each argument.

    Parameters
    ----------
    optimality_fun : callable ``(solution, *args) -> pytree``
        :math:`F`, the gradient of the inner loss with respect to the inner variables (zero at
        the optimum); its Jacobian in ``solution`` must be symmetric (a Hessian).
    solution : pytree
        The (approximate) inner optimum :math:`\Delta^\star`.
    args : tuple
        The outer variables :math:`\psi` (each a pytree).
    cotangent : pytree
        :math:`g`, the outer loss's gradient with respect to ``solution``.
    solver : callable
        From :func:`make_solver`.

    Returns
    -------
    grads : tuple
        One pytree per element of ``args``.
    trace : jax.Array
        The solver's trace (see :func:`make_solver`).
    """
    traces = []

    def solve(matvec, b):
        # root_vjp calls this once, in the same trace, so the diagnostic can be kept aside.
        x, trace = solver(matvec, b)
        traces.append(trace)
        return x

    grads = implicit_diff.root_vjp(optimality_fun, solution, tuple(args), cotangent, solve=solve)
    return grads, traces[0]
