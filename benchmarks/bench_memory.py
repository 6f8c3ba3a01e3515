"""Memory of one meta-step of every learned distiller against the synthetic-set size.

For each method and synthetic-set size the script builds the method's own jitted meta-step on
random data of the chosen shape, compiles it (nothing is run, so paper-scale networks are cheap to
measure on a CPU) and reads XLA's memory analysis:

* ``state``: the bytes of the carried state (synthetic set, labels, optimiser states, model pool,
  cached features) -- what stays on the device between steps;
* ``temp``: XLA's temporary buffers of one step (activations, Gram matrices, gradients);
* ``peak``: their sum plus the real batch, the step's working set on one device.

With ``--devices k`` (run under ``XLA_FLAGS=--xla_force_host_platform_device_count=k`` on a CPU)
the real batch is sharded over k devices as ``devices=k`` does in a fit, and the figures are per
device. The CPU backend's buffer assignment is not the GPU's, so read the numbers as how memory
scales and which knob moves it, not as an accelerator's exact footprint.

Usage::

    python benchmarks/bench_memory.py                       # CIFAR-10 shape, width 128
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/bench_memory.py --devices 8
"""

import argparse
import time

import numpy as np

from _common import machine_info, machine_summary, write_results

METHODS = ("FRePo", "RCIG", "RaT-BPTT", "KRR")


def _tree_mb(tree):
    import jax

    return sum(np.asarray(a).nbytes for a in jax.tree.leaves(tree)) / 2**20


def _random_data(shape, n_syn, n_real, n_classes):
    rng = np.random.default_rng(0)
    x_syn = rng.standard_normal((n_syn,) + shape).astype(np.float32)
    y_syn = np.arange(n_syn) % n_classes
    X = rng.standard_normal((n_real,) + shape).astype(np.float32)
    y = rng.integers(0, n_classes, n_real)
    return x_syn, y_syn, X, y


def build_step(method, shape, width, n_syn, batch, placement, n_classes=10):
    """``(jitted step, its arguments, static kwargs, state)`` of one meta-step of ``method``."""
    import jax
    import jax.numpy as jnp

    from sklearn_distill import ConvNet
    from sklearn_distill._training import centred_one_hot, init_labels
    from sklearn_distill.networks import with_num_classes

    key = jax.random.PRNGKey(0)
    x_syn, y_syn, X, y = _random_data(shape, n_syn, batch, n_classes)
    if method == "FRePo":
        from sklearn_distill.methods import frepo as F

        model = with_num_classes(ConvNet(width=width, depth=3, norm="batch",
                                         width_doubling=True), n_classes)
        state = F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, 10, 100)
        hyper = F.hyperparameters(1000, 3e-4, 1e-6, 100, 3e-4)
        config = F._Config(model, batch, True, shape[-1] == 3, "highest", placement)
        args = (state, X, centred_one_hot(y, n_classes), hyper)
        return F._meta_step, args, {"config": config}, state
    if method == "RCIG":
        from sklearn_distill.methods import rcig as R

        model = with_num_classes(ConvNet(width=width, depth=3, norm="none", width_doubling=True,
                                         activation="softplus"), n_classes)
        state = R.init_state(x_syn, init_labels(y_syn, n_classes, scale=False), key, key, model,
                             30, 100)
        state = {**state, "inner_lr": jnp.float32(1e-3), "hinv_lr": jnp.float32(1e-3)}
        config = R._Config(model=model, batch_size=batch, learn_labels=True,
                           flip=shape[-1] == 3, n_inner=20, n_hinv=20, hinv_solver="adam",
                           online_steps=15, n_backward_subset=None, clip_implicit=True,
                           precision="highest", placement=placement)
        hyper = R.hyperparameters(3e-3, 3e-2, 5e-4, 100, 5e-5)
        args = (state, X, np.eye(n_classes, dtype=np.float32)[y], hyper)
        return R._meta_step, args, {"config": config}, state
    if method == "RaT-BPTT":
        from sklearn_distill.methods import ratbptt as R

        model = with_num_classes(ConvNet(width=width, depth=3, norm="instance"), n_classes)
        ipc = n_syn // n_classes
        aug = R.ImageAugmentation(flip=shape[-1] == 3, crop=False, scale=False, rotate=True,
                                  colour=False, cutout=False)
        window = 20
        config = R._Config(model, window, window, "fixed", ipc, batch, min(1024, batch), aug,
                           False, True, False, placement)
        labels = np.eye(n_classes, dtype=np.float32)[np.sort(y_syn)]
        state = R.init_state(x_syn, labels, key)
        rows = np.arange(n_syn).reshape(n_classes, ipc)
        hyper = R.hyperparameters(1000, 1e-3, 1e-3)
        args = (state, jnp.asarray(window, jnp.int32), X, np.eye(n_classes, dtype=np.float32)[y],
                rows, np.ones(n_syn, np.float32), hyper)
        return R._meta_step, args, {"config": config}, state
    if method == "KRR":
        from sklearn_distill.methods import krr as T

        model = with_num_classes(ConvNet(width=width, depth=3, norm="none"), n_classes)
        config = T._KRRConfig(model, batch, True, "highest", placement)
        synthetic = {"x": jnp.asarray(x_syn), "y": jnp.asarray(init_labels(y_syn, n_classes,
                                                                           scale=False))}
        import optax

        state = {**synthetic, "opt": optax.adam(1.0).init(synthetic), "key": key,
                 "ok": jnp.asarray(True), "step": jnp.asarray(0, jnp.int32),
                 "net": T._init_network(model, key, shape)}
        Y = centred_one_hot(y, n_classes)
        state = T._renew(*placement.put((state, X, Y)), config=config, new_network=False)
        hyper = {"learning_rate": np.float32(0.01), "ridge": np.float32(1e-6),
                 "steps_per_network": np.int32(1)}
        args = (state, X, Y, np.ones(n_syn, np.float32), hyper)
        return T._krr_step, args, {"config": config}, state
    raise ValueError(method)


