"""The accelerator evidence in one command: meta-step costs of FRePo, RCIG and RaT-BPTT, and a
FRePo accuracy-against-wall-time run, within a fixed wall-clock budget.

On the GPU machine, from the project root (``../shared/gpu/prepare.sh`` prepares the checkout)::

    source .gpu/env.sh && python benchmarks/gpu_suite.py

It runs, in about 9 minutes on one H200 (compilation and data decoding included):

1. a FRePo CIFAR-10 ipc 10 fit for ``--accuracy-seconds`` (240) of wall time, its synthetic set
   kept at several times along the way, each evaluated afterwards next to a random subset of the
   same size (the same evaluation networks);
2. the FRePo meta-step cost table of the paper's setting (batch 256, 32x32x3 inputs, 100
   classes, pool 10, flip on, ``precision="highest"``) by width at 100 images and by synthetic
   set size at width 128: ms/step, XLA temporaries, peak device memory, GFLOP per step by XLA's
   count and its fraction of a float32 matmul measured in the same run at the matching
   precision (both ``highest`` and ``default`` are measured);
3. RCIG s/step at CIFAR-10 ipc 1 and 10, and against ``n_inner`` and ``n_hinv``;
4. RaT-BPTT s/step and memory against the window M.

Each section has a wall-clock budget (a share of what is left of ``--total-seconds``); a
configuration that would start past its section's budget is listed as skipped, never estimated.
The results go to ``--out`` (``benchmarks/results/``) as ``gpu_suite_<device>.json``, ``.md``
and ``.png``, each naming the device. ``--smoke`` runs tiny sizes on digits and random arrays
(the CPU, under a minute) so that the suite is tested.
"""

import argparse
import contextlib
import copy
import math
import os
import re
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (RESULTS, device_name, device_peak_MB, log, machine_info,  # noqa: E402
                     markdown_table, matmul_flops, peak_rss_MB, seconds_per_step, write_results)

# Section budgets as shares of what the accuracy run leaves of the total (full mode).
_SHARES = {"frepo_cost": 0.6, "rcig": 0.25, "ratbptt": 0.15}

FULL = dict(total_seconds=530.0, accuracy_seconds=240.0, eval_seconds=45.0,
            widths=[16, 32, 64, 128, 256, 512], width_n=100, sizes=[100, 400, 1600, 6400], size_width=128,
            batch=256, n_classes=100, shape=(32, 32, 3), repeats=20,
            rcig_width=128, rcig_ipcs=[1, 10], rcig_inner=[5, 10, 40], rcig_hinv=[5, 10, 40],
            rcig_default=(20, 20), rcig_shape=(32, 32, 3), rcig_batch=256, rcig_online=15,
            windows=[10, 20, 40, 60], rat_width=128, rat_ipc=10, rat_batch=256,
            rat_shape=(32, 32, 3),
            dataset="cifar10", ipc=10, width=128, depth=3, acc_batch=1024, probe_steps=60,
            eval_models=2, eval_steps="auto", snapshots=6, matmul_n=4096)
SMOKE = dict(total_seconds=50.0, accuracy_seconds=10.0, eval_seconds=8.0,
             widths=[8], width_n=10, sizes=[], size_width=8, batch=32, n_classes=10, shape=(8, 8, 1),
             repeats=2, rcig_width=8, rcig_ipcs=[1], rcig_inner=[], rcig_hinv=[],
             rcig_default=(1, 1), rcig_shape=(8, 8, 1), rcig_batch=32, rcig_online=1,
             windows=[2], rat_width=8, rat_ipc=1, rat_batch=32, rat_shape=(8, 8, 1),
             dataset="digits", ipc=1, width=8, depth=2, acc_batch=64, probe_steps=4,
             eval_models=1, eval_steps=20, snapshots=3, matmul_n=256)
# The paper's FRePo cost table (Quadro RTX 6000): ms per meta-step; RCIG's s/step (RTX A6000).
PAPER_FREPO_MS = {("width", 16): 7.7, ("width", 32): 6.9, ("width", 64): 8.5, ("width", 128): 10.9,
                  ("width", 256): 20.8, ("width", 512): 52.5, ("size", 100): 10.9,
                  ("size", 400): 16.2, ("size", 1600): 35.3, ("size", 6400): 123.2}
PAPER_RCIG_S = {10: 0.65}


class Budget:
    """Seconds allowed from now; ``allows(estimate)`` says whether a piece still fits."""

    def __init__(self, seconds):
        self.seconds, self.start = float(seconds), time.perf_counter()

    def used(self):
        return time.perf_counter() - self.start

    def left(self):
        return self.seconds - self.used()

    def allows(self, estimate):
        return self.left() >= estimate


