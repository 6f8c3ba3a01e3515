"""Side by side with the official FRePo code: evaluation agreement and meta-step speed.

Run by hand (never in CI). The official code is *not* part of this project: fetch a snapshot
(``git clone https://github.com/yongchao97/FRePo`` and ``git checkout 9b98c65``) anywhere and pass
its folder with ``--official-path``. The script copies it to a temporary folder, applies four
API updates for the current JAX/flax to the copy (``flax.core.unfreeze`` of ``model.init``,
``assume_a="pos"`` for ``sym_pos=True``, ``jax.tree_util.tree_map`` for ``jax.tree_map``, and
a GPU count that does not raise on a CPU-only install),
replaces its TensorFlow, TensorFlow Datasets, ``clu`` and ``fire`` imports and its dataset loader
by in-memory stand-ins that feed it NumPy arrays, and imports it. It needs ``einops`` and
``ml_collections`` (``pip install einops ml_collections``).

Evaluation agreement (``--mode eval``): one synthetic set (distilled here with
:class:`~sklearn_distill.FRePoDistiller`) is evaluated by ``evaluate(..., protocol="frepo")`` and
by the official ``script/eval.py`` ``main`` (its network, Adam schedule, batch, augmentation and
training loop, unchanged), with the same evaluation width and several seeds on each side::

    python benchmarks/bench_official.py --official-path /path/to/FRePo --mode eval \
        --dataset cifar10 --ipc 10 --width 32 --seeds 0 1 2 --data-home data

Meta-step speed (``--mode speed``): the official meta-step (the real batch's features, the
meta-gradient step and the pool member's online step, as ``proto_train_and_evaluate`` runs them)
and ours at the same configuration, timed in one process in alternating blocks, plus the XLA
FLOP counts of both::

    python benchmarks/bench_official.py --official-path /path/to/FRePo --mode speed \
        --widths 16 32

Both write a JSON file and a markdown table into ``benchmarks/results/``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import machine_info, machine_summary, write_results  # noqa: E402

RESULTS = os.path.join(HERE, "results")

# (file, old text, new text, expected count; None: at least one) applied to the temporary copy.
PATCHES = [
    ("lib/datadistillation/frepo.py", "variables = model.init({'params': rng}).unfreeze()",
     "variables = flax.core.unfreeze(model.init({'params': rng}))", 1),
    ("lib/datadistillation/frepo.py", "sym_pos=True", "assume_a='pos'", 2),
    # Current JAX raises on a platform it does not have instead of counting 0 devices.
    ("script/eval.py", "jax.device_count('gpu') > 1",
     "jax.default_backend() == 'gpu' and jax.device_count() > 1", 1),
]
TREE_MAP = ("jax.tree_map(", "jax.tree_util.tree_map(")


# --------------------------------------------------------------------------------------------
# Loading the official code
# --------------------------------------------------------------------------------------------

class _Dataset:
    """The few ``tf.data.Dataset`` methods the official evaluation calls, over NumPy arrays."""

    def __init__(self, arrays, batch=None, repeat=False):
        self.arrays, self._batch, self._repeat = arrays, batch, repeat

    @classmethod
    def from_tensor_slices(cls, arrays):
        return cls(tuple(np.asarray(a) for a in arrays))

    def cache(self):
        return self

    def repeat(self):
        return _Dataset(self.arrays, self._batch, True)

    def batch(self, batch_size):
        return _Dataset(self.arrays, int(batch_size), self._repeat)

    def as_numpy_iterator(self):
        n = len(self.arrays[0])
        b = self._batch or 1
        if not self._repeat:
            for start in range(0, n, b):
                yield tuple(a[start:start + b] for a in self.arrays)
            return
        # tf.data's repeat().batch(): consecutive rows of the repeated set, in order.
        pos = 0
        while True:
            idx = (pos + np.arange(b)) % n
            pos = (pos + b) % n
            yield tuple(a[idx] for a in self.arrays)


def _stub_modules(test_data):
    """Stand-ins for TensorFlow, TFDS, clu, fire and the official dataset loader."""
    tf = types.ModuleType("tensorflow")
    tf.data = types.SimpleNamespace(Dataset=_Dataset)
    tf.one_hot = None  # only used inside the label transform handed to the stubbed loader
    tf.config = types.SimpleNamespace(experimental=types.SimpleNamespace(
        set_visible_devices=lambda *a, **k: None))
    tfds = types.ModuleType("tensorflow_datasets")
    tfds.public_api = types.ModuleType("tensorflow_datasets.public_api")

    class _Writer:
        def write_scalars(self, step, scalars):
            pass

        def flush(self):
            pass

    clu = types.ModuleType("clu")
    clu.metric_writers = types.ModuleType("clu.metric_writers")
    clu.metric_writers.create_default_writer = lambda *a, **k: _Writer()
    fire = types.ModuleType("fire")
    fire.Fire = lambda *a, **k: None

    loader = types.ModuleType("lib.dataset.dataloader")

    def get_dataset(config, return_raw=False):
        x_test, y_test, n_classes = test_data()
        config.img_shape = tuple(x_test.shape[1:])
        config.num_classes = n_classes
        return (None, (x_test, y_test)), None, None, None

    def configure_dataloader(ds, batch_size, y_transform=None, train=False, shuffle=False, **_):
        x, y = ds
        n_classes = int(y.max()) + 1
        # The official y_transform: one-hot with on 1 - 1/C, off -1/C (centred).
        y = np.eye(n_classes, dtype=np.float32)[y] - 1.0 / n_classes
        return _Dataset((x, y), batch=batch_size)

    loader.get_dataset = get_dataset
    loader.configure_dataloader = configure_dataloader
    return {"tensorflow": tf, "tensorflow_datasets": tfds,
            "tensorflow_datasets.public_api": tfds.public_api, "clu": clu,
            "clu.metric_writers": clu.metric_writers, "fire": fire,
            "lib.dataset.dataloader": loader}


def official_commit(path):
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_official(path, test_data=lambda: (None, None, None)):
    """Copy, patch and import the official FRePo code; returns its modules as a namespace."""
    if not os.path.isfile(os.path.join(path, "lib", "datadistillation", "frepo.py")):
        raise SystemExit(f"--official-path {path!r} does not hold the FRePo repository")
    root = os.path.join(tempfile.mkdtemp(prefix="frepo_official_"), "FRePo")
    shutil.copytree(path, root, ignore=shutil.ignore_patterns(".git"))
    for rel, old, new, count in PATCHES:
        file = os.path.join(root, rel)
        text = open(file).read()
        found = text.count(old)
        if found == 0 or (count is not None and found != count):
            raise SystemExit(f"patch of {rel} expected {count} of {old!r}, found {found}")
        open(file, "w").write(text.replace(old, new))
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                file = os.path.join(folder, name)
                text = open(file).read()
                if TREE_MAP[0] in text:
                    open(file, "w").write(text.replace(*TREE_MAP))
    # flax looks TensorFlow up when its checkpoint module is first imported: import it before the
    # stand-in is installed.
    import flax.training.checkpoints  # noqa: F401

    sys.modules.update(_stub_modules(test_data))
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, "script"))
    import importlib

    ns = types.SimpleNamespace(root=root)
    ns.frepo = importlib.import_module("lib.datadistillation.frepo")
    ns.utils = importlib.import_module("lib.training.utils")
    ns.models = importlib.import_module("lib.models.utils")
    ns.metrics = importlib.import_module("lib.training.metrics")
    ns.augmax = importlib.import_module("lib.dataset.augmax")
    ns.eval = importlib.import_module("eval")
    return ns


# --------------------------------------------------------------------------------------------
# Evaluation agreement
# --------------------------------------------------------------------------------------------

def _welch(a, b):
    """Welch's t statistic and two-sided p-value of mean(a) - mean(b)."""
    from scipy import stats

    t, p = stats.ttest_ind(a, b, equal_var=False)
    return float(t), float(p)


