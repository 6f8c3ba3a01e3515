"""Test-session hygiene shared by the tests and the doctests.

Each pytest worker runs many test files in one process, and every file compiles its own JAX
steps (tiny networks of many shapes). Left alone, the compiled executables of all earlier files
stay cached for the life of the worker -- several GB of host memory and JIT code by the end of the
suite, where XLA's CPU compiler has crashed outright. Dropping the caches after each file releases
the executables no later file uses; a single large file (the estimator checks over every method)
still grows a worker to a few GB. Files rarely share a compiled step, so little is recompiled.
"""

import gc

import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_steps():
    yield
    import jax

    jax.clear_caches()
    gc.collect()
