"""Class-incremental learning with distilled memories (GDumb-style) on MNIST and CIFAR-10.

Run by hand (never in CI). Classes arrive in ``--steps`` steps (5 steps of 2 classes for ten
classes); each step's classes are distilled into ``--ipc`` images per class that join the memory,
a ConvNet is trained from scratch on the whole memory and tested on all classes seen so far. The
same class order (from ``--seed``) and the same training recipe are used for every method, so
only the memory differs. Methods (``--methods``): random, herding and k-center coresets and the
learned distillers FRePo, RCIG, RaT-BPTT and KRR; by default random and herding, plus FRePo when
``--frepo-steps`` > 0::

    python benchmarks/bench_continual.py --datasets mnist cifar10 --ipc 10 --width 32 \
        --train-steps 500 --data-home /path/to/data

With ``--seconds S`` every learned distillation (one per class step) gets the same wall-clock
budget: the time of a meta-step is measured once per method and dataset on the first step's
classes, and the step count set from it::

    python benchmarks/bench_continual.py --methods random herding frepo krr ratbptt rcig \
        --ipc 10 --width 16 --train-steps 300 --test-rows 2000 --seconds 30 \
        --name continual_learned_mnist_cifar10_ipc10_w16 --data-home data

Writes ``benchmarks/results/continual_*.json`` and ``.md`` and a plot per dataset.
Benchmark files are made with ``python materialize.py DATA_HOME`` (shared datasets folder).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)
from _common import (METHOD_LABELS, add_learned_arguments, build_learned,  # noqa: E402
                     learned_settings, machine_info, machine_summary)

# Published reference (shared table): CIFAR-100, 20 images per class, final accuracy on all classes.
PAPER = "CIFAR-100, 20 img/cls: 5 steps FRePo 41.6 vs DM 33.9; 10 steps FRePo 38.0 vs DM 34.0"


def load(name, args):
    """Standardised (X_train, y_train, X_test, y_test), the test rows subsampled to ``--test-rows``."""
    from sklearn_distill import ImageStandardizer, load_benchmark

    X_tr, y_tr, X_te, y_te = load_benchmark(name, args.data_home, return_X_y=True)
    rng = np.random.default_rng(args.seed)
    if args.train_per_class:
        keep = np.concatenate([rng.choice(np.flatnonzero(y_tr == c), args.train_per_class, replace=False)
                               for c in np.unique(y_tr)])
        X_tr, y_tr = X_tr[keep], y_tr[keep]
    if args.test_rows and args.test_rows < len(y_te):
        keep = rng.choice(len(y_te), args.test_rows, replace=False)
        X_te, y_te = X_te[keep], y_te[keep]
    X_tr, X_te = X_tr.astype(np.float32) / 255.0, X_te.astype(np.float32) / 255.0
    scaler = ImageStandardizer().fit(X_tr)
    return scaler.transform(X_tr), y_tr, scaler.transform(X_te), y_te


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--data-home", default=os.path.join(HERE, "..", "data"))
    p.add_argument("--steps", type=int, default=5, help="class steps")
    p.add_argument("--ipc", type=int, default=20)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=1000, help="training steps of each model")
    p.add_argument("--augment", default="auto", choices=["none", "auto"])
    p.add_argument("--train-per-class", type=int, default=0, help="subsample training rows; 0 = all")
    p.add_argument("--test-rows", type=int, default=0, help="subsample test rows; 0 = all")
    p.add_argument("--methods", nargs="+", default=None,
                   choices=["random", "herding", "kcenter", "frepo", "rcig", "ratbptt", "krr"],
                   help="default: random herding (and frepo when --frepo-steps > 0)")
    p.add_argument("--frepo-steps", type=int, default=0,
                   help="FRePo meta-steps per class step (without --seconds); with the default "
                        "--methods, 0 skips FRePo")
    add_learned_arguments(p, frepo_steps_flag=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="output name (default: continual_DATASETS_ipcN_wW)")
    p.add_argument("--out", default=RESULTS, help="output folder")
    p.add_argument("--note", default="", help="a sentence added to the markdown (e.g. dropped methods)")
    args = p.parse_args(argv)
    if args.methods is None:
        args.methods = ["random", "herding"] + (["frepo"] if args.frepo_steps > 0 else [])

    from matplotlib.figure import Figure

    from sklearn_distill import (ConvNet, HerdingDistiller, KCenterDistiller, NeuralNetClassifier,
                                 RandomDistiller, class_incremental_evaluation)

    net = ConvNet(width=args.width, depth=args.depth, norm="none")
    estimator = NeuralNetClassifier(net, n_steps=args.train_steps, learning_rate=1e-3,
                                    augment=args.augment, random_state=args.seed)
    coresets = {"random": lambda: RandomDistiller(ipc=args.ipc, random_state=args.seed),
                "herding": lambda: HerdingDistiller(ipc=args.ipc),
                "kcenter": lambda: KCenterDistiller(ipc=args.ipc)}
    os.makedirs(args.out, exist_ok=True)
    name = args.name or f"continual_{'_'.join(args.datasets)}_ipc{args.ipc}_w{args.width}"
    out = {"benchmark": "class-incremental (GDumb-style)",
           "config": dict(vars(args), model=repr(net).replace("\n", " ")),
           "machine": machine_info(), "results": {}}
    for dataset in args.datasets:
        X_tr, y_tr, X_te, y_te = load(dataset, args)
        # One class order for every method (drawn from --seed), so only the memory differs.
        order = np.random.default_rng(args.seed).permutation(np.unique(y_tr))
        fig = Figure(figsize=(5, 3.5), layout="constrained")
        ax = fig.add_subplot()
        per_method = {}
        first = np.isin(y_tr, np.array_split(order, args.steps)[0])
        for method in args.methods:
            label = METHOD_LABELS[method]
            start = time.perf_counter()
            if method in coresets:
                distiller, budget = coresets[method](), {}
            else:
                # Calibrated on the first step's classes (every step has the same number of classes).
                distiller, budget = build_learned(method, args.ipc, args, X_tr[first], y_tr[first],
                                                  seed=args.seed)
            res = class_incremental_evaluation(distiller, X_tr, y_tr, X_te, y_te, n_steps=args.steps,
                                               class_order=order, estimator=estimator,
                                               random_state=args.seed)
            seconds = time.perf_counter() - start
            res.plot(ax=ax, label=label)
            per_method[label] = dict(res.to_dict(), seconds=round(seconds, 1), budget=budget,
                                     distill_seconds=round(float(res.table["distill_time"].sum()), 1))
            print(dataset, label, f"{seconds:.0f}s", res.table["accuracy"].round(4).tolist(), flush=True)
            out["results"][dataset] = per_method
            # Written after every method, so an interrupted run leaves what it finished (marked).
            write_report(args, name, out, complete=False)
        fig.savefig(os.path.join(args.out, f"{name}_{dataset}.png" if args.name
                                 else f"continual_{dataset}_ipc{args.ipc}.png"), dpi=100)
    write_report(args, name, out, complete=True)


def write_report(args, name, out, complete):
    lines = []
    for dataset, per_method in out["results"].items():
        first = next(iter(per_method.values()))
        n_seen = [s["n_classes_seen"] for s in first["steps"]]
        lines += [f"### {dataset}: {args.steps} steps, ipc {args.ipc}, order {first['class_order']}", "",
                  "| method | " + " | ".join(f"{k} classes" for k in n_seen)
                  + " | average | labels | meta-steps | distil time (s) | total time (s) |",
                  "|---|" + "---|" * (len(n_seen) + 5)]
        for label, r in per_method.items():
            accs = [100 * s["accuracy"] for s in r["steps"]]
            lines.append(f"| {label} | " + " | ".join(f"{a:.1f}" for a in accs)
                         + f" | {np.mean(accs):.1f} | {r['labels']} | {r['budget'].get('n_steps', '–')} | "
                         f"{r['distill_seconds']} | {r['seconds']} |")
        lines.append("")
    m = out["machine"]
    learned = learned_settings(args, args.methods)
    header = [f"Class-incremental (GDumb-style): fresh ConvNet (width {args.width}, depth {args.depth}, no "
              f"norm, Adam 1e-3, {args.train_steps} steps, augment {args.augment}) trained on the memory "
              f"at each step (MSE on the learned labels where a method learns them, cross-entropy "
              f"otherwise); accuracy (%) on the test rows ({args.test_rows or 'all'}) of the classes "
              f"seen; training rows per class: {args.train_per_class or 'all'}. "
              + (learned + " " if learned else "") + f"Machine: "
              f"{machine_summary(m)}. Paper reference: {PAPER}.", ""]
    if args.note:
        header += [args.note, ""]
    if not complete:
        header += ["**Partial results**: the run had not finished when this file was written.", ""]
    out["complete"] = complete
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write("\n".join(header + lines))
    if complete:
        print("\n".join(header + lines))


if __name__ == "__main__":
    main()