def _synthetic_set(args, X_tr, y_tr, kind, seed):
    """A FRePo set distilled here, or a class-balanced random subset (images, hard, soft)."""
    from sklearn_distill import ConvNet, FRePoDistiller
    from sklearn_distill._training import centred_one_hot

    n_classes = int(y_tr.max()) + 1
    if kind == "random":
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(y_tr == c), args.ipc, replace=False)
                              for c in range(n_classes)])
        return X_tr[idx], y_tr[idx], np.asarray(centred_one_hot(y_tr[idx], n_classes))
    frepo = FRePoDistiller(
        ipc=args.ipc, n_steps=args.distill_steps, batch_size=args.batch,
        model=ConvNet(width=args.distill_width, depth=3, norm="batch", width_doubling=True,
                      norm_position="before", norm_momentum=0.1),
        random_state=seed)
    frepo.fit(X_tr, y_tr)
    return frepo.synthetic_X_, frepo.synthetic_y_, frepo.synthetic_y_soft_


def eval_mode(args):
    from bench_frepo import load

    X_tr, y_tr, X_te, y_te = load(args.dataset, args.data_home)
    if args.n_test:
        # A fixed random subset: the stored test splits are sorted by class.
        keep = np.random.default_rng(0).permutation(len(y_te))[:args.n_test]
        X_te, y_te = X_te[keep], y_te[keep]
    n_classes = int(y_tr.max()) + 1
    ns = load_official(args.official_path, lambda: (X_te, y_te, n_classes))
    import jax

    from sklearn_distill import ConvNet, evaluate

    rows = []
    for kind in args.sets:
        start = time.perf_counter()
        X_s, y_s, Y_s = _synthetic_set(args, X_tr, y_tr, kind, args.set_seed)
        distill_s = time.perf_counter() - start
        print(f"{kind}: set {X_s.shape} in {distill_s:.0f} s", flush=True)

        ours, ours_s = [], 0.0
        for seed in args.seeds:
            start = time.perf_counter()
            res = evaluate(X_s, y_s, X_te, y_te, soft_labels=Y_s, n_models=args.n_models,
                           model=ConvNet(width=args.width, depth=3, norm="none",
                                         width_doubling=True),
                           protocol="frepo", random_state=seed)
            ours_s += time.perf_counter() - start
            ours.extend(100 * np.asarray(res.scores, float))
            print(f"  ours seed {seed}: {100 * res.mean:.2f}", flush=True)

        official, official_s = [], 0.0
        recorded = []
        original = ns.eval.proto_evaluate

        def recording(*a, **k):
            out = original(*a, **k)
            recorded.append([float(v) for v in out[1]])
            return out

        ns.eval.proto_evaluate = recording
        ns.eval.load_proto = lambda *a, **k: (np.asarray(X_s, np.float32),
                                              np.asarray(Y_s, np.float32))
        for seed in args.seeds:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as res_dir:
                ns.eval.main(args.dataset, ckpt_dir="arrays", res_dir=res_dir, random_seed=seed,
                             width=args.width, depth=3, num_eval=args.n_models)
            official_s += time.perf_counter() - start
            official.extend(100 * np.asarray(recorded[-1]))
            print(f"  official seed {seed}: {100 * np.mean(recorded[-1]):.2f}", flush=True)
        ns.eval.proto_evaluate = original
        t, p = _welch(ours, official)
        rows.append({"set": kind, "n_synthetic": int(len(X_s)), "distill_seconds": distill_s,
                     "ours": ours, "official": official,
                     "ours_mean": float(np.mean(ours)), "ours_std": float(np.std(ours)),
                     "official_mean": float(np.mean(official)),
                     "official_std": float(np.std(official)),
                     "welch_t": t, "welch_p": p, "ours_seconds": ours_s,
                     "official_seconds": official_s})
        print(rows[-1], flush=True)

    out = {"mode": "eval", "config": vars(args), "machine": machine_info(),
           "official": {"repository": "yongchao97/FRePo",
                        "commit": official_commit(args.official_path) or args.official_commit,
                        "entry": "script/eval.py main"},
           "jax": jax.__version__, "rows": rows}
    n = len(args.seeds) * args.n_models
    lines = [f"Evaluation agreement with the official FRePo code (yongchao97/FRePo @ "
             f"{out['official']['commit']}, `script/eval.py` `main` run unchanged on arrays): "
             f"{args.dataset}, ipc {args.ipc}, evaluation ConvNet width {args.width} (doubling, "
             f"depth 3, no normalisation) on both sides, the official step table, "
             f"{len(args.seeds)} seeds x {args.n_models} networks = {n} networks per side, "
             f"{len(y_te)} test images; {machine_summary(out['machine'])} (shared machine).",
             f"FRePo set: distilled here with FRePoDistiller (width {args.distill_width}, "
             f"batch {args.batch}, {args.distill_steps} meta-steps, seed {args.set_seed}); "
             "random: a class-balanced random subset with centred one-hot labels.",
             "", "| set | n | ours: evaluate(protocol=\"frepo\") | official script/eval.py | "
             "difference | Welch t (p) | ours s | official s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['n_synthetic']} | {r['ours_mean']:.2f} ± "
                     f"{r['ours_std']:.2f} | {r['official_mean']:.2f} ± {r['official_std']:.2f} | "
                     f"{r['ours_mean'] - r['official_mean']:+.2f} | {r['welch_t']:.2f} "
                     f"({r['welch_p']:.2f}) | {r['ours_seconds']:.0f} | "
                     f"{r['official_seconds']:.0f} |")
    write_results(f"official_frepo_eval_{args.dataset}_ipc{args.ipc}_w{args.width}", out, lines,
                  RESULTS)


