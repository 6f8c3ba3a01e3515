"""Few-shot distillation: the KRR baseline (R = T, R = 1) against the pre-trained translator.

The paper's Table 1 in kind (Liu & Wang, ICCV 2023): a translator is pre-trained on one dataset
or class split (the *source*) and used on another (the *target*); on the target, for each
``--ipc``, the script measures test accuracy and distillation wall time of

* ``KRR R=T``: :class:`KRRDistiller` with a new random network every step (``--steps`` steps);
* ``KRR R=1``: the same number of steps in one random network;
* ``translator, no adaptation``: the ``R=1`` distillation turned by the pre-trained translator;
* ``translator + adaptation``: the same after ``--adapt-steps`` translator steps on the target
  (single-network distillation at the evaluated ipc, ``adapt_ipc=(ipc,)``);
* ``adaptation only``: the same adaptation from an untrained (identity) translator -- what
  pre-training adds;
* a class-balanced random subset, for reference.

Speed-ups are ratios of wall times measured in the same run: ``time(R=T) / time(method)``. Every
method is first run once with 2 steps on the same shapes so that XLA compilation is excluded from
the timed run (compilation is a fixed cost that dominates tiny CPU runs). Stage 1 (cache) and 2
(pre-training) are one-off costs on the source and are reported separately.

Splits: ``--source mnist:0-4 --target mnist:5-9`` (MNIST classes 0-4 -> 5-9), or any
``dataset[:a-b]`` of digits / mnist / cifar10 (the channel count must agree).

Example (the reduced CPU run of ``results/translator_*``; see benchmarks/README.md)::

    python benchmarks/bench_translator.py --source mnist:0-4 --target mnist:5-9 --ipc 1 10 \\
        --width 32 --steps 300 --n-tasks 120 --pretrain-steps 400 --adapt-steps 100 \\
        --data-home data

Run by hand only, never in CI.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (fmt_acc, log, machine_info, machine_summary, markdown_table,  # noqa: E402
                     now_iso, write_json, write_text)

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_NOTE = ("Paper (ImageNette 128 px, /work/shared/REFERENCE_RESULTS.md): ipc 1 41.4% vs the "
              "baseline's 33.8% at 3.2x less time; ipc 10 59.1% vs 57.5% at 3.7x less time.")


def parse_split(text):
    name, _, classes = text.partition(":")
    if name not in ("digits", "mnist", "cifar10"):
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r}")
    if not classes:
        return name, None
    lo, _, hi = classes.partition("-")
    return name, list(range(int(lo), int(hi or lo) + 1))


def load(split, data_home):
    """Standardised (X_train, y_train, X_test, y_test) of a dataset, restricted to some classes."""
    from sklearn.model_selection import train_test_split

    from sklearn_distill import ImageStandardizer, load_benchmark, load_digits_images

    name, classes = split
    if name == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    else:
        X_tr, y_tr, X_te, y_te = load_benchmark(name, data_home, return_X_y=True)
        X_tr, X_te = X_tr.astype(np.float32) / 255.0, X_te.astype(np.float32) / 255.0
    if X_tr.ndim == 3:
        X_tr, X_te = X_tr[..., None], X_te[..., None]
    if classes is not None:
        keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
        X_tr, y_tr, X_te, y_te = X_tr[keep_tr], y_tr[keep_tr], X_te[keep_te], y_te[keep_te]
    scaler = ImageStandardizer().fit(X_tr)
    return (scaler.transform(X_tr).astype(np.float32), y_tr, scaler.transform(X_te).astype(np.float32),
            y_te)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=parse_split, default=parse_split("mnist:0-4"))
    p.add_argument("--target", type=parse_split, default=parse_split("mnist:5-9"))
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--width", type=int, default=128, help="random ConvNets (and evaluation)")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000, help="T of every KRR distillation")
    p.add_argument("--batch", type=int, default=1024, help="real rows per network (M)")
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--n-tasks", type=int, default=1000, help="cached source sub-tasks")
    p.add_argument("--c-min", type=int, default=2)
    p.add_argument("--c-max", type=int, default=None, help="default: the source's classes")
    p.add_argument("--max-images", type=int, default=100, help="I_max of a sub-task")
    p.add_argument("--translator-width", type=int, default=32)
    p.add_argument("--translator-depth", type=int, default=2)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--tasks-per-step", type=int, default=2)
    p.add_argument("--adapt-steps", type=int, default=100)
    p.add_argument("--adapt-lr", type=float, default=1e-3)
    p.add_argument("--n-eval", type=int, default=5)
    p.add_argument("--eval-steps", type=int, default=None, help="default: the protocol's")
    p.add_argument("--n-jobs", type=int, default=1, help="joblib workers of the cache")
    p.add_argument("--cache-dir", default=None, help="default: a folder under results/ (kept)")
    p.add_argument("--data-home", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--save-translator", default=None, help="write the pre-trained translator here")
    args = p.parse_args(argv)

    from sklearn_distill import (ConvNet, KRRDistiller, RandomDistiller, Translator, TranslatorCache,
                                 TranslatorDistiller, pretrain_translator)

    started = now_iso()
    X_src, y_src, _, _ = load(args.source, args.data_home)
    X_tr, y_tr, X_te, y_te = load(args.target, args.data_home)
    log(f"source {X_src.shape}, target {X_tr.shape} / test {X_te.shape}")
    model = ConvNet(width=args.width, depth=args.depth, norm="none")
    n_src_classes = len(np.unique(y_src))
    c_max = args.c_max or n_src_classes
    eval_steps = args.eval_steps or "auto"
    split_name = (f"{args.source[0]}{_classes(args.source)}_to_{args.target[0]}"
                  f"{_classes(args.target)}")
    name = args.name or f"translator_{split_name}_w{args.width}_T{args.steps}"
    cache_dir = Path(args.cache_dir or (RESULTS / f".cache_{name}"))

    # -- stage 1 and 2 on the source ------------------------------------------------------------
    cache = TranslatorCache(cache_dir, c_min=args.c_min, c_max=c_max, max_images=args.max_images,
                            n_real=args.batch, n_steps=args.steps, learning_rate=args.learning_rate,
                            model=model, random_state=args.seed)
    before = len(cache)
    start = time.perf_counter()
    cache.extend(X_src, y_src, n_tasks=args.n_tasks, n_jobs=args.n_jobs)
    cache_seconds = time.perf_counter() - start
    log(f"cache: {len(cache)} sub-tasks ({len(cache) - before} new) in {cache_seconds:.0f} s")
    start = time.perf_counter()
    pre = pretrain_translator(cache, X_src, y_src,
                              translator=Translator(width=args.translator_width, depth=args.translator_depth),
                              n_steps=args.pretrain_steps, learning_rate=args.pretrain_lr,
                              tasks_per_step=args.tasks_per_step, log_every=max(1, args.pretrain_steps // 20),
                              random_state=args.seed)
    pretrain_seconds = time.perf_counter() - start
    record = pre.metadata["pretraining"][-1]
    log(f"pre-training: {pretrain_seconds:.0f} s, fixed-draw loss {record['validation_loss_before']:.4f}"
        f" -> {record['validation_loss_after']:.4f}")
    if args.save_translator:
        pre.save(args.save_translator)

    # -- the target -------------------------------------------------------------------------------
    common = dict(batch_size=args.batch, learning_rate=args.learning_rate, model=model,
                  n_eval_models=args.n_eval, eval_steps=eval_steps, random_state=args.seed,
                  log_every=max(1, args.steps // 10))
    untrained = Translator(width=args.translator_width, depth=args.translator_depth)
    methods = {
        "KRR R=T": lambda ipc, steps: KRRDistiller(ipc, n_steps=steps, n_networks=None, **common),
        "KRR R=1": lambda ipc, steps: KRRDistiller(ipc, n_steps=steps, n_networks=1, **common),
        "translator, no adaptation": lambda ipc, steps: TranslatorDistiller(
            ipc, translator=pre, n_steps=steps, adapt_steps=0, **common),
        "translator + adaptation": lambda ipc, steps: TranslatorDistiller(
            ipc, translator=pre, n_steps=steps, adapt_steps=args.adapt_steps if steps > 2 else 2,
            adapt_learning_rate=args.adapt_lr, **common),
        "adaptation only (no pre-training)": lambda ipc, steps: TranslatorDistiller(
            ipc, translator=untrained, n_steps=steps, adapt_steps=args.adapt_steps if steps > 2 else 2,
            adapt_learning_rate=args.adapt_lr, **common),
    }
    rows = []
    for ipc in args.ipc:
        rand = RandomDistiller(ipc, n_eval_models=args.n_eval, eval_steps=eval_steps, eval_model=model,
                               random_state=args.seed).fit(X_tr, y_tr).evaluate(X_te, y_te)
        rows.append({"ipc": ipc, "method": "random subset", "acc_mean": rand.mean,
                     "acc_std": rand.std, "seconds": None})
        log(f"ipc {ipc} random: {fmt_acc(rand.mean, rand.std)}")
        base_seconds = None
        for label, make in methods.items():
            make(ipc, 2).fit(X_tr, y_tr)  # compile on the same shapes; not timed
            est = make(ipc, args.steps)
            start = time.perf_counter()
            est.fit(X_tr, y_tr)
            seconds = time.perf_counter() - start
            res = est.evaluate(X_te, y_te)
            base_seconds = seconds if label == "KRR R=T" else base_seconds
            row = {"ipc": ipc, "method": label, "acc_mean": res.mean, "acc_std": res.std,
                   "seconds": seconds, "speedup_vs_R_eq_T": base_seconds / seconds,
                   "final_loss": est.history_["loss"][-1], "eval_steps": int(res.n_steps)}
            if getattr(est, "adaptation_", None):
                row["adaptation_seconds"] = est.adaptation_["seconds"]
                row["adaptation_loss_before_after"] = [est.adaptation_["validation_loss_before"],
                                                       est.adaptation_["validation_loss_after"]]
            rows.append(row)
            log(f"ipc {ipc} {label}: {fmt_acc(res.mean, res.std)} in {seconds:.1f} s "
                f"(x{row['speedup_vs_R_eq_T']:.1f})")

    machine = machine_info()
    reductions = [f"random/evaluation ConvNet width {args.width} (paper: 128), depth {args.depth}",
                  f"T = {args.steps} KRR steps per distillation", f"M = batch = {args.batch} real rows",
                  f"{len(cache)} cached sub-tasks, {args.pretrain_steps} pre-training steps, "
                  f"{args.tasks_per_step} sub-tasks per step",
                  f"translator width {args.translator_width}, depth {args.translator_depth}",
                  f"{args.adapt_steps} adaptation steps", f"{args.n_eval} evaluation networks",
                  f"evaluation steps {eval_steps}", "CPU only"]
    out = {"benchmark": "translator", "started": started, "finished": now_iso(),
           "config": {**vars(args), "source": _describe(args.source), "target": _describe(args.target),
                      "c_max": c_max, "reductions": reductions},
           "machine": machine,
           "stages": {"cache_seconds": cache_seconds, "cache_tasks": len(cache),
                      "cache_tasks_computed": len(cache) - before,
                      "pretrain_seconds": pretrain_seconds,
                      "pretrain_loss_before": record["validation_loss_before"],
                      "pretrain_loss_after": record["validation_loss_after"]},
           "results": rows, "paper": PAPER_NOTE}
    table = markdown_table(
        ["ipc", "method", "test acc (%)", "distil time (s)", "speed-up vs R=T"],
        [[r["ipc"], r["method"], fmt_acc(r["acc_mean"], r["acc_std"]),
          "–" if r["seconds"] is None else f"{r['seconds']:.1f}",
          "–" if r["seconds"] is None else f"{r['speedup_vs_R_eq_T']:.1f}x"] for r in rows],
        align="rlrrr")
    lines = [f"# Translator: {_describe(args.source)} -> {_describe(args.target)}", "",
             f"Source stages (one-off): cache of {len(cache)} sub-tasks {cache_seconds:.0f} s "
             f"({len(cache) - before} computed in this run), pre-training {pretrain_seconds:.0f} s "
             f"(fixed-draw KRR loss {record['validation_loss_before']:.4f} -> "
             f"{record['validation_loss_after']:.4f}).", "", table, "",
             "Times exclude XLA compilation (each method first runs 2 steps on the same shapes); "
             "speed-ups are ratios within this run. " + PAPER_NOTE, "",
             "Reduced scale: " + "; ".join(reductions) + ".", "",
             f"Machine: {machine_summary(machine)}; load average at start "
             f"{machine['load_average_at_start']}."]
    write_json(RESULTS / f"{name}.json", out)
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.cache_dir is None and os.environ.get("KEEP_CACHE") != "1":
        shutil.rmtree(cache_dir, ignore_errors=True)


def _classes(split):
    return "" if split[1] is None else f"{split[1][0]}-{split[1][-1]}"


def _describe(split):
    return split[0] + ("" if split[1] is None else f" classes {split[1][0]}-{split[1][-1]}")


if __name__ == "__main__":
    main()
