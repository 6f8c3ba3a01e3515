"""Every CPU-versus-accelerator choice of the library, behind one scoped, overridable policy.

XLA compiles the same program differently per backend, and a few program shapes that are right on
an accelerator are several times slower on the CPU (and the other way round). Each such choice is
a named *decision* here, resolved from the backend unless overridden, in the style of
scikit-learn's ``config_context``::

    >>> from sklearn_distill._backend import backend_context, get_backend_policy
    >>> with backend_context(branch_free=False):  # the accelerator path, on any backend
    ...     get_backend_policy()["branch_free"]
    False

The decisions (the reason, measured, stays at each call site):

``branch_free``
    Optional work inside a jitted step (a pool member's online steps beyond the sampled count) is
    computed and masked with a select instead of put in a ``lax.cond``. Auto: on the CPU, whose
    XLA backend runs convolutions inside a conditional many times slower.
``unroll``
    Fixed-length loops inside a jitted step (RCIG's inner, Hessian-inverse and online loops) are
    unrolled instead of compiled as while loops. Auto: on the CPU, whose backend runs
    convolutions inside while loops slowly (RCIG, n_inner = n_hinv = 20: 2.5x the CPU time per
    step with while loops, 2.3x with a partial unroll by 5) at the price of compile time (57.9
    against 17.5 CPU s; ``benchmarks/results/rcig_ratbptt_loops_rcig.md``). Accelerators keep
    the while loops: no speed-up is measured there and unrolling multiplies compile time (the
    10 s target); pending a GPU measurement.
``host_loops``
    Long loops without gradient (RaT-BPTT's prefix of the unroll) run from Python, one jitted
    step per iteration, instead of inside the jitted meta-step. Auto: on the CPU.
``network_precision``
    The precision of the distillation network's convolutions and dense layers
    (``network_precision="auto"`` of the distillers, :mod:`sklearn_distill._precision`): one of
    ``"float32"``, ``"tf32"``, ``"bfloat16"``, ``"float64"``. Auto: ``"float32"`` on the CPU,
    where TF32 does not exist (it computes exactly as float32) and bfloat16 was measured slower
    (``benchmarks/results/network_precision_cpu_cost.md``); ``"tf32"`` on accelerators, pending a GPU
    measurement of its speed and accuracy effect.
``steps_per_dispatch``
    Meta-steps run per host dispatch, ``k``: above 1, up to ``k`` jitted meta-steps run inside
    one compiled call (a ``lax.fori_loop`` with a traced trip count), and logging, divergence
    checks, checkpoints and Ctrl-C act at that granularity (``_training.run_loop``). A positive
    integer, or ``"auto"``: 1 on the CPU, where the host loop was measured faster
    (``benchmarks/results/steps_per_dispatch_cpu.md``: XLA's CPU backend runs the step's
    convolutions inside a while loop slower, and a dispatch costs little next to a step); 20 on
    accelerators, to hide the host's dispatch latency -- not yet measured on a GPU. A step
    that runs host code between meta-steps (RaT-BPTT's prefix run from Python, its hardness
    sampler) dispatches one step at a time.
``remat_features``
    FRePo computes the synthetic set's features in rematerialised chunks (the backward pass
    recomputes one chunk's activations instead of keeping the whole set's). Auto: on
    accelerators, whose memory bounds the synthetic-set size (1,600 images at width 128: XLA
    temporaries of the meta-step 9,089 -> 2,924 MB); the CPU has memory to spare and runs the
    chunk loop at a loss (1,600 images, width 8: 511 -> 188 MB but a 2.4x slower step, the
    recomputation plus XLA's slow convolutions inside loops on the CPU;
    ``benchmarks/results/frepo_large_sets.md``). The accelerator time is pending a GPU run.

``donate_state``
    FRePo's jitted meta-step donates its input state (the pool member is updated in place instead
    of the whole pool being copied). Auto: on accelerators, whose memory holds the pool once; on
    the CPU the same program without donation was measured faster (32x32x3, 100 images, batch
    256, pool 10, one process: 0.97x the time per step at width 16 and 0.95x at width 32,
    bit-identical states; ``benchmarks/results/frepo_step_variants.md``).

A decision is read when a fit builds its static configuration (a jit static argument), so a
compiled step always matches the policy it was built under. Values are per thread.
"""

