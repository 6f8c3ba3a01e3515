"""FRePo benchmark: accuracy against a random subset, and the cost of a meta-step.

Run by hand (never in CI). Accuracy mode distils each ``--ipc`` and evaluates the synthetic set
and a class-balanced random subset of the same size with the same evaluation networks, in the same
run::

    python benchmarks/bench_frepo.py --dataset mnist --ipc 10 --width 32 --seconds 900 \
        --data-home /path/to/data

Cost mode measures time per meta-step, memory and achieved FLOP/s by network width and by
synthetic-set size (CIFAR-100-like inputs: 32x32x3, 100 classes, as in the paper's cost table)::

    python benchmarks/bench_frepo.py --cost --widths 16 32 64 --sizes 100 400

Both write a JSON file and a markdown table into ``benchmarks/results/``.
Benchmark files are made with ``python materialize.py DATA_HOME`` (shared datasets folder).
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (device_peak_MB, machine_info, machine_summary, matmul_flops,  # noqa: E402
                     write_results, xla_flops)
RESULTS = os.path.join(HERE, "results")

# FRePo's published accuracies (%), ConvNet, from the shared reference table.
PAPER = {("mnist", 1): "93.0 ± 0.4", ("mnist", 10): "98.6 ± 0.1", ("mnist", 50): "99.2 ± 0.0",
         ("cifar10", 1): "46.8 ± 0.7", ("cifar10", 10): "65.5 ± 0.4", ("cifar10", 50): "71.7 ± 0.2"}
RANDOM_PAPER = {("mnist", 1): 62.7, ("mnist", 10): 93.2, ("mnist", 50): 97.8,
                ("cifar10", 1): 20.8, ("cifar10", 10): 38.4, ("cifar10", 50): 54.4}
# The paper's cost table (Quadro RTX 6000, batch 256, CIFAR-100 ipc 1): ms per meta-step.
PAPER_COST_MS = {16: 7.7, 32: 6.9, 64: 8.5, 128: 10.9, 256: 20.8, 512: 52.5}
PAPER_COST_SIZE_MS = {100: 10.9, 400: 16.2, 1600: 35.3, 6400: 123.2}


def load(dataset, data_home):
    """Preprocessed (X_train, y_train, X_test, y_test) as FRePo prepares them."""
    from sklearn.model_selection import train_test_split

    from sklearn_distill import ImageStandardizer, ZCAWhitening, load_benchmark, load_digits_images

    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
        scaler = ImageStandardizer().fit(X_tr)
        return scaler.transform(X_tr), y_tr, scaler.transform(X_te), y_te
    X_tr, y_tr, X_te, y_te = load_benchmark(dataset, data_home, return_X_y=True)
    X_tr, X_te = X_tr.astype(np.float32) / 255.0, X_te.astype(np.float32) / 255.0
    scaler = ImageStandardizer().fit(X_tr)  # per-channel standardisation
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    if dataset == "cifar10":
        # FRePo whitens RGB data after standardising: ZCA with a trace-relative ridge of 0.1.
        zca = ZCAWhitening(regularization=0.1, standardize=None).fit(X_tr)
        X_tr, X_te = zca.transform(X_tr), zca.transform(X_te)
    return X_tr.astype(np.float32), y_tr, X_te.astype(np.float32), y_te


def accuracy(args):
    from sklearn_distill import ConvNet, FRePoDistiller, RandomDistiller

    X_tr, y_tr, X_te, y_te = load(args.dataset, args.data_home)
    model = ConvNet(width=args.width, depth=args.depth, norm="batch", width_doubling=True,
                    norm_position="before", norm_momentum=0.1)  # FRePo's default layout
    eval_model = model.clone(norm="none", parent=None)
    rows = []
    for ipc in args.ipc:
        common = dict(ipc=ipc, n_eval_models=args.n_eval, random_state=args.seed,
                      eval_model=eval_model,
                      eval_steps=args.eval_steps if args.eval_steps else "auto",
                      eval_protocol=args.protocol)
        n_steps = args.steps
        if args.seconds:
            # Calibrate the time of a meta-step, then fill the budget (the cosine schedule needs
            # the number of steps up front).
            probe = FRePoDistiller(n_steps=60, batch_size=args.batch, model=model,
                                   learning_rate=args.learning_rate,
                                   pool_size=args.pool_size, log_every=20, **common)
            probe.fit(X_tr, y_tr)
            t = np.diff(probe.history_["time"])
            per_step = float(np.median(t[1:]) / 20) if len(t) > 1 else float(t[0] / 20)
            n_steps = max(1, int(args.seconds / per_step))
            print(f"ipc {ipc}: {1000 * per_step:.1f} ms per meta-step -> {n_steps} steps",
                  flush=True)
        frepo = FRePoDistiller(n_steps=n_steps, batch_size=args.batch, model=model,
                               learning_rate=args.learning_rate, pool_size=args.pool_size,
                               log_every=max(1, n_steps // 50),
                               verbose=args.verbose, checkpoint=args.checkpoint, **common)
        start = time.perf_counter()
        frepo.fit(X_tr, y_tr)
        distill_time = time.perf_counter() - start
        res = frepo.evaluate(X_te, y_te)
        rand = RandomDistiller(**common).fit(X_tr, y_tr).evaluate(X_te, y_te)
        row = {"ipc": ipc, "steps": int(frepo.n_iter_), "stop_reason": frepo.stop_reason_,
               "distill_seconds": round(distill_time, 1),
               "ms_per_step": round(1000 * distill_time / max(frepo.n_iter_, 1), 2),
               "frepo_acc_mean": 100 * res.mean, "frepo_acc_std": 100 * res.std,
               "random_acc_mean": 100 * rand.mean, "random_acc_std": 100 * rand.std,
               "eval_steps": int(res.n_steps), "final_loss": frepo.history_["loss"][-1],
               "paper_frepo": PAPER.get((args.dataset, ipc)),
               "paper_random": RANDOM_PAPER.get((args.dataset, ipc))}
        print(json.dumps(row), flush=True)
        rows.append(row)
    config = {k: v for k, v in vars(args).items()}
    config.update(model=repr(model), eval_model=repr(eval_model))
    out = {"mode": "accuracy", "config": config, "machine": machine_info(), "results": rows}
    name = f"frepo_{args.dataset}_w{args.width}_" + "_".join(f"ipc{i}" for i in args.ipc)
    lines = [f"FRePo on {args.dataset}, ConvNet width {args.width} (doubling), depth {args.depth}, "
             f"batch {args.batch}, pool {args.pool_size}, learning rate {args.learning_rate}; "
             f"{machine_summary(out['machine'])}.", "",
             "| ipc | steps | distil time (s) | FRePo acc (%) | random acc (%) | paper FRePo | "
             "paper random |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['ipc']} | {r['steps']} | {r['distill_seconds']} | "
                     f"{r['frepo_acc_mean']:.2f} ± {r['frepo_acc_std']:.2f} | "
                     f"{r['random_acc_mean']:.2f} ± {r['random_acc_std']:.2f} | "
                     f"{r['paper_frepo']} | {r['paper_random']} |")
    write(name, out, lines)


def step_cost(width, n_syn, n_classes, batch, repeats, depth=3, shape=(32, 32, 3),
              precision="highest", parts=True, network_precision=None):
    """Time, memory and FLOPs of one FRePo meta-step on random data.

    ``parts=False`` skips timing the meta-gradient and the online step on their own (two more
    compilations); ``network_precision`` (None: ``"auto"``) is the network's precision policy, as
    the estimator's parameter.
    """
    import jax
    import jax.numpy as jnp

    from sklearn_distill import _backend, _pool
    from sklearn_distill.methods import frepo as F

    # As a fit builds it: the network under the precision policy, the synthetic features in
    # rematerialised chunks and the state donated where the backend policy says so.
    state, X, Y, hyper, config = meta_step_setup(
        width, n_syn, n_classes, batch, depth, shape, precision=precision,
        network_precision=network_precision,
        feature_chunk=F._FEATURE_CHUNK if _backend.remat_features() else 0,
        donate_state=_backend.donate_state())
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    compiled = F._meta_step.lower(state, X, Y, hyper, config).compile()
    compile_s = time.perf_counter() - start
    flops = xla_flops(compiled)
    mem = compiled.memory_analysis()
    temp_bytes = getattr(mem, "temp_size_in_bytes", None)
    arg_bytes = getattr(mem, "argument_size_in_bytes", None)

    # Where the time goes: the step's two halves compiled on their own (the meta-gradient, with
    # the real batch's features and the KRR solve, and the pool member's online training step).
    def online(st):
        return _pool.online_update(st["pool"], jnp.asarray(0), key, st["x"], st["y"],
                                   model=config.model, optimizer=_pool.pool_optimizer(hyper["online_learning_rate"]),
                                   max_online_steps=hyper["max_online_steps"])

    part_ms, part_flops = {}, {}
    grad_fn = parts and jax.jit(F.meta_gradient, static_argnames=("config",)).lower(
        state, X, Y, hyper, config).compile()
    online_fn = parts and jax.jit(online).lower(state).compile()
    parts = {"meta_gradient": (grad_fn, (state, X, Y, hyper)),
             "online_update": (online_fn, (state,))} if parts else {}
    for name, (fn, fn_args) in parts.items():
        jax.block_until_ready(fn(*fn_args))
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(*fn_args)
        jax.block_until_ready(out)
        part_ms[name] = 1000 * (time.perf_counter() - start) / repeats
        part_flops[name] = xla_flops(fn)

    for _ in range(2):
        state, loss = compiled(state, X, Y, hyper)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(repeats):
        state, loss = compiled(state, X, Y, hyper)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / repeats
    return {"width": width, "n_synthetic": n_syn, "network_precision": network_precision,
            "feature_chunk": config.feature_chunk, "ms_per_step": 1000 * seconds,
            "flops_per_step": flops, "achieved_flops": flops / seconds,
            "parts_ms": part_ms, "parts_flops": part_flops, "compile_s": compile_s,
            "precision": precision, "peak_device_MB": device_peak_MB(),
            "xla_temp_MB": None if temp_bytes is None else temp_bytes / 2**20,
            "xla_args_MB": None if arg_bytes is None else arg_bytes / 2**20,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cost(args):
    peak = matmul_flops()
    print(f"float32 matmul reference: {peak / 1e9:.1f} GFLOP/s", flush=True)
    by_width, by_size = [], []
    for w in args.widths:
        r = step_cost(w, 100, 100, args.batch, args.repeats)
        r["fraction_of_matmul"] = r["achieved_flops"] / peak
        r["paper_ms"] = PAPER_COST_MS.get(w)
        print(json.dumps(r), flush=True)
        by_width.append(r)
    for n in args.sizes:
        r = step_cost(args.size_width, n, 100, args.batch, args.repeats)
        r["fraction_of_matmul"] = r["achieved_flops"] / peak
        r["paper_ms"] = PAPER_COST_SIZE_MS.get(n) if args.size_width == 128 else None
        print(json.dumps(r), flush=True)
        by_size.append(r)
    out = {"mode": "cost", "config": vars(args), "machine": machine_info(),
           "matmul_flops": peak, "by_width": by_width, "by_size": by_size}
    lines = [f"FRePo meta-step cost, batch {args.batch}, 32x32x3 inputs, 100 classes, pool 10, "
             f"flip on; {machine_summary(out['machine'])}. Reference float32 matmul: "
             f"{peak / 1e9:.1f} GFLOP/s. Memory: XLA temporaries of the step and peak process RSS.",
             "Where the time goes: the meta-gradient (real and synthetic features, the KRR solve "
             "and the backward pass) and the pool member's online step, each compiled and timed on "
             "its own (ms, and GFLOP/s achieved in it); the rest of the step is the LAMB update "
             "and the bookkeeping.",
             "", "| width | n synthetic | ms/step | GFLOP/step | achieved GFLOP/s | "
             "fraction of matmul | meta-gradient ms (GFLOP/s) | online step ms (GFLOP/s) | "
             "XLA temp MB | peak RSS MB | paper ms (RTX 6000) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def part(r, name):
        ms = r["parts_ms"][name]
        return f"{ms:.1f} ({r['parts_flops'][name] / ms / 1e6:.1f})"

    for r in by_width + by_size:
        lines.append(f"| {r['width']} | {r['n_synthetic']} | {r['ms_per_step']:.1f} | "
                     f"{r['flops_per_step'] / 1e9:.2f} | {r['achieved_flops'] / 1e9:.1f} | "
                     f"{r['fraction_of_matmul']:.2f} | {part(r, 'meta_gradient')} | "
                     f"{part(r, 'online_update')} | {r['xla_temp_MB'] or float('nan'):.0f} | "
                     f"{r['peak_rss_MB']:.0f} | {r['paper_ms']} |")
    write("frepo_cost", out, lines)


def meta_step_setup(width, n_syn, n_classes, batch, depth=3, shape=(32, 32, 3), flip=True,
                    learn_labels=True, feature_chunk=0, solver="auto", precision="highest",
                    network_precision=None, donate_state=True):
    """Random data, state and static configuration of one FRePo meta-step in the paper's setting
    (FRePo's default network layout, pool 10, K = 100); ``network_precision`` None: ``"auto"``."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill._precision import resolve_network_precision, with_network_precision
    from sklearn_distill._sharding import DataParallel
    from sklearn_distill._training import centred_one_hot, init_labels
    from sklearn_distill.methods import frepo as F
    from sklearn_distill.networks import with_num_classes

    rng = np.random.default_rng(0)
    model = with_num_classes(ConvNet(width=width, depth=depth, norm="batch",
                                     width_doubling=True, norm_position="before",
                                     norm_momentum=0.1), n_classes)  # FRePo's default layout
    ipc = n_syn // n_classes
    x_syn = rng.standard_normal((ipc * n_classes,) + shape).astype(np.float32)
    y_syn = np.repeat(np.arange(n_classes), ipc)
    X = jnp.asarray(rng.standard_normal((max(4 * batch, 2048),) + shape).astype(np.float32))
    Y = jnp.asarray(centred_one_hot(rng.integers(0, n_classes, X.shape[0]), n_classes))
    key = jax.random.PRNGKey(0)
    network_precision = resolve_network_precision(network_precision or "auto")
    config = F._Config(model=with_network_precision(model, network_precision), batch_size=batch,
                       learn_labels=learn_labels, flip=flip, precision=precision,
                       placement=DataParallel(None, None), network_precision=network_precision,
                       feature_chunk=feature_chunk, solver=solver, donate_state=donate_state)
    hyper = F.hyperparameters(1000, 3e-4, 1e-6, 100, 3e-4)
    state = F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, 10, 100)
    return state, X, Y, hyper, config


