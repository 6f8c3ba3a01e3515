"""RCIG benchmark: accuracy next to FRePo and a random subset, and the cost of a meta-step.

Run by hand (never in CI). Accuracy mode distils each ``--ipc`` with RCIG and with FRePo under the
same wall-clock budget (``--seconds`` each, the step count calibrated first) and evaluates both,
and a class-balanced random subset, with the same evaluation networks in the same run::

    python benchmarks/bench_rcig.py --dataset mnist --ipc 1 --width 16 --seconds 300 \
        --data-home data

Cost mode measures the time of one meta-step against ``n_inner`` and ``n_hinv`` (the paper's
Figure 1: linear in both) and the XLA memory of a step with and without backward-pass
subsampling::

    python benchmarks/bench_rcig.py --cost --width 16

Both write a JSON file and a markdown table into ``benchmarks/results/``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (machine_info, machine_summary, probe_seconds_per_step,  # noqa: E402
                     time_alternating_blocks, write_results)
from bench_frepo import PAPER as FREPO_PAPER  # noqa: E402
from bench_frepo import RANDOM_PAPER, load  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# RCIG's published accuracies (%), ConvNet, from the shared reference table.
PAPER = {("mnist", 1): "94.7 ± 0.5", ("mnist", 10): "98.9 ± 0.0", ("mnist", 50): "99.2 ± 0.0",
         ("cifar10", 1): "53.9 ± 1.0", ("cifar10", 10): "69.1 ± 0.4", ("cifar10", 50): "73.5 ± 0.3"}


def accuracy(args):
    from sklearn_distill import ConvNet, FRePoDistiller, RandomDistiller, RCIGDistiller

    X_tr, y_tr, X_te, y_te = load(args.dataset, args.data_home)
    rcig_model = ConvNet(width=args.width, depth=args.depth, width_doubling=True,
                         activation="softplus", softplus_temperature=60.0)
    frepo_model = ConvNet(width=args.width, depth=args.depth, norm="batch", width_doubling=True)
    eval_model = ConvNet(width=args.width, depth=args.depth, width_doubling=True)
    rows = []
    for ipc in args.ipc:
        common = dict(ipc=ipc, n_eval_models=args.n_eval, random_state=args.seed,
                      eval_model=eval_model,
                      eval_steps=args.eval_steps if args.eval_steps else "auto")

        def make_rcig(n_steps, log_every):
            return RCIGDistiller(n_steps=n_steps, batch_size=args.batch, model=rcig_model,
                                 learning_rate=args.rcig_learning_rate,
                                 pool_size=args.pool_size, max_online_steps=args.max_online_steps,
                                 online_steps=args.online_steps,
                                 online_learning_rate=args.online_learning_rate,
                                 n_inner=args.n_inner, n_hinv=args.n_hinv,
                                 log_every=log_every, **common)

        def make_frepo(n_steps, log_every):
            return FRePoDistiller(n_steps=n_steps, batch_size=args.batch, model=frepo_model,
                                  learning_rate=args.frepo_learning_rate,
                                  pool_size=args.pool_size, max_online_steps=args.max_online_steps,
                                  log_every=log_every, **common)

        row = {"ipc": ipc, "paper_rcig": PAPER.get((args.dataset, ipc)),
               "paper_frepo": FREPO_PAPER.get((args.dataset, ipc)),
               "paper_random": RANDOM_PAPER.get((args.dataset, ipc))}
        for name, make in (("rcig", make_rcig), ("frepo", make_frepo)):
            n_steps = args.steps
            if args.seconds:
                per_step = probe_seconds_per_step(make, X_tr, y_tr, 30)
                n_steps = max(1, int(args.seconds / per_step))
                print(f"{name} ipc {ipc}: {1000 * per_step:.0f} ms per meta-step -> {n_steps} "
                      f"steps", flush=True)
            est = make(n_steps, max(1, n_steps // 20))
            start = time.perf_counter()
            est.fit(X_tr, y_tr)
            seconds = time.perf_counter() - start
            res = est.evaluate(X_te, y_te)
            row.update({f"{name}_steps": int(est.n_iter_), f"{name}_seconds": round(seconds, 1),
                        f"{name}_acc_mean": 100 * res.mean, f"{name}_acc_std": 100 * res.std,
                        f"{name}_stop_reason": est.stop_reason_})
            if name == "rcig":
                row.update(rcig_temperature=est.temperature_,
                           rcig_inner_lr=est.inner_learning_rate_,
                           rcig_hinv_lr=est.hinv_learning_rate_, eval_steps=int(res.n_steps))
            print(json.dumps(row), flush=True)
        rand = RandomDistiller(**common).fit(X_tr, y_tr).evaluate(X_te, y_te)
        row.update(random_acc_mean=100 * rand.mean, random_acc_std=100 * rand.std)
        print(json.dumps(row), flush=True)
        rows.append(row)
    config = dict(vars(args), rcig_model=repr(rcig_model), frepo_model=repr(frepo_model),
                  eval_model=repr(eval_model))
    out = {"mode": "accuracy", "config": config, "machine": machine_info(), "results": rows}
    name = f"rcig_{args.dataset}_w{args.width}_" + "_".join(f"ipc{i}" for i in args.ipc)
    lines = [f"RCIG and FRePo on {args.dataset}, same wall-clock budget each "
             f"({args.seconds or 'fixed steps'} s), ConvNet width {args.width} (doubling), depth "
             f"{args.depth}, real batch {args.batch}, pool {args.pool_size} (K "
             f"{args.max_online_steps}), RCIG n_inner {args.n_inner} / n_hinv {args.n_hinv}, "
             f"learning rates RCIG {args.rcig_learning_rate} / FRePo {args.frepo_learning_rate}; "
             f"evaluation: {args.n_eval} ReLU ConvNets without normalisation; "
             f"{machine_summary(out['machine'])}.", "",
             "| ipc | RCIG steps | RCIG acc (%) | FRePo steps | FRePo acc (%) | random (%) | "
             "paper RCIG | paper FRePo | paper random |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['ipc']} | {r['rcig_steps']} | {r['rcig_acc_mean']:.2f} ± "
                     f"{r['rcig_acc_std']:.2f} | {r['frepo_steps']} | {r['frepo_acc_mean']:.2f} ± "
                     f"{r['frepo_acc_std']:.2f} | {r['random_acc_mean']:.2f} ± "
                     f"{r['random_acc_std']:.2f} | {r['paper_rcig']} | {r['paper_frepo']} | "
                     f"{r['paper_random']} |")
    write(name, out, lines)


def step_cost(width, n_syn, n_inner, n_hinv, subset, repeats, batch=256, shape=(28, 28, 1),
              n_classes=10, run=True, online_steps=15, unroll=True, compiled_only=False):
    """Milliseconds per meta-step and XLA memory of one RCIG meta-step on random data."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill.methods import rcig as R
    from sklearn_distill.networks import with_num_classes

    rng = np.random.default_rng(0)
    model = with_num_classes(ConvNet(width=width, depth=3, width_doubling=True,
                                     activation="softplus"), n_classes)
    x_syn = rng.standard_normal((n_syn,) + shape).astype(np.float32)
    y_syn = (np.eye(n_classes)[np.arange(n_syn) % n_classes] - 1 / n_classes).astype(np.float32)
    X = jnp.asarray(rng.standard_normal((2048,) + shape).astype(np.float32))
    Y = jnp.asarray(np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, 2048)])
    key = jax.random.PRNGKey(0)
    config = R._Config(model=model, batch_size=batch, learn_labels=True, flip=False,
                       n_inner=n_inner, n_hinv=n_hinv, hinv_solver="adam", online_steps=online_steps,
                       n_backward_subset=subset, clip_implicit=True, precision="highest",
                       unroll=unroll)
    hyper = R.hyperparameters(3e-3, 3e-2, 5e-4, 100, 5e-5)
    state = R.init_state(x_syn, y_syn, key, key, model, 4, 100)
    state = {**state, "inner_lr": jnp.float32(1e-3), "hinv_lr": jnp.float32(1e-3)}
    state = jax.tree.map(lambda a: jnp.array(a, copy=True), state)
    start, cpu_start = time.perf_counter(), time.process_time()
    compiled = R._meta_step.lower(state, X, Y, hyper, config).compile()
    compile_s = time.perf_counter() - start
    compile_cpu_s = time.process_time() - cpu_start  # robust to a shared machine's load
    mem = compiled.memory_analysis()
    out = {"width": width, "n_synthetic": n_syn, "n_inner": n_inner, "n_hinv": n_hinv,
           "n_backward_subset": subset, "compile_s": round(compile_s, 1),
           "compile_cpu_s": round(compile_cpu_s, 1),
           "xla_temp_MB": getattr(mem, "temp_size_in_bytes", float("nan")) / 2**20}
    if compiled_only:
        return out, compiled, [state, X, Y, hyper]
    if run:
        # The pool member trains a random number of steps; a fixed seed makes runs comparable.
        for _ in range(2):
            state, loss = compiled(state, X, Y, hyper)
        jax.block_until_ready(state)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            state, loss = compiled(state, X, Y, hyper)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - start)
        out["ms_per_step"] = 1000 * float(np.median(times))
    return out


