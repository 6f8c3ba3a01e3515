"""Variants of our FRePo meta-step, timed against the official one in one process.

Run by hand (never in CI); the setting and the official runner are those of
``bench_official.py --mode speed`` (32x32x3 inputs, 100 classes, 100 synthetic images, batch 256,
pool 10, flip on), and so are its requirements (``einops``, ``ml_collections`` and a snapshot of
yongchao97/FRePo passed with ``--official-path``). Variants of ours, all computing the same
step from the same state:

* ``fused``: the library's step, one jitted call with the state donated (what a fit runs);
* ``no_donation``: the same program jitted without donating the state;
* ``split``: two jitted calls, the meta-gradient and LAMB step, then the pool member's online
  step (no donation);
* ``split_implicit_solve``: ``split`` with the KRR solve differentiated implicitly (the Cholesky
  factor taken under ``stop_gradient`` and the solve wrapped in ``lax.custom_linear_solve``, as
  ``jax.scipy.linalg.solve(assume_a="pos")`` does) instead of through ``cho_factor``.

Every variant and the official step run in alternating blocks of 5 steps; the per-block ratios
to ``fused`` and their medians are written to ``results/frepo_step_variants.{json,md}``::

    python benchmarks/bench_frepo_step_variants.py --official-path /path/to/FRePo --widths 16 32
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import machine_info, machine_summary, write_results  # noqa: E402
from bench_official import (RESULTS, _official_runner, _time_block, load_official,  # noqa: E402
                            official_commit, speed_setup)

VARIANTS = ("fused", "no_donation", "split", "split_implicit_solve")


def _implicit_cholesky_solve(k_ss, y_s, diag):
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    k_reg = 0.5 * (k_ss + k_ss.T) + diag * jnp.eye(k_ss.shape[0], dtype=k_ss.dtype)
    factor = jsl.cho_factor(jax.lax.stop_gradient(k_reg), lower=True)
    return jax.lax.custom_linear_solve(lambda v: k_reg @ v, y_s,
                                       lambda _, b: jsl.cho_solve(factor, b), symmetric=True)


def _ours_variants(width, x_syn, y_syn, n_classes, X, Y, batch):
    import jax
    import jax.numpy as jnp
    import optax

    from sklearn_distill import ConvNet, _pool
    from sklearn_distill import kernels as K
    from sklearn_distill._sharding import DataParallel
    from sklearn_distill._training import init_labels, select_tree, tree_isfinite
    from sklearn_distill.methods import frepo as F
    from sklearn_distill.networks import with_num_classes

    model = with_num_classes(ConvNet(width=width, depth=3, norm="batch", width_doubling=True,
                                     norm_position="before", norm_momentum=0.1), n_classes)
    config = F._Config(model=model, batch_size=batch, learn_labels=True, flip=True,
                       precision="highest", placement=DataParallel(None, None))
    hyper = F.hyperparameters(1000, 3e-4, 1e-6, 100, 3e-4)
    key = jax.random.PRNGKey(0)

    def fresh():
        return F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, 10, 100)

    def meta_and_lamb(state, X_real, Y_real, hyper):
        loss, grads, index, key, online_key = F._meta_gradient(state, X_real, Y_real, hyper,
                                                               config)
        synthetic = {"x": state["x"], "y": state["y"]}
        updates, opt_state = F._lamb(hyper).update(grads, state["opt"], synthetic)
        new = optax.apply_updates(synthetic, updates)
        ok = state["ok"] & jnp.isfinite(loss) & tree_isfinite(new)
        new, opt_state = select_tree(ok, (new, opt_state), (synthetic, state["opt"]))
        return new, opt_state, index, key, online_key, ok

    def online(pool, new, index, online_key, ok, hyper):
        return _pool.online_update(
            pool, index, online_key, new["x"], new["y"], model=config.model,
            optimizer=_pool.pool_optimizer(hyper["online_learning_rate"]),
            max_online_steps=hyper["max_online_steps"] + 1, batch_size=None, keep=ok)

    def fused(donate):
        box = {"s": fresh()}
        jitted = jax.jit(F._meta_step_impl, static_argnames=("config",),
                         donate_argnums=(0,) if donate else ())
        compiled = jitted.lower(box["s"], X, Y, hyper, config).compile()

        def step():
            box["s"], _ = compiled(box["s"], X, Y, hyper)
            return box["s"]
        return step, box

    def split():
        box = {"s": fresh()}
        first = jax.jit(meta_and_lamb).lower(box["s"], X, Y, hyper).compile()
        out = first(box["s"], X, Y, hyper)
        second = jax.jit(online).lower(box["s"]["pool"], out[0], *out[2:3], out[4], out[5],
                                       hyper).compile()

        def step():
            s = box["s"]
            new, opt, index, k, online_key, ok = first(s, X, Y, hyper)
            pool = second(s["pool"], new, index, online_key, ok, hyper)
            box["s"] = {"x": new["x"], "y": new["y"], "opt": opt, "pool": pool,
                        "key": jnp.where(ok, k, s["key"]), "ok": ok}
            return box["s"]
        return step, box

    out = {"fused": fused(True), "no_donation": fused(False), "split": split()}
    # The solve is looked up in sklearn_distill.kernels when the step is traced.
    original = K.cholesky_solve
    K.cholesky_solve = _implicit_cholesky_solve
    try:
        out["split_implicit_solve"] = split()
    finally:
        K.cholesky_solve = original
    return out


def _max_difference(a, b):
    import jax

    a, b = jax.device_get(a), jax.device_get(b)
    return max(float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64))))
               for p, q in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-path", required=True, help="a snapshot of yongchao97/FRePo")
    p.add_argument("--official-commit", default="9b98c65beac9baa851aeab7f1c8ca71ca74bb886")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--blocks", type=int, default=8, help="5-step blocks per variant")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args(argv)

    import jax

    ns = load_official(args.official_path)
    n_classes, x_syn, y_syn, y_off, batches, Xd, Yd = speed_setup(args.batch)
    rows = []
    for width in args.widths:
        ours = _ours_variants(width, x_syn, y_syn, n_classes, Xd, Yd, args.batch)
        steps = {name: step for name, (step, _) in ours.items()}
        steps["official"] = _official_runner(ns, width, x_syn, y_off.astype(np.float32),
                                             n_classes, batches, 10, 100)[0]
        for step in steps.values():  # compile, warm up; ours all take 3 steps from one state
            _time_block(step, 3)
        agreement = {name: _max_difference(ours["fused"][1]["s"], box["s"])
                     for name, (_, box) in ours.items() if name != "fused"}
        times = {name: [] for name in steps}
        for _ in range(args.blocks):
            for name, step in steps.items():
                times[name].append(_time_block(step, 5))
        row = {"width": width, "ms": {n: [1000 * t for t in ts] for n, ts in times.items()},
               "median_ms": {n: 1000 * float(np.median(ts)) for n, ts in times.items()},
               "ratio_to_fused": {n: [a / b for a, b in zip(ts, times["fused"])]
                                  for n, ts in times.items()},
               "max_abs_difference_after_3_steps": agreement}
        row["median_ratio_to_fused"] = {n: float(np.median(r))
                                        for n, r in row["ratio_to_fused"].items()}
        print(row, flush=True)
        rows.append(row)
    out = {"config": vars(args), "machine": machine_info(), "jax": jax.__version__,
           "official": {"repository": "yongchao97/FRePo",
                        "commit": official_commit(args.official_path) or args.official_commit},
           "rows": rows}
    names = list(VARIANTS) + ["official"]
    lines = [f"Variants of our FRePo meta-step against the official one (yongchao97/FRePo @ "
             f"{out['official']['commit']}), one process, alternating blocks of 5 steps "
             f"({args.blocks} blocks each), the setting of `official_frepo_speed.md`; "
             f"{machine_summary(out['machine'])} (shared machine). Median ms/step, and the "
             "median over blocks of each block's time over the `fused` block beside it "
             "(below 1: faster than the library's step).", "",
             "| width | " + " | ".join(f"{n} ms" for n in names) + " | "
             + " | ".join(f"{n} / fused" for n in names[1:]) + " |",
             "|---" * (1 + 2 * len(names) - 1) + "|"]
    for r in rows:
        lines.append(f"| {r['width']} | "
                     + " | ".join(f"{r['median_ms'][n]:.1f}" for n in names) + " | "
                     + " | ".join(f"{r['median_ratio_to_fused'][n]:.3f}" for n in names[1:])
                     + " |")
    lines += ["", "Largest absolute difference of any state entry from `fused` after the same 3 "
              "steps: " + "; ".join(f"width {r['width']}: " + ", ".join(
                  f"{n} {v:.2g}" for n, v in r["max_abs_difference_after_3_steps"].items())
                  for r in rows) + "."]
    write_results("frepo_step_variants", out, lines, RESULTS)


if __name__ == "__main__":
    main()