# The variants of the large-set profile: what is compiled ("step": the whole meta-step,
# "grad": the meta-gradient alone, "online": the pool member's online step alone) and how.
LARGE_VARIANTS = {
    "step": ("step", {}),
    "step_chunked": ("step", {"feature_chunk": "chunk"}),
    "grad": ("grad", {}),
    "grad_no_flip": ("grad", {"flip": False}),
    "grad_no_margin": ("grad", {"learn_labels": False}),
    "grad_dual": ("grad", {"solver": "dual"}),
    "grad_primal": ("grad", {"solver": "primal"}),
    "grad_chunked": ("grad", {"feature_chunk": "chunk"}),
    "online_batch": ("online", {"online_batch": True}),
    "online_all_rows": ("online", {"online_batch": False}),
}


def _large_fn(kind, width, n_syn, batch, options, chunk):
    """A compiled variant and its arguments; the step's state is threaded through calls."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import _pool
    from sklearn_distill.methods import frepo as F

    opts = dict(options)
    online_batch = opts.pop("online_batch", True)
    if opts.get("feature_chunk") == "chunk":
        opts["feature_chunk"] = chunk
    state, X, Y, hyper, config = meta_step_setup(width, n_syn, 100, batch, **opts)
    if kind == "step":
        compiled = F._meta_step.lower(state, X, Y, hyper, config).compile()
        return compiled, [state, X, Y, hyper], True
    if kind == "grad":
        compiled = F.meta_gradient.lower(state, X, Y, hyper, config).compile()
        return compiled, [state, X, Y, hyper], False
    key = jax.random.PRNGKey(1)
    rows = F._ONLINE_BATCH if online_batch and n_syn > F._ONLINE_BATCH else None

    def online(st):
        return _pool.online_update(st["pool"], jnp.asarray(0), key, st["x"], st["y"],
                                   model=config.model,
                                   optimizer=_pool.pool_optimizer(hyper["online_learning_rate"]),
                                   max_online_steps=hyper["max_online_steps"], batch_size=rows)

    return jax.jit(online).lower(state).compile(), [state], False


def large_sets(args):
    """Where the time and memory of a meta-step go at large synthetic sets (variants in one run).

    Every variant is compiled first (compile seconds, XLA temporaries, FLOPs); then the variants
    are timed in alternating blocks so that they share the machine's load, and the median block
    is kept.
    """

    from sklearn_distill._jax import library_prng

    with library_prng():  # the fits' own PRNG setting (it changes compile times several-fold)
        _large_sets(args)


def _large_sets(args):
    import jax

    rows = []
    for width, n_syn in zip(args.large_widths, args.large_sizes):
        fns = {}
        for name in args.variants:
            kind, options = LARGE_VARIANTS[name]
            start = time.perf_counter()
            compiled, fn_args, threads = _large_fn(kind, width, n_syn, args.batch, options,
                                                   args.chunk)
            compile_s = time.perf_counter() - start
            mem = compiled.memory_analysis()
            fns[name] = (compiled, fn_args, threads)
            rows.append({"width": width, "n_synthetic": n_syn, "variant": name,
                         "compile_s": compile_s, "flops": xla_flops(compiled),
                         "xla_temp_MB": mem.temp_size_in_bytes / 2**20,
                         "xla_args_MB": mem.argument_size_in_bytes / 2**20, "block_ms": []})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "block_ms"}), flush=True)
        if args.compile_only:
            continue
        mine = {r["variant"]: r for r in rows[-len(args.variants):]}

        def run(name):
            compiled, fn_args, threads = fns[name]
            out = compiled(*fn_args)
            if threads:
                fn_args[0] = out[0]
            return out

        for name in fns:  # warm-up
            jax.block_until_ready(run(name))
        for _ in range(args.blocks):
            for name in fns:
                start = time.perf_counter()
                for _ in range(args.repeats):
                    out = run(name)
                jax.block_until_ready(out)
                mine[name]["block_ms"].append(1000 * (time.perf_counter() - start) / args.repeats)
        for name, r in mine.items():
            r["ms"] = float(np.median(r["block_ms"]))
            r["ms_ratio_to_step" if name.startswith("step") else "ms_ratio_to_base"] = (
                r["ms"] / mine["step" if name.startswith("step") else
                              ("grad" if name.startswith("grad") else "online_batch")]["ms"]
                if ("step" in mine and "grad" in mine and "online_batch" in mine) else None)
            print(json.dumps({"width": width, "n_synthetic": n_syn, "variant": name,
                              "ms": r["ms"]}), flush=True)
    write_large_sets(args, rows)


def write_large_sets(args, rows, note=""):
    """The JSON + markdown of the large-set profile (``rows`` as built by ``large_sets``)."""
    out = {"mode": "large_sets", "config": vars(args), "machine": machine_info(),
           "results": rows, "note": note}
    lines = [f"FRePo meta-step at large synthetic sets: batch {args.batch}, 32x32x3 inputs, "
             f"100 classes, pool 10, flip on unless stated, ConvNet depth 3 with width doubling "
             f"and batch norm (widths scaled down for the CPU); chunked variants use "
             f"{args.chunk}-row rematerialised chunks; {machine_summary(out['machine'])}. "
             "Times are medians of "
             f"{args.blocks} alternating blocks of {args.repeats} calls in one process "
             "(the machine was shared); ratios compare variants of the same configuration.",
             "GFLOP: XLA's cost analysis, which counts a loop body once (chunked variants are "
             "undercounted). " + note, "",
             "| width | n synthetic | variant | ms | ratio | XLA temp MB | GFLOP | compile s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r.get("ms_ratio_to_step", r.get("ms_ratio_to_base"))
        ms = f"{r['ms']:.1f}" if "ms" in r else "not run"
        lines.append(f"| {r['width']} | {r['n_synthetic']} | {r['variant']} | {ms} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} | {r['xla_temp_MB']:.0f} | "
                     f"{r['flops'] / 1e9:.2f} | {r['compile_s']:.1f} |")
    write(args.name or "frepo_large_sets", out, lines)


def write(name, out, lines):
    write_results(name, out, lines, RESULTS)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["digits", "mnist", "cifar10"], default="digits")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--steps", type=int, default=2000, help="meta-steps (unless --seconds)")
    p.add_argument("--seconds", type=float, default=None,
                   help="distillation budget per ipc; overrides --steps")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=3e-4,
                   help="LAMB rate of the synthetic set (paper: 3e-4 over very long runs)")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--n-eval", type=int, default=5)
    p.add_argument("--eval-steps", type=int, default=None)
    p.add_argument("--protocol", default="library",
                   choices=["library", "frepo", "rcig", "ratbptt", "dc"],
                   help="evaluation protocol of every row (one for all, so rows compare)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--cost", action="store_true", help="measure the meta-step cost instead")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600, 6400])
    p.add_argument("--size-width", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--large", action="store_true",
                   help="profile large synthetic sets: timed variants that leave one part out")
    p.add_argument("--large-widths", type=int, nargs="+", default=[16, 16, 8])
    p.add_argument("--large-sizes", type=int, nargs="+", default=[400, 1600, 6400])
    p.add_argument("--variants", nargs="+", default=list(LARGE_VARIANTS),
                   choices=list(LARGE_VARIANTS))
    p.add_argument("--chunk", type=int, default=256, help="rows per chunk of chunked variants")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--compile-only", action="store_true",
                   help="large mode: compile and report memory and FLOPs without running")
    p.add_argument("--name", default=None, help="results file name (large mode)")
    args = p.parse_args(argv)
    if args.large:
        if "--batch" not in (argv or sys.argv):
            args.batch = 256
        large_sets(args)
    elif args.cost:
        if args.batch == 1024 and "--batch" not in (argv or sys.argv):
            args.batch = 256  # the paper's cost table uses batch 256
        cost(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