def cost(args):
    by_inner, by_hinv, memory = [], [], []
    for n in args.inner_values:
        r = step_cost(args.width, args.n_syn, n, args.fixed, None, args.repeats,
                      batch=args.cost_batch)
        print(json.dumps(r), flush=True)
        by_inner.append(r)
    for n in args.inner_values:
        r = step_cost(args.width, args.n_syn, args.fixed, n, None, args.repeats,
                      batch=args.cost_batch)
        print(json.dumps(r), flush=True)
        by_hinv.append(r)
    for subset in [None] + args.subsets:
        r = step_cost(args.width, args.memory_n_syn, args.fixed, args.fixed, subset,
                      args.repeats, batch=args.cost_batch, run=False)
        print(json.dumps(r), flush=True)
        memory.append(r)

    def slope(rows, key):
        if len(rows) < 2:
            return {"ms_per_unit": float("nan"), "intercept_ms": float("nan"), "r2": float("nan")}
        xs = np.array([r[key] for r in rows], float)
        ys = np.array([r["ms_per_step"] for r in rows], float)
        a, b = np.polyfit(xs, ys, 1)
        return {"ms_per_unit": a, "intercept_ms": b,
                "r2": 1 - np.sum((ys - (a * xs + b)) ** 2) / np.sum((ys - ys.mean()) ** 2)}

    fits = {"n_inner": slope(by_inner, "n_inner"), "n_hinv": slope(by_hinv, "n_hinv")}
    out = {"mode": "cost", "config": vars(args), "machine": machine_info(),
           "by_n_inner": by_inner, "by_n_hinv": by_hinv, "memory": memory, "linear_fits": fits}
    lines = [f"RCIG meta-step cost on MNIST-shaped random data (28x28x1, 10 classes), ConvNet "
             f"width {args.width} (doubling, softplus), {args.n_syn} synthetic images, real batch "
             f"{args.cost_batch}, pool 4, online steps up to 15; {machine_summary(out['machine'])}.", "",
             f"Time against n_inner (n_hinv = {args.fixed}) and n_hinv (n_inner = {args.fixed}); "
             f"median of {args.repeats} steps:", "",
             "| steps | ms/step vs n_inner | ms/step vs n_hinv |", "|---|---|---|"]
    for a, b in zip(by_inner, by_hinv):
        lines.append(f"| {a['n_inner']} | {a['ms_per_step']:.0f} | {b['ms_per_step']:.0f} |")
    lines += ["", "Least-squares lines: " + "; ".join(
        f"{k}: {v['ms_per_unit']:.1f} ms per step + {v['intercept_ms']:.0f} ms (R² {v['r2']:.3f})"
        for k, v in fits.items()), "",
        f"XLA temporary memory of one meta-step with {args.memory_n_syn} synthetic images "
        f"(n_inner = n_hinv = {args.fixed}):", "",
        "| n_backward_subset | XLA temp MB |", "|---|---|"]
    for r in memory:
        lines.append(f"| {r['n_backward_subset'] or 'all'} | {r['xla_temp_MB']:.0f} |")
    write(f"rcig_cost_w{args.width}", out, lines)


