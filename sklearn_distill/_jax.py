"""JAX settings the library applies to its own computations only.

``library_prng()`` scopes ``jax_threefry_partitionable=False`` to the library's fits. JAX's
default (partitionable threefry) lets random arrays be generated directly in sharded form, which
the library never does -- keys are replicated and parameters initialised whole -- but it makes
XLA's CPU compiler several times slower on every random initialiser: a two-block ConvNet's
``init`` took 7.7 s to compile with it and 1.9 s without. The setting is a context, not a global
change, so a user's own JAX code is unaffected; jit caches key on it, so compiled steps are reused
across fits.
"""

import contextlib

import jax

__all__ = ["library_prng"]


def library_prng():
    """Context in which the library traces and runs its random computations."""
    setter = getattr(jax, "threefry_partitionable", None)
    return setter(False) if setter is not None else contextlib.nullcontext()
