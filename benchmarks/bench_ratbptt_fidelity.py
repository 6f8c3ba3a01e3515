"""RaT-BPTT before and after the corrections towards the official code, on scikit-learn's digits.

"Before" is ``sklearn_distill/methods/ratbptt.py`` at a given git revision (``--before-rev``),
loaded next to the current module from ``git show``; "after" is the current module. Both distil
the same split with the same settings (those of the test suite's accuracy test) and are scored by
the same evaluation (the library protocol, a ConvNet without normalisation), seed by seed, the
two variants alternating so that the load of the shared machine falls on both alike::

    python benchmarks/bench_ratbptt_fidelity.py --before-rev d9d1eb5 --seeds 0 1 2 --ipc 1

Only the distillation differs: the augmentation (before: both operations on every image, no
flips for grey images; after: flip or rotation per batch, grey images included), the clipping
order, the label parameterisation (with ``--learn-labels``) and the network's initialisation and
normalisation epsilon (before: LeCun-normal, 1e-6; after: PyTorch's rule, 1e-5).
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import REPO_ROOT, machine_info, machine_summary, write_results  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))  # this checkout's package, before any installed copy

RESULTS = os.path.join(HERE, "results")


def load_before(rev):
    """The RaT-BPTT module of revision ``rev``, imported inside the current package."""
    source = subprocess.run(["git", "show", f"{rev}:sklearn_distill/methods/ratbptt.py"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "_ratbptt_before.py")
    with open(path, "w") as f:
        f.write(source)
    import sklearn_distill.methods  # noqa: F401  (the parent package of the relative imports)

    name = "sklearn_distill.methods._ratbptt_before"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def digits_split():
    from sklearn.model_selection import train_test_split

    from sklearn_distill import ImageStandardizer, load_digits_images

    X, y = load_digits_images(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    scaler = ImageStandardizer().fit(X_tr)
    return scaler.transform(X_tr), y_tr, scaler.transform(X_te), y_te


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before-rev", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--learn-labels", action="store_true")
    p.add_argument("--variants", nargs="+", default=["before", "after"],
                   choices=["before", "after", "after_no_flip", "after_lecun"],
                   help="after_no_flip: rotation only (the former augmentation of grey images); "
                        "after_lecun: the former initialisation and epsilon")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    from sklearn_distill import ConvNet, ImageAugmentation, RaTBPTTDistiller

    before_cls = load_before(args.before_rev).RaTBPTTDistiller
    X_tr, y_tr, X_te, y_te = digits_split()
    base = ConvNet(width=args.width, depth=2, norm="instance")
    official = base.clone(weight_init="pytorch", norm_epsilon=1e-5)
    rotate = ImageAugmentation(flip=False, crop=False, scale=False, rotate=True, colour=False,
                               cutout=False, rotate_degrees=15.0)
    choices = {
        "before": (before_cls, base, {}),
        "after": (RaTBPTTDistiller, official, {}),
        "after_no_flip": (RaTBPTTDistiller, official, {"augment": rotate}),
        "after_lecun": (RaTBPTTDistiller, base, {}),
    }
    variants = {name: choices[name] for name in args.variants}
    settings = dict(ipc=args.ipc, n_steps=args.steps, window=5, unroll=60, learning_rate=2e-2,
                    inner_learning_rate=1e-2, batch_size=256, init="real",
                    learn_labels=args.learn_labels, n_eval_models=4, eval_steps=300,
                    eval_model=base.clone(norm="none"), eval_protocol="library")
    rows = {name: [] for name in variants}
    for seed in args.seeds:
        order = list(variants) if seed % 2 == 0 else list(variants)[::-1]  # alternate
        for name in order:
            cls, model, extra = variants[name]
            t0 = time.perf_counter()
            est = cls(model=model, random_state=seed, **settings, **extra).fit(X_tr, y_tr)
            fit_s = time.perf_counter() - t0
            acc = float(est.score(X_te, y_te))
            rows[name].append({"seed": seed, "accuracy": acc, "fit_seconds": fit_s})
            print(f"{name} seed {seed}: {100 * acc:.2f} % ({fit_s:.0f} s)", flush=True)

    info = machine_info()
    summary = {name: {"mean": float(np.mean([r["accuracy"] for r in rs])),
                      "std": float(np.std([r["accuracy"] for r in rs])),
                      "fit_seconds_mean": float(np.mean([r["fit_seconds"] for r in rs]))}
               for name, rs in rows.items()}
    out = {"settings": {k: (repr(v) if k == "eval_model" else v) for k, v in settings.items()},
           "variants": args.variants, "width": args.width, "depth": 2, "before_rev": args.before_rev, "seeds": args.seeds,
           "runs": rows, "summary": summary, "machine": info}
    lines = [f"# RaT-BPTT before / after the official-code corrections (digits, ipc {args.ipc})",
             "",
             f"Machine: {machine_summary(info)}; shared with other jobs (2 cores, load far above "
             f"2), so the times only compare the two variants, which alternated seed by seed.",
             "",
             f"Settings: ConvNet width {args.width}, depth 2, instance norm while distilling; "
             f"window 5, unroll 60, inner Adam 1e-2, outer Adam 2e-2, real batch 256, real init, "
             f"{args.steps} meta-steps, learned labels {'on' if args.learn_labels else 'off'}; "
             f"evaluation: the library protocol, 4 ConvNets without normalisation, 300 steps; "
             f"1,078 / 719 stratified split, seeds {args.seeds}. \"before\" is revision "
             f"`{args.before_rev}`.",
             "",
             "| variant | accuracy (%) mean ± std | per seed | fit time (s, mean) |",
             "|---|---|---|---|"]
    for name in variants:
        s = summary[name]
        per = ", ".join(f"{100 * r['accuracy']:.2f}" for r in rows[name])
        lines.append(f"| {name} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} | {per} | "
                     f"{s['fit_seconds_mean']:.0f} |")
    name = args.name or (f"ratbptt_fidelity_digits_ipc{args.ipc}_w{args.width}"
                         + ("_labels" if args.learn_labels else ""))
    write_results(name, out, lines, RESULTS)


if __name__ == "__main__":
    main()