import threading
from contextlib import contextmanager
from numbers import Integral

import jax

__all__ = ["DECISIONS", "backend_context", "get_backend_policy", "set_backend_policy",
           "branch_free", "unroll", "host_loops", "network_precision", "steps_per_dispatch",
           "remat_features", "donate_state"]

# The automatic rule of each decision: a function of "is the default backend the CPU?".
DECISIONS = {
    "branch_free": lambda cpu: cpu,
    "unroll": lambda cpu: cpu,
    "host_loops": lambda cpu: cpu,
    "network_precision": lambda cpu: "float32" if cpu else "tf32",
    "steps_per_dispatch": lambda cpu: 1 if cpu else 20,
    "remat_features": lambda cpu: not cpu,
    "donate_state": lambda cpu: not cpu,
}

# The values of the decisions that are not booleans.
_CHOICES = {"network_precision": ("float32", "tf32", "bfloat16", "float64")}

# Decisions whose values are counts rather than switches.
_COUNTS = frozenset({"steps_per_dispatch"})

_local = threading.local()


def _overrides():
    if not hasattr(_local, "overrides"):
        _local.overrides = {}
    return _local.overrides


def _check(name, value):
    if name not in DECISIONS:
        raise ValueError(f"Unknown backend decision {name!r}; expected one of {sorted(DECISIONS)}.")
    if name in _COUNTS:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, Integral)
                                or value < 1):
            raise ValueError(f"`{name}` must be 'auto' or an integer >= 1; got {value!r}.")
        return
    if name in _CHOICES:
        if value != "auto" and value not in _CHOICES[name]:
            raise ValueError(f"`{name}` must be 'auto' or one of {_CHOICES[name]}; got {value!r}.")
    elif value != "auto" and not isinstance(value, bool):
        raise ValueError(f"`{name}` must be 'auto', True or False; got {value!r}.")


def get_backend_policy():
    """Each decision's value now: its override, or its automatic rule on the default backend."""
    cpu = jax.default_backend() == "cpu"
    overrides = _overrides()
    return {name: (overrides[name] if overrides.get(name, "auto") != "auto" else rule(cpu))
            for name, rule in DECISIONS.items()}


def set_backend_policy(**decisions):
    """Override decisions for this thread (``"auto"`` restores the automatic rule)."""
    for name, value in decisions.items():
        _check(name, value)
    _overrides().update(decisions)


@contextmanager
def backend_context(**decisions):
    """Override decisions inside a ``with`` block (this thread only); restored on exit."""
    saved = dict(_overrides())
    set_backend_policy(**decisions)
    try:
        yield
    finally:
        _local.overrides = saved


def branch_free():
    """Whether optional work in a jitted step is computed and masked instead of branched."""
    return get_backend_policy()["branch_free"]


def unroll():
    """Whether fixed-length loops inside a jitted step are unrolled."""
    return get_backend_policy()["unroll"]


def host_loops():
    """Whether long gradient-free loops run from Python, one jitted step per iteration."""
    return get_backend_policy()["host_loops"]


def network_precision():
    """The precision of the distillation network when a distiller's parameter is ``"auto"``."""
    return get_backend_policy()["network_precision"]


def steps_per_dispatch():
    """How many meta-steps one host dispatch runs (an int >= 1)."""
    return int(get_backend_policy()["steps_per_dispatch"])


def remat_features():
    """Whether FRePo computes synthetic features in rematerialised chunks."""
    return get_backend_policy()["remat_features"]


def donate_state():
    """Whether FRePo's jitted meta-step donates its input state."""
    return get_backend_policy()["donate_state"]
