"""The ``sklearn-distill`` command (also ``python -m sklearn_distill``): the library's main job.

Distil a dataset with a chosen method and ipc, then train networks from scratch on the distilled
set, on a random real subset of the same size and on the full training data, print the three
accuracies side by side, and write the synthetic set (``.npz`` + JSON metadata), the results
(JSON) and a PNG grid of its images. With no arguments it distils scikit-learn's bundled 8x8
digits, so it needs no files and runs in a few minutes on a laptop CPU::

    sklearn-distill                                  # digits, FRePo, ipc 10
    sklearn-distill --method herding --ipc 1
    sklearn-distill --dataset cifar10 --method rcig --ipc 10 --time-budget 3600

Every distiller of the package is reachable through ``--method``; :data:`REGISTRY` says what each
is and how the command builds it. Settings that depend on the hardware (network width, meta-steps,
batch, learning rate) come in two sizes: GPU-sized when JAX has an accelerator (the papers'
width-128 ConvNets and batches) and CPU-sized otherwise; the header line says which. The
estimators' own defaults never change with the hardware: only this command chooses.
"""

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
import time
import warnings
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["main", "build_parser", "METHODS", "REGISTRY", "DATASETS", "MethodSpec"]

#: Datasets the command knows: scikit-learn's bundled digits and the fetched benchmarks.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "tiny_imagenet")


class MethodSpec(NamedTuple):
    """How the command runs one distiller.

    Attributes
    ----------
    name : str
        The ``--method`` value.
    estimator : str
        The public class of :mod:`sklearn_distill` it builds.
    summary : str
        What the method is, for ``--help``.
    zca : bool
        Whether its paper ZCA-whitens RGB images (after per-channel standardising).
    learned : bool
        Whether it optimises the synthetic set for ``n_steps`` meta-steps (so ``--steps``,
        ``--learning-rate`` and ``--time-budget`` apply).
    defaults : dict
        ``{"cpu": {...}, "gpu": {...}}``: ``steps`` (a pair ``(digits, other datasets)``),
        ``learning_rate`` and the method's own extra parameters for each size of settings.
    build : callable ``(settings: dict) -> estimator``
        Builds the estimator from the resolved settings.
    """

    name: str
    estimator: str
    summary: str
    zca: bool
    learned: bool
    defaults: dict
    build: Callable


def _sd():
    import sklearn_distill

    return sklearn_distill


def _convnet(s, norm="none", **kwargs):
    return _sd().ConvNet(width=s["width"], depth=s["depth"], norm=norm, **kwargs)


def _common(s):
    return dict(n_eval_models=s["eval_models"], eval_steps=s["eval_steps"],
                eval_model=_convnet(s), random_state=s["seed"])


def _gradient_common(s):
    return dict(ipc=s["ipc"], n_steps=s["steps"], learning_rate=s["learning_rate"],
                verbose=s["verbose"], **_common(s))


def _build_frepo(s):
    return _sd().FRePoDistiller(batch_size=s["batch_size"], **s["extra"],
                                model=_convnet(s, norm="batch", width_doubling=True),
                                **_gradient_common(s))


def _build_rcig(s):
    return _sd().RCIGDistiller(batch_size=s["batch_size"], model=_convnet(s), **s["extra"],
                               **_gradient_common(s))


def _build_ratbptt(s, ipc=None):
    params = _gradient_common(s)
    if ipc is not None:
        params["ipc"] = ipc
    return _sd().RaTBPTTDistiller(batch_size=s["batch_size"], model=_convnet(s), **s["extra"],
                                  **params)


def _boost_blocks(ipc):
    """``(n_blocks, block_ipc)``: the most blocks, up to five, that split ``ipc`` evenly."""
    n_blocks = next(b for b in (5, 4, 3, 2, 1) if ipc % b == 0)
    return n_blocks, ipc // n_blocks


def _build_boost(s):
    n_blocks, block_ipc = _boost_blocks(s["ipc"])
    return _sd().BoostedDistiller(_build_ratbptt(s, ipc=block_ipc), block_ipc=block_ipc,
                                  n_blocks=n_blocks, random_state=s["seed"])


def _build_krr(s):
    return _sd().KRRDistiller(batch_size=s["batch_size"], model=_convnet(s), **s["extra"],
                              **_gradient_common(s))


def _build_translator(s):
    return _sd().TranslatorDistiller(translator=s["translator"], batch_size=s["batch_size"],
                                     model=_convnet(s), **s["extra"], **_gradient_common(s))


def _build_coreset(estimator):
    def build(s):
        return getattr(_sd(), estimator)(ipc=s["ipc"], **_common(s))

    return build