def _unroll_value(text):
    return {"true": True, "false": False}.get(text.lower()) if not text.isdigit() else int(text)


def loops(args):
    """While loops against unrolled ones: compile seconds, XLA temporaries and ms per step.

    ``unroll`` True: the inner, Hessian-inverse and online loops unrolled; False: all three
    while loops; an int k: the inner and Hessian-inverse loops partially unrolled by k (1: not
    at all), the online loop unrolled. Every variant is compiled first, then the variants are
    timed in alternating blocks in one process and the median block is kept.
    """
    from sklearn_distill._jax import library_prng

    rows = []
    with library_prng():
        for n_inner, n_hinv in args.loop_configs:
            fns = {}
            for text in args.unrolls:
                unroll = _unroll_value(text)
                info, compiled, fn_args = step_cost(
                    args.width, args.n_syn, n_inner, n_hinv, None, args.repeats,
                    batch=args.cost_batch, unroll=unroll, compiled_only=True)
                info.update(unroll=text)
                print(json.dumps(info), flush=True)
                fns[text] = (compiled, fn_args, info)
                rows.append(info)
            time_alternating_blocks(fns, args.blocks, args.repeats)
            for _, _, info in fns.values():  # milliseconds, as the results report them
                info["block_ms"] = [1000 * t for t in info.pop("block_s")]
                info["block_cpu_ms"] = [1000 * t for t in info.pop("block_cpu_s")]
            base = float(np.median(fns[args.unrolls[0]][2]["block_ms"]))
            for _, _, info in fns.values():
                info["ms_per_step"] = float(np.median(info["block_ms"]))
                info["cpu_ms_per_step"] = float(np.median(info["block_cpu_ms"]))
                info["ratio"] = info["ms_per_step"] / base
                print(json.dumps(info), flush=True)
        for subset in [None] + args.subsets:
            for text in args.unrolls[:1]:
                info, _, _ = step_cost(args.width, args.memory_n_syn, args.fixed, args.fixed,
                                       subset, 1, batch=args.cost_batch,
                                       unroll=_unroll_value(text), compiled_only=True)
                info.update(unroll=text, memory_only=True)
                print(json.dumps(info), flush=True)
                rows.append(info)
    write_loops(args, rows)


