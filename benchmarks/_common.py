"""Helpers shared by the benchmark scripts: machine description, timing, JSON + markdown output.

Kept small and generic on purpose; nothing here knows about a particular method.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    """The checked-out commit (read-only query), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    """Where the benchmark ran: platform, CPU, cores, memory, library versions, JAX devices."""
    import jax

    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax_version": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "numpy_version": np.__version__,
        "git_commit": _git_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }
    try:
        import sklearn_distill

        info["sklearn_distill_version"] = sklearn_distill.__version__
    except Exception:  # pragma: no cover - benchmarks must still describe the machine
        info["sklearn_distill_version"] = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gb"] = None
    return info


def machine_summary(info):
    """One line for a markdown report."""
    return (f"{info['cpu_model']} ({info['cpu_count']} logical cores), {info['platform']}, "
            f"JAX {info['jax_version']} on {', '.join(info['jax_devices'])}")


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` is the elapsed wall time in seconds."""
    start = time.perf_counter()
    end = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def jsonable(value):
    """``value`` with NumPy arrays/scalars and paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path, payload):
    """Write ``payload`` (NumPy values allowed) as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(jsonable(payload), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_results(name, payload, lines, folder=RESULTS):
    """Write ``folder/name.json`` and ``folder/name.md`` (the markdown ``lines``) and print them."""
    write_json(os.path.join(folder, name + ".json"), payload)
    write_text(os.path.join(folder, name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {os.path.join(folder, name)}.json/.md")


def markdown_table(headers, rows, align=None):
    """A GitHub markdown table; ``align`` is a string of 'l'/'r' per column (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def fmt_acc(mean, std=None, digits=1):
    """Accuracy in [0, 1] as a percentage, ``mean ± std``."""
    if mean is None:
        return "–"
    if std is None:
        return f"{100 * mean:.{digits}f}"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"


# --------------------------------------------------------------------------------------------
# Device cost: XLA's counts, the matmul reference, device memory
# --------------------------------------------------------------------------------------------

def xla_flops(compiled):
    """FLOPs of one call of a compiled function, by XLA's cost analysis (NaN if unknown)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def matmul_flops(n=2048, repeats=10, precision=None):
    """FLOP/s of a float32 ``n x n`` matmul on the default device (the achievable reference).

    ``precision`` is JAX's matmul precision (``"highest"``: full float32; ``"default"``: the
    device's fast mode, TF32 on recent NVIDIA GPUs; ``None``: the default).
    """
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision))
    f(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a, a)
    out.block_until_ready()
    return 2.0 * n ** 3 * repeats / (time.perf_counter() - start)


def time_alternating_blocks(fns, blocks, repeats):
    """Time compiled steps in alternating blocks, in one process (a shared machine's load then
    weighs on every variant alike).

    ``fns`` maps a name to ``(compiled, fn_args, info)``; ``compiled(*fn_args)`` returns
    ``(state, loss)`` and the state is fed back as ``fn_args[0]``. After one warm-up call each,
    every round runs ``repeats`` steps of each variant in turn and appends the wall and process CPU
    seconds per step to ``info["block_s"]`` and ``info["block_cpu_s"]``.
    """
    import jax

    for compiled, fn_args, _ in fns.values():  # warm-up
        fn_args[0], loss = compiled(*fn_args)
        jax.block_until_ready(loss)
    for _ in range(blocks):
        for compiled, fn_args, info in fns.values():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                fn_args[0], loss = compiled(*fn_args)
            jax.block_until_ready(loss)
            info.setdefault("block_s", []).append((time.perf_counter() - start) / repeats)
            info.setdefault("block_cpu_s", []).append((time.process_time() - cpu_start) / repeats)


def device_peak_MB():
    """Peak device memory in use so far (MiB), from ``memory_stats()``; None where the device
    reports none (the CPU): use the process's peak RSS there."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def peak_rss_MB():
    """Peak resident memory of this process so far (MiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name():
    """The default device in words, e.g. ``"NVIDIA H200 (gpu)"`` or ``"cpu (2 cores)"``."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu ({os.cpu_count()} cores, {_cpu_model()})"
    return f"{device.device_kind} ({device.platform})"


# --------------------------------------------------------------------------------------------
# Wall-clock budgets, fresh processes, published numbers
# --------------------------------------------------------------------------------------------

def seconds_per_step(history, statistic="median"):
    """Steady-state wall time of one step from a fitted distiller's ``history_``.

    ``history_["time"]`` is the elapsed time at each logged step; the intervals between logged
    steps leave out the first one, which holds the compilation. ``"median"`` resists load spikes
    on a shared machine; ``"mean"`` is the total time over the total steps, right for steps of
    varying cost (RaT-BPTT's random unroll lengths).
    """
    t = np.asarray(history["time"], float)
    s = np.asarray(history["step"], float)
    if len(t) < 2:
        return float(t[-1] / max(s[-1], 1.0))
    if statistic == "mean":
        return float((t[-1] - t[0]) / (s[-1] - s[0]))
    return float(np.median(np.diff(t) / np.diff(s)))


def probe_seconds_per_step(make, X, y, probe_steps, log_every=None, statistic="median"):
    """Fit ``make(probe_steps, log_every)`` on ``(X, y)``; return its seconds per step.

    The probe also compiles the method's step functions for these shapes, so a fit that follows
    in the same process starts warm.
    """
    log_every = log_every or max(1, probe_steps // 3)
    est = make(probe_steps, log_every).fit(X, y)
    return seconds_per_step(est.history_, statistic)


def _call_with_peak_rss(fn, args, kwargs):
    import resource

    out = fn(*args, **kwargs)
    # Linux reports ru_maxrss in KiB.
    return out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_in_fresh_process(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a new Python process of its own.

    Returns ``(result, peak_rss_mib)``: the peak resident memory of that process (interpreter,
    libraries and data included), from ``resource.getrusage``. ``fn`` must be importable (a
    module-level function) and its arguments and result picklable.

    The process is forked from multiprocessing's fork server, a small process that never imports
    JAX, not spawned from the caller: Linux carries the high-water mark of the image a process
    replaces at ``exec`` into its ``ru_maxrss``, so a child spawned from a caller holding gigabytes
    of data would report the caller's memory, not its own.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_call_with_peak_rss, fn, args, kwargs).result()


# Published test accuracies (%) from /work/shared/REFERENCE_RESULTS.md, by method, dataset, ipc:
# ConvNet evaluation at the papers' scale (width 128; FRePo and RCIG with width doubling).
PUBLISHED = {
    "random": {("mnist", 1): "62.7", ("mnist", 10): "93.2", ("mnist", 50): "97.8",
               ("cifar10", 1): "20.8", ("cifar10", 10): "38.4", ("cifar10", 50): "54.4",
               ("cifar100", 1): "6.2", ("cifar100", 10): "21.1"},
    "frepo": {("mnist", 1): "93.0 ± 0.4", ("mnist", 10): "98.6 ± 0.1", ("mnist", 50): "99.2 ± 0.0",
              ("cifar10", 1): "46.8 ± 0.7", ("cifar10", 10): "65.5 ± 0.4",
              ("cifar10", 50): "71.7 ± 0.2", ("cifar100", 1): "28.7 ± 0.1",
              ("cifar100", 10): "42.5 ± 0.2"},
    "rcig": {("mnist", 1): "94.7 ± 0.5", ("mnist", 10): "98.9 ± 0.0", ("mnist", 50): "99.2 ± 0.0",
             ("cifar10", 1): "53.9 ± 1.0", ("cifar10", 10): "69.1 ± 0.4",
             ("cifar10", 50): "73.5 ± 0.3", ("cifar100", 1): "39.3 ± 0.4",
             ("cifar100", 10): "44.1 ± 0.4"},
    "ratbptt": {("cifar10", 1): "53.2 ± 0.7", ("cifar10", 10): "69.4 ± 0.4",
                ("cifar10", 50): "75.3 ± 0.3", ("cifar100", 1): "35.3 ± 0.4",
                ("cifar100", 10): "47.5 ± 0.2"},
}


def published(method, dataset, ipc):
    """The published accuracy (a string, %) of ``method`` or ``"–"`` where the paper has none."""
    return PUBLISHED.get(method, {}).get((dataset, int(ipc)), "–")


# --------------------------------------------------------------------------------------------
# Learned distillers at CPU scale, for scripts that compare them with coresets
# (bench_continual.py, bench_privacy.py)
# --------------------------------------------------------------------------------------------

LEARNED = ("frepo", "rcig", "ratbptt", "krr")
METHOD_LABELS = {"random": "random", "herding": "herding", "kcenter": "k-center", "frepo": "FRePo",
                 "rcig": "RCIG", "ratbptt": "RaT-BPTT", "krr": "KRR"}
# Meta-steps of a learned distiller when neither ``--seconds`` nor ``--METHOD-steps`` is given.
DEFAULT_LEARNED_STEPS = {"frepo": 300, "rcig": 30, "ratbptt": 100, "krr": 300}


def add_learned_arguments(parser, frepo_steps_flag=True):
    """Flags of the learned distillers (settings that worked at CPU scale in bench_rcig.py,
    bench_ratbptt.py and bench_translator.py). ``frepo_steps_flag=False`` when the script
    already defines ``--frepo-steps``."""
    g = parser.add_argument_group("learned distillers (ConvNet width/depth from --width/--depth)")
    g.add_argument("--seconds", type=float, default=None,
                   help="wall-clock budget of each learned distillation: the time of a meta-step "
                        "is measured first (--probe-steps) and the step count set from it")
    g.add_argument("--probe-steps", type=int, default=6, help="meta-steps of the calibration fit")
    for m in LEARNED:
        if m != "frepo" or frepo_steps_flag:
            g.add_argument(f"--{m}-steps", type=int, default=None,
                           help=f"{METHOD_LABELS[m]} meta-steps without --seconds "
                                f"(default {DEFAULT_LEARNED_STEPS[m]})")
    g.add_argument("--distill-batch", type=int, default=256, help="real rows per meta-step")
    g.add_argument("--frepo-lr", type=float, default=3e-3)
    g.add_argument("--rcig-lr", type=float, default=1e-2)
    g.add_argument("--ratbptt-lr", type=float, default=0.02)
    g.add_argument("--krr-lr", type=float, default=0.01)
    g.add_argument("--pool-size", type=int, default=10, help="FRePo / RCIG model pool")
    g.add_argument("--max-online-steps", type=int, default=100, help="FRePo / RCIG pool K")
    g.add_argument("--n-inner", type=int, default=10, help="RCIG inner steps")
    g.add_argument("--n-hinv", type=int, default=10, help="RCIG Hessian-inverse steps")
    g.add_argument("--window", type=int, default=4, help="RaT-BPTT window")
    g.add_argument("--unroll", type=int, default=30, help="RaT-BPTT unroll")
    g.add_argument("--inner-batch", type=int, default=20, help="RaT-BPTT inner minibatch")
    g.add_argument("--ratbptt-inner-lr", type=float, default=0.01)
    return g


def learned_factory(method, ipc, args, seed=0):
    """``make(n_steps, log_every)`` building the learned distiller ``method`` from ``args``."""
    from sklearn_distill import (ConvNet, FRePoDistiller, KRRDistiller, RaTBPTTDistiller,
                                 RCIGDistiller)

    w, d, batch = args.width, args.depth, args.distill_batch
    pool = dict(pool_size=args.pool_size, max_online_steps=args.max_online_steps)
    if method == "frepo":
        model = ConvNet(width=w, depth=d, norm="batch", width_doubling=True)
        return lambda n, every: FRePoDistiller(ipc=ipc, n_steps=n, batch_size=batch, model=model,
                                               learning_rate=args.frepo_lr, log_every=every,
                                               random_state=seed, **pool)
    if method == "rcig":
        model = ConvNet(width=w, depth=d, width_doubling=True, activation="softplus",
                        softplus_temperature=60.0)
        return lambda n, every: RCIGDistiller(ipc=ipc, n_steps=n, batch_size=batch, model=model,
                                              learning_rate=args.rcig_lr, online_steps=15,
                                              online_learning_rate=1e-3, n_inner=args.n_inner,
                                              n_hinv=args.n_hinv, log_every=every,
                                              random_state=seed, **pool)
    if method == "ratbptt":
        model = ConvNet(width=w, depth=d, norm="instance")
        return lambda n, every: RaTBPTTDistiller(ipc=ipc, n_steps=n, batch_size=batch, model=model,
                                                 learning_rate=args.ratbptt_lr, window=args.window,
                                                 unroll=args.unroll, init="real",
                                                 inner_learning_rate=args.ratbptt_inner_lr,
                                                 inner_batch_size=args.inner_batch,
                                                 log_every=every, random_state=seed)
    if method == "krr":
        model = ConvNet(width=w, depth=d, norm="none")
        return lambda n, every: KRRDistiller(ipc, n_steps=n, n_networks=None, batch_size=batch,
                                             model=model, learning_rate=args.krr_lr,
                                             log_every=every, random_state=seed)
    raise ValueError(f"not a learned distiller: {method!r}")


def build_learned(method, ipc, args, X_probe, y_probe, seed=0):
    """The learned distiller ``method`` with its meta-step count, and a record of how it was set.

    With ``args.seconds`` the time of a meta-step is measured by a ``--probe-steps`` fit on
    ``(X_probe, y_probe)`` (which also compiles the step for these shapes) and the step count
    fills the budget; otherwise ``--METHOD-steps`` (or ``DEFAULT_LEARNED_STEPS``).
    """
    make = learned_factory(method, ipc, args, seed)
    info = {"budget_seconds": args.seconds}
    if args.seconds:
        start = time.perf_counter()
        # RaT-BPTT's unroll lengths vary, so its mean step time is the right rate.
        per_step = probe_seconds_per_step(make, X_probe, y_probe, args.probe_steps,
                                          log_every=max(1, args.probe_steps // 3),
                                          statistic="mean" if method == "ratbptt" else "median")
        n_steps = max(1, int(args.seconds / per_step))
        info.update(seconds_per_step=round(per_step, 4),
                    probe_seconds=round(time.perf_counter() - start, 1))
        log(f"{METHOD_LABELS[method]}: {1000 * per_step:.0f} ms per meta-step -> {n_steps} steps")
    else:
        n_steps = getattr(args, f"{method}_steps", None) or DEFAULT_LEARNED_STEPS[method]
    info["n_steps"] = n_steps
    return make(n_steps, max(1, n_steps // 10)), info


def learned_settings(args, methods):
    """One sentence on the learned distillers' CPU-scale settings (for a markdown header)."""
    used = [m for m in methods if m in LEARNED]
    if not used:
        return ""
    parts = []
    if "frepo" in used:
        parts.append(f"FRePo (batch norm, width doubling, Adam {args.frepo_lr:g})")
    if "rcig" in used:
        parts.append(f"RCIG (softplus, width doubling, n_inner {args.n_inner}, n_hinv "
                     f"{args.n_hinv}, online steps 15 at Adam 1e-3, Adam {args.rcig_lr:g})")
    if "ratbptt" in used:
        parts.append(f"RaT-BPTT (instance norm, window {args.window}, unroll {args.unroll}, inner "
                     f"batch {args.inner_batch}, inner lr {args.ratbptt_inner_lr:g}, outer Adam "
                     f"{args.ratbptt_lr:g}, init real)")
    if "krr" in used:
        parts.append(f"KRR (R = T, Adam {args.krr_lr:g})")
    pool = (f"; FRePo/RCIG pool {args.pool_size}, K {args.max_online_steps}"
            if {"frepo", "rcig"} & set(used) else "")
    budget = (f"a wall-clock budget of {args.seconds:g} s per distillation (meta-step time "
              f"measured over {args.probe_steps} steps first; compilation not counted)"
              if args.seconds else "fixed meta-step counts")
    return (f"Learned distillers at CPU scale (the papers use width 128, batches of 1024 and "
            f"thousands of meta-steps): ConvNet width {args.width}, depth {args.depth}, real batch "
            f"{args.distill_batch}, {budget}; " + "; ".join(parts) + pool + ".")