def _spec(name, estimator, summary, build, zca=False, learned=True, cpu=None, gpu=None):
    return MethodSpec(name, estimator, summary, zca, learned,
                      {"cpu": dict(cpu or {}), "gpu": dict(gpu or {})}, build)


#: Every distiller the command runs, by ``--method`` name (the first is the default).
REGISTRY = {spec.name: spec for spec in (
    _spec("frepo", "FRePoDistiller",
          "FRePo: neural feature regression with a pool of online models (Zhou et al., 2022)",
          _build_frepo, zca=True,
          cpu={"steps": (300, 2000), "learning_rate": 1e-2},
          gpu={"steps": (2000, 10000), "learning_rate": 3e-4}),
    _spec("rcig", "RCIGDistiller",
          "RCIG: convexified implicit gradients through a linearised network (Loo et al., 2023)",
          _build_rcig, zca=True,
          cpu={"steps": (200, 1000), "learning_rate": 3e-3, "pool_size": 10},
          gpu={"steps": (2000, 10000), "learning_rate": 3e-3}),
    _spec("ratbptt", "RaTBPTTDistiller",
          "RaT-BPTT: random truncated backpropagation through time (Feng et al., 2024)",
          _build_ratbptt,
          cpu={"steps": (200, 1000), "learning_rate": 1e-2, "window": 10, "unroll": 20},
          gpu={"steps": (2000, 10000), "learning_rate": 1e-3}),
    _spec("boost", "BoostedDistiller",
          "Boost-DD: the set grown in up to five blocks of RaT-BPTT, each prefix a good set "
          "(Feng et al., 2024)",
          _build_boost,
          cpu={"steps": (100, 500), "learning_rate": 1e-2, "window": 10, "unroll": 20},
          gpu={"steps": (1000, 5000), "learning_rate": 1e-3}),
    _spec("krr", "KRRDistiller",
          "KRR: kernel ridge regression on features of random networks (Liu and Wang, 2023)",
          _build_krr,
          cpu={"steps": (300, 1000), "learning_rate": 1e-2},
          gpu={"steps": (1000, 5000), "learning_rate": 1e-2}),
    _spec("translator", "TranslatorDistiller",
          "few-shot distillation: a KRR set in one network, passed through a translator "
          "(pre-trained with --translator, else adapted from the identity; Liu and Wang, 2023)",
          _build_translator,
          cpu={"steps": (100, 100), "learning_rate": 1e-2, "adapt_steps": 20},
          gpu={"steps": (100, 300), "learning_rate": 1e-2, "adapt_steps": 100}),
    _spec("herding", "HerdingDistiller",
          "herding coreset: real images whose mean feature tracks the class mean",
          _build_coreset("HerdingDistiller"), learned=False),
    _spec("kcenter", "KCenterDistiller",
          "k-center coreset: real images chosen greedily to cover each class's feature space",
          _build_coreset("KCenterDistiller"), learned=False),
    _spec("random", "RandomDistiller", "random real subset, class-balanced (the baseline)",
          _build_coreset("RandomDistiller"), learned=False),
)}

#: ``--method`` values.
METHODS = tuple(REGISTRY)

#: Settings shared by every method, per size: network width, real batch, evaluation networks,
#: full-data training steps.
_SIZES = {"cpu": {"width": 32, "batch_size": 256, "eval_models": 3, "full_steps": 2000},
          "gpu": {"width": 128, "batch_size": 1024, "eval_models": 5, "full_steps": 10000}}


def _accelerator():
    """``"gpu"`` when JAX's default backend is an accelerator, else ``"cpu"``."""
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "gpu"