def measure(method, shape, width, n_syn, batch, devices):
    from sklearn_distill._jax import library_prng
    from sklearn_distill._sharding import data_parallel

    placement = data_parallel(devices if devices > 1 else None)
    with library_prng():
        fn, args, static, state = build_step(method, shape, width, n_syn, batch, placement)
        args = placement.put(args)
        start = time.perf_counter()
        compiled = fn.lower(*args, **static).compile()
        compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", float("nan")) / 2**20
    state_mb = _tree_mb(state)
    batch_mb = batch * int(np.prod(shape)) * 4 / 2**20 / devices
    return {"method": method, "n_synthetic": n_syn, "batch": batch, "devices": devices,
            "state_MB": round(state_mb, 2), "temp_MB": round(temp, 2),
            "peak_MB": round(state_mb + temp + batch_mb, 2), "compile_s": round(compile_s, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--shape", type=int, nargs=3, default=(32, 32, 3))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--n-synthetic", type=int, nargs="+", default=(10, 100, 500))
    p.add_argument("--batch", type=int, default=1024, help="real batch (RaT-BPTT: 256)")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import jax

    if args.devices > len(jax.devices()):
        p.error(f"--devices {args.devices} but JAX sees {len(jax.devices())} device(s); on a CPU set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={args.devices}")
    rows = []
    for method in args.methods:
        batch = 256 if method == "RaT-BPTT" else args.batch
        for n_syn in args.n_synthetic:
            r = measure(method, tuple(args.shape), args.width, n_syn, batch, args.devices)
            print(r, flush=True)
            rows.append(r)
    shape = "x".join(map(str, args.shape))
    name = args.name or f"memory_{shape}_w{args.width}_d{args.devices}"
    info = machine_info()
    lines = [f"XLA memory of one meta-step per device ({shape} images, ConvNet width {args.width} "
             f"depth 3, {args.devices} device(s); compile-time analysis on the "
             f"{jax.default_backend().upper()} backend, nothing run); {machine_summary(info)}.", "",
             "| method | synthetic images | real batch | state (MB) | temporaries (MB) | "
             "state + temporaries + batch (MB) | compile (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n_synthetic']} | {r['batch']} | {r['state_MB']} | "
                     f"{r['temp_MB']} | {r['peak_MB']} | {r['compile_s']} |")
    write_results(name, {"machine": info, "args": vars(args), "rows": rows}, lines)


if __name__ == "__main__":
    main()
