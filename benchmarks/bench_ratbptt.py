"""RaT-BPTT and Boost-DD benchmarks: accuracy, the cost of the window, and nested blocks.

Run by hand (never in CI). Three modes, each writing JSON + markdown into ``benchmarks/results/``:

``accuracy``
    Distil each ``--ipc`` on ``--dataset`` and evaluate the synthetic set and a class-balanced
    random subset of the same size with the same evaluation networks in the same run, next to the
    paper's numbers (and FRePo / RCIG results of this project where they exist)::

        python benchmarks/bench_ratbptt.py accuracy --dataset mnist --ipc 1 10 --width 16 \\
            --steps 300 --window 10 --unroll 30 --data-home data

``cost``
    Time per meta-step and the memory of the compiled meta-step against the window ``M``, with
    and without rematerialisation (``jax.checkpoint``), on random data of a given image shape::

        python benchmarks/bench_ratbptt.py cost --windows 2 5 10 20 40 --shape 28 28 1

``boost``
    The Boost-DD comparison: at budgets of k = 1..K images per class, test accuracy of (a) random
    subsets of a set distilled jointly at K, (b) the first k blocks of a boosted set, (c) k random
    real images per class; plus sets distilled directly at each k when ``--direct`` is given::

        python benchmarks/bench_ratbptt.py boost --dataset digits --blocks 5 --beta 0.1

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
from _common import (machine_info, machine_summary, time_alternating_blocks,  # noqa: E402
                     write_results)

RESULTS = os.path.join(HERE, "results")

# Published accuracies (%), narrow ConvNet with instance norm, from the shared reference table.
PAPER = {("cifar10", 1): "53.2 ± 0.7", ("cifar10", 10): "69.4 ± 0.4", ("cifar10", 50): "75.3 ± 0.3"}
PAPER_FREPO = {("mnist", 1): "93.0 ± 0.4", ("mnist", 10): "98.6 ± 0.1",
               ("cifar10", 1): "46.8 ± 0.7", ("cifar10", 10): "65.5 ± 0.4"}
PAPER_RCIG = {("mnist", 1): "94.7 ± 0.5", ("mnist", 10): "98.9 ± 0.0",
              ("cifar10", 1): "53.9 ± 1.0", ("cifar10", 10): "69.1 ± 0.4"}
PAPER_RANDOM = {("mnist", 1): 62.7, ("mnist", 10): 93.2, ("cifar10", 1): 20.8,
                ("cifar10", 10): 38.4}


def load(dataset, data_home, n_train=None, seed=0):
    """Preprocessed (X_train, y_train, X_test, y_test): per-channel standardisation."""
    from sklearn.model_selection import train_test_split

    from sklearn_distill import ImageStandardizer, load_benchmark, load_digits_images

    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    else:
        X_tr, y_tr, X_te, y_te = load_benchmark(dataset, data_home, return_X_y=True)
        X_tr, X_te = X_tr.astype(np.float32) / 255.0, X_te.astype(np.float32) / 255.0
        if n_train:
            rng = np.random.default_rng(seed)
            keep = rng.choice(len(X_tr), n_train, replace=False)
            X_tr, y_tr = X_tr[keep], y_tr[keep]
    scaler = ImageStandardizer().fit(X_tr)
    return (scaler.transform(X_tr).astype(np.float32), y_tr,
            scaler.transform(X_te).astype(np.float32), y_te)


def _other_results(dataset, ipc):
    """This project's FRePo / RCIG accuracies for the same dataset and ipc, if committed."""
    found = {}
    for name in sorted(os.listdir(RESULTS)):
        if not name.endswith(".json") or not name.startswith(("frepo_", "rcig_")):
            continue
        try:
            with open(os.path.join(RESULTS, name)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if data.get("mode") != "accuracy" or data.get("config", {}).get("dataset") != dataset:
            continue
        for row in data.get("results", []):
            for method in ("frepo", "rcig"):
                mean = row.get(f"{method}_acc_mean")
                if row.get("ipc") == ipc and mean is not None and method not in found:
                    std = row.get(f"{method}_acc_std")
                    steps = row.get(f"{method}_steps", row.get("steps"))
                    found[method] = f"{mean:.2f} ± {std:.2f} ({name}, {steps} steps)"
    return found


def _rat(args, ipc, model, eval_model, n_steps, random_state=None):
    from sklearn_distill import RaTBPTTDistiller

    return RaTBPTTDistiller(ipc=ipc, n_steps=n_steps, learning_rate=args.learning_rate,
                            batch_size=args.batch, window=args.window, unroll=args.unroll,
                            inner_learning_rate=args.inner_learning_rate,
                            inner_batch_size=args.inner_batch, init=args.init, model=model,
                            eval_model=eval_model, n_eval_models=args.n_eval,
                            eval_steps=args.eval_steps or "auto", eval_protocol=args.protocol,
                            log_every=max(1, n_steps // 20), verbose=args.verbose,
                            random_state=args.seed if random_state is None else random_state)


def _models(args, shape):
    from sklearn_distill import ConvNet

    depth = args.depth or (2 if min(shape[:2]) < 16 else 3)
    model = ConvNet(width=args.width, depth=depth, norm="instance")
    eval_model = model if args.eval_norm == "instance" else model.clone(norm="none", parent=None)
    return model, eval_model


def accuracy(args):
    from sklearn_distill import RandomDistiller

    X_tr, y_tr, X_te, y_te = load(args.dataset, args.data_home, args.n_train, args.seed)
    model, eval_model = _models(args, X_tr.shape[1:])
    rows = []
    for ipc in args.ipc:
        n_steps = args.steps
        if args.seconds:
            probe = _rat(args, ipc, model, eval_model, 10)
            probe.set_params(log_every=5).fit(X_tr, y_tr)
            per_step = float(np.diff(probe.history_["time"])[-1] / 5)
            n_steps = max(1, int(args.seconds / per_step))
            print(f"ipc {ipc}: {per_step:.2f} s per meta-step -> {n_steps} steps", flush=True)
        rat = _rat(args, ipc, model, eval_model, n_steps)
        start = time.perf_counter()
        rat.fit(X_tr, y_tr)
        distill_time = time.perf_counter() - start
        res = rat.evaluate(X_te, y_te)
        common = dict(ipc=ipc, n_eval_models=args.n_eval, eval_model=eval_model,
                      eval_steps=args.eval_steps or "auto", random_state=args.seed,
                      eval_protocol=args.protocol)
        rand = RandomDistiller(**common).fit(X_tr, y_tr).evaluate(X_te, y_te)
        row = {"ipc": ipc, "steps": int(rat.n_iter_), "stop_reason": rat.stop_reason_,
               "distill_seconds": round(distill_time, 1),
               "s_per_step": round(distill_time / max(rat.n_iter_, 1), 3),
               "mean_unroll": float(np.mean(rat.unroll_lengths_)),
               "ratbptt_acc_mean": 100 * res.mean, "ratbptt_acc_std": 100 * res.std,
               "random_acc_mean": 100 * rand.mean, "random_acc_std": 100 * rand.std,
               "eval_steps": int(res.n_steps), "first_loss": rat.history_["loss"][0],
               "final_loss": rat.history_["loss"][-1],
               "paper_ratbptt": PAPER.get((args.dataset, ipc)),
               "paper_frepo": PAPER_FREPO.get((args.dataset, ipc)),
               "paper_rcig": PAPER_RCIG.get((args.dataset, ipc)),
               "paper_random": PAPER_RANDOM.get((args.dataset, ipc)),
               "this_project": _other_results(args.dataset, ipc)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    config = dict(vars(args))
    config.update(model=repr(model), eval_model=repr(eval_model), reductions=_reductions(args))
    out = {"mode": "accuracy", "config": config, "machine": machine_info(), "results": rows}
    name = f"ratbptt_{args.dataset}_w{args.width}_" + "_".join(f"ipc{i}" for i in args.ipc)
    write(name, out, accuracy_markdown(out, args, model.depth))


def accuracy_markdown(out, args, depth):
    """The markdown report of an accuracy run (also to re-render a committed JSON)."""
    lines = [f"RaT-BPTT on {args.dataset}"
             + (f" ({args.n_train} training images)" if args.n_train else "")
             + f", ConvNet width {args.width}, depth {depth}, instance norm; window "
             f"{args.window}, unroll {args.unroll}, inner Adam {args.inner_learning_rate}, "
             f"outer Adam {args.learning_rate}, batch {args.batch}, init {args.init}; evaluated "
             f"with {args.n_eval} networks ({_norm_words(args)}); "
             f"{machine_summary(out['machine'])}.", "",
             "Reduced CPU scale: " + "; ".join(_reductions(args)) + ".", "",
             "| ipc | steps | distil time (s) | RaT-BPTT (%) | random subset (%) | paper RaT-BPTT "
             "| paper FRePo | paper RCIG | paper random | this project's FRePo / RCIG |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["results"]:
        other = "; ".join(f"{k}: {v}" for k, v in r["this_project"].items()) or "–"
        lines.append(f"| {r['ipc']} | {r['steps']} | {r['distill_seconds']} | "
                     f"{r['ratbptt_acc_mean']:.2f} ± {r['ratbptt_acc_std']:.2f} | "
                     f"{r['random_acc_mean']:.2f} ± {r['random_acc_std']:.2f} | "
                     f"{r['paper_ratbptt'] or '–'} | {r['paper_frepo'] or '–'} | "
                     f"{r['paper_rcig'] or '–'} | {r['paper_random'] or '–'} | {other} |")
    return lines


def _norm_words(args):
    return "instance norm" if args.eval_norm == "instance" else "no normalisation"


def _reductions(args):
    """Every way this run is smaller than the paper's."""
    out = [f"width {args.width} instead of 128",
           f"window {args.window} / unroll {args.unroll} instead of the paper's longer unrolls",
           f"{args.steps if not args.seconds else 'time-budgeted'} meta-steps instead of tens of "
           f"thousands", f"real batch {args.batch}", f"{args.n_eval} evaluation networks"]
    if args.eval_steps:
        out.append(f"{args.eval_steps} evaluation steps")
    if args.n_train:
        out.append(f"{args.n_train} training images")
    if args.inner_batch:
        out.append(f"inner minibatches of {args.inner_batch} synthetic images (class-balanced; "
                   f"capped at the set size)")
    if args.inner_learning_rate != 1e-3:
        out.append(f"inner learning rate {args.inner_learning_rate} (paper 1e-3) to make the "
                   f"short unrolls train")
    if args.init != "noise":
        out.append(f"init {args.init} (paper: Gaussian noise)")
    return out


# --------------------------------------------------------------------------------------------
# Cost of the window
# --------------------------------------------------------------------------------------------

def step_cost(window, remat, shape, width, ipc, batch, chunk, repeats, n_classes=10,
              window_unroll=1, compiled_only=False):
    """Compile one meta-step with N = M (no prefix); time it and read XLA's memory analysis."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill._jax import library_prng
    from sklearn_distill.methods import ratbptt as R
    from sklearn_distill.networks import with_num_classes

    with library_prng():
        rng = np.random.default_rng(0)
        depth = 2 if min(shape[:2]) < 16 else 3
        model = with_num_classes(ConvNet(width=width, depth=depth, norm="instance"), n_classes)
        aug = R.ImageAugmentation(flip=shape[-1] == 3, crop=False, scale=False, rotate=True,
                                  colour=False, cutout=False)
        config = R._Config(model, window, window, "fixed", ipc, batch, min(chunk, batch), aug,
                           False, remat, False, window_unroll=window_unroll)
        x_syn = rng.standard_normal((n_classes * ipc,) + shape).astype(np.float32)
        labels = np.eye(n_classes, dtype=np.float32)[np.repeat(np.arange(n_classes), ipc)]
        X = jnp.asarray(rng.standard_normal((2 * batch,) + shape).astype(np.float32))
        Y = jnp.asarray(np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, 2 * batch)])
        rows = jnp.arange(n_classes * ipc).reshape(n_classes, ipc)
        scale = jnp.ones(n_classes * ipc)
        hyper = R.hyperparameters(100, 1e-3, 1e-3)
        state = R.init_state(x_syn, labels, jax.random.PRNGKey(0))
        n = jnp.asarray(window, jnp.int32)
        start, cpu_start = time.perf_counter(), time.process_time()
        compiled = R._meta_step.lower(state, n, X, Y, rows, scale, hyper, config).compile()
        compile_s = time.perf_counter() - start
        compile_cpu_s = time.process_time() - cpu_start  # robust to a shared machine's load
        mem = compiled.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", None)
        if compiled_only:
            info = {"window": window, "remat": remat, "window_unroll": window_unroll,
                    "compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "xla_temp_MB": None if temp is None else temp / 2**20}
            return info, compiled, [state, n, X, Y, rows, scale, hyper]
        state, loss = compiled(state, n, X, Y, rows, scale, hyper)
        jax.block_until_ready(loss)
        start = time.perf_counter()
        for _ in range(repeats):
            state, loss = compiled(state, n, X, Y, rows, scale, hyper)
        jax.block_until_ready(loss)
        seconds = (time.perf_counter() - start) / repeats
    return {"window": window, "remat": remat, "s_per_step": seconds,
            "xla_temp_MB": None if temp is None else temp / 2 ** 20,
            "compile_s": compile_s, "finite": bool(np.isfinite(float(loss))),
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cost(args):
    shape = tuple(args.shape)
    rows = []
    for window in args.windows:
        for remat in (True, False):
            r = step_cost(window, remat, shape, args.width, args.ipc_cost, args.batch,
                          args.chunk, args.repeats)
            print(json.dumps(r), flush=True)
            rows.append(r)
    out = {"mode": "cost", "config": vars(args), "machine": machine_info(), "results": rows}
    by = {(r["window"], r["remat"]): r for r in rows}
    lines = [f"RaT-BPTT meta-step cost against the window M (N = M, no prefix): inputs "
             f"{'x'.join(map(str, shape))}, 10 classes, ipc {args.ipc_cost} (inner batch = whole "
             f"set), ConvNet width {args.width} with instance norm, real batch {args.batch} in chunks "
             f"of {args.chunk}, flip/"
             f"rotate augmentation; {machine_summary(out['machine'])}. Memory: XLA's temporary "
             f"buffers of the compiled meta-step (what grows with M); time: mean of "
             f"{args.repeats} steps after one warm-up.", "",
             "| M | time/step, remat (s) | time/step, no remat (s) | time ratio | XLA temp, remat "
             "(MB) | XLA temp, no remat (MB) | memory ratio |", "|---|---|---|---|---|---|---|"]
    for w in args.windows:
        a, b = by[w, True], by[w, False]
        lines.append(f"| {w} | {a['s_per_step']:.3f} | {b['s_per_step']:.3f} | "
                     f"{a['s_per_step'] / b['s_per_step']:.2f} | {a['xla_temp_MB']:.1f} | "
                     f"{b['xla_temp_MB']:.1f} | {b['xla_temp_MB'] / a['xla_temp_MB']:.2f} |")
    write(f"ratbptt_cost_{'x'.join(map(str, shape))}_w{args.width}", out, lines)


def loops(args):
    """The window's scan rolled against (partially) unrolled: compile s, XLA temp, s/step.

    For each window M, the meta-step with N = M is compiled with ``window_unroll`` 1 (a rolled
    scan), each of ``--window-unrolls`` and M (fully unrolled); the variants are then timed in
    alternating blocks in one process and the median block is kept.
    """
    from sklearn_distill._jax import library_prng

    shape = tuple(args.shape)
    rows = []
    with library_prng():
        for window in args.windows:
            fns = {}
            for k in sorted({1, window, *[u for u in args.window_unrolls if u < window]}):
                info, compiled, fn_args = step_cost(window, True, shape, args.width,
                                                    args.ipc_cost, args.batch, args.chunk,
                                                    args.repeats, window_unroll=k,
                                                    compiled_only=True)
                print(json.dumps(info), flush=True)
                fns[k] = (compiled, fn_args, info)
                rows.append(info)
            time_alternating_blocks(fns, args.timing_blocks, args.repeats)
            for _, _, info in fns.values():
                info["s_per_step"] = float(np.median(info["block_s"]))
                info["cpu_s_per_step"] = float(np.median(info["block_cpu_s"]))
                info["ratio"] = info["s_per_step"] / float(np.median(fns[1][2]["block_s"]))
                print(json.dumps(info), flush=True)
    out = {"mode": "loops", "config": vars(args), "machine": machine_info(), "results": rows}
    lines = [f"RaT-BPTT meta-step (N = M, no prefix), the window's scan rolled (window_unroll 1) "
             f"against unrolled (k steps per trip; k = M: fully): inputs "
             f"{'x'.join(map(str, shape))}, 10 classes, ipc {args.ipc_cost}, ConvNet width "
             f"{args.width} with instance norm, real batch {args.batch} in chunks of "
             f"{args.chunk}, remat on; {machine_summary(out['machine'])}. Times: median of "
             f"{args.timing_blocks} alternating blocks of {args.repeats} steps in one process (the "
             "machine was shared); ratio to the rolled scan of the same M. CPU s: the "
             "process's CPU time (all threads), which the machine's load does not inflate.", "",
             "| M | window_unroll | s/step | ratio | CPU s/step | compile s | compile CPU s | "
             "XLA temp MB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['window']} | {r['window_unroll']} | {r['s_per_step']:.3f} | "
                     f"{r['ratio']:.2f} | {r['cpu_s_per_step']:.3f} | {r['compile_s']:.1f} | "
                     f"{r['compile_cpu_s']:.1f} | {r['xla_temp_MB']:.1f} |")
    write(args.name or f"ratbptt_loops_{'x'.join(map(str, shape))}_w{args.width}", out, lines)


# --------------------------------------------------------------------------------------------
# Boost-DD
# --------------------------------------------------------------------------------------------

def boost(args):
    from sklearn_distill import BoostedDistiller, RandomDistiller, evaluate

    X_tr, y_tr, X_te, y_te = load(args.dataset, args.data_home, args.n_train, args.seed)
    model, eval_model = _models(args, X_tr.shape[1:])
    K = args.blocks
    rng = np.random.default_rng(args.seed)
    eval_kw = dict(n_models=args.n_eval, model=eval_model, random_state=args.seed + 1,
                   n_steps=args.eval_steps or "auto")

    def score(X, y):
        res = evaluate(X, y, X_te, y_te, loss="ce", **eval_kw)
        return 100 * res.mean, 100 * res.std

    timings = {}
    start = time.perf_counter()
    joint = _rat(args, K, model, eval_model, args.steps * args.joint_factor).fit(X_tr, y_tr)
    timings["joint"] = time.perf_counter() - start
    start = time.perf_counter()
    boosted = BoostedDistiller(_rat(args, 1, model, eval_model, args.steps), block_ipc=1,
                               n_blocks=K, beta=args.beta, random_state=args.seed).fit(X_tr, y_tr)
    timings["boosted"] = time.perf_counter() - start
    rows = []
    for k in range(1, K + 1):
        row = {"ipc": k}
        # (a) random class-balanced subsets of the jointly distilled set
        subs = []
        for rep in range(args.subsets):
            pick = np.concatenate([rng.choice(np.flatnonzero(joint.synthetic_y_ == c), k,
                                              replace=False) for c in joint.classes_])
            subs.append(score(joint.synthetic_X_[pick], joint.synthetic_y_[pick])[0])
        row["joint_subset_mean"], row["joint_subset_std"] = float(np.mean(subs)), float(np.std(subs))
        # (b) the first k blocks of the boosted set
        sub = boosted.first_blocks(k)
        row["boost_mean"], row["boost_std"] = score(sub.synthetic_X_, sub.synthetic_y_)
        # (c) k random real images per class
        rand = RandomDistiller(ipc=k, random_state=args.seed).fit(X_tr, y_tr)
        row["random_mean"], row["random_std"] = score(rand.synthetic_X_, rand.synthetic_y_)
        if args.direct:
            start = time.perf_counter()
            direct = _rat(args, k, model, eval_model, args.steps * (args.joint_factor if k == K
                                                                     else 1)).fit(X_tr, y_tr)
            timings[f"direct_{k}"] = time.perf_counter() - start
            row["direct_mean"], row["direct_std"] = score(direct.synthetic_X_, direct.synthetic_y_)
        print(json.dumps(row), flush=True)
        rows.append(row)
    config = dict(vars(args))
    config.update(model=repr(model), eval_model=repr(eval_model), reductions=_reductions(args))
    out = {"mode": "boost", "config": config, "machine": machine_info(), "results": rows,
           "distill_seconds": timings}
    name = f"ratbptt_boost_{args.dataset}_w{args.width}_k{K}"
    head = ("| images per class | random subset of joint ipc-" + str(K)
            + " set (%) | first k boosted blocks (%) | random real (%) |"
            + (" distilled directly at k (%) |" if args.direct else ""))
    lines = [f"Boost-DD on {args.dataset}: a set distilled jointly at ipc {K} "
             f"({args.steps * args.joint_factor} meta-steps), a boosted set of {K} blocks of ipc 1 "
             f"({args.steps} meta-steps each, beta {args.beta}), and random real images; each "
             f"budget evaluated with {args.n_eval} networks (random subsets: mean over "
             f"{args.subsets} draws). RaT-BPTT settings: width {args.width}, window {args.window}, "
             f"unroll {args.unroll}, inner Adam {args.inner_learning_rate}, outer Adam "
             f"{args.learning_rate}, init {args.init}; {machine_summary(out['machine'])}.", "",
             head, "|---|---|---|---|" + ("---|" if args.direct else "")]
    for r in rows:
        line = (f"| {r['ipc']} | {r['joint_subset_mean']:.2f} ± {r['joint_subset_std']:.2f} | "
                f"{r['boost_mean']:.2f} ± {r['boost_std']:.2f} | "
                f"{r['random_mean']:.2f} ± {r['random_std']:.2f} |")
        if args.direct:
            line += f" {r['direct_mean']:.2f} ± {r['direct_std']:.2f} |"
        lines.append(line)
    lines += ["", "Distillation wall time (s): " + ", ".join(f"{k} {v:.0f}"
                                                           for k, v in timings.items()) + "."]
    write(name, out, lines)
    _plot_boost(name, rows, args)


def _plot_boost(name, rows, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [r["ipc"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    series = [("joint_subset", f"random subset of joint ipc-{args.blocks} set"),
              ("boost", "first k boosted blocks"), ("random", "random real images")]
    if args.direct:
        series.append(("direct", "distilled directly at k"))
    for key, label in series:
        ax.errorbar(k, [r[f"{key}_mean"] for r in rows], yerr=[r[f"{key}_std"] for r in rows],
                    marker="o", capsize=3, label=label)
    ax.set_xticks(k)
    ax.set_xlabel("images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Boost-DD on {args.dataset}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, name + ".png"), dpi=120)
    plt.close(fig)


def write(name, out, lines):
    write_results(name, out, lines, RESULTS)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["accuracy", "cost", "boost", "loops"])
    p.add_argument("--dataset", choices=["digits", "mnist", "cifar10"], default="digits")
    p.add_argument("--n-train", type=int, default=None, help="subsample the training set")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--steps", type=int, default=300, help="meta-steps (unless --seconds)")
    p.add_argument("--seconds", type=float, default=None, help="distillation budget per ipc")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--unroll", type=int, default=30)
    p.add_argument("--learning-rate", type=float, default=1e-2)
    p.add_argument("--inner-learning-rate", type=float, default=1e-2)
    p.add_argument("--inner-batch", type=int, default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--init", choices=["noise", "real", "real+noise"], default="real")
    p.add_argument("--eval-norm", choices=["none", "instance"], default="none")
    p.add_argument("--n-eval", type=int, default=5)
    p.add_argument("--eval-steps", type=int, default=None)
    p.add_argument("--protocol", default="library",
                   choices=["library", "frepo", "rcig", "ratbptt", "dc"],
                   help="evaluation protocol of every row (one for all, so rows compare)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--windows", type=int, nargs="+", default=[2, 5, 10, 20, 40])
    p.add_argument("--shape", type=int, nargs=3, default=[28, 28, 1])
    p.add_argument("--ipc-cost", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=1024, help="real-batch chunk (cost mode)")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--timing-blocks", type=int, default=3, help="loops mode")
    p.add_argument("--window-unrolls", type=int, nargs="+", default=[2],
                   help="loops mode: partial unrolls of the window's scan (1 and M always run)")
    p.add_argument("--name", default=None, help="results file name (loops mode)")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--joint-factor", type=int, default=2,
                   help="the joint set trains this many times --steps")
    p.add_argument("--subsets", type=int, default=3)
    p.add_argument("--direct", action="store_true")
    args = p.parse_args(argv)
    {"accuracy": accuracy, "cost": cost, "boost": boost, "loops": loops}[args.mode](args)


if __name__ == "__main__":
    main()
