"""The network precision policy (``network_precision``): its cost and its accuracy effect.

Run by hand (never in CI). Cost mode times one FRePo meta-step (batch 256, 32x32x3 inputs, 100
classes, pool 10, flip on: the setting of the paper's cost table) under each precision, compiled
once each and timed in alternating blocks in one process, so the ratios hold on a shared
machine::

    python benchmarks/bench_precision.py --cost --widths 16 32 --rounds 5 --repeats 3

Accuracy mode distils digits with a tiny FRePo under each precision from the same seeds and
scores every synthetic set with the same evaluation networks, so the change can be set against
the seed-to-seed spread::

    python benchmarks/bench_precision.py --accuracy --precisions float32 bfloat16 --seeds 0 1 2 \
        --steps 300 --learning-rate 1e-2

Both write JSON + markdown into ``benchmarks/results/`` (``network_precision_<backend>_*``).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import machine_info, machine_summary, write_results  # noqa: E402


def _meta_step_runner(width, precision, n_syn=100, n_classes=100, batch=256,
                      shape=(32, 32, 3), pool_size=10):
    """A compiled FRePo meta-step under ``precision`` and its state (random data)."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill._precision import with_network_precision
    from sklearn_distill._sharding import DataParallel
    from sklearn_distill._training import centred_one_hot, init_labels
    from sklearn_distill.methods import frepo as F
    from sklearn_distill.networks import with_num_classes

    rng = np.random.default_rng(0)
    model = with_num_classes(ConvNet(width=width, depth=3, norm="batch", width_doubling=True,
                                     norm_position="before", norm_momentum=0.1), n_classes)
    ipc = n_syn // n_classes
    x_syn = rng.standard_normal((ipc * n_classes,) + shape).astype(np.float32)
    y_syn = np.repeat(np.arange(n_classes), ipc)
    X = jnp.asarray(rng.standard_normal((4 * batch,) + shape).astype(np.float32))
    Y = jnp.asarray(centred_one_hot(rng.integers(0, n_classes, X.shape[0]), n_classes))
    key = jax.random.PRNGKey(0)
    config = F._Config(model=with_network_precision(model, precision), batch_size=batch,
                       learn_labels=True, flip=True, precision="highest",
                       placement=DataParallel(None, None), network_precision=precision)
    hyper = F.hyperparameters(1000, 3e-4, 1e-6, 100, 3e-4)
    state = F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, pool_size, 100)
    start = time.perf_counter()
    compiled = F._meta_step.lower(state, X, Y, hyper, config).compile()
    compile_s = time.perf_counter() - start
    state, loss = compiled(state, X, Y, hyper)  # warm-up
    jax.block_until_ready(state)
    return {"compiled": compiled, "state": state, "args": (X, Y, hyper),
            "compile_s": compile_s, "loss": float(loss)}


def cost(args):
    import jax

    rows = []
    for width in args.widths:
        runners = {p: _meta_step_runner(width, p) for p in args.precisions}
        times = {p: [] for p in args.precisions}
        for _ in range(args.rounds):  # alternating blocks: every precision once per round
            for p, r in runners.items():
                start = time.perf_counter()
                state = r["state"]
                for _ in range(args.repeats):
                    state, loss = r["compiled"](state, *r["args"])
                jax.block_until_ready(state)
                r["state"] = state
                times[p].append(1000 * (time.perf_counter() - start) / args.repeats)
        base = np.median(times[args.precisions[0]])
        for p in args.precisions:
            med = float(np.median(times[p]))
            rows.append({"width": width, "network_precision": p, "ms_per_step_median": med,
                         "ms_per_step_blocks": times[p], "ratio_to_first": med / base,
                         "compile_s": runners[p]["compile_s"],
                         "first_loss": runners[p]["loss"]})
            print(rows[-1], flush=True)
    info = machine_info()
    backend = info["jax_backend"]
    lines = [f"FRePo meta-step under each `network_precision`, batch 256, 32x32x3 inputs, 100 "
             f"classes, 100 synthetic images, pool 10, flip on, `precision=\"highest\"` for the "
             f"Gram matrices and the solve; {machine_summary(info)}. Each precision compiled "
             f"once; {args.rounds} alternating blocks of {args.repeats} steps in one process "
             f"(median block; load average at start {info['load_average_at_start']}: a shared "
             f"machine, so compare the ratios, not the absolute times).",
             "",
             f"| width | network_precision | ms/step (median) | ratio to {args.precisions[0]} | "
             f"compile s |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['width']} | {r['network_precision']} | {r['ms_per_step_median']:.1f} "
                     f"| {r['ratio_to_first']:.2f} | {r['compile_s']:.1f} |")
    write_results(f"network_precision_{backend}_cost",
                  {"machine": info, "setting": vars(args), "rows": rows}, lines)