# --------------------------------------------------------------------------------------------
# Meta-step speed
# --------------------------------------------------------------------------------------------

def _flops(*compiled):
    total = 0.0
    for c in compiled:
        cost = c.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        total += float(cost.get("flops", float("nan")))
    return total


def _official_runner(ns, width, x_syn, y_syn, n_classes, batches, pool_size, max_online):
    """One official meta-step per call, the body of ``proto_train_and_evaluate``'s loop."""
    import functools

    import jax
    import optax

    F, U = ns.frepo, ns.utils
    online = types.SimpleNamespace(optimizer="adam", img_size=x_syn.shape[1],
                                   img_channels=x_syn.shape[-1], weight_decay=0.0)
    model = ns.models.create_model("conv", n_classes, width=width, depth=3,
                                   normalization="batch", output="feat_fc")
    create_online = functools.partial(U.create_train_state, config=online, model=model,
                                      learning_rate_fn=lambda _: 3e-4, has_bn=True)
    ph = F.ProtoHolder(x_syn, y_syn, len(x_syn), learn_label=True)
    state = F.create_proto_state(jax.random.PRNGKey(0), ph,
                                 optax.cosine_decay_schedule(3e-4, 1000, alpha=0.1), "lamb")
    feat_fn = functools.partial(F.nn_feat_fn, has_bn=True, use_ema=False)
    nn_train = functools.partial(U.train_step, has_feat=True, has_bn=True,
                                 loss_type=ns.metrics.mean_squared_loss)
    nn_eval = functools.partial(U.eval_step, has_feat=True, has_bn=True,
                                loss_type=ns.metrics.mean_squared_loss)
    train_step, _, _, _, nn_train_online = F.jit_fn(nn_train, nn_eval, feat_fn, feat_fn,
                                                    use_flip=True, use_pmap=False)
    jit_feat = jax.jit(feat_fn)
    jit_create = jax.jit(create_online)
    sample = jax.jit(functools.partial(F.get_sample_proto, use_pmap=False, bs=1000))
    rng = jax.random.PRNGKey(1)
    pool = []
    for i in range(pool_size):
        rng, k = jax.random.split(rng)
        pool.append(jax.tree_util.tree_map(lambda v: v, jit_create(k)).replace(
            step=(max_online // pool_size) * i))
    np_rng = np.random.RandomState(0)
    box = {"state": state, "rng": rng, "idx": np_rng.randint(pool_size), "i": 0}

    def step():
        b = batches[box["i"] % len(batches)]
        box["i"] += 1
        rng, _ = jax.random.split(box["rng"])
        image, label = U.process_batch(b)
        nn_state = pool[box["idx"]]
        feat = jit_feat(image, nn_state)
        box["state"], _ = train_step(box["state"], nn_state, {"image": feat, "label": label})
        if nn_state.step > max_online:
            rng, k = jax.random.split(rng)
            nn_state = jit_create(k)
        else:
            rng, k = jax.random.split(rng)
            img, lb = sample(box["state"], k)
            nn_state, _ = nn_train_online(nn_state, {"image": img, "label": lb}, k)
        pool[box["idx"]] = nn_state
        box["idx"] = np_rng.randint(pool_size)
        box["rng"] = rng
        return box["state"]

    def flops():
        nn_state = pool[0]
        image, label = U.process_batch(batches[0])
        feat = jit_feat(image, nn_state)
        img, lb = sample(box["state"], jax.random.PRNGKey(0))
        return {"features": _flops(jit_feat.lower(image, nn_state).compile()),
                "meta_gradient_and_lamb": _flops(train_step.lower(
                    box["state"], nn_state, {"image": feat, "label": label}).compile()),
                "online_step": _flops(nn_train_online.lower(
                    nn_state, {"image": img, "label": lb}, jax.random.PRNGKey(0)).compile())}

    return step, flops


def _ours_runner(width, x_syn, y_syn, n_classes, X, Y, batch, pool_size, max_online):
    import jax

    from sklearn_distill import ConvNet, _backend
    from sklearn_distill._sharding import DataParallel
    from sklearn_distill._training import init_labels
    from sklearn_distill.methods import frepo as F
    from sklearn_distill.networks import with_num_classes

    model = with_num_classes(ConvNet(width=width, depth=3, norm="batch", width_doubling=True,
                                     norm_position="before", norm_momentum=0.1), n_classes)
    # The state is donated or not as a fit decides on this backend.
    config = F._Config(model=model, batch_size=batch, learn_labels=True, flip=True,
                       precision="highest", placement=DataParallel(None, None),
                       donate_state=_backend.donate_state())
    hyper = F.hyperparameters(1000, 3e-4, 1e-6, max_online, 3e-4)
    key = jax.random.PRNGKey(0)
    state = F.init_state(x_syn, init_labels(y_syn, n_classes), key, key, model, pool_size,
                         max_online)
    compiled = F._meta_step.lower(state, X, Y, hyper, config).compile()
    grad = jax.jit(F.meta_gradient, static_argnames=("config",)).lower(
        state, X, Y, hyper, config).compile()
    box = {"state": state}

    def step():
        box["state"], _ = compiled(box["state"], X, Y, hyper)
        return box["state"]

    def flops():
        return {"step": _flops(compiled), "meta_gradient": _flops(grad)}

    return step, flops


def _time_block(step, n):
    import jax

    start = time.perf_counter()
    for _ in range(n):
        out = step()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / n


def speed_setup(batch):
    """The speed comparison's random data: 100 synthetic 32x32x3 images of 100 classes, with our
    initial labels (``y_syn``, class indices) and the official ones (``y_off``), and 4 real
    batches both as NumPy batches (``batches``, as the official loader hands them to its loop)
    and as device arrays (``Xd``, ``Yd``)."""
    import jax.numpy as jnp

    from sklearn_distill._training import centred_one_hot

    n_classes, n_syn, shape = 100, 100, (32, 32, 3)
    rng = np.random.default_rng(0)
    x_syn = rng.standard_normal((n_syn,) + shape).astype(np.float32)
    y_syn = np.arange(n_syn) % n_classes
    y_off = np.asarray(centred_one_hot(y_syn, n_classes)) / np.sqrt(n_classes / 10)
    X = rng.standard_normal((4 * batch,) + shape).astype(np.float32)
    Y = np.asarray(centred_one_hot(rng.integers(0, n_classes, len(X)), n_classes), np.float32)
    batches = [(X[i * batch:(i + 1) * batch], Y[i * batch:(i + 1) * batch]) for i in range(4)]
    return n_classes, x_syn, y_syn, y_off, batches, jnp.asarray(X), jnp.asarray(Y)


def speed_mode(args):
    import jax

    ns = load_official(args.official_path)
    n_classes, x_syn, y_syn, y_off, batches, Xd, Yd = speed_setup(args.batch)
    rows = []
    for width in args.widths:
        ours, ours_flops = _ours_runner(width, x_syn, y_syn, n_classes, Xd, Yd, args.batch, 10,
                                        100)
        official, official_flops = _official_runner(ns, width, x_syn, y_off.astype(np.float32),
                                                    n_classes, batches, 10, 100)
        for step in (ours, official):  # compile and warm up
            _time_block(step, 3)
        t_ours, t_off = [], []
        for _ in range(args.blocks):
            t_ours.append(_time_block(ours, 5))
            t_off.append(_time_block(official, 5))
        row = {"width": width, "ours_ms": [1000 * t for t in t_ours],
               "official_ms": [1000 * t for t in t_off],
               "ours_median_ms": 1000 * float(np.median(t_ours)),
               "official_median_ms": 1000 * float(np.median(t_off)),
               "official_over_ours": float(np.median(t_off) / np.median(t_ours)),
               "ours_flops": ours_flops(), "official_flops": official_flops()}
        print(row, flush=True)
        rows.append(row)
    out = {"mode": "speed", "config": vars(args), "machine": machine_info(),
           "official": {"repository": "yongchao97/FRePo",
                        "commit": official_commit(args.official_path) or args.official_commit},
           "jax": jax.__version__, "rows": rows}
    lines = [f"FRePo meta-step, ours against the official code (yongchao97/FRePo @ "
             f"{out['official']['commit']}) in one process, alternating blocks of 5 steps "
             f"({args.blocks} blocks each): 32x32x3 inputs, 100 classes, 100 synthetic images, "
             f"batch {args.batch}, pool 10, flip on, batch norm before convolutions 2..3 "
             f"(momentum 0.1); {machine_summary(out['machine'])} (shared machine). Medians of "
             "the blocks; XLA FLOPs of the compiled step(s): ours one jitted step, the official "
             "the real features, the meta-gradient + LAMB step and the online step.",
             "", "| width | ours ms/step | official ms/step | official / ours | "
             "ours GFLOP | official GFLOP | ours meta-gradient GFLOP | official features + "
             "meta-gradient + LAMB GFLOP |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        of = r["official_flops"]
        lines.append(f"| {r['width']} | {r['ours_median_ms']:.1f} | "
                     f"{r['official_median_ms']:.1f} | {r['official_over_ours']:.2f} | "
                     f"{r['ours_flops']['step'] / 1e9:.2f} | {sum(of.values()) / 1e9:.2f} | "
                     f"{r['ours_flops']['meta_gradient'] / 1e9:.2f} | "
                     f"{(of['features'] + of['meta_gradient_and_lamb']) / 1e9:.2f} |")
    write_results("official_frepo_speed", out, lines, RESULTS)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-path", required=True, help="a snapshot of yongchao97/FRePo")
    p.add_argument("--official-commit", default="9b98c65beac9baa851aeab7f1c8ca71ca74bb886",
                   help="recorded when the snapshot is not a git checkout")
    p.add_argument("--mode", choices=["eval", "speed"], default="eval")
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="cifar10")
    p.add_argument("--data-home", default=None)
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--width", type=int, default=32, help="evaluation network width")
    p.add_argument("--n-models", type=int, default=4, help="networks per seed and side")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-test", type=int, default=None, help="a fixed random subset of N test images")
    p.add_argument("--sets", nargs="+", choices=["frepo", "random"], default=["frepo"])
    p.add_argument("--set-seed", type=int, default=0)
    p.add_argument("--distill-width", type=int, default=32)
    p.add_argument("--distill-steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="speed mode")
    p.add_argument("--blocks", type=int, default=6, help="speed mode: 5-step blocks per side")
    args = p.parse_args(argv)
    if args.mode == "eval":
        eval_mode(args)
    else:
        speed_mode(args)


if __name__ == "__main__":
    main()