def write_loops(args, rows, note=""):
    """The JSON + markdown of the loops mode (``rows`` as built by ``loops``)."""
    out = {"mode": "loops", "config": vars(args), "machine": machine_info(), "results": rows,
           "note": note}
    lines = [f"RCIG meta-step, unrolled against while loops: MNIST-shaped random data (28x28x1, 10 "
             f"classes), ConvNet width {args.width} (doubling, softplus), {args.n_syn} synthetic "
             f"images, real batch {args.cost_batch}, pool 4, online steps up to 15; "
             f"{machine_summary(out['machine'])}. unroll True: inner, Hessian-inverse and online "
             "loops unrolled; False: all three while loops; k >= 2: inner and Hessian-inverse loops "
             "unrolled k steps per trip, online loop unrolled. Times: median of "
             f"{args.blocks} alternating blocks of {args.repeats} steps in one process (the "
             "machine was shared); ratio to the first variant.", "",
             "CPU ms and compile CPU s are the process's CPU time (all threads), which a "
             "shared machine's load does not inflate. " + note, "",
             "| n_inner | n_hinv | unroll | ms/step | ratio | CPU ms/step | compile s | "
             "compile CPU s | XLA temp MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("memory_only"):
            lines.append(f"| {r['n_inner']} | {r['n_hinv']} | {r['unroll']} | "
                         f"{r['ms_per_step']:.0f} | {r['ratio']:.2f} | {r['cpu_ms_per_step']:.0f} | "
                         f"{r['compile_s']:.1f} | {r['compile_cpu_s']:.1f} | "
                         f"{r['xla_temp_MB']:.0f} |")
    lines += ["", f"XLA temporaries against n_backward_subset ({args.memory_n_syn} synthetic "
              f"images, n_inner = n_hinv = {args.fixed}; compiled, not run):", "",
              "| n_backward_subset | unroll | XLA temp MB | compile CPU s |", "|---|---|---|---|"]
    for r in rows:
        if r.get("memory_only"):
            lines.append(f"| {r['n_backward_subset'] or 'all'} | {r['unroll']} | "
                         f"{r['xla_temp_MB']:.0f} | {r['compile_cpu_s']:.1f} |")
    write(args.name or "rcig_loops", out, lines)


def write(name, out, lines):
    write_results(name, out, lines, RESULTS)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["digits", "mnist", "cifar10"], default="digits")
    p.add_argument("--ipc", type=int, nargs="+", default=[1])
    p.add_argument("--steps", type=int, default=1000, help="meta-steps (unless --seconds)")
    p.add_argument("--seconds", type=float, default=None,
                   help="wall-clock budget of each method's distillation")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--pool-size", type=int, default=30)
    p.add_argument("--max-online-steps", type=int, default=100)
    p.add_argument("--online-steps", type=int, default=15)
    p.add_argument("--online-learning-rate", type=float, default=5e-5)
    p.add_argument("--n-inner", type=int, default=20)
    p.add_argument("--n-hinv", type=int, default=20)
    p.add_argument("--rcig-learning-rate", type=float, default=3e-3)
    p.add_argument("--frepo-learning-rate", type=float, default=3e-4)
    p.add_argument("--n-eval", type=int, default=5)
    p.add_argument("--eval-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--cost", action="store_true", help="measure the meta-step cost instead")
    p.add_argument("--inner-values", type=int, nargs="+", default=[0, 5, 10, 20, 40])
    p.add_argument("--fixed", type=int, default=20, help="the other count in cost mode")
    p.add_argument("--n-syn", type=int, default=100)
    p.add_argument("--memory-n-syn", type=int, default=500)
    p.add_argument("--subsets", type=int, nargs="+", default=[200, 100, 50])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cost-batch", type=int, default=256, help="real rows per step in cost mode")
    p.add_argument("--loops", action="store_true",
                   help="while loops against (partially) unrolled ones, and memory")
    p.add_argument("--unrolls", nargs="+", default=["true", "false", "5"],
                   help="loops mode: unroll values (true, false or an int k >= 2; 1 == True "
                        "as a static argument)")
    p.add_argument("--loop-configs", type=lambda t: tuple(map(int, t.split(","))), nargs="*",
                   default=[(10, 10), (20, 20)], help="loops mode: n_inner,n_hinv pairs")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--name", default=None, help="results file name (loops mode)")
    args = p.parse_args(argv)
    if args.loops:
        loops(args)
    else:
        cost(args) if args.cost else accuracy(args)


if __name__ == "__main__":
    main()
