"""Every distiller and baseline under one protocol: one table, accuracy against wall time, transfer.

Run by hand (never in CI). For each dataset and ipc, FRePo, RCIG, RaT-BPTT, KRR (R = T) and the
translator each get the same wall-clock budget (``--seconds``; the time of a step is measured by a
probe fit first and the step count filled to the budget), and the random, herding and k-center
coresets are selected, all on the same preprocessed training split. Every synthetic set is then
trained on by the same evaluation networks (same architecture, steps and seeds) and tested on the
same test rows::

    python benchmarks/bench_compare.py --data-home data            # the full CPU run (~50 min)
    python benchmarks/bench_compare.py --seconds 5 --test-size 500 --curve --no-transfer  # smoke

Each method runs in a fresh process of its own (``_common.run_in_fresh_process``), which first
warms up (compiles) on the same shapes and then times the fit alone; that process's peak resident
memory, read right after the full-budget fit, is reported. The
translator is pre-trained once per dataset on the same training split (cache + pre-training, in
its own process) and that one-off cost is reported in its own column, not in the budget.

Also: accuracy against wall time (each learned method re-distilled with ``--curve`` fractions of
the budget, each fraction a complete run with its own schedule) and, for CIFAR-10 ipc 10, the
synthetic sets evaluated across architectures (ConvNet without and with normalisation, ResNet-18,
VGG-11), like the papers' cross-architecture tables.

Writes ``results/comparison.{json,md}``, ``results/comparison_time.png`` and
``results/transfer_cifar10_ipc10.{json,md}``.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (fmt_acc, log, machine_info, machine_summary, markdown_table,  # noqa: E402
                     now_iso, published, run_in_fresh_process, seconds_per_step, write_results)

RESULTS = os.path.join(HERE, "results")
LEARNED = ("frepo", "rcig", "ratbptt", "krr", "translator")
BASELINES = ("random", "herding", "kcenter")
METHODS = LEARNED + BASELINES
LABELS = {"frepo": "FRePo", "rcig": "RCIG", "ratbptt": "RaT-BPTT", "krr": "KRR (R = T)",
          "translator": "Translator", "random": "Random", "herding": "Herding",
          "kcenter": "K-Center"}
DATASET_LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "digits": "digits"}
# How each estimator's own ``evaluate`` trains on its set: RaT-BPTT fits its labels with
# cross-entropy (as in its inner loop); every other method uses the protocol's "auto" (MSE on
# learned labels, cross-entropy on hard labels).
EVAL_LOSS = {"ratbptt": "ce"}
# Probe steps (logged every step) that measure the time of a meta-step after compilation.
PROBE_STEPS = {"frepo": 12, "rcig": 3, "ratbptt": 8, "krr": 12}
TRANSFER_ARCHS = ("convnet", "convnet-norm", "resnet18", "vgg11")
# RCIG's inner and Hessian-inverse learning rates as its own start-up search
# (``inner_learning_rate="auto"``) finds them at this scale (ConvNet width 16, depth 3, softplus,
# real batch 256, n_inner = n_hinv = 10, seed 0). The search costs up to 160 probe meta-steps
# (about 200 s for CIFAR-10 ipc 10 on 2 CPU cores), so ``--rcig-rates table`` starts from these
# and ``--rcig-rates search`` runs it once per set (reported as a one-off cost).
RCIG_RATES = {("mnist", 1): (0.0256, 14.65), ("mnist", 10): (0.0256, 0.951),
              ("cifar10", 1): (0.0917, 7.07), ("cifar10", 10): (0.0764, 1.37)}


# --------------------------------------------------------------------------------------------
# Estimators (built inside the fit processes)
# --------------------------------------------------------------------------------------------

def distill_networks(cfg):
    """The shared distillation ConvNet and each method's own variant of it."""
    from sklearn_distill import ConvNet

    base = ConvNet(width=cfg["width"], depth=cfg["depth"], norm="none")
    return base, {
        "frepo": base.clone(norm="batch", parent=None),            # FRePo: batch norm
        "rcig": base.clone(activation="softplus", parent=None),    # RCIG: softplus
        "ratbptt": base.clone(norm="instance", parent=None),       # RaT-BPTT: instance norm
        "krr": base, "translator": base,                           # random networks, no norm
    }


def eval_network(cfg):
    from sklearn_distill import ConvNet

    return ConvNet(width=cfg["width"], depth=cfg["depth"], norm="none")


