"""Which network the translator's input is distilled in, and what its output is worth as a start.

Liu & Wang (Alg. 3) distil the target in the *fixed* network of the caching stage -- the one whose
distillations the translator was pre-trained to translate. This script measures, on the target
split and for several distillation seeds (each evaluated by the same networks):

* ``random subset``;
* ``KRR R=T, T steps`` and ``KRR R=T, R steps`` (a new random network every step, real init);
* ``one network (cache's)``: T steps of KRR in the cache's fixed network (R = 1), untranslated;
* ``translator, cache's network``: that set through the pre-trained translator (the paper);
* ``translator, random network``: a set distilled in a fresh random network through the same
  translator (``distillation_network="random"``, what the library did before);
* ``translator + R KRR steps``: the translated set (cache's network) as the start of R more
  steps of KRR with a new random network every step.

No adaptation. Wall times exclude compilation (every variant is first run on the same shapes)
and the source stages (``--cache`` and ``--translator`` are built beforehand, e.g. by
``bench_translator.py --save-translator``, or by the commands in the results' markdown).

Run by hand only, never in CI.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, machine_summary, now_iso, write_json, write_text  # noqa: E402
from bench_translator import load, parse_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True, help="TranslatorCache directory (source)")
    p.add_argument("--translator", required=True, help="pre-trained translator (.npz)")
    p.add_argument("--target", type=parse_split, default=parse_split("mnist:5-9"))
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, default=100, help="T")
    p.add_argument("--short", type=int, default=30, help="R: steps of the short KRR runs")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-eval", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=300)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--data-home", default="data")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import jax

    from sklearn_distill import (KRRDistiller, PretrainedTranslator, RandomDistiller,
                                 TranslatorCache, TranslatorDistiller, evaluate)
    from sklearn_distill._training import centred_one_hot
    from sklearn_distill.methods.krr import krr_run
    from sklearn_distill.networks import with_num_classes

    started = now_iso()
    X, y, X_te, y_te = load(args.target, args.data_home)
    rng = np.random.default_rng(0)
    keep = rng.choice(len(X_te), min(args.n_test, len(X_te)), replace=False)
    X_te, y_te = X_te[keep], y_te[keep]
    cache = TranslatorCache.open(args.cache)
    model, _ = cache.distillation_network()
    translator = PretrainedTranslator.load(args.translator)
    if translator.distillation_network is None:  # saved before it was recorded
        translator.distillation_network = cache.distillation_network()
    classes, y_enc = np.unique(y, return_inverse=True)
    n_classes = len(classes)
    krr_model = with_num_classes(model, n_classes)
    common = dict(batch_size=args.batch, learning_rate=args.learning_rate, model=krr_model,
                  log_every=max(1, args.steps))

    def krr(steps, seed):
        return KRRDistiller(args.ipc, n_steps=steps, n_networks=None, random_state=seed, **common)

    def translated(seed, net, steps=None):
        return TranslatorDistiller(args.ipc, translator=translator, n_steps=steps or args.steps,
                                   adapt_steps=0, distillation_network=net, random_state=seed,
                                   **common)

    def then_krr(td, steps, seed):
        x, labels, _ = krr_run(X, centred_one_hot(y_enc, n_classes), td.synthetic_X_,
                               td.synthetic_y_soft_, np.ones(len(td.synthetic_X_), np.float32),
                               jax.random.PRNGKey(1000 + seed), model=krr_model, n_networks=steps,
                               steps_per_network=1, batch_size=args.batch,
                               learning_rate=args.learning_rate, ridge=1e-6, learn_labels=True,
                               log_every=steps)
        return x, td.synthetic_y_, labels

    def fitted(est):
        return est.synthetic_X_, est.synthetic_y_, est.synthetic_y_soft_

    variants = {
        "random subset": lambda s, T: fitted(RandomDistiller(args.ipc, random_state=s).fit(X, y)),
        "KRR R=T, T steps": lambda s, T: fitted(krr(T, s).fit(X, y)),
        "KRR R=T, R steps": lambda s, T: fitted(krr(max(2, T * args.short // args.steps), s).fit(X, y)),
        "one network (cache's), untranslated": lambda s, T: (
            lambda td: (td.single_network_X_, td.synthetic_y_, td.synthetic_y_soft_))(
                translated(s, "translator", T).fit(X, y)),
        "translator, cache's network": lambda s, T: fitted(translated(s, "translator", T).fit(X, y)),
        "translator, random network": lambda s, T: fitted(translated(s, "random", T).fit(X, y)),
        "translator + R KRR steps": lambda s, T: then_krr(
            translated(s, "translator", T).fit(X, y), max(2, T * args.short // args.steps), s),
    }
    for label, run in variants.items():  # compile on the same shapes; not timed
        run(0, 2)
    rows = {label: [] for label in variants}
    for seed in args.seeds:
        for label, run in variants.items():
            start = time.perf_counter()
            x_syn, y_syn, soft = run(seed, args.steps)
            seconds = time.perf_counter() - start
            res = evaluate(x_syn, y_syn, X_te, y_te, soft_labels=soft, n_models=args.n_eval,
                           model=krr_model.clone(num_classes=n_classes), n_steps=args.eval_steps,
                           random_state=seed)
            rows[label].append({"seed": seed, "acc": float(res.mean), "scores": res.scores.tolist(),
                                "seconds": seconds})
            print(f"seed {seed} {label}: {100 * res.mean:.1f} in {seconds:.1f} s", flush=True)

    base = np.mean([r["seconds"] for r in rows["KRR R=T, T steps"]])
    summary = []
    for label, rs in rows.items():
        accs = np.array([r["acc"] for r in rs])
        secs = np.array([r["seconds"] for r in rs])
        summary.append({"method": label, "acc_mean": float(accs.mean()), "acc_std": float(accs.std()),
                        "seconds_mean": float(secs.mean()),
                        "speedup_vs_R_eq_T": float(base / secs.mean()) if secs.mean() > 0 else None,
                        "runs": rs})
    machine = machine_info()
    out = {"benchmark": "translator_network", "started": started, "finished": now_iso(),
           "config": {**vars(args), "target": args.target[0], "target_classes": args.target[1],
                      "cache_config": cache.config, "n_cached_tasks": len(cache),
                      "translator": repr(translator),
                      "pretraining": [{k: v for k, v in r.items() if k != "history"}
                                      for r in translator.metadata.get("pretraining", [])]},
           "machine": machine, "results": summary}
    name = args.name or f"translator_network_{args.target[0]}_ipc{args.ipc}_T{args.steps}"
    lines = [f"# Translator: which network the target is distilled in ({args.target[0]} classes "
             f"{args.target[1][0]}-{args.target[1][-1]}, ipc {args.ipc})", "",
             "| method | test acc (%), mean ± std over seeds | distil time (s) | speed-up vs R=T |",
             "| :--- | ---: | ---: | ---: |"]
    for r in summary:
        speed = "–" if r["method"] == "random subset" else f"{r['speedup_vs_R_eq_T']:.1f}x"
        lines.append(f"| {r['method']} | {100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f} | "
                     f"{r['seconds_mean']:.2f} | {speed} |")
    lines += ["", f"Seeds {args.seeds} (distillation and evaluation networks), {args.n_eval} "
              f"evaluation networks x {args.eval_steps} steps per seed, {len(X_te)} test images; "
              f"T = {args.steps}, R = {args.short} (the short KRR runs), real batch {args.batch}, "
              f"random and evaluation networks {krr_model.__class__.__name__}(width="
              f"{krr_model.width}, depth={krr_model.depth}, norm={krr_model.norm!r}); no adaptation. "
              f"Cache: {len(cache)} sub-tasks; translator {translator!r}. Times exclude compilation "
              f"and the source stages.", "",
              f"Machine: {machine_summary(machine)}; shared with other jobs (load average at "
              f"start {machine['load_average_at_start']}), so times are noisy."]
    write_json(RESULTS / f"{name}.json", out)
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
