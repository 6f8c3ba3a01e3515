"""The ``sklearn-distill`` command (also ``python -m sklearn_distill``): the library's main job.

Distil a dataset with a chosen method and ipc, then train networks from scratch on the distilled
set, on a random real subset of the same size and on the full training data, print the three
accuracies side by side, and write the synthetic set (``.npz`` + JSON metadata) and a PNG grid
of its images. With no arguments it distils scikit-learn's bundled 8x8 digits, so it needs no
files and runs in a few minutes on a laptop CPU::

    sklearn-distill                                  # digits, default method, ipc 10
    sklearn-distill --method herding --ipc 1
    sklearn-distill --dataset mnist --data-home ~/data --ipc 10 --width 128 --steps 5000
"""

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["main", "build_parser", "METHODS"]

#: Methods the command knows; the first learned method available is the default.
METHODS = ("frepo", "herding", "kcenter", "random")


def _available_methods():
    import sklearn_distill as sd

    return [m for m in METHODS if m != "frepo" or hasattr(sd, "FRePoDistiller")]


def _default_method():
    return _available_methods()[0]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-distill",
        description="Distil a dataset into a few synthetic samples per class and compare models "
                    "trained from scratch on it, on a random subset and on the full data.")
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist", "cifar10"),
                        help="digits is bundled with scikit-learn; mnist/cifar10 need --data-home "
                             "(default: %(default)s)")
    parser.add_argument("--data-home", default=None,
                        help="folder with mnist.npz / cifar10.npz (else $SKLEARN_DISTILL_DATA)")
    parser.add_argument("--method", default=None, choices=METHODS,
                        help="distillation method (default: frepo when available, else herding)")
    parser.add_argument("--ipc", type=int, default=10, help="synthetic samples per class (default: 10)")
    parser.add_argument("--steps", type=int, default=None,
                        help="meta-steps of a learned method (default: 300 on digits, 2000 otherwise)")
    parser.add_argument("--learning-rate", type=float, default=1e-2,
                        help="learning rate of the synthetic set for a learned method; the papers use "
                             "3e-4 over hundreds of thousands of steps, short runs need more "
                             "(default: %(default)s)")
    parser.add_argument("--width", type=int, default=32,
                        help="ConvNet width for distilling and evaluating; the papers use 128 "
                             "(default: %(default)s, sized for a CPU)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="real rows per meta-step of a learned method (default: %(default)s)")
    parser.add_argument("--eval-models", type=int, default=3,
                        help="networks trained from scratch per evaluated set (default: %(default)s)")
    parser.add_argument("--eval-steps", default="auto",
                        help="training steps of each evaluation network (default: the protocol's "
                             "budget for the set size)")
    parser.add_argument("--full-steps", type=int, default=2000,
                        help="training steps of the full-data networks (default: %(default)s)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-data row")
    parser.add_argument("--out", default="distilled", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _load(args):
    from .datasets import load_benchmark, load_digits_images

    if args.dataset == "digits":
        from sklearn.model_selection import train_test_split

        data = load_digits_images()
        X_train, X_test, y_train, y_test = train_test_split(
            data.images, data.target, test_size=0.25, stratify=data.target, random_state=0)
        return X_train, y_train, X_test, y_test, np.asarray(data.target_names)
    bunch = load_benchmark(args.dataset, args.data_home)
    return (bunch.X_train.astype(np.float32) / 255.0, bunch.y_train,
            bunch.X_test.astype(np.float32) / 255.0, bunch.y_test, np.asarray(bunch.classes))


def _preprocess(args, X_train, X_test):
    """Per-channel standardising; plus ZCA for CIFAR-10, as FRePo does."""
    from sklearn.pipeline import make_pipeline

    from .preprocessing import ImageStandardizer, ZCAWhitening

    steps = [ImageStandardizer(axis="channel")]
    if args.dataset == "cifar10":
        steps.append(ZCAWhitening(regularization=0.1, standardize=None))
    pipe = make_pipeline(*steps).fit(X_train)
    return pipe.transform(X_train), pipe.transform(X_test), " -> ".join(repr(s) for s in steps)


def _make_distiller(method, args, n_train):
    import sklearn_distill as sd

    from .networks import ConvNet

    eval_steps = args.eval_steps if args.eval_steps == "auto" else int(args.eval_steps)
    common = dict(ipc=args.ipc, n_eval_models=args.eval_models, eval_steps=eval_steps,
                  eval_model=ConvNet(width=args.width, depth=3, norm="none"), random_state=args.seed)
    if method == "frepo":
        steps = args.steps or (300 if args.dataset == "digits" else 2000)
        return sd.FRePoDistiller(
            n_steps=steps, batch_size=min(args.batch_size, n_train), learning_rate=args.learning_rate,
            model=ConvNet(width=args.width, depth=3, norm="batch", width_doubling=True),
            verbose=0 if args.quiet else 1, **common)
    cls = {"herding": sd.HerdingDistiller, "kcenter": sd.KCenterDistiller,
           "random": sd.RandomDistiller}[method]
    return cls(**common)


def main(argv=None):
    """Run the main job; returns the process exit status."""
    args = build_parser().parse_args(argv)
    method = args.method or _default_method()
    if method not in _available_methods():
        print(f"sklearn-distill: method {method!r} is not available in this version.", file=sys.stderr)
        return 2
    if args.ipc < 1:
        print("sklearn-distill: --ipc must be at least 1.", file=sys.stderr)
        return 2
    try:
        X_train, y_train, X_test, y_test, class_names = _load(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"sklearn-distill: {exc}", file=sys.stderr)
        return 2

    from . import RandomDistiller
    from ._version import __version__
    from .evaluation import evaluate
    from .networks import ConvNet
    from .plotting import plot_synthetic_images

    X_train, X_test, preprocessing = _preprocess(args, X_train, X_test)
    n_classes = len(np.unique(y_train))
    progress = None if args.quiet else "evaluating"
    print(f"sklearn-distill {__version__}: {args.dataset} ({len(X_train)} training / {len(X_test)} test "
          f"images of shape {X_train.shape[1:]}), method {method}, ipc {args.ipc} "
          f"({args.ipc * n_classes} synthetic images)")

    distiller = _make_distiller(method, args, len(X_train))
    start = time.perf_counter()
    try:
        distiller.fit(X_train, y_train)
    except ValueError as exc:
        print(f"sklearn-distill: {exc}", file=sys.stderr)
        return 2
    distill_time = time.perf_counter() - start

    rows = [(f"distilled ({method})", len(distiller.synthetic_X_),
             distiller.evaluate(X_test, y_test, progress=progress), distill_time)]
    # Every row under the distiller's evaluation protocol, so that they compare.
    protocol = distiller._eval_protocol()
    random_subset = RandomDistiller(ipc=args.ipc, n_eval_models=args.eval_models,
                                    eval_steps=distiller.eval_steps, eval_model=distiller.eval_model,
                                    eval_protocol=protocol, random_state=args.seed).fit(X_train, y_train)
    rows.append(("random real subset", len(random_subset.synthetic_X_),
                 random_subset.evaluate(X_test, y_test, progress=progress), None))
    if not args.no_full:
        full = evaluate(X_train, y_train, X_test, y_test, n_models=args.eval_models,
                        model=ConvNet(width=args.width, depth=3, norm="none"),
                        n_steps=args.full_steps, protocol=protocol, random_state=args.seed,
                        progress=progress)
        rows.append(("full training data", len(X_train), full, None))

    print()
    print(f"Test accuracy of ConvNet(width={args.width}) trained from scratch, mean ± std over "
          f"{args.eval_models} networks:")
    print(f"  {'training set':<26}{'images':>8}  {'accuracy (%)':>14}  {'train s':>8}  {'distil s':>8}")
    for name, n, result, seconds in rows:
        distil = f"{seconds:8.1f}" if seconds is not None else f"{'':8}"
        print(f"  {name:<26}{n:>8}  {100 * result.mean:8.2f} ± {100 * result.std:4.2f}  "
              f"{result.fit_time:8.1f}  {distil}")

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.dataset}_{method}_ipc{args.ipc}")
    results = {name: {"n": int(n), "mean": result.mean, "std": result.std,
                      "scores": result.scores.tolist()} for name, n, result, _ in rows}
    path = distiller.save(stem + ".npz", metadata={
        "dataset": args.dataset, "preprocessing": preprocessing, "distill_seconds": distill_time,
        "class_names": [str(c) for c in class_names], "evaluation": results})
    fig = plot_synthetic_images(distiller.synthetic_X_, distiller.synthetic_y_,
                                title=f"{method}, {args.dataset}, ipc {args.ipc}")
    fig.savefig(stem + ".png", dpi=100, bbox_inches="tight")
    print(f"\nwrote {path} and {stem}.png")
    with open(stem + ".json", "w") as fh:
        json.dump({"command": ["sklearn-distill"] + list(argv if argv is not None else sys.argv[1:]),
                   "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
