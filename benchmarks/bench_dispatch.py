"""Meta-steps per host dispatch: the host loop (k = 1) against k steps in one compiled call.

Measures the ``steps_per_dispatch`` backend decision on the default backend. For each setting, a
FRePo meta-step (random data, a ConvNet with batch norm, pool 5) is compiled as it is called by
the host loop and inside :func:`sklearn_distill._training.run_steps` for each ``k``; then blocks
of ``k_max`` steps alternate between the variants, ``--rounds`` times, in one process (on a shared
machine only such ratios count)::

    python benchmarks/bench_dispatch.py --ks 1 10 50 --rounds 15

Writes ``steps_per_dispatch_<backend>.json`` and ``.md`` into ``--out`` (``benchmarks/results/``).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import RESULTS, machine_info, machine_summary, markdown_table, write_results  # noqa: E402

# (name, sample shape, width, depth, synthetic images, batch): digits-sized and CIFAR-sized.
SETTINGS = [("digits 8x8x1, width 16, 10 images, batch 128", (8, 8, 1), 16, 2, 10, 128),
            ("32x32x3, width 32, 100 images, batch 256", (32, 32, 3), 32, 3, 100, 256)]


def _setup(shape, width, depth, n_syn, batch, n_classes=10):
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill._sharding import DataParallel
    from sklearn_distill._training import centred_one_hot, init_labels
    from sklearn_distill.methods import frepo as F
    from sklearn_distill.networks import with_num_classes

    rng = np.random.default_rng(0)
    model = with_num_classes(ConvNet(width=width, depth=depth, norm="batch"), n_classes)
    y_syn = np.repeat(np.arange(n_classes), n_syn // n_classes)
    x_syn = rng.standard_normal((len(y_syn),) + shape).astype(np.float32)
    X = jnp.asarray(rng.standard_normal((4 * batch,) + shape).astype(np.float32))
    Y = jnp.asarray(centred_one_hot(rng.integers(0, n_classes, len(X)), n_classes))
    key = jax.random.PRNGKey(0)
    config = F._Config(model=model, batch_size=batch, learn_labels=True, flip=shape[-1] == 3,
                       precision="highest", placement=DataParallel(None, None))
    hyper = F.hyperparameters(10 ** 6, 3e-4, 1e-6, 20, 3e-4)

    def state():
        s = F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, 5, 20)
        return jax.tree.map(lambda a: jnp.array(a, copy=True), s)

    return F._meta_step, state, (X, Y, hyper), config


def measure(setting, ks, rounds):
    import jax

    from sklearn_distill._training import run_steps

    name, shape, width, depth, n_syn, batch = setting
    step, fresh, operands, config = _setup(shape, width, depth, n_syn, batch)
    block = max(ks)
    states = {k: fresh() for k in ks}

    def run(k, s, n_steps):
        for _ in range(n_steps // k):
            if k == 1:
                s, loss = step(s, *operands, config)
            else:
                s, loss = run_steps(s, k, operands, step=step, config=config, k=k)
        jax.block_until_ready(loss)
        return s

    for k in ks:  # compile and warm every variant (on a state of its own, then dropped)
        run(k, fresh(), k)
    times = {k: [] for k in ks}
    for r in range(rounds):
        for k in (ks if r % 2 == 0 else ks[::-1]):
            start = time.perf_counter()
            states[k] = run(k, states[k], block)
            times[k].append((time.perf_counter() - start) / block)
    # Same number of steps from the same start: how far the variants' synthetic sets drifted.
    drift = {k: float(np.max(np.abs(np.asarray(states[k]["x"]) - np.asarray(states[ks[0]]["x"]))))
             for k in ks}
    return {"setting": name, "ms_per_step": {k: [1e3 * t for t in v] for k, v in times.items()},
            "median_ms": {k: 1e3 * float(np.median(v)) for k, v in times.items()},
            "ratio_to_first": {k: float(np.median(times[k]) / np.median(times[ks[0]])) for k in ks},
            "paired_ratio_median": {k: float(np.median(np.asarray(times[k]) /
                                                       np.asarray(times[ks[0]]))) for k in ks},
            "max_abs_drift": drift}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--settings", type=int, nargs="+", default=list(range(len(SETTINGS))),
                   help="indices into SETTINGS")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)

    import jax

    info = machine_info()
    results = []
    for i in args.settings:
        results.append(measure(SETTINGS[i], args.ks, args.rounds))
        print(results[-1]["median_ms"], results[-1]["paired_ratio_median"], flush=True)
    backend = jax.default_backend()
    rows = [[r["setting"], k, f"{r['median_ms'][k]:.2f}", f"{r['paired_ratio_median'][k]:.3f}",
             f"{r['max_abs_drift'][k]:.2g}"] for r in results for k in args.ks]
    lines = [f"# Meta-steps per dispatch ({backend})", "",
             f"A FRePo meta-step (random data, ConvNet with batch norm, pool 5, 10 classes) run "
             f"from the host loop (k = 1) and inside one compiled call of k steps (`run_steps`); "
             f"every variant compiled and warmed first, then {args.rounds} rounds of "
             f"{max(args.ks)} steps per variant in alternating order, in one process. ms/step: "
             f"median over rounds; ratio: median over rounds of the round's time over the host "
             f"loop's time in the same round. Drift: the largest difference of the synthetic "
             f"set from the host loop's after the same steps (float32; XLA fuses the step "
             f"differently inside the loop). {machine_summary(info)}; load average at start "
             f"{[round(x, 1) for x in info['load_average_at_start']]} (a shared machine).", "",
             markdown_table(["setting", "k", "ms/step", "ratio to k=1", "drift"], rows, "lrrrr")]
    write_results(f"steps_per_dispatch_{backend}", {"config": vars(args), "machine": info,
                                                    "results": results}, lines, args.out)


if __name__ == "__main__":
    main()