def accuracy(args):
    from sklearn.model_selection import train_test_split

    from sklearn_distill import ConvNet, FRePoDistiller, ImageStandardizer, load_digits_images

    X, y = load_digits_images(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = ImageStandardizer().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    rows = []
    for seed in args.seeds:
        for p in args.precisions:
            est = FRePoDistiller(ipc=args.ipc, n_steps=args.steps, batch_size=256,
                                 learning_rate=args.learning_rate,
                                 pool_size=args.pool_size,
                                 model=ConvNet(width=args.width, depth=2, norm="batch",
                                               width_doubling=True, norm_position="before",
                                               norm_momentum=0.1),
                                 network_precision=p, n_eval_models=args.eval_models,
                                 eval_steps=args.eval_steps, log_every=50, random_state=seed)
            start = time.perf_counter()
            est.fit(X_tr, y_tr)
            fit_s = time.perf_counter() - start
            acc = float(est.score(X_te, y_te))
            rows.append({"seed": seed, "network_precision": p, "accuracy": acc,
                         "final_loss": float(est.history_["loss"][-1]), "fit_s": fit_s,
                         "stop_reason": est.stop_reason_})
            print(rows[-1], flush=True)
    info = machine_info()
    summary = {}
    for p in args.precisions:
        accs = np.array([r["accuracy"] for r in rows if r["network_precision"] == p])
        summary[p] = {"mean": float(accs.mean()), "std": float(accs.std(ddof=1)) if len(accs) > 1
                      else float("nan"), "per_seed": accs.tolist()}
    ref = args.precisions[0]
    lines = [f"Tiny FRePo on digits (1,257 training / 540 test images, standardised), ipc "
             f"{args.ipc}, ConvNet width {args.width} depth 2 with FRePo's batch-norm layout, "
             f"pool {args.pool_size}, {args.steps} meta-steps at LAMB rate {args.learning_rate}, "
             f"batch 256; each synthetic set "
             f"scored by {args.eval_models} evaluation networks trained {args.eval_steps} steps "
             f"(FRePo's protocol, float32: the policy covers only the distillation network). The "
             f"same seeds under every precision; {machine_summary(info)}.",
             "",
             "| seed | " + " | ".join(f"{p} accuracy" for p in args.precisions) + " |",
             "|---|" + "---|" * len(args.precisions)]
    for seed in args.seeds:
        accs = [next(r["accuracy"] for r in rows
                     if r["seed"] == seed and r["network_precision"] == p)
                for p in args.precisions]
        lines.append(f"| {seed} | " + " | ".join(f"{100 * a:.1f} %" for a in accs) + " |")
    lines.append("| mean ± std over seeds | " + " | ".join(
        f"{100 * summary[p]['mean']:.1f} ± {100 * summary[p]['std']:.1f} %"
        for p in args.precisions) + " |")
    lines.append("")
    for p in args.precisions[1:]:
        diffs = [next(r["accuracy"] for r in rows if r["seed"] == s and r["network_precision"] == p)
                 - next(r["accuracy"] for r in rows if r["seed"] == s
                        and r["network_precision"] == ref) for s in args.seeds]
        within = abs(summary[p]["mean"] - summary[ref]["mean"]) <= summary[ref]["std"]
        lines.append(f"{p} − {ref}, per seed: " + ", ".join(f"{100 * d:+.1f}" for d in diffs)
                     + f" points; the mean moves by {100 * (summary[p]['mean'] - summary[ref]['mean']):+.1f} "
                     f"points, {'within' if within else 'beyond'} the {ref} seed-to-seed standard "
                     f"deviation ({100 * summary[ref]['std']:.1f} points).")
    write_results(f"network_precision_{info['jax_backend']}_accuracy_digits",
                  {"machine": info, "setting": vars(args), "rows": rows, "summary": summary},
                  lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--precisions", nargs="+", default=["float32", "tf32", "bfloat16"])
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--eval-models", type=int, default=3)
    parser.add_argument("--eval-steps", type=int, default=300)
    args = parser.parse_args(argv)
    if not (args.cost or args.accuracy):
        parser.error("choose --cost and/or --accuracy")
    if args.cost:
        cost(args)
    if args.accuracy:
        accuracy(args)


if __name__ == "__main__":
    main()