def build_estimator(method, ipc, cfg, n_steps=None, log_every=None, translator=None,
                    adapt_steps=None, extra=None):
    """The estimator of ``method`` at ``n_steps`` meta-steps (``adapt_steps`` for the translator).

    ``extra``: further constructor arguments (RCIG's inner and Hessian-inverse rates).
    """
    extra = extra or {}
    import sklearn_distill as sd

    _, models = distill_networks(cfg)
    common = dict(ipc=ipc, random_state=cfg["seed"], eval_model=eval_network(cfg),
                  n_eval_models=cfg["n_eval"], eval_steps=cfg["eval_steps"][ipc],
                  eval_protocol=cfg.get("eval_protocol", "library"))
    if method in BASELINES:
        cls = {"random": sd.RandomDistiller, "herding": sd.HerdingDistiller,
               "kcenter": sd.KCenterDistiller}[method]
        return cls(**common)
    batch = cfg["batch"]
    if method == "translator":
        return sd.TranslatorDistiller(translator=translator, n_steps=cfg["translator_steps"],
                                      learning_rate=cfg["krr_lr"], batch_size=batch,
                                      model=models["translator"], adapt_steps=int(adapt_steps),
                                      adapt_learning_rate=cfg["translator_adapt_lr"],
                                      log_every=log_every or max(1, cfg["translator_steps"] // 10),
                                      **common)
    n_steps = int(n_steps)
    log_every = log_every or max(1, n_steps // 10)
    if method == "frepo":
        return sd.FRePoDistiller(n_steps=n_steps, learning_rate=cfg["frepo_lr"], batch_size=batch,
                                 model=models["frepo"], pool_size=cfg["pool_size"],
                                 max_online_steps=cfg["max_online_steps"], log_every=log_every,
                                 **common)
    if method == "rcig":
        return sd.RCIGDistiller(n_steps=n_steps, learning_rate=cfg["rcig_lr"], batch_size=batch,
                                model=models["rcig"], pool_size=cfg["pool_size"],
                                max_online_steps=cfg["max_online_steps"],
                                online_steps=cfg["rcig_online_steps"],
                                online_learning_rate=cfg["rcig_online_lr"], n_inner=cfg["rcig_n_inner"],
                                n_hinv=cfg["rcig_n_hinv"], log_every=log_every, **extra, **common)
    if method == "ratbptt":
        return sd.RaTBPTTDistiller(n_steps=n_steps, learning_rate=cfg["ratbptt_lr"], batch_size=batch,
                                   window=cfg["ratbptt_window"], unroll=cfg["ratbptt_unroll"],
                                   inner_learning_rate=cfg["ratbptt_inner_lr"],
                                   inner_batch_size=cfg["ratbptt_inner_batch"], init="real",
                                   model=models["ratbptt"], log_every=log_every, **common)
    if method == "krr":
        return sd.KRRDistiller(n_steps=n_steps, n_networks=None, learning_rate=cfg["krr_lr"],
                               batch_size=batch, model=models["krr"], log_every=log_every, **common)
    raise ValueError(f"unknown method {method!r}")


def steps_for(method, calibration, seconds):
    """Steps that fill ``seconds`` according to a calibration (adaptation steps for the translator)."""
    if method == "translator":
        rest = seconds - calibration["fixed_seconds"]
        return max(0, int(rest / calibration["seconds_per_adapt_step"]))
    return max(1, int(seconds / calibration["seconds_per_step"]))


# --------------------------------------------------------------------------------------------
# What runs in the fresh processes
# --------------------------------------------------------------------------------------------

def _setup_jax(job):
    import jax

    if job.get("jit_cache"):
        # Compiled steps are shared between the processes of a run through the disk cache; every
        # timed fit follows a warm-up fit anyway, so this only shortens the warm-ups.
        jax.config.update("jax_compilation_cache_dir", job["jit_cache"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def fit_worker(job):
    """In a fresh process: warm up and calibrate, the timed fit, then the curve's shorter fits.

    The peak RSS is read right after the full-budget fit, before the shorter fits run.
    """
    _setup_jax(job)
    X, y = np.load(job["X"]), np.load(job["y"])
    method, ipc, cfg = job["method"], job["ipc"], job["cfg"]
    translator, extra = None, {}
    if method == "translator":
        from sklearn_distill import PretrainedTranslator

        translator = PretrainedTranslator.load(job["translator"])
    rates = cfg["rcig_rates"].get(f"{job['dataset']}:{ipc}") if method == "rcig" else None

    def make(n_steps=None, log_every=None, adapt_steps=None):
        return build_estimator(method, ipc, cfg, n_steps, log_every, translator, adapt_steps, extra)

    start = time.perf_counter()
    calibration = {}
    if method in BASELINES:
        make().fit(X, y)
    elif method == "translator":
        make(adapt_steps=2).fit(X, y)  # compiles the single-network and adaptation steps
        probe = make(log_every=1, adapt_steps=6)
        t0 = time.perf_counter()
        probe.fit(X, y)
        total = time.perf_counter() - t0
        calibration = {"seconds_per_adapt_step": seconds_per_step(probe.adaptation_["history"],
                                                                  "mean"),
                       "fixed_seconds": total - probe.adaptation_["seconds"]}
    else:
        if method == "rcig" and rates is not None:
            extra.update(inner_learning_rate=rates[0], hinv_learning_rate=rates[1])
        probe = make(PROBE_STEPS[method], log_every=1)
        t0 = time.perf_counter()
        probe.fit(X, y)
        calibration = {"seconds_per_step": seconds_per_step(probe.history_, "mean")}
        if method == "rcig" and rates is None:
            # The estimator's own start-up search ran in this (cold) probe, before its first step
            # (fewer than 50 steps: the rates have not been adapted since). The timed fits start
            # from the rates it found instead of searching again.
            calibration.update(
                search_seconds=time.perf_counter() - t0 - probe.history_["time"][-1],
                inner_learning_rate=probe.inner_learning_rate_,
                hinv_learning_rate=probe.hinv_learning_rate_)
            extra.update(inner_learning_rate=probe.inner_learning_rate_,
                         hinv_learning_rate=probe.hinv_learning_rate_)
        elif method == "rcig":
            calibration.update(inner_learning_rate=rates[0], hinv_learning_rate=rates[1])
    warmup = time.perf_counter() - start

    fits, peak = [], None
    for fraction in [1.0] + [f for f in job["fractions"] if f < 1.0]:
        steps = None if method in BASELINES else steps_for(method, calibration,
                                                          fraction * job["seconds"])
        est = make(adapt_steps=steps) if method == "translator" else make(steps)
        t0 = time.perf_counter()
        est.fit(X, y)
        wall = time.perf_counter() - t0
        peak = _peak_rss_mib() if peak is None else peak
        soft = getattr(est, "synthetic_y_soft_", None)
        fit = {"fraction": fraction, "seconds": wall, "n_iter": int(getattr(est, "n_iter_", 0)),
               "stop_reason": getattr(est, "stop_reason_", None),
               "X": np.asarray(est.synthetic_X_, np.float32), "y": np.asarray(est.synthetic_y_),
               "soft": None if soft is None else np.asarray(soft, np.float32),
               "x_std_ratio": float(np.std(est.synthetic_X_) / np.std(X))}
        history = getattr(est, "history_", None) or {}
        if history.get("loss"):
            fit["final_loss"] = float(history["loss"][-1])
        if method in LEARNED:
            fit["requested_steps"] = int(steps)
            fit["steps"] = int(steps) if method == "translator" else fit["n_iter"]
            fit["step_seconds"] = wall
        if method == "translator":
            fit["adapt_seconds"] = float(est.adaptation_["seconds"]) if est.adaptation_ else 0.0
            fit["step_seconds"] = fit["adapt_seconds"]
        fits.append(fit)
    return {"method": method, "ipc": ipc, "warmup_seconds": warmup, "calibration": calibration,
            "peak_rss_mib": peak, "fits": fits}


def pretrain_worker(job):
    """Stage 1 (cache) and 2 (pre-training) of the translator on the training split."""
    _setup_jax(job)
    from sklearn_distill import Translator, TranslatorCache, pretrain_translator

    X, y = np.load(job["X"]), np.load(job["y"])
    cfg = job["cfg"]
    base, _ = distill_networks(cfg)
    t0 = time.perf_counter()
    cache = TranslatorCache(job["cache_dir"], c_min=2, c_max=len(np.unique(y)),
                            max_images=cfg["translator_max_images"], n_real=cfg["batch"],
                            n_steps=cfg["translator_steps"], learning_rate=cfg["krr_lr"],
                            model=base, random_state=cfg["seed"])
    cache.extend(X, y, n_tasks=cfg["translator_tasks"])
    cache_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pre = pretrain_translator(cache, X, y, translator=Translator(width=cfg["translator_width"],
                                                                 depth=cfg["translator_depth"]),
                              n_steps=cfg["translator_pretrain_steps"], learning_rate=1e-3,
                              tasks_per_step=2, n_eval=4,
                              log_every=max(1, cfg["translator_pretrain_steps"] // 10),
                              random_state=cfg["seed"])
    pretrain_seconds = time.perf_counter() - t0
    pre.save(job["path"])
    record = pre.metadata["pretraining"][-1]
    return {"cache_seconds": cache_seconds, "pretrain_seconds": pretrain_seconds,
            "tasks": len(cache), "loss_before": record["validation_loss_before"],
            "loss_after": record["validation_loss_after"]}


# --------------------------------------------------------------------------------------------
# Evaluation (in the main process: one compilation per shape serves every method)
# --------------------------------------------------------------------------------------------

def evaluate_set(fit, method, X_test, y_test, model, n_models, n_steps, seed):
    """Test accuracies of ``n_models`` networks trained from scratch on one synthetic set.

    Network ``i`` is seeded ``seed + 1 + i`` for every method; the networks are trained one after
    another (XLA's CPU convolutions are slower vmapped over models than in a loop).
    """
    from sklearn_distill import evaluate

    start = time.perf_counter()
    scores = []
    for i in range(n_models):
        r = evaluate(fit["X"], fit["y"], X_test, y_test, soft_labels=fit["soft"], n_models=1,
                     model=model, n_steps=n_steps, loss=EVAL_LOSS.get(method, "auto"),
                     random_state=seed + 1 + i)
        scores.append(float(r.scores[0]))
    return {"scores": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores)),
            "eval_seconds": time.perf_counter() - start, "eval_steps": int(n_steps)}


def transfer_models(args):
    from sklearn_distill import VGG11, ConvNet, ResNet18

    norm = args.transfer_norm
    return {"convnet": ConvNet(width=args.width, depth=args.depth, norm="none"),
            "convnet-norm": ConvNet(width=args.width, depth=args.depth, norm=norm),
            "resnet18": ResNet18(width=args.transfer_width, norm=norm),
            "vgg11": VGG11(width=args.transfer_width, norm=norm)}


def transfer_label(arch, args):
    return {"convnet": f"ConvNet (no norm, w{args.width})",
            "convnet-norm": f"ConvNet ({args.transfer_norm} norm, w{args.width})",
            "resnet18": f"ResNet-18 ({args.transfer_norm} norm, w{args.transfer_width})",
            "vgg11": f"VGG-11 ({args.transfer_norm} norm, w{args.transfer_width})"}[arch]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def load_split(dataset, args):
    """Preprocessed training split and the fixed test rows of ``dataset``."""
    from bench_frepo import load

    X_tr, y_tr, X_te, y_te = load(dataset, args.data_home)
    rng = np.random.default_rng(args.seed)
    if args.train_size and args.train_size < len(X_tr):
        keep = np.sort(rng.choice(len(X_tr), args.train_size, replace=False))
        X_tr, y_tr = X_tr[keep], y_tr[keep]
    if args.test_size and args.test_size < len(X_te):
        keep = np.sort(rng.choice(len(X_te), args.test_size, replace=False))
        X_te, y_te = X_te[keep], y_te[keep]
    if X_tr.ndim == 3:
        X_tr, X_te = X_tr[..., None], X_te[..., None]
    return X_tr.astype(np.float32), np.asarray(y_tr), X_te.astype(np.float32), np.asarray(y_te)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def method_config(args):
    eval_steps = dict(zip(args.ipc, args.eval_steps))
    return {"seed": args.seed, "width": args.width, "depth": args.depth, "batch": args.batch,
            "n_eval": args.n_eval, "eval_steps": eval_steps, "pool_size": args.pool_size,
            "max_online_steps": args.max_online_steps, "frepo_lr": args.frepo_lr,
            "rcig_lr": args.rcig_lr, "rcig_online_steps": args.rcig_online_steps,
            "rcig_online_lr": args.rcig_online_lr, "rcig_n_inner": args.rcig_n_inner,
            "rcig_n_hinv": args.rcig_n_hinv, "ratbptt_lr": args.ratbptt_lr,
            "ratbptt_inner_lr": args.ratbptt_inner_lr, "ratbptt_window": args.ratbptt_window,
            "ratbptt_unroll": args.ratbptt_unroll, "ratbptt_inner_batch": args.ratbptt_inner_batch,
            "krr_lr": args.krr_lr, "translator_steps": args.translator_steps,
            "translator_adapt_lr": args.translator_adapt_lr,
            "translator_tasks": args.translator_tasks,
            "translator_max_images": args.translator_max_images,
            "translator_pretrain_steps": args.translator_pretrain_steps,
            "translator_width": args.translator_width, "translator_depth": args.translator_depth,
            "rcig_rates": ({f"{k[0]}:{k[1]}": v for k, v in RCIG_RATES.items()}
                           if args.rcig_rates == "table" else {})}


def run(args):
    started, t_start = now_iso(), time.perf_counter()
    cfg = method_config(args)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_compare_")
    os.makedirs(work, exist_ok=True)
    jit_cache = os.path.join(work, "jax_cache") if args.share_compilation else None
    machine = machine_info()
    state = {"args": args, "cfg": cfg, "machine": machine, "started": started, "t_start": t_start,
             "rows": [], "curve": [], "pretraining": {}, "transfer": [], "sets": {}}
    try:
        for dataset in args.datasets:
            X_tr, y_tr, X_te, y_te = load_split(dataset, args)
            log(f"{dataset}: train {X_tr.shape}, test {X_te.shape}")
            paths = {"X": os.path.join(work, f"{dataset}_X.npy"),
                     "y": os.path.join(work, f"{dataset}_y.npy")}
            np.save(paths["X"], X_tr)
            np.save(paths["y"], y_tr)
            job_base = {**paths, "cfg": cfg, "jit_cache": jit_cache, "seconds": args.seconds}
            if "translator" in args.methods:
                path = os.path.join(work, f"{dataset}_translator.npz")
                res, rss = run_in_fresh_process(pretrain_worker, {
                    **job_base, "path": path, "cache_dir": os.path.join(work, f"{dataset}_cache")})
                res["peak_rss_mib"] = rss
                state["pretraining"][dataset] = res
                job_base["translator"] = path
                log(f"{dataset}: translator cache {res['cache_seconds']:.0f} s + pre-training "
                    f"{res['pretrain_seconds']:.0f} s (KRR loss {res['loss_before']:.3f} -> "
                    f"{res['loss_after']:.3f})")
            for ipc in args.ipc:
                pending = []
                for method in args.methods:
                    job = {**job_base, "dataset": dataset, "method": method, "ipc": ipc,
                           "fractions": args.curve if method in LEARNED else []}
                    out, _ = run_in_fresh_process(fit_worker, job)
                    fit, rss = out["fits"][0], out["peak_rss_mib"]
                    res = evaluate_set(fit, method, X_te, y_te, eval_network(cfg), args.n_eval,
                                       cfg["eval_steps"][ipc], args.seed)
                    state["sets"][(dataset, ipc, method)] = fit
                    row = {"dataset": dataset, "ipc": ipc, "method": method,
                           "distill_seconds": fit["seconds"], "steps": fit.get("steps"),
                           "seconds_per_step": (fit["step_seconds"] / fit["steps"]
                                                if fit.get("steps") else None),
                           "warmup_seconds": out["warmup_seconds"],
                           "calibration": out["calibration"], "peak_rss_mib": rss,
                           "stop_reason": fit["stop_reason"], "final_loss": fit.get("final_loss"),
                           "x_std_ratio": fit["x_std_ratio"],
                           "published": published(method, dataset, ipc), **res}
                    if method == "translator":
                        pre = state["pretraining"][dataset]
                        row["adapt_seconds"] = fit["adapt_seconds"]
                        row["one_off_seconds"] = pre["cache_seconds"] + pre["pretrain_seconds"]
                    if method == "rcig" and "search_seconds" in out["calibration"]:
                        row["one_off_seconds"] = out["calibration"]["search_seconds"]
                    state["rows"].append(row)
                    log(f"{dataset} ipc {ipc} {LABELS[method]}: {fmt_acc(res['mean'], res['std'])} "
                        f"after {fit['seconds']:.1f} s distilling ({fit.get('steps', '-')} steps), "
                        f"warm-up {out['warmup_seconds']:.0f} s, peak RSS {rss:.0f} MiB, evaluation "
                        f"{res['eval_seconds']:.0f} s [{(time.perf_counter() - t_start) / 60:.1f} min]")
                    write_comparison(state)
                    if method in LEARNED:
                        state["curve"].append(_curve_point(dataset, ipc, method, fit, res))
                        pending += [(method, f) for f in out["fits"][1:]]
                for method, fit in pending:
                    res = evaluate_set(fit, method, X_te, y_te, eval_network(cfg), args.n_eval,
                                       cfg["eval_steps"][ipc], args.seed)
                    state["curve"].append(_curve_point(dataset, ipc, method, fit, res))
                    log(f"{dataset} ipc {ipc} {LABELS[method]} at {fit['fraction']:g} of the budget: "
                        f"{fmt_acc(res['mean'], res['std'])} after {fit['seconds']:.1f} s "
                        f"[{(time.perf_counter() - t_start) / 60:.1f} min]")
                write_comparison(state)
                plot_curves(state)
            if dataset == "cifar10" and 10 in args.ipc and args.transfer:
                run_transfer(state, X_te, y_te)
        state["finished"] = now_iso()
        write_comparison(state)
        plot_curves(state)
        if args.transfer and any(t for t in state["transfer"]):
            write_transfer(state)
    finally:
        if not args.work_dir and not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    log(f"total {(time.perf_counter() - t_start) / 60:.1f} min")


def _curve_point(dataset, ipc, method, fit, res):
    return {"dataset": dataset, "ipc": ipc, "method": method, "fraction": fit["fraction"],
            "seconds": fit["seconds"], "steps": fit["steps"], "mean": res["mean"],
            "std": res["std"], "scores": res["scores"]}


def run_transfer(state, X_te, y_te):
    args = state["args"]
    models = transfer_models(args)
    reuse = args.transfer_n_eval == args.n_eval and args.transfer_eval_steps == state["cfg"]["eval_steps"][10]
    for method in [m for m in args.transfer_methods if m in args.methods]:
        fit = state["sets"][("cifar10", 10, method)]
        row = {"method": method, "published_convnet": published(method, "cifar10", 10)}
        for arch in args.transfer_archs:
            if arch == "convnet" and reuse:
                main = next(r for r in state["rows"] if r["dataset"] == "cifar10" and r["ipc"] == 10
                            and r["method"] == method)
                row[arch] = {k: main[k] for k in ("scores", "mean", "std", "eval_seconds",
                                                  "eval_steps")}
                continue
            row[arch] = evaluate_set(fit, method, X_te, y_te, models[arch], args.transfer_n_eval,
                                     args.transfer_eval_steps, args.seed)
            log(f"transfer {LABELS[method]} -> {transfer_label(arch, args)}: "
                f"{fmt_acc(row[arch]['mean'], row[arch]['std'])} ({row[arch]['eval_seconds']:.0f} s)")
        state["transfer"].append(row)
        write_transfer(state)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _settings_lines(state):
    args, cfg, machine = state["args"], state["cfg"], state["machine"]
    w, d = args.width, args.depth
    steps = ", ".join(f"ipc {k}: {v}" for k, v in cfg["eval_steps"].items())
    return [
        f"- **distillation network**: ConvNet width {w}, depth {d}, no width doubling, for every "
        "method (CPU scale; the papers use width 128), in each method's own variant: FRePo with "
        "batch norm, RCIG with softplus (temperature 60), RaT-BPTT with instance norm, KRR and the "
        "translator with random ConvNets without norm",
        "- **evaluation network** (set explicitly as `eval_model` of every estimator and used for "
        f"every row): ConvNet width {w}, depth {d}, no normalisation, ReLU (the protocol's; every "
        "method's default `eval_model` is its distillation network without normalisation); "
        f"{args.n_eval} networks per set, seeded {args.seed + 1}..{args.seed + args.n_eval} for "
        "every method; Adam 1e-3, warm-up + cosine, batch 256, protocol augmentation; "
        f"{steps} training steps (protocol: 1000 / 2000); learned labels fitted with MSE, "
        "except RaT-BPTT (cross-entropy, as its own `evaluate`); last state kept",
        f"- **test rows**: {'all' if not args.test_size else f'a fixed random subset of {args.test_size}'}"
        " of the test split; **training rows**: "
        f"{'all' if not args.train_size else f'a fixed random subset of {args.train_size}'}; "
        "preprocessing as FRePo's (per-channel standardisation, plus ZCA, ridge 0.1, for CIFAR-10)",
        f"- **budget**: {args.seconds:g} s of distillation per learned method and set: a probe fit "
        "measures the time of a meta-step after compilation and the step count fills the budget "
        "(the cosine schedules need it up front); the translator's single-network distillation "
        f"has {args.translator_steps} steps and its adaptation steps fill the rest of the budget",
        "- **wall time** is that of the timed `fit` alone, in a fresh process after a warm-up fit "
        "on the same shapes (so XLA compilation is not in it); **peak RSS of the fit process** is "
        "`ru_maxrss` (`resource.getrusage`) of that process read right after the full-budget fit: "
        "Python, JAX, the training split as float32, the warm-up and the fit (the process is "
        "forked from multiprocessing's fork server, so the benchmark's own memory is not in it)",
        f"- **methods' settings**: real batch {args.batch}; FRePo / RCIG pool {args.pool_size} "
        f"(reset after {args.max_online_steps} online steps); FRePo LAMB {args.frepo_lr}; RCIG "
        f"Adam {args.rcig_lr}, n_inner {args.rcig_n_inner}, n_hinv {args.rcig_n_hinv}, "
        f"{args.rcig_online_steps} online steps at {args.rcig_online_lr}, inner / Hessian-inverse "
        f"rates {_rcig_rates_words(state)}; RaT-BPTT window "
        f"{args.ratbptt_window} / unroll {args.ratbptt_unroll}, Adam {args.ratbptt_lr}, inner "
        f"{args.ratbptt_inner_lr}, inner batch {args.ratbptt_inner_batch}, init real; KRR Adam "
        f"{args.krr_lr} with a new random network every step (R = T); translator width "
        f"{args.translator_width}, depth {args.translator_depth}, adaptation Adam "
        f"{args.translator_adapt_lr}",
        "- **translator pre-training** (one-off per dataset, on the same training split, in its "
        "own process; *not* in the budget nor in the wall-time column, shown in its own column): "
        f"{args.translator_tasks} cached sub-tasks of up to {args.translator_max_images} images "
        f"({args.translator_steps} single-network steps each), {args.translator_pretrain_steps} "
        "pre-training steps",
        "- **published**: /work/shared/REFERENCE_RESULTS.md, the papers' ConvNet at width 128 and "
        "their own evaluation budgets (\"–\": the paper has no such number; KIP's published "
        "figures are not this project's random-network KRR baseline, and the translator paper "
        "reports ImageNette only)",
        f"- machine: {machine_summary(machine)}; load average at start "
        f"{', '.join(f'{v:.1f}' for v in machine['load_average_at_start'] or [])} (shared machine: "
        "timings are noisy)",
    ]


def _scale_notes(rows, limit=3.0):
    """A note on sets whose pixels are on another scale than the training data's."""
    off = [r for r in rows if r.get("x_std_ratio") and not 1 / limit < r["x_std_ratio"] < limit]
    if not off:
        return []
    return ["Sets whose pixel standard deviation is off the training data's by more than "
            f"{limit:g}x (networks trained on them see inputs on another scale than the test "
            "images): " + "; ".join(f"{DATASET_LABELS.get(r['dataset'], r['dataset'])} ipc "
                                    f"{r['ipc']} {LABELS[r['method']]} {r['x_std_ratio']:.1f}x"
                                    for r in off) + ".", ""]


def _rcig_rates_words(state):
    if state["args"].rcig_rates == "search":
        return ("from its start-up search, run once per set in the calibration (its time, "
                "compilation included, is the one-off column) and reused by the timed fits")
    used = {f"{d}:{i}" for d in state["args"].datasets for i in state["args"].ipc}
    table = ", ".join(f"{k.replace(':', ' ipc ')}: {v[0]:.3g} / {v[1]:.3g}"
                      for k, v in state["cfg"]["rcig_rates"].items() if k in used)
    return (f"fixed at what its own start-up search finds at these settings ({table}; the search "
            "costs up to 160 probe meta-steps, minutes on this machine; sets not in the table "
            f"search once, reported as a one-off)")


def _public_args(args):
    return {k: v for k, v in vars(args).items()}


def write_comparison(state):
    args = state["args"]
    rows = state["rows"]
    elapsed = time.perf_counter() - state["t_start"]
    payload = {"benchmark": "compare", "started": state["started"],
               "finished": state.get("finished"), "total_seconds": elapsed,
               "complete": state.get("finished") is not None,
               "command": "python " + " ".join(sys.argv), "config": _public_args(args),
               "method_config": state["cfg"], "machine": state["machine"],
               "eval_network": repr(eval_network(state["cfg"])),
               "translator_pretraining": state["pretraining"], "results": rows,
               "time_curve": state["curve"]}
    table = markdown_table(
        ["dataset", "ipc", "method", "test acc (%)", "published (%)", "distil wall time (s)",
         "steps", "ms / meta-step", "peak RSS of the fit process (MiB)",
         "one-off, outside the budget (s)"],
        [[DATASET_LABELS.get(r["dataset"], r["dataset"]), r["ipc"], LABELS[r["method"]],
          fmt_acc(r["mean"], r["std"]), r["published"], f"{r['distill_seconds']:.2f}",
          r["steps"] if r["steps"] is not None else "–",
          f"{1000 * r['seconds_per_step']:.0f}" if r["seconds_per_step"] else "–",
          f"{r['peak_rss_mib']:.0f}",
          f"{r['one_off_seconds']:.0f}" if "one_off_seconds" in r else "–"] for r in rows],
        align="lrlrrrrrrr")
    lines = ["# Dataset distillation methods under one protocol", "",
             f"Machine: {machine_summary(state['machine'])}.", "",
             f"Command: `python {' '.join(sys.argv)}`; started {state['started']}, "
             + (f"finished {state['finished']}, total {elapsed / 60:.1f} min."
                if state.get("finished") else f"**incomplete** ({elapsed / 60:.1f} min so far)."),
             "", "Test accuracy (%) of networks trained from scratch on each set, mean ± std over "
             f"the {args.n_eval} evaluation networks. Steps and ms per meta-step are those of the "
             "timed fit; for the translator they are its adaptation steps (its single-network "
             "distillation is in the wall time, not in the ms per step). One-off costs outside the "
             "budget: the translator's pre-training on the dataset (cache + pre-training, shared by "
             "both ipc), and RCIG's start-up learning-rate search where it ran (see the settings). "
             "Accuracy against wall time: `comparison_time.png`.", "", table, "",
             *_scale_notes(rows),
             "## Settings (CPU scale: every reduction from the papers is listed)", "",
             *_settings_lines(state), ""]
    if state["pretraining"]:
        lines += ["Translator pre-training:", ""]
        for dataset, p in state["pretraining"].items():
            lines.append(f"- {DATASET_LABELS.get(dataset, dataset)}: cache of {p['tasks']} sub-tasks "
                         f"{p['cache_seconds']:.0f} s + pre-training {p['pretrain_seconds']:.0f} s "
                         f"(KRR loss on fixed draws {p['loss_before']:.4f} -> "
                         f"{p['loss_after']:.4f}); peak RSS {p['peak_rss_mib']:.0f} MiB")
        lines.append("")
    if state["curve"]:
        lines += ["## Accuracy against wall time", "",
                  "Each point is a complete run with that fraction of the budget (its own schedule), "
                  "evaluated like the table; plotted in `comparison_time.png`.", ""]
        curve = sorted(state["curve"], key=lambda c: (c["dataset"], c["ipc"], c["method"],
                                                      c["fraction"]))
        lines.append(markdown_table(
            ["dataset", "ipc", "method", "fraction of budget", "wall time (s)", "steps",
             "test acc (%)"],
            [[DATASET_LABELS.get(c["dataset"], c["dataset"]), c["ipc"], LABELS[c["method"]],
              f"{c['fraction']:g}", f"{c['seconds']:.1f}", c["steps"],
              fmt_acc(c["mean"], c["std"])] for c in curve], align="lrlrrrr"))
        lines.append("")
    write_results("comparison", payload, lines, folder=args.out)


def plot_curves(state):
    if not state["curve"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args = state["args"]
    nrows, ncols = len(args.datasets), len(args.ipc)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.7 * nrows), squeeze=False)
    panels = [(d, i) for d in args.datasets for i in args.ipc]
    for ax, (dataset, ipc) in zip(axes.ravel(), panels):
        for method in [m for m in args.methods if m in LEARNED]:
            pts = sorted((c for c in state["curve"] if c["dataset"] == dataset and c["ipc"] == ipc
                          and c["method"] == method), key=lambda c: c["seconds"])
            if pts:
                ax.errorbar([c["seconds"] for c in pts], [100 * c["mean"] for c in pts],
                            yerr=[100 * c["std"] for c in pts], marker="o", capsize=2,
                            label=LABELS[method])
        for method, style in (("random", ":"), ("herding", "--"), ("kcenter", "-.")):
            base = [r for r in state["rows"] if r["dataset"] == dataset and r["ipc"] == ipc
                    and r["method"] == method]
            if base:
                ax.axhline(100 * base[0]["mean"], color="grey", linestyle=style, linewidth=1,
                           label=LABELS[method])
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, ipc {ipc}")
        ax.set_xlabel("distillation wall time (s)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fractions = ", ".join(f"{f:g}" for f in sorted(set(args.curve) | {1.0}))
    fig.suptitle(f"Accuracy against distillation wall time (budget fractions {fractions} of "
                 f"{args.seconds:g} s; ConvNet width {args.width}; "
                 f"{machine_summary(state['machine']).split(',')[0]})", fontsize=9)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    fig.savefig(os.path.join(args.out, "comparison_time.png"), dpi=120)
    plt.close(fig)


def write_transfer(state):
    args = state["args"]
    rows = state["transfer"]
    archs = list(args.transfer_archs)
    reuse = (args.transfer_n_eval == args.n_eval
             and args.transfer_eval_steps == state["cfg"]["eval_steps"][10])
    payload = {"benchmark": "compare/transfer", "dataset": "cifar10", "ipc": 10,
               "command": "python " + " ".join(sys.argv), "config": _public_args(args),
               "machine": state["machine"],
               "architectures": {a: repr(transfer_models(args)[a]) for a in archs},
               "results": rows}
    table = markdown_table(
        ["method"] + [transfer_label(a, args) for a in archs] + ["published, ConvNet (paper scale)"],
        [[LABELS[r["method"]]] + [fmt_acc(r[a]["mean"], r[a]["std"]) if a in r else "–" for a in archs]
         + [r["published_convnet"]] for r in rows], align="l" + "r" * (len(archs) + 1))
    lines = ["# Cross-architecture transfer: CIFAR-10, ipc 10", "",
             f"Machine: {machine_summary(state['machine'])}.", "",
             "The synthetic sets of `comparison.md` (each method's full-budget set, "
             f"{args.seconds:g} s of distillation with the ConvNet width {args.width} of that "
             "table) trained on by other networks from scratch: test accuracy (%), mean ± std over "
             f"{args.transfer_n_eval} networks seeded {args.seed + 1}..{args.seed + args.transfer_n_eval} "
             f"(the same for every method), {args.transfer_eval_steps} training steps, the "
             "protocol's optimiser and augmentation, on the test rows of `comparison.md`.", "",
             table, "",
             "- ResNet-18 and VGG-11 are the small-image variants of `sklearn_distill` at width "
             f"{args.transfer_width} (paper width 64; a CPU reduction) with {args.transfer_norm} "
             f"norm; the ConvNets have width {args.width}, depth {args.depth}.",
             "- " + ("The no-norm ConvNet column is the main table's evaluation."
                     if reuse else "Every column, the no-norm ConvNet included, uses the settings "
                     "above (fewer networks / steps than the main table)."),
             "- Published: /work/shared/REFERENCE_RESULTS.md has ConvNet figures only (the papers' "
             "scale), no cross-architecture figures, hence \"–\" elsewhere.", ""]
    write_results("transfer_cifar10_ipc10", payload, lines, folder=args.out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", choices=["digits", "mnist", "cifar10"],
                   default=["mnist", "cifar10"])
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seconds", type=float, default=20.0,
                   help="wall-clock budget of each learned method's distillation")
    p.add_argument("--curve", type=float, nargs="*", default=[0.25, 0.5],
                   help="budget fractions re-distilled for accuracy against wall time "
                        "(none: no curve)")
    p.add_argument("--width", type=int, default=16, help="ConvNet width (distillation, evaluation)")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=256, help="real rows per meta-step")
    p.add_argument("--n-eval", type=int, default=3, help="evaluation networks per set")
    p.add_argument("--eval-steps", type=int, nargs="+", default=None,
                   help="training steps of an evaluation network, one value per --ipc or one for "
                        "all (default: 300 at ipc 1, 150 above)")
    p.add_argument("--test-size", type=int, default=5000, help="fixed random test rows (0: all)")
    p.add_argument("--train-size", type=int, default=0, help="fixed random training rows (0: all)")
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--max-online-steps", type=int, default=100)
    p.add_argument("--frepo-lr", type=float, default=3e-3)
    p.add_argument("--rcig-lr", type=float, default=1e-2)
    p.add_argument("--rcig-online-steps", type=int, default=15)
    p.add_argument("--rcig-online-lr", type=float, default=1e-3)
    p.add_argument("--rcig-n-inner", type=int, default=10)
    p.add_argument("--rcig-n-hinv", type=int, default=10)
    p.add_argument("--rcig-rates", choices=["table", "search"], default="table",
                   help="RCIG's inner / Hessian-inverse rates: the table in this script (found by "
                        "its own search at the default settings) or its start-up search per set")
    p.add_argument("--ratbptt-lr", type=float, default=0.02)
    p.add_argument("--ratbptt-inner-lr", type=float, default=0.01)
    p.add_argument("--ratbptt-window", type=int, default=4)
    p.add_argument("--ratbptt-unroll", type=int, default=30)
    p.add_argument("--ratbptt-inner-batch", type=int, default=20)
    p.add_argument("--krr-lr", type=float, default=0.01)
    p.add_argument("--translator-steps", type=int, default=60,
                   help="single-network steps (cache sub-tasks and fits)")
    p.add_argument("--translator-tasks", type=int, default=12, help="cached sub-tasks")
    p.add_argument("--translator-max-images", type=int, default=100)
    p.add_argument("--translator-pretrain-steps", type=int, default=60)
    p.add_argument("--translator-width", type=int, default=16)
    p.add_argument("--translator-depth", type=int, default=2)
    p.add_argument("--translator-adapt-lr", type=float, default=1e-3)
    p.add_argument("--transfer", action=argparse.BooleanOptionalAction, default=True,
                   help="cross-architecture table (needs cifar10 and ipc 10)")
    p.add_argument("--transfer-archs", nargs="+", choices=TRANSFER_ARCHS, default=list(TRANSFER_ARCHS))
    p.add_argument("--transfer-methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--transfer-norm", choices=["batch", "instance"], default="batch")
    p.add_argument("--transfer-width", type=int, default=8, help="ResNet-18 / VGG-11 width")
    p.add_argument("--transfer-n-eval", type=int, default=2)
    p.add_argument("--transfer-eval-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default="data")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--work-dir", default=None, help="default: a temporary folder, deleted at the end")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--share-compilation", action=argparse.BooleanOptionalAction, default=True,
                   help="share compiled steps between the fit processes (JAX's disk cache)")
    args = p.parse_args(argv)
    if args.eval_steps is None:
        args.eval_steps = [300 if ipc == 1 else 150 for ipc in args.ipc]
    elif len(args.eval_steps) == 1:
        args.eval_steps = args.eval_steps * len(args.ipc)
    elif len(args.eval_steps) != len(args.ipc):
        p.error("--eval-steps takes one value or one per --ipc value")
    args.curve = sorted(set(args.curve or []))
    run(args)


if __name__ == "__main__":
    main()
