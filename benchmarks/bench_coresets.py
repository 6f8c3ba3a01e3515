"""Coreset baselines (Random, Herding, K-Center) against the full training set.

For every dataset and ipc, each coreset method selects ``ipc`` real images per class from the
(standardised) training set; then ``--n-models`` evaluation networks are trained from scratch on
the selection with the evaluation protocol (``sklearn_distill.evaluate``: ConvNet without norm,
Adam + warm-up/cosine, cross-entropy, augmentation, last state kept) and tested on the test set.
The same networks are trained on the whole training set for the "full" row. Reported: mean ± std
test accuracy, the selection wall time of each method and the evaluation wall time.

Preprocessing: per-channel standardisation (``ImageStandardizer``) fitted on the training set and
applied to train and test. digits: scikit-learn's 8x8 digits with a fixed stratified split
(1,347 train / 450 test, ``random_state=0``); mnist: ``load_benchmark("mnist", data_home)``.

If several ``--learning-rate`` values are given, one is picked first on a validation split carved
from the digits TRAINING data (never the test set): class-balanced random subsets of
``--select-ipc`` images per class are drawn from 80% of the training split and the networks are
scored on the other 20%; the value with the best mean validation accuracy is used for every row.

Full protocol scale (GPU)::

    python benchmarks/bench_coresets.py --learning-rate 1e-3 3e-3

Reduced CPU run used for the committed results: see benchmarks/README.md.
Run by hand only, never in CI.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (REPO_ROOT, fmt_acc, jsonable, log, machine_info, machine_summary,  # noqa: E402
                     markdown_table, now_iso, timer, write_json, write_text)

METHODS = {"random": "Random", "herding": "Herding", "kcenter": "K-Center"}

# REFERENCE_RESULTS.md: random-subset rows and the full-data ConvNet of the method papers
# (ConvNet width 128, full protocol), test accuracy in %.
REFERENCE = {
    "mnist": {"random": {1: 62.7, 10: 93.2, 50: 97.8}, "full": 99.6},
}
REFERENCE_NOTE = ("/work/shared/REFERENCE_RESULTS.md: the random-subset row and the full-data "
                  "ConvNet of the FRePo/RCIG papers (ConvNet width 128, full protocol)")


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def _steps_arg(value):
    if value == "auto":
        return "auto"
    steps = [int(v) for v in value.split(",")]
    if any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError("steps must be positive integers")
    return steps


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"])
    p.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--width", type=int, default=128, help="evaluation ConvNet width")
    p.add_argument("--depth", type=int, default=3, help="evaluation ConvNet depth")
    p.add_argument("--n-models", type=int, default=5, help="evaluation networks per row")
    p.add_argument("--eval-steps", type=_steps_arg, default="auto",
                   help="training steps on a coreset: 'auto' (the protocol's default_eval_steps), "
                        "one integer for every ipc, or a comma list matching --ipc")
    p.add_argument("--full-steps", type=_steps_arg, default="auto",
                   help="training steps on the full training set: 'auto' "
                        "(default_eval_steps(n_train)) or an integer")
    p.add_argument("--no-full", action="store_true", help="skip the full-training-set rows")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--learning-rate", nargs="+", type=float, default=[1e-3],
                   help="evaluation learning rate; several values: pick one on a validation "
                        "split of the digits training data first")
    p.add_argument("--select-ipc", type=int, default=10, help="ipc of the learning-rate selection")
    p.add_argument("--select-seeds", type=int, default=3,
                   help="random subsets drawn per learning rate in the selection")
    p.add_argument("--model-batching", choices=["auto", "vmap", "loop"], default="auto",
                   help="train the networks of a row together (vmap, one jitted step) or one after "
                        "another (loop); auto: loop on CPU for images larger than 16x16, where "
                        "XLA's CPU convolutions are slower vmapped, vmap otherwise")
    p.add_argument("--n-jobs", type=int, default=None, help="joblib n_jobs of the coreset selection")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=str(REPO_ROOT / "data"),
                   help="folder with mnist.npz (python ../shared/datasets/materialize.py DIR)")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"),
                   help="output folder; NAME.json and NAME.md are written there")
    p.add_argument("--name", default="coresets", help="base name of the output files")
    p.add_argument("--render", action="store_true",
                   help="only rewrite NAME.md from an existing NAME.json, then exit")
    p.add_argument("--resume", action="store_true",
                   help="keep rows of an existing NAME.json that used the same settings")
    args = p.parse_args(argv)
    if isinstance(args.eval_steps, list) and len(args.eval_steps) not in (1, len(args.ipc)):
        p.error("--eval-steps must be 'auto', one integer or one integer per --ipc value")
    if isinstance(args.full_steps, list) and len(args.full_steps) != 1:
        p.error("--full-steps must be 'auto' or one integer")
    return args


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def raw_digits():
    """digits in [0, 1], the fixed stratified 1,347 / 450 split."""
    from sklearn.model_selection import train_test_split
    from sklearn_distill import load_digits_images

    X, y = load_digits_images(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=450, stratify=y, random_state=0)
    return X_tr, y_tr, X_te, y_te


def load_dataset(name, data_home):
    """Standardised ``(X_train, y_train, X_test, y_test, description)``."""
    from sklearn_distill import ImageStandardizer, load_benchmark

    if name == "digits":
        X_tr, y_tr, X_te, y_te = raw_digits()
        source = ("sklearn digits 8x8 / 16, train_test_split(test_size=450, stratify=y, "
                  "random_state=0)")
    else:
        X_tr, y_tr, X_te, y_te = load_benchmark(name, data_home, return_X_y=True)
        X_tr = X_tr.astype(np.float32) / 255.0
        X_te = X_te.astype(np.float32) / 255.0
        source = f"load_benchmark({name!r}) / 255, official train/test split"
    scaler = ImageStandardizer(axis="channel").fit(X_tr)
    X_tr = scaler.transform(X_tr).astype(np.float32)
    X_te = scaler.transform(X_te).astype(np.float32)
    desc = {"source": source, "n_train": len(X_tr), "n_test": len(X_te),
            "image_shape": list(X_tr.shape[1:]), "n_classes": int(len(np.unique(y_tr))),
            "preprocessing": "ImageStandardizer(axis='channel') fitted on the training set",
            "channel_mean": scaler.mean_.tolist(), "channel_std": scaler.scale_.tolist()}
    return X_tr, np.asarray(y_tr), X_te, np.asarray(y_te), desc


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

def resolve_batching(mode, sample_shape):
    import jax

    if mode != "auto":
        return mode
    large = sample_shape[0] * sample_shape[1] > 256
    return "loop" if jax.default_backend() == "cpu" and large else "vmap"


def train_and_score(X, y, X_test, y_test, *, model, n_steps, learning_rate, args, batching):
    """Train ``args.n_models`` networks on ``(X, y)``; returns scores, training and total time."""
    from sklearn_distill import evaluate

    common = dict(model=model, n_steps=int(n_steps), learning_rate=float(learning_rate),
                  batch_size=args.batch_size)
    with timer() as total:
        if batching == "vmap":
            result = evaluate(X, y, X_test, y_test, n_models=args.n_models,
                              random_state=args.seed, **common)
            scores, fit_time = np.asarray(result.scores), result.fit_time
        else:
            scores, fit_time = [], 0.0
            for i in range(args.n_models):
                result = evaluate(X, y, X_test, y_test, n_models=1, random_state=args.seed + i,
                                  **common)
                scores.append(float(result.scores[0]))
                fit_time += result.fit_time
            scores = np.asarray(scores)
    return scores, fit_time, total()


def eval_steps_for(args, ipc, n_synthetic):
    from sklearn_distill.evaluation import default_eval_steps

    if args.eval_steps == "auto":
        return default_eval_steps(n_synthetic)
    if len(args.eval_steps) == 1:
        return args.eval_steps[0]
    if ipc in args.ipc:
        return args.eval_steps[args.ipc.index(ipc)]
    return default_eval_steps(n_synthetic)


def make_distiller(method, ipc, args):
    from sklearn_distill import HerdingDistiller, KCenterDistiller, RandomDistiller

    cls = {"random": RandomDistiller, "herding": HerdingDistiller, "kcenter": KCenterDistiller}[method]
    return cls(ipc=ipc, n_jobs=args.n_jobs, random_state=args.seed)


def warm_up_selection(X, y, args):
    """Fit every method once on a tiny class-balanced subset, so that one-off costs (JAX's
    first key derivation, imports) are not charged to the first timed selection."""
    rows = np.concatenate([np.flatnonzero(y == c)[:2] for c in np.unique(y)])
    for method in args.methods:
        make_distiller(method, 1, args).fit(X[rows], y[rows])


def select_learning_rate(args, model):
    """Pick the learning rate on a validation split of the digits training data."""
    from sklearn.model_selection import train_test_split
    from sklearn_distill import ImageStandardizer, RandomDistiller

    X_tr, y_tr, _, _ = raw_digits()  # the test split is never used here
    X_fit, X_val, y_fit, y_val = train_test_split(X_tr, y_tr, test_size=0.2, stratify=y_tr,
                                                  random_state=args.seed)
    scaler = ImageStandardizer().fit(X_fit)
    X_fit, X_val = scaler.transform(X_fit), scaler.transform(X_val)
    ipc = args.select_ipc
    n_steps = eval_steps_for(args, ipc, ipc * len(np.unique(y_fit)))
    batching = resolve_batching(args.model_batching, X_fit.shape[1:])
    trials = []
    for lr in args.learning_rate:
        scores, wall = [], 0.0
        for s in range(args.select_seeds):
            d = RandomDistiller(ipc=ipc, random_state=args.seed + 100 + s).fit(X_fit, y_fit)
            sc, _, t = train_and_score(d.synthetic_X_, d.synthetic_y_, X_val, y_val, model=model,
                                       n_steps=n_steps, learning_rate=lr, args=args,
                                       batching=batching)
            scores.extend(sc.tolist())
            wall += t
        trials.append({"learning_rate": lr, "mean": float(np.mean(scores)),
                       "std": float(np.std(scores)), "scores": scores, "wall_time_s": wall})
        log(f"lr selection: lr={lr:g} val acc {fmt_acc(np.mean(scores), np.std(scores))} "
            f"({wall:.0f} s)")
    best = max(trials, key=lambda t: t["mean"])["learning_rate"]
    return {"dataset": "digits", "ipc": ipc, "method": "random", "eval_steps": n_steps,
            "n_subsets": args.select_seeds, "n_fit": len(y_fit), "n_val": len(y_val),
            "split": f"train_test_split(digits train, test_size=0.2, stratify, random_state={args.seed})",
            "trials": trials, "chosen": best}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------

def _find(rows, dataset, method, ipc):
    for r in rows:
        if r["dataset"] == dataset and r["method"] == method and r["ipc"] == ipc:
            return r
    return None


def render_markdown(payload):
    cfg, rows = payload["config"], payload["rows"]
    lines = ["# Coreset baselines: Random, Herding, K-Center", "",
             f"Generated by `benchmarks/bench_coresets.py` on {payload['started']}; "
             f"total wall time {payload.get('total_wall_time_s', float('nan')) / 60:.1f} min"
             f"{'' if payload.get('finished') else ' (INCOMPLETE: run still going or aborted)'}.",
             "", f"Command: `{payload['command']}`", "",
             f"Machine: {machine_summary(payload['machine'])}; load average at start "
             f"{', '.join(f'{x:.1f}' for x in payload['machine']['load_average_at_start'] or [])} "
             "(shared machine: timings are noisy).", ""]
    lines += ["## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in cfg["settings"].items()]
    if cfg["reductions"]:
        lines += ["", "**Reductions from the full evaluation protocol** (so the numbers are below "
                  "what the full protocol gives):", ""]
        lines += [f"- {r}" for r in cfg["reductions"]]
    sel = payload.get("lr_selection")
    if sel:
        lines += ["", "## Learning-rate selection", "",
                  f"Random ipc-{sel['ipc']} subsets ({sel['n_subsets']} draws) of {sel['n_fit']} "
                  f"digits training images, scored on {sel['n_val']} held-out *training* images "
                  f"({sel['eval_steps']} steps); the test set is not used.", ""]
        lines.append(markdown_table(
            ["learning rate", "validation accuracy (%)", "wall time (s)"],
            [[f"{t['learning_rate']:g}" + (" (chosen)" if t["learning_rate"] == sel["chosen"] else ""),
              fmt_acc(t["mean"], t["std"]), f"{t['wall_time_s']:.0f}"] for t in sel["trials"]]))
    for ds in cfg["datasets"]:
        desc = payload["data"].get(ds)
        if not desc:
            continue
        ref = REFERENCE.get(ds)
        lines += ["", f"## {ds} ({desc['n_train']:,} train / {desc['n_test']:,} test)", "",
                  "Test accuracy (%), mean ± std over the evaluation networks."]
        if ref:
            lines.append(f"'paper' column: {REFERENCE_NOTE}.")
        lines.append("")
        headers = ["ipc"] + [METHODS[m] for m in cfg["methods"]] + ["eval steps"]
        if ref:
            headers.append("paper: random")
        table = []
        for ipc in cfg["ipc"]:
            row = [ipc]
            steps = None
            for m in cfg["methods"]:
                r = _find(rows, ds, m, ipc)
                row.append(fmt_acc(r["mean"], r["std"]) if r else "–")
                steps = steps or (r and r["eval_steps"])
            row.append(steps or "–")
            if ref:
                v = ref["random"].get(ipc)
                row.append(f"{v:.1f}" if v is not None else "–")
            table.append(row)
        full = _find(rows, ds, "full", None)
        if full or not cfg["no_full"]:
            blank = [""] * (len(cfg["methods"]) - 1)
            acc = fmt_acc(full["mean"], full["std"]) if full else "–"
            steps = full["eval_steps"] if full else "–"
            row = [f"all {desc['n_train']:,} (full data)", acc] + blank + [steps]
            if ref:
                row.append(f"{ref['full']:.1f} (full data)")
            table.append(row)
        lines.append(markdown_table(headers, table))
        lines += ["", "Selection wall time (s) on the "
                  f"{desc['n_train']:,} training rows / evaluation wall time (s, training + "
                  "testing all networks):", ""]
        t_rows = []
        for ipc in cfg["ipc"]:
            row = [ipc]
            for m in cfg["methods"]:
                r = _find(rows, ds, m, ipc)
                row.append(f"{r['selection_time_s']:.2f} / {r['eval_time_s']:.0f}" if r else "–")
            t_rows.append(row)
        if full:
            t_rows.append(["full data", f"– / {full['eval_time_s']:.0f}"] + blank)
        lines.append(markdown_table(["ipc"] + [METHODS[m] for m in cfg["methods"]], t_rows))
    lines += ["", "## Notes", "",
              "- At ipc 1 Herding and K-Center pick the same image (the one nearest the class "
              "mean), hence identical rows.",
              "- Random is one class-balanced draw (`random_state` above); its spread over draws "
              "is not in the std, which is over evaluation networks only.",
              "- Selection time is the wall time of `fit` (input validation included: for Random "
              "it is nearly all of it); evaluation time includes compilation and testing.",
              ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    from sklearn_distill import ConvNet
    from sklearn_distill.evaluation import default_eval_steps

    started_wall = time.perf_counter()
    out_dir = Path(args.out)
    json_path, md_path = out_dir / f"{args.name}.json", out_dir / f"{args.name}.md"
    if args.render:
        import json

        write_text(md_path, render_markdown(json.loads(json_path.read_text())))
        print(md_path.read_text())
        return
    model = ConvNet(width=args.width, depth=args.depth, norm="none")
    machine = machine_info()

    reductions = []
    if args.width != 128 or args.depth != 3:
        reductions.append(f"evaluation ConvNet width {args.width}, depth {args.depth} "
                          "(protocol: width 128, depth 3)")
    if args.n_models != 5:
        reductions.append(f"{args.n_models} evaluation networks per row (protocol default: 5)")
    if args.eval_steps != "auto":
        per_ipc = {ipc: eval_steps_for(args, ipc, 10 * ipc) for ipc in args.ipc}
        reductions.append("coreset training steps " + ", ".join(
            f"ipc {k}: {v} (protocol: {default_eval_steps(10 * k)})" for k, v in per_ipc.items()))
    if args.full_steps != "auto" and not args.no_full:
        reductions.append(f"full-training-set rows: {args.full_steps[0]} steps at batch "
                          f"{args.batch_size} (protocol: default_eval_steps(n_train) = 10000)")
    if args.batch_size != 256:
        reductions.append(f"evaluation batch size {args.batch_size} (protocol: 256; coresets of "
                          f"at most {args.batch_size} images are used whole every step)")

    settings = {
        "evaluation network": f"ConvNet(width={args.width}, depth={args.depth}, norm='none')",
        "networks per row": args.n_models,
        "coreset steps": "protocol default_eval_steps(n)" if args.eval_steps == "auto"
        else ", ".join(f"ipc {k}: {eval_steps_for(args, k, 10 * k)}" for k in args.ipc),
        "full-data steps": "default_eval_steps(n_train)" if args.full_steps == "auto"
        else args.full_steps[0],
        "batch size": args.batch_size,
        "optimiser": "Adam, 10% linear warm-up then cosine decay to 0, cross-entropy on hard "
                     "labels, protocol augmentation (no flip for greyscale), last state kept",
        "learning rate": args.learning_rate[0] if len(args.learning_rate) == 1
        else f"chosen from {args.learning_rate} on a validation split (below)",
        "networks trained": "model batching " + args.model_batching,
        "coreset selection": "on the standardised pixels (per class, joblib n_jobs="
                             f"{args.n_jobs}); Random seeded with random_state={args.seed}",
        "seeds": f"network i of a row uses random_state={args.seed}+i (loop) or "
                 f"{args.seed} split n_models ways (vmap); the same for every method",
    }
    config = {"datasets": args.datasets, "ipc": args.ipc, "methods": args.methods,
              "width": args.width, "depth": args.depth, "n_models": args.n_models,
              "eval_steps": args.eval_steps, "full_steps": args.full_steps,
              "no_full": args.no_full, "batch_size": args.batch_size,
              "learning_rate_grid": args.learning_rate, "select_ipc": args.select_ipc,
              "select_seeds": args.select_seeds, "model_batching": args.model_batching,
              "n_jobs": args.n_jobs, "seed": args.seed, "data_home": args.data_home,
              "reductions": reductions, "settings": settings}
    payload = {"benchmark": "coresets", "started": now_iso(),
               "command": " ".join(shlex.quote(a) for a in ["python"] + sys.argv),
               "machine": machine, "config": config, "data": {}, "lr_selection": None,
               "rows": [], "finished": False}

    previous = []
    if args.resume and json_path.is_file():
        import json

        old = json.loads(json_path.read_text())
        same = {k: v for k, v in old.get("config", {}).items() if k not in ("settings",)}
        mine = {k: v for k, v in jsonable(config).items()
                if k not in ("settings",)}
        keys = ("width", "depth", "n_models", "batch_size", "seed", "eval_steps", "full_steps",
                "learning_rate_grid", "model_batching")
        if all(same.get(k) == mine.get(k) for k in keys):
            previous = old.get("rows", [])
            payload["lr_selection"] = old.get("lr_selection")
            log(f"resume: {len(previous)} rows kept from {json_path}")
        else:
            log("resume: settings differ from the existing file; starting afresh")

    def save():
        payload["total_wall_time_s"] = time.perf_counter() - started_wall
        write_json(json_path, payload)
        write_text(md_path, render_markdown(payload))

    log(f"machine: {machine_summary(machine)}")
    if len(args.learning_rate) > 1 and not payload["lr_selection"]:
        payload["lr_selection"] = select_learning_rate(args, model)
        save()
    learning_rate = (payload["lr_selection"]["chosen"] if len(args.learning_rate) > 1
                     else args.learning_rate[0])
    config["learning_rate"] = learning_rate
    log(f"learning rate {learning_rate:g}")

    for ds in args.datasets:
        with timer() as t_load:
            X_tr, y_tr, X_te, y_te, desc = load_dataset(ds, args.data_home)
        desc["load_time_s"] = t_load()
        payload["data"][ds] = desc
        batching = resolve_batching(args.model_batching, X_tr.shape[1:])
        log(f"{ds}: {desc['n_train']} train / {desc['n_test']} test, {X_tr.shape[1:]}, "
            f"networks trained by {batching}")
        warm_up_selection(X_tr, y_tr, args)
        n_classes = desc["n_classes"]
        jobs = [(m, ipc) for ipc in args.ipc for m in args.methods]
        if not args.no_full:
            jobs.append(("full", None))
        for method, ipc in jobs:
            old = _find(previous, ds, method, ipc)
            if old is not None:
                payload["rows"].append(old)
                continue
            if method == "full":
                Xs, ys, sel_time, indices = X_tr, y_tr, 0.0, None
                n_steps = (default_eval_steps(len(X_tr)) if args.full_steps == "auto"
                           else args.full_steps[0])
            else:
                distiller = make_distiller(method, ipc, args)
                with timer() as t_sel:
                    distiller.fit(X_tr, y_tr)
                sel_time = t_sel()
                Xs, ys = distiller.synthetic_X_, distiller.synthetic_y_
                indices = distiller.sample_indices_
                assert np.array_equal(ys, y_tr[indices])
                n_steps = eval_steps_for(args, ipc, ipc * n_classes)
            scores, fit_time, eval_time = train_and_score(
                Xs, ys, X_te, y_te, model=model, n_steps=n_steps, learning_rate=learning_rate,
                args=args, batching=batching)
            ref = REFERENCE.get(ds, {})
            reference = (ref.get("full") if method == "full"
                         else ref.get(method, {}).get(ipc))
            row = {"dataset": ds, "method": method, "ipc": ipc, "n_train_rows": len(ys),
                   "mean": float(np.mean(scores)), "std": float(np.std(scores)),
                   "scores": scores.tolist(), "selection_time_s": sel_time,
                   "eval_time_s": eval_time, "fit_time_s": fit_time, "eval_steps": int(n_steps),
                   "batch_size": args.batch_size, "learning_rate": learning_rate,
                   "width": args.width, "depth": args.depth, "n_models": args.n_models,
                   "model_batching": batching, "reference_accuracy_pct": reference,
                   "machine": machine_summary(machine), "sample_indices": indices}
            payload["rows"].append(row)
            save()
            log(f"{ds} {method:8s} ipc={ipc}: {fmt_acc(row['mean'], row['std'])} % "
                f"(select {sel_time:.2f} s, eval {eval_time:.0f} s, {n_steps} steps); "
                f"elapsed {(time.perf_counter() - started_wall) / 60:.1f} min")
        del X_tr, X_te

    payload["finished"] = True
    payload["finished_at"] = now_iso()
    save()
    log(f"done in {payload['total_wall_time_s'] / 60:.1f} min: {json_path}, {md_path}")
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