def _methods_epilog():
    """One line per method for ``--help``: what it is, its class and its default meta-steps."""
    lines = ["methods (--method):"]
    for spec in REGISTRY.values():
        detail = f"{spec.estimator}"
        if spec.learned:
            cpu, gpu = spec.defaults["cpu"], spec.defaults["gpu"]
            detail += (f"; meta-steps on digits / other datasets: CPU {cpu['steps'][0]} / "
                       f"{cpu['steps'][1]}, GPU {gpu['steps'][0]} / {gpu['steps'][1]}; learning "
                       f"rate CPU {cpu['learning_rate']:g}, GPU {gpu['learning_rate']:g}")
        if spec.zca:
            detail += "; ZCA-whitens RGB images"
        lines.append(textwrap.fill(f"{spec.name:<11}{spec.summary} ({detail})", width=100,
                                   initial_indent="  ", subsequent_indent=" " * 13))
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-distill",
        description="Distil a dataset into a few synthetic samples per class and compare models "
                    "trained from scratch on it, on a random subset and on the full data. "
                    "Defaults marked 'CPU/GPU' depend on whether JAX sees an accelerator.",
        epilog=_methods_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=DATASETS,
                        help="digits is bundled with scikit-learn; the others are downloaded "
                             "into --data-home on first use (default: %(default)s)")
    parser.add_argument("--data-home", default=None,
                        help="folder of the downloaded and decoded datasets (default: "
                             "$SKLEARN_DISTILL_DATA, else ~/sklearn_distill_data)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading a dataset that is not in --data-home")
    parser.add_argument("--method", default=METHODS[0], choices=METHODS, metavar="METHOD",
                        help="distillation method, one of " + ", ".join(METHODS) + " (default: "
                             "%(default)s; each is described below)")
    parser.add_argument("--ipc", type=int, default=10, help="synthetic samples per class (default: 10)")
    parser.add_argument("--settings", default="auto", choices=("auto", "cpu", "gpu"),
                        help="size of the defaults below: auto picks gpu when JAX has an "
                             "accelerator (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None,
                        help="meta-steps of a learned method (default: per method and settings, "
                             "see --method)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="distil for this wall-clock time instead of --steps: the meta-steps "
                             "(and so the learning-rate schedule) are sized to fit it from a "
                             "short timed probe, and distilling stops at the budget")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="learning rate of the synthetic set for a learned method (default: "
                             "per method; the papers' rates suit their long GPU runs, short CPU "
                             "runs need more)")
    parser.add_argument("--width", type=int, default=None,
                        help="ConvNet width for distilling and evaluating (default: CPU 32, "
                             "GPU 128 as in the papers)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="real rows per meta-step of a learned method (default: CPU 256, "
                             "GPU 1024)")
    parser.add_argument("--translator", default=None,
                        help="translator method only: path of a pre-trained translator "
                             "(sklearn_distill.pretrain_translator); default: adapt the identity")
    parser.add_argument("--eval-models", type=int, default=None,
                        help="networks trained from scratch per evaluated set (default: CPU 3, "
                             "GPU 5)")
    parser.add_argument("--eval-steps", default="auto",
                        help="training steps of each evaluation network (default: the protocol's "
                             "budget for the set size)")
    parser.add_argument("--full-steps", type=int, default=None,
                        help="training steps of the full-data networks (default: CPU 2000, "
                             "GPU 10000)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-data row")
    parser.add_argument("--out", default="distilled", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def resolve_settings(args, size, image_shape):
    """The settings a run uses: the command line where given, else the ``size`` defaults."""
    spec = REGISTRY[args.method]
    shared, own = _SIZES[size], dict(spec.defaults[size])
    steps = own.pop("steps", (None, None))
    learning_rate = own.pop("learning_rate", None)

    def pick(value, default):
        return default if value is None else value

    height, width = image_shape[:2]
    return {
        "ipc": args.ipc, "seed": args.seed, "verbose": 0 if args.quiet else 1,
        "width": pick(args.width, shared["width"]),
        # The papers' rule: one more conv block from 64 pixels on.
        "depth": 4 if min(height, width) >= 64 else 3,
        "batch_size": pick(args.batch_size, shared["batch_size"]),
        "eval_models": pick(args.eval_models, shared["eval_models"]),
        "full_steps": pick(args.full_steps, shared["full_steps"]),
        "eval_steps": args.eval_steps if args.eval_steps == "auto" else int(args.eval_steps),
        "steps": pick(args.steps, steps[0] if args.dataset == "digits" else steps[1]),
        "learning_rate": pick(args.learning_rate, learning_rate),
        "translator": args.translator, "extra": own,
    }


def _load(args):
    from . import load_benchmark, load_digits_images

    if args.dataset == "digits":
        from sklearn.model_selection import train_test_split

        data = load_digits_images()
        X_train, X_test, y_train, y_test = train_test_split(
            data.images, data.target, test_size=0.25, stratify=data.target, random_state=0)
        return X_train, y_train, X_test, y_test, np.asarray(data.target_names)
    bunch = load_benchmark(args.dataset, args.data_home, download=not args.no_download,
                           progress=not args.quiet)
    return (_unit_scale(bunch.X_train), bunch.y_train, _unit_scale(bunch.X_test), bunch.y_test,
            np.asarray(bunch.classes))


def _unit_scale(images):
    """uint8 images as float32 in [0, 1], scaled in place (one float32 copy, not two)."""
    X = images.astype(np.float32)
    X /= 255.0
    return X


def _preprocess(spec, X_train, X_test):
    """Per-channel standardising; plus ZCA for RGB images where the method's paper whitens."""
    from sklearn.pipeline import make_pipeline

    from . import ImageStandardizer, ZCAWhitening

    steps = [ImageStandardizer(axis="channel")]
    if spec.zca and X_train.shape[-1] == 3:
        steps.append(ZCAWhitening(regularization=0.1, standardize=None))
    pipe = make_pipeline(*steps).fit(X_train)
    return pipe.transform(X_train), pipe.transform(X_test), " -> ".join(repr(s) for s in steps)


class _Deadline:
    """Stop a fit at a wall-clock time through the training loop's graceful stop.

    The loop that drives every learned method's meta-steps turns SIGINT (Ctrl-C) into a stop
    after the step in flight, keeping the state reached. A timer sends that signal at the
    deadline. A deadline signal that arrives outside the loop (before its first step, or after
    its last) is caught here and sent again half a second later, until the fit returns, so a
    loop that starts late is still stopped; a real Ctrl-C still interrupts.
    """

    def __init__(self, seconds):
        self.seconds = max(0.0, float(seconds))
        self.fired = False
        # Re-entrant: the signal handler may run in the main thread while __exit__ holds it.
        self._lock = threading.RLock()
        self._active = False

    def _arm(self, seconds):
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self):
        with self._lock:
            if self._active:
                self.fired = True
                os.kill(os.getpid(), signal.SIGINT)

    def _handler(self, signum, frame):
        if not self.fired:
            raise KeyboardInterrupt
        with self._lock:
            if self._active:
                self._arm(0.5)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        self._active = True
        self._arm(self.seconds)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._active = False
            self._timer.cancel()
        signal.signal(signal.SIGINT, self._previous)
        return False


def _fit_within(distiller, X, y, budget):
    """Fit with ``n_steps`` sized to ``budget`` seconds and a hard stop at the budget.

    A silent probe fit of a few steps, logging every step, measures the seconds per meta-step
    once compiled (the median step); it also compiles the step, which the main fit reuses since
    ``n_steps`` is a traced hyperparameter. The main fit gets the steps that fit in 95 % of what
    is left of the budget, so its learning-rate schedule runs to its end; should it run slower
    than measured, it is stopped at the budget with the state reached. Returns
    ``(n_steps planned, steps taken, whether the budget stopped it, probe seconds)``. A budget
    shorter than the probe (compilation, mostly) still gets one meta-step.
    """
    from sklearn.base import clone

    start = time.perf_counter()
    probe = clone(distiller).set_params(n_steps=6, log_every=1, verbose=0)
    probe.fit(X, y)
    probe_seconds = time.perf_counter() - start
    times = np.asarray(probe.history_["time"], dtype=float)
    per_step = float(np.median(np.diff(times))) if len(times) > 2 else times[-1] / len(times)
    left = budget - probe_seconds
    n_steps = max(1, int(0.95 * left / max(per_step, 1e-6)))
    distiller.set_params(n_steps=n_steps)
    with warnings.catch_warnings(record=True) as caught, \
            _Deadline(budget - (time.perf_counter() - start)) as deadline:
        warnings.simplefilter("always")
        distiller.fit(X, y)
    for w in caught:
        if not (deadline.fired and "interrupted" in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    taken = int(distiller.n_iter_)
    print(f"time budget {budget:g} s: {per_step * 1e3:.1f} ms per meta-step measured by a "
          f"{probe_seconds:.1f} s probe (compilation included), {n_steps} planned, {taken} taken"
          + (", stopped at the budget" if deadline.fired else "")
          + ("; the probe alone outlasted the budget" if left <= 0 else ""))
    return n_steps, taken, deadline.fired, probe_seconds


def main(argv=None):
    """Run the main job; returns the process exit status."""
    args = build_parser().parse_args(argv)
    spec = REGISTRY[args.method]
    if args.ipc < 1:
        print("sklearn-distill: --ipc must be at least 1.", file=sys.stderr)
        return 2
    if args.time_budget is not None and (not spec.learned or spec.name in ("boost", "translator")):
        print(f"sklearn-distill: --time-budget applies to frepo, rcig, ratbptt and krr, not "
              f"{spec.name}.", file=sys.stderr)
        return 2
    if args.time_budget is not None and args.time_budget <= 0:
        print("sklearn-distill: --time-budget must be positive.", file=sys.stderr)
        return 2
    try:
        X_train, y_train, X_test, y_test, class_names = _load(args)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"sklearn-distill: {exc}", file=sys.stderr)
        return 2

    from . import RandomDistiller, evaluate, plot_synthetic_images
    from ._version import __version__

    size = _accelerator() if args.settings == "auto" else args.settings
    s = resolve_settings(args, size, X_train.shape[1:])
    X_train, X_test, preprocessing = _preprocess(spec, X_train, X_test)
    n_classes = len(np.unique(y_train))
    progress = None if args.quiet else "evaluating"
    schedule = (f"{s['steps']} steps, learning rate {s['learning_rate']:g}, "
                if spec.learned and args.time_budget is None else
                f"time budget {args.time_budget:g} s, " if spec.learned else "")
    print(f"sklearn-distill {__version__}: {args.dataset} ({len(X_train)} training / "
          f"{len(X_test)} test images of shape {X_train.shape[1:]}), method {spec.name}, ipc "
          f"{args.ipc} ({args.ipc * n_classes} synthetic images); {size.upper()}-sized settings "
          f"({'accelerator found' if size == 'gpu' else 'no accelerator'}"
          f"{'' if args.settings == 'auto' else ', chosen by --settings'}): ConvNet width "
          f"{s['width']}, depth {s['depth']}, {schedule}{s['eval_models']} evaluation networks")

    distiller = spec.build(s)
    start = time.perf_counter()
    try:
        if args.time_budget is not None:
            s["steps"], taken, stopped, probe = _fit_within(distiller, X_train, y_train,
                                                            args.time_budget)
            s.update(steps_taken=taken, stopped_at_budget=stopped, probe_seconds=probe)
        else:
            distiller.fit(X_train, y_train)
    except ValueError as exc:
        print(f"sklearn-distill: {exc}", file=sys.stderr)
        return 2
    distill_time = time.perf_counter() - start

    rows = [(f"distilled ({spec.name})", len(distiller.synthetic_X_),
             distiller.evaluate(X_test, y_test, progress=progress), distill_time)]
    # Every row under the distiller's evaluation protocol and network, so that they compare.
    protocol = distiller._eval_protocol()
    eval_model = _convnet(s)
    random_subset = RandomDistiller(ipc=args.ipc, n_eval_models=s["eval_models"],
                                    eval_steps=s["eval_steps"], eval_model=eval_model,
                                    eval_protocol=protocol, random_state=args.seed)
    random_subset.fit(X_train, y_train)
    rows.append(("random real subset", len(random_subset.synthetic_X_),
                 random_subset.evaluate(X_test, y_test, progress=progress), None))
    if not args.no_full:
        full = evaluate(X_train, y_train, X_test, y_test, n_models=s["eval_models"],
                        model=eval_model, n_steps=s["full_steps"], protocol=protocol,
                        random_state=args.seed,
                        progress=progress)
        rows.append(("full training data", len(X_train), full, None))

    print()
    print(f"Test accuracy of ConvNet(width={s['width']}, depth={s['depth']}) trained from "
          f"scratch, mean ± std over {s['eval_models']} networks:")
    print(f"  {'training set':<26}{'images':>8}  {'accuracy (%)':>14}  {'train s':>8}  {'distil s':>8}")
    for name, n, result, seconds in rows:
        distil = f"{seconds:8.1f}" if seconds is not None else f"{'':8}"
        print(f"  {name:<26}{n:>8}  {100 * result.mean:8.2f} ± {100 * result.std:4.2f}  "
              f"{result.fit_time:8.1f}  {distil}")

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.dataset}_{spec.name}_ipc{args.ipc}")
    results = {name: {"n": int(n), "mean": result.mean, "std": result.std,
                      "scores": result.scores.tolist()} for name, n, result, _ in rows}
    settings = {k: v for k, v in s.items() if k not in ("extra", "verbose")}
    settings.update(s["extra"], size=size, time_budget=args.time_budget)
    path = distiller.save(stem + ".npz", metadata={
        "dataset": args.dataset, "preprocessing": preprocessing, "distill_seconds": distill_time,
        "settings": settings, "class_names": [str(c) for c in class_names],
        "evaluation": results})
    fig = plot_synthetic_images(distiller.synthetic_X_, distiller.synthetic_y_,
                                title=f"{spec.name}, {args.dataset}, ipc {args.ipc}")
    fig.savefig(stem + ".png", dpi=100, bbox_inches="tight")
    print(f"\nwrote {path}, {stem}.json and {stem}.png")
    with open(stem + ".json", "w") as fh:
        json.dump({"command": ["sklearn-distill"] + list(argv if argv is not None else sys.argv[1:]),
                   "settings": settings, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