def _run_configs(name, configs, budget, measure):
    """Measure ``configs`` in order while the section's budget allows the last one's duration."""
    rows, skipped, last = [], [], 0.0
    for config in configs:
        if not budget.allows(last):
            skipped.append(config)
            continue
        start = time.perf_counter()
        try:
            row = measure(config)
        except Exception as exc:  # a configuration that fails (e.g. out of memory) is reported
            row = {**config, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        last = time.perf_counter() - start
        row["wall_s"] = last
        log(f"{name} {config}: {last:.1f} s")
        rows.append(row)
    return {"rows": rows, "skipped": skipped, "budget_s": budget.seconds,
            "used_s": budget.used()}


def frepo_cost(p, args, budget, matmul):
    from bench_frepo import step_cost

    # The issue's headline configurations first, so a tight budget still measures them.
    wanted = [("width", w, p["width_n"]) for w in p["widths"]] + \
             [("size", p["size_width"], n) for n in p["sizes"]]
    n_first = [c for c in wanted if (c[1], c[2]) in ((128, 100), (512, 100), (128, 1600),
                                                     (128, 6400))]
    configs = [{"table": t, "width": w, "n_synthetic": n}
               for t, w, n in n_first + [c for c in wanted if c not in n_first]]

    def measure(c):
        r = step_cost(c["width"], c["n_synthetic"], p["n_classes"], p["batch"], p["repeats"],
                      shape=p["shape"], precision=args.precision, parts=False,
                      network_precision=args.network_precision)
        r.update(table=c["table"], peak_rss_MB=peak_rss_MB(),
                 gflop_per_step=r["flops_per_step"] / 1e9,
                 fraction_of_matmul=r["achieved_flops"] / matmul[args.precision],
                 paper_ms=PAPER_FREPO_MS.get((c["table"], c["width"] if c["table"] == "width"
                                              else c["n_synthetic"])) if not args.smoke else None)
        return r

    section = _run_configs("frepo_cost", configs, budget, measure)
    order = {(c["table"], c["width"], c["n_synthetic"]): i for i, c in
             enumerate({"table": t, "width": w, "n_synthetic": n} for t, w, n in wanted)}
    section["rows"].sort(key=lambda r: order[(r["table"], r["width"], r["n_synthetic"])])
    return section


def rcig_cost(p, args, budget):
    from bench_rcig import step_cost

    n_in, n_hv = p["rcig_default"]
    configs = [{"ipc": ipc, "n_inner": n_in, "n_hinv": n_hv} for ipc in p["rcig_ipcs"]]
    top = max(p["rcig_ipcs"])
    configs += [{"ipc": top, "n_inner": n, "n_hinv": n_hv} for n in p["rcig_inner"]]
    configs += [{"ipc": top, "n_inner": n_in, "n_hinv": n} for n in p["rcig_hinv"]]

    def measure(c):
        r = step_cost(p["rcig_width"], 10 * c["ipc"], c["n_inner"], c["n_hinv"], None,
                      p["repeats"], batch=p["rcig_batch"], shape=p["rcig_shape"],
                      online_steps=p["rcig_online"])
        r.update(ipc=c["ipc"], s_per_step=r["ms_per_step"] / 1e3, peak_device_MB=device_peak_MB(),
                 peak_rss_MB=peak_rss_MB(),
                 paper_s=None if args.smoke or (n_in, n_hv) != (c["n_inner"], c["n_hinv"])
                 else PAPER_RCIG_S.get(c["ipc"]))
        return r

    return _run_configs("rcig", configs, budget, measure)


def ratbptt_cost(p, args, budget):
    from bench_ratbptt import step_cost

    def measure(c):
        r = step_cost(c["window"], True, p["rat_shape"], p["rat_width"], p["rat_ipc"],
                      p["rat_batch"], p["rat_batch"], p["repeats"])
        r.update(peak_device_MB=device_peak_MB())
        return r

    return _run_configs("ratbptt", [{"window": m} for m in p["windows"]], budget, measure)


def _snapshot(est, started):
    return {"steps": int(est.n_iter_), "wall_s": time.perf_counter() - started,
            "loop_s": float(est.history_["time"][-1]) if est.history_["time"] else 0.0,
            "estimator": copy.deepcopy(est)}


def accuracy_run(p, args, data):
    """FRePo for ``accuracy_seconds`` of wall time, kept at several times, then evaluated."""
    from sklearn.base import clone

    from sklearn_distill import ConvNet, FRePoDistiller, RandomDistiller
    from sklearn_distill.cli import _Deadline

    X_tr, y_tr, X_te, y_te = data
    model = ConvNet(width=p["width"], depth=p["depth"], norm="batch", width_doubling=True,
                    norm_position="before", norm_momentum=0.1)  # FRePo's default layout
    common = dict(ipc=p["ipc"], n_eval_models=p["eval_models"], eval_steps=p["eval_steps"],
                  eval_model=model.clone(norm="none", parent=None), random_state=0)
    frepo = FRePoDistiller(batch_size=p["acc_batch"], model=model, learning_rate=3e-4,
                           pool_size=10, network_precision=args.network_precision, **common)
    budget = Budget(p["accuracy_seconds"])
    probe = clone(frepo).set_params(n_steps=p["probe_steps"],
                                    log_every=max(1, p["probe_steps"] // 3)).fit(X_tr, y_tr)
    per_step = seconds_per_step(probe.history_)
    n_steps = max(1, int(0.95 * budget.left() / max(per_step, 1e-6)))
    log(f"accuracy run: {1e3 * per_step:.2f} ms per meta-step after a {budget.used():.1f} s "
        f"probe; {n_steps} steps planned")
    times = [budget.left() * (i + 1) / p["snapshots"] for i in range(p["snapshots"])]
    offset = budget.used()
    snapshots = []
    with tempfile.TemporaryDirectory() as tmp:
        est = clone(frepo).set_params(n_steps=n_steps, log_every=max(1, n_steps // 100),
                                      checkpoint=os.path.join(tmp, "frepo.npz"),
                                      checkpoint_every=10 ** 9)
        started = time.perf_counter()
        for i, t in enumerate(times):
            last = i == len(times) - 1
            seconds = max(0.5, offset + t - budget.used())
            # Stopped at the time of the snapshot (as Ctrl-C would), saved, resumed on the next
            # fit; the last part runs to its end.
            deadline = _Deadline(seconds) if not last else contextlib.nullcontext()
            with warnings.catch_warnings(), deadline:
                warnings.filterwarnings("ignore", message=".*interrupted at step")
                est.fit(X_tr, y_tr)
            snapshots.append(_snapshot(est, started))
            if est.stop_reason_ != "interrupted":
                break
    distil_s = time.perf_counter() - started
    log(f"accuracy run: {est.n_iter_} steps in {distil_s:.1f} s; evaluating")
    evaluation = Budget(p["eval_seconds"])
    random_est = RandomDistiller(**common).fit(X_tr, y_tr)
    # The final set and the baseline always; the earlier sets, latest first, while the
    # evaluation budget allows.
    order = [len(snapshots) - 1, "random"] + list(range(len(snapshots) - 1))[::-1]
    results, last_eval = {}, 0.0
    for i, which in enumerate(order):
        if i >= 2 and not evaluation.allows(last_eval):
            continue
        start = time.perf_counter()
        target = random_est if which == "random" else snapshots[which]["estimator"]
        res = target.evaluate(X_te, y_te)
        results[which] = (100 * float(res.mean), 100 * float(res.std), int(res.n_steps))
        last_eval = time.perf_counter() - start
    rows = []
    for i, s in enumerate(snapshots):
        acc = results.get(i)
        rows.append({"steps": s["steps"], "wall_s": s["wall_s"], "loop_s": s["loop_s"],
                     "acc_mean": None if acc is None else acc[0],
                     "acc_std": None if acc is None else acc[1]})
    rand = results.get("random")
    return {"dataset": p["dataset"], "ipc": p["ipc"], "width": p["width"],
            "batch": p["acc_batch"], "ms_per_step_probe": 1e3 * per_step, "n_steps": n_steps,
            "steps_taken": int(est.n_iter_), "distil_s": distil_s,
            "probe_s": offset, "eval_steps": None if rand is None else rand[2],
            "eval_models": p["eval_models"], "snapshots": rows,
            "random_acc_mean": None if rand is None else rand[0],
            "random_acc_std": None if rand is None else rand[1],
            "eval_used_s": evaluation.used(), "model": repr(model)}


def load_data(p):
    from bench_frepo import load

    return load(p["dataset"], None)


def _plot(path, acc, device):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in acc["snapshots"] if r["acc_mean"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar([acc["probe_s"] + r["wall_s"] for r in rows], [r["acc_mean"] for r in rows],
                yerr=[r["acc_std"] for r in rows], marker="o", capsize=3,
                label=f"FRePo ipc {acc['ipc']}")
    if acc["random_acc_mean"] is not None:
        ax.axhline(acc["random_acc_mean"], color="grey", linestyle="--",
                   label=f"random subset ({acc['random_acc_mean']:.1f} %)")
    ax.set_xlabel("wall time of the fit (s, compilation included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{acc['dataset']} ipc {acc['ipc']} on {device}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value, spec=".1f"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def markdown(out):
    device, acc = out["device"], out["accuracy"]
    lines = [f"# GPU suite on {device}", "",
             f"{out['machine_summary']}. Total wall time {out['total_s']:.0f} s (budget "
             f"{out['config']['total_seconds']:.0f} s), data loading {out['load_s']:.1f} s. "
             f"Float32 matmul reference in the same run: {out['matmul_gflops']['highest']:.0f} "
             f"GFLOP/s at `highest`, {out['matmul_gflops']['default']:.0f} at `default`. "
             f"Steps per dispatch: {out['steps_per_dispatch']}; network precision: "
             f"{out['config']['network_precision']}.", ""]
    lines += [f"## FRePo {acc['dataset']} ipc {acc['ipc']}: accuracy against wall time", "",
              f"Width {acc['width']}, batch {acc['batch']}, {acc['ms_per_step_probe']:.2f} ms "
              f"per meta-step in a {acc['probe_s']:.1f} s probe (compilation included); "
              f"{acc['steps_taken']} of {acc['n_steps']} planned steps in {acc['distil_s']:.0f} s. "
              f"Each kept set evaluated with {acc['eval_models']} networks of "
              f"{acc['eval_steps']} steps; random subset: {_fmt(acc['random_acc_mean'], '.2f')} ± "
              f"{_fmt(acc['random_acc_std'], '.2f')} %.", "",
              markdown_table(["wall s (after the probe)", "steps", "accuracy (%)"],
                             [[f"{r['wall_s']:.0f}", r["steps"],
                               f"{_fmt(r['acc_mean'], '.2f')} ± {_fmt(r['acc_std'], '.2f')}"]
                              for r in acc["snapshots"]]), ""]
    fc = out["frepo_cost"]
    lines += ["## FRePo meta-step cost", "",
              f"Batch {out['config']['batch']}, inputs {tuple(out['config']['shape'])}, "
              f"{out['config']['n_classes']} classes, pool 10, flip on, precision "
              f"`{out['config']['precision']}`; {out['config']['repeats']} timed steps after "
              f"warm-up. Peak device memory is the process's peak so far (configurations run in "
              f"the listed order; None where the device reports none: see peak RSS).", "",
              markdown_table(["table", "width", "n synthetic", "ms/step", "paper ms",
                              "GFLOP/step", "fraction of matmul", "XLA temp MB",
                              "peak device MB", "peak RSS MB", "compile s"],
                             [[r["table"], r["width"], r["n_synthetic"],
                               _fmt(r.get("ms_per_step"), ".2f"), _fmt(r.get("paper_ms")),
                               _fmt(r.get("gflop_per_step"), ".2f"),
                               _fmt(r.get("fraction_of_matmul"), ".3f"),
                               _fmt(r.get("xla_temp_MB"), ".0f"),
                               _fmt(r.get("peak_device_MB"), ".0f"),
                               _fmt(r.get("peak_rss_MB"), ".0f"), _fmt(r.get("compile_s"))]
                              for r in fc["rows"]])]
    lines += _skipped(fc)
    rc = out["rcig"]
    lines += ["", "## RCIG meta-step cost", "",
              markdown_table(["ipc", "n_inner", "n_hinv", "s/step", "paper s", "XLA temp MB",
                              "peak device MB", "compile s"],
                             [[r["ipc"], r["n_inner"], r["n_hinv"], _fmt(r.get("s_per_step"), ".4f"),
                               _fmt(r.get("paper_s"), ".2f"), _fmt(r.get("xla_temp_MB"), ".0f"),
                               _fmt(r.get("peak_device_MB"), ".0f"), _fmt(r.get("compile_s"))]
                              for r in rc["rows"]])]
    lines += _skipped(rc)
    rt = out["ratbptt"]
    lines += ["", "## RaT-BPTT meta-step cost against the window M", "",
              markdown_table(["window M", "s/step", "XLA temp MB", "peak device MB", "compile s"],
                             [[r["window"], _fmt(r.get("s_per_step"), ".4f"),
                               _fmt(r.get("xla_temp_MB"), ".0f"),
                               _fmt(r.get("peak_device_MB"), ".0f"), _fmt(r.get("compile_s"))]
                              for r in rt["rows"]])]
    lines += _skipped(rt)
    errors = [r for s in (fc, rc, rt) for r in s["rows"] if "error" in r]
    if errors:
        lines += ["", "Failed configurations: " + "; ".join(
            f"{ {k: v for k, v in r.items() if k not in ('error', 'wall_s')} }: {r['error']}"
            for r in errors)]
    return lines


def _skipped(section):
    if not section["skipped"]:
        return []
    return ["", f"Skipped for the section's {section['budget_s']:.0f} s budget: "
            + ", ".join(str(c) for c in section["skipped"]) + "."]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=RESULTS, help="output folder (default: benchmarks/results/)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on digits and random arrays (the CPU, under a minute)")
    p.add_argument("--total-seconds", type=float, default=None,
                   help="wall-clock budget of the whole suite (default 530; smoke 50)")
    p.add_argument("--accuracy-seconds", type=float, default=None,
                   help="wall time of the FRePo accuracy run, probe included (default 240)")
    p.add_argument("--eval-seconds", type=float, default=None,
                   help="budget of the evaluation of its kept sets (default 45)")
    p.add_argument("--dataset", choices=["cifar10", "digits"], default=None,
                   help="data of the accuracy run (default cifar10; smoke digits)")
    p.add_argument("--probe-steps", type=int, default=None,
                   help="meta-steps of the accuracy run's timing probe (default 60)")
    p.add_argument("--accuracy-width", dest="width", type=int, default=None,
                   help="ConvNet width of the accuracy run (default 128)")
    p.add_argument("--accuracy-batch", dest="acc_batch", type=int, default=None,
                   help="real batch of the accuracy run (default 1024)")
    p.add_argument("--eval-models", type=int, default=None,
                   help="evaluation networks per kept set (default 2)")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="their training steps (default: the protocol's)")
    p.add_argument("--widths", type=int, nargs="+", default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--windows", type=int, nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed steps per configuration")
    p.add_argument("--precision", choices=["highest", "high", "default"], default="highest",
                   help="FRePo's `precision` in the cost table (the paper's setting: highest)")
    p.add_argument("--network-precision", default="auto",
                   choices=["auto", "float32", "tf32", "bfloat16"],
                   help="FRePo's `network_precision`, in the accuracy run and the cost table")
    p.add_argument("--steps-per-dispatch", default="auto",
                   help="the steps_per_dispatch backend decision ('auto' or an integer)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    p = dict(SMOKE if args.smoke else FULL)
    for name in ("total_seconds", "accuracy_seconds", "eval_seconds", "widths", "sizes",
                 "windows", "repeats", "dataset", "probe_steps", "width", "acc_batch",
                 "eval_models", "eval_steps"):
        if getattr(args, name) is not None:
            p[name] = getattr(args, name)
    spd = args.steps_per_dispatch
    spd = int(spd) if str(spd).isdigit() else spd

    import jax

    from sklearn_distill._backend import backend_context, steps_per_dispatch

    total = Budget(p["total_seconds"])
    device = device_name()
    log(f"GPU suite on {device} ({jax.default_backend()}), budget {p['total_seconds']:.0f} s")
    with backend_context(steps_per_dispatch=spd):
        out = {"device": device, "smoke": bool(args.smoke), "config": {**vars(args), **p},
               "steps_per_dispatch": steps_per_dispatch()}
        matmul = {prec: matmul_flops(p["matmul_n"], precision=prec)
                  for prec in ("highest", "high", "default")}
        out["matmul_gflops"] = {k: v / 1e9 for k, v in matmul.items()}
        start = time.perf_counter()
        data = load_data(p)
        out["load_s"] = time.perf_counter() - start
        out["accuracy"] = accuracy_run(p, args, data)
        del data
        left = total.left()
        out["frepo_cost"] = frepo_cost(p, args, Budget(_SHARES["frepo_cost"] * left), matmul)
        left = total.left()
        out["rcig"] = rcig_cost(p, args, Budget(left * _SHARES["rcig"]
                                                / (_SHARES["rcig"] + _SHARES["ratbptt"])))
        out["ratbptt"] = ratbptt_cost(p, args, Budget(total.left()))
    out["total_s"] = total.used()
    out["machine"] = machine_info()
    from _common import machine_summary

    out["machine_summary"] = machine_summary(out["machine"])
    slug = re.sub(r"[^a-z0-9]+", "_", device.split(" (")[0].lower()).strip("_")
    name = f"gpu_suite_{slug}" + ("_smoke" if args.smoke else "")
    os.makedirs(args.out, exist_ok=True)
    _plot(os.path.join(args.out, name + ".png"), out["accuracy"], device)
    out["plot"] = name + ".png"
    write_results(name, out, markdown(out), args.out)
    log(f"GPU suite done in {out['total_s']:.0f} s")
    return out


if __name__ == "__main__":
    main()
