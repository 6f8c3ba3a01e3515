"""Class-incremental learning with distilled memories (GDumb-style) on MNIST and CIFAR-10.

Run by hand (never in CI). Classes arrive in ``--steps`` steps (5 steps of 2 classes for ten
classes); each step's classes are distilled into ``--ipc`` images per class that join the memory,
a ConvNet is trained from scratch on the whole memory and tested on all classes seen so far. The
same class order (from ``--seed``) and the same training recipe are used for every method, so
only the memory differs. Methods: random and herding coresets, plus FRePo when
``sklearn_distill.FRePoDistiller`` exists and ``--frepo-steps`` > 0::

    python benchmarks/bench_continual.py --datasets mnist cifar10 --ipc 10 --width 32 \
        --train-steps 500 --data-home /path/to/data

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
from _common import machine_info, machine_summary  # noqa: E402

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
    p.add_argument("--frepo-steps", type=int, default=0, help="FRePo meta-steps per step; 0 skips")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import sklearn_distill as sd
    from matplotlib.figure import Figure

    from sklearn_distill import (ConvNet, HerdingDistiller, NeuralNetClassifier, RandomDistiller,
                                 class_incremental_evaluation)

    net = ConvNet(width=args.width, depth=args.depth, norm="none")
    estimator = NeuralNetClassifier(net, n_steps=args.train_steps, learning_rate=1e-3,
                                    augment=args.augment, random_state=args.seed)
    methods = {"random": RandomDistiller(ipc=args.ipc, random_state=args.seed),
               "herding": HerdingDistiller(ipc=args.ipc)}
    if hasattr(sd, "FRePoDistiller") and args.frepo_steps > 0:
        methods["FRePo"] = sd.FRePoDistiller(
            ipc=args.ipc, n_steps=args.frepo_steps,
            model=ConvNet(width=args.width, depth=args.depth, norm="batch", width_doubling=True),
            random_state=args.seed)
    os.makedirs(RESULTS, exist_ok=True)
    out = {"benchmark": "class-incremental (GDumb-style)",
           "config": dict(vars(args), model=repr(net).replace("\n", " ")),
           "machine": machine_info(), "results": {}}
    lines = []
    for dataset in args.datasets:
        X_tr, y_tr, X_te, y_te = load(dataset, args)
        # One class order for every method (drawn from --seed), so only the memory differs.
        order = np.random.default_rng(args.seed).permutation(np.unique(y_tr))
        fig = Figure(figsize=(5, 3.5), layout="constrained")
        ax = fig.add_subplot()
        per_method = {}
        for name, distiller in methods.items():
            start = time.perf_counter()
            res = class_incremental_evaluation(distiller, X_tr, y_tr, X_te, y_te, n_steps=args.steps,
                                               class_order=order, estimator=estimator,
                                               random_state=args.seed)
            seconds = time.perf_counter() - start
            res.plot(ax=ax, label=name)
            per_method[name] = dict(res.to_dict(), seconds=round(seconds, 1))
            print(dataset, name, f"{seconds:.0f}s", res.table["accuracy"].round(4).tolist(), flush=True)
        out["results"][dataset] = per_method
        fig.savefig(os.path.join(RESULTS, f"continual_{dataset}_ipc{args.ipc}.png"), dpi=100)
        n_seen = [s["n_classes_seen"] for s in next(iter(per_method.values()))["steps"]]
        lines += [f"### {dataset}: {args.steps} steps, ipc {args.ipc}, order {order.tolist()}", "",
                  "| method | " + " | ".join(f"{k} classes" for k in n_seen) + " | average | time (s) |",
                  "|---|" + "---|" * (len(n_seen) + 2)]
        for name, r in per_method.items():
            accs = [100 * s["accuracy"] for s in r["steps"]]
            lines.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in accs)
                         + f" | {np.mean(accs):.1f} | {r['seconds']} |")
        lines.append("")
    m = out["machine"]
    header = [f"Class-incremental (GDumb-style): fresh ConvNet (width {args.width}, depth {args.depth}, no "
              f"norm, Adam 1e-3, {args.train_steps} steps, augment {args.augment}) trained on the memory "
              f"at each step; accuracy (%) on the test rows ({args.test_rows or 'all'}) of the classes "
              f"seen; training rows per class: {args.train_per_class or 'all'}. Machine: "
              f"{machine_summary(m)}. Paper reference: {PAPER}.", ""]
    name = f"continual_{'_'.join(args.datasets)}_ipc{args.ipc}_w{args.width}"
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    with open(os.path.join(RESULTS, name + ".md"), "w") as f:
        f.write("\n".join(header + lines))
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
