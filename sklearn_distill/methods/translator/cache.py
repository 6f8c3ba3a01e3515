"""Stage 1 of the translator: single-network distillations of random sub-tasks, cached on disk."""

import glob
import json
import os
from numbers import Integral, Real
from typing import NamedTuple

import jax
import numpy as np
from sklearn.utils._param_validation import Interval, validate_params

from ..._jax import library_prng
from ..._training import centred_one_hot, data_fingerprint, init_labels
from ...io import save_container
from ..gradient import PRECISION_CONSTRAINT
from ...networks import MLP, ConvNet, with_num_classes
from ..krr import init_random_network, krr_run, default_random_network
from .network import module_from_json, module_to_json

__all__ = ["TranslatorCache", "CachedTask", "pad_bank"]

_CACHE_FORMAT = "sklearn_distill.translator_cache/1"
_TASK_FORMAT = "sklearn_distill.translator_cache_task/1"


def _as_internal(X, image_shape=None, param="X"):
    """Images as float32 NHWC (tabular rows stay 2-D), as the estimators' internal layout."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2 and image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        shape = shape + (1,) if len(shape) == 2 else shape
        X = X.reshape((len(X),) + shape)
    elif X.ndim == 3:
        X = X[..., None]
    if X.ndim not in (2, 4):
        raise ValueError(f"`{param}` must be 2-D rows or an image array (n, H, W[, C]); got shape "
                         f"{X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"`{param}` contains NaN or infinite values.")
    return X



def pad_bank(xs, labels, n_rows, n_columns):
    """Stack synthetic sets of different sizes, zero-padded to ``n_rows`` x ``n_columns``, with masks."""
    sample_shape = xs[0].shape[1:]
    x = np.zeros((len(xs), n_rows) + sample_shape, np.float32)
    lab = np.zeros((len(xs), n_rows, n_columns), np.float32)
    mask = np.zeros((len(xs), n_rows), np.float32)
    for i, (xi, li) in enumerate(zip(xs, labels)):
        x[i, :len(xi)] = xi
        lab[i, :len(li), :li.shape[1]] = li
        mask[i, :len(xi)] = 1.0
    return {"x": x, "labels": lab, "mask": mask}



class CachedTask(NamedTuple):
    """One cached sub-task.

    Attributes
    ----------
    index : int
    classes : ndarray of int
        The sub-task's classes, as indices into the cache's class list.
    rows : ndarray of int, shape (n_real,)
        Indices of the real rows it was distilled from (and is scored on).
    X : ndarray
        The synthetic samples of the single-network distillation.
    y : ndarray of int
        Their class, as positions in ``classes``.
    labels : ndarray of shape (n_synthetic, n_task_classes)
        Their learned labels.
    ipc : int
    loss_first, loss_last : float
        KRR loss at the first and the last logged step.
    """

    index: int
    classes: np.ndarray
    rows: np.ndarray
    X: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    ipc: int
    loss_first: float
    loss_last: float


def _task_plan(seed, index, class_counts, c_min, c_max, max_images):
    """The random sub-task ``index``: its classes and ipc (a function of the seed and index only)."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    n_classes = len(class_counts)
    c = int(rng.integers(c_min, min(c_max, n_classes) + 1))
    classes = np.sort(rng.choice(n_classes, c, replace=False))
    ipc_max = max(1, min(max_images // c, int(class_counts[classes].min())))
    return classes, int(rng.integers(1, ipc_max + 1)), rng


def _cache_task(index, X, y, directory, config, fixed_variables):
    """Distil sub-task ``index`` in the fixed network and write it to the cache (a joblib job)."""
    with library_prng():
        counts = np.bincount(y)
        classes, ipc, rng = _task_plan(config["random_state"], index, counts, config["c_min"],
                                       config["c_max"], config["max_images"])
        pool = np.flatnonzero(np.isin(y, classes))
        rows = rng.choice(pool, config["n_real"], replace=len(pool) < config["n_real"])
        local = np.searchsorted(classes, y)  # position of each row's class within `classes`
        init_rows = np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False)
                                    for c in classes])
        c = len(classes)
        x0 = X[init_rows]
        y_syn = np.repeat(np.arange(c, dtype=np.int32), ipc)
        c_max, n_max = config["c_max"], config["max_images"]
        padded = pad_bank([x0], [init_labels(y_syn, c, scale=False)], n_max, c_max)
        targets = np.zeros((len(rows), c_max), np.float32)
        targets[:, :c] = centred_one_hot(local[rows], c)
        model = module_from_json(config["model"])
        key = jax.random.fold_in(jax.random.PRNGKey(int(config["random_state"])), index)
        x, labels, result = krr_run(
            X[rows], targets, padded["x"][0], padded["labels"][0], padded["mask"][0], key,
            model=model, n_networks=1, steps_per_network=config["n_steps"],
            batch_size=config["n_real"], learning_rate=config["learning_rate"],
            ridge=config["ridge"], learn_labels=config["learn_labels"],
            precision=config["precision"], fixed_variables=fixed_variables,
            log_every=max(1, config["n_steps"] // 4), description=f"cache task {index}")
        n = c * ipc
        losses = result.history["loss"]
        arrays = dict(index=np.asarray(index), classes=classes.astype(np.int64),
                      rows=rows.astype(np.int64), X=x[:n], y=y_syn, labels=labels[:n, :c],
                      ipc=np.asarray(ipc), loss_first=np.asarray(losses[0] if losses else np.nan),
                      loss_last=np.asarray(losses[-1] if losses else np.nan))
        save_container(os.path.join(directory, f"task_{index:06d}.npz"), arrays,
                       {"format": _TASK_FORMAT}, prefix=".task-")
        return index


class TranslatorCache:
    r"""Stage 1: single-network distillations of random sub-tasks, stored on disk for pre-training.

    Sub-task :math:`i` draws a number of classes :math:`C \in [c_{min}, c_{max}]`, :math:`C`
    classes, an ipc in :math:`[1, \lfloor I_{max} / C \rfloor]` (``max_images`` = :math:`I_{max}`)
    and ``n_real`` (:math:`M`) real rows of those classes; starting from ipc real images per class,
    it takes ``n_steps`` Adam steps of the KRR objective (:class:`KRRDistiller`) in *one fixed*
    random network shared by every sub-task, regressing on the :math:`M` rows. Each sub-task is a
    function of ``random_state`` and :math:`i` alone, so a cache is extended (or an interrupted
    build resumed) by computing only the missing indices. Sub-tasks run in parallel through
    joblib (threads by default; ``joblib.parallel_config`` selects another backend, a Dask or Ray
    cluster included).

    The directory holds ``cache.json`` (the configuration and the data's fingerprint) and one
    ``task_NNNNNN.npz`` per sub-task (:class:`CachedTask`: real row indices, synthetic samples,
    labels), each written atomically. Opening an existing directory with another configuration,
    or extending it with other data, raises a ``ValueError``.

    Parameters
    ----------
    directory : str or path-like
    c_min, c_max : int, default=2, 10
        Range of the number of classes per sub-task (``c_max`` at most the data's classes).
    max_images : int, default=100
        :math:`I_{max}`: at most this many synthetic samples per sub-task.
    n_real : int, default=1024
        :math:`M`: real rows per sub-task (drawn with replacement when the classes have fewer).
    n_steps : int, default=100
        KRR steps per sub-task; use the ``n_steps`` of the :class:`TranslatorDistiller` that will
        use the translator, so that its inputs look like those it was trained on.
    learning_rate : float, default=0.01
    learn_labels : bool, default=True
    model : flax.linen.Module or None, default=None
        Random-network family (see :class:`KRRDistiller`).
    ridge : float, default=1e-6
    precision : {"highest", "high", "default"}, default="highest"
    random_state : int, default=0
        Seeds the fixed network and every sub-task.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_distill import ConvNet, TranslatorCache, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> cache = TranslatorCache(tempfile.mkdtemp(), c_min=2, c_max=4, max_images=8, n_real=64,
    ...                         n_steps=4, model=ConvNet(width=8, depth=2))
    >>> len(cache.extend(X, y, n_tasks=2))
    2
    >>> task = cache[0]
    >>> task.X.shape[1:], len(task.rows)
    ((8, 8, 1), 64)
    """

    @validate_params({
        "directory": [str, os.PathLike],
        "c_min": [Interval(Integral, 2, None, closed="left")],
        "c_max": [Interval(Integral, 2, None, closed="left")],
        "max_images": [Interval(Integral, 1, None, closed="left")],
        "n_real": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learn_labels": ["boolean"],
        # Only networks whose specification is saved as JSON in the cache's configuration.
        "model": [ConvNet, MLP, None],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "precision": PRECISION_CONSTRAINT,
        # An integer: the cache is reproducible and extensible.
        "random_state": [Interval(Integral, None, None, closed="neither")],
    }, prefer_skip_nested_validation=False)
    def __init__(self, directory, *, c_min=2, c_max=10, max_images=100, n_real=1024, n_steps=100,
                 learning_rate=0.01, learn_labels=True, model=None, ridge=1e-6, precision="highest",
                 random_state=0):
        self.directory = os.fspath(directory)
        if c_min > c_max:
            raise ValueError(f"`c_min`={c_min} is larger than `c_max`={c_max}.")
        if max_images < c_min:
            raise ValueError(f"`max_images`={max_images} is smaller than `c_min`={c_min}: a sub-task "
                             f"needs at least one synthetic sample per class.")
        self.config = {"c_min": int(c_min), "c_max": int(c_max), "max_images": int(max_images),
                       "n_real": int(n_real), "n_steps": int(n_steps),
                       "learning_rate": float(learning_rate), "learn_labels": bool(learn_labels),
                       "model": None if model is None else module_to_json(model),
                       "ridge": float(ridge), "precision": precision,
                       "random_state": int(random_state)}
        self._data = None
        path = os.path.join(self.directory, "cache.json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if saved.get("format") != _CACHE_FORMAT:
                raise ValueError(f"`directory`={self.directory!r} holds no translator cache of format "
                                 f"{_CACHE_FORMAT!r}.")
            stored = saved["config"]
            mine = json.loads(json.dumps(self.config))
            if mine["model"] is None:  # "the default" matches the default that was resolved
                mine["model"] = stored["model"]
            diff = [f"{k}: cache has {stored.get(k)!r}, given {mine.get(k)!r}"
                    for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)]
            if diff:
                raise ValueError(f"`directory`={self.directory!r} holds a cache built with another "
                                 f"configuration ({'; '.join(diff)}). Use TranslatorCache.open() to "
                                 f"reuse it, or another directory.")
            self.config, self._data = stored, saved.get("data")

    @classmethod
    def open(cls, directory):
        """Open an existing cache with the configuration it was built with."""
        path = os.path.join(os.fspath(directory), "cache.json")
        if not os.path.exists(path):
            raise ValueError(f"`directory`={os.fspath(directory)!r} holds no translator cache "
                             f"(no cache.json).")
        with open(path) as f:
            config = json.load(f)["config"]
        model = None if config["model"] is None else module_from_json(config["model"])
        kwargs = {k: v for k, v in config.items() if k != "model"}
        return cls(directory, model=model, **kwargs)

    # -- contents -------------------------------------------------------------------------------

    def _files(self):
        return sorted(glob.glob(os.path.join(self.directory, "task_*.npz")))

    def indices(self):
        """Indices of the sub-tasks present."""
        return [int(os.path.basename(p)[5:11]) for p in self._files()]

    def __len__(self):
        return len(self._files())

    def __getitem__(self, index):
        path = os.path.join(self.directory, f"task_{int(index):06d}.npz")
        if not os.path.exists(path):
            raise IndexError(f"sub-task {index} is not in the cache at {self.directory!r}.")
        with np.load(path, allow_pickle=False) as d:
            return CachedTask(int(d["index"]), d["classes"], d["rows"], d["X"], d["y"], d["labels"],
                              int(d["ipc"]), float(d["loss_first"]), float(d["loss_last"]))

    def tasks(self):
        """Every cached sub-task, by index."""
        return [self[i] for i in self.indices()]

    @property
    def data_info(self):
        """The fingerprint, classes and sample shape of the data the cache was built from."""
        return self._data

    def __repr__(self):
        return f"TranslatorCache({self.directory!r}, n_tasks={len(self)})"

    # -- building -------------------------------------------------------------------------------

    def _check_data(self, X, y):
        X = _as_internal(X)
        y = np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}.")
        classes, y_enc = np.unique(y, return_inverse=True)
        info = {"fingerprint": data_fingerprint(X, y_enc), "n_samples": int(len(X)),
                "sample_shape": list(X.shape[1:]), "classes": [str(c) for c in classes]}
        if self._data is not None and self._data["fingerprint"] != info["fingerprint"]:
            raise ValueError(f"The cache at {self.directory!r} was built from other data "
                             f"({self._data['n_samples']} rows of shape {self._data['sample_shape']}); "
                             f"give the same X and y, or use another directory.")
        if self.config["c_max"] > len(classes):
            raise ValueError(f"`c_max`={self.config['c_max']} is larger than the number of classes in "
                             f"the data ({len(classes)}).")
        return X, y_enc.astype(np.int32), info

    @validate_params({"n_tasks": [Interval(Integral, 0, None, closed="left")],
                      "n_jobs": [Integral, None], "verbose": ["verbose"]},
                     prefer_skip_nested_validation=True)
    def extend(self, X, y, n_tasks, *, n_jobs=None, verbose=0):
        """Make sure sub-tasks ``0 .. n_tasks-1`` are cached, computing only the missing ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W[, C]) or (n_samples, n_features)
            The source data (always the same for one cache).
        y : array-like of shape (n_samples,)
        n_tasks : int
        n_jobs : int or None
            joblib workers (threads by default; see ``joblib.parallel_config``).
        verbose : int, default=0
            joblib's verbosity.

        Returns
        -------
        self
        """
        from joblib import Parallel, delayed

        X, y, info = self._check_data(X, y)
        config = dict(self.config)
        if config["model"] is None:
            config["model"] = module_to_json(default_random_network(X.shape[1:]))
        os.makedirs(self.directory, exist_ok=True)
        if self._data is None:
            meta = {"format": _CACHE_FORMAT, "config": config, "data": info}
            tmp = os.path.join(self.directory, ".cache.json.tmp")
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=1)
            os.replace(tmp, os.path.join(self.directory, "cache.json"))
            self.config, self._data = config, info
        missing = sorted(set(range(int(n_tasks))) - set(self.indices()))
        if not missing:
            return self
        model, fixed = self.distillation_network()
        config = {**config, "model": module_to_json(model)}
        Parallel(n_jobs=n_jobs, prefer="threads", verbose=verbose)(
            delayed(_cache_task)(i, X, y, self.directory, config, fixed) for i in missing)
        return self

    def distillation_network(self):
        """The fixed random network every sub-task is distilled in: ``(model, variables)``.

        The :math:`\\theta` of Liu & Wang's Alg. 1, a function of the configuration alone
        (``model`` with ``c_max`` outputs, seeded by ``random_state``); the variables are NumPy
        arrays. A translator pre-trained on this cache learns to translate distillations made in
        *this* network, so :func:`pretrain_translator` stores it with the translator and
        :class:`TranslatorDistiller` distils the target in it (Alg. 3).

        Raises
        ------
        ValueError
            If the cache holds no data yet (the sample shape is unknown).
        """
        if self._data is None:
            raise ValueError(f"The cache at {self.directory!r} is empty; call extend() first.")
        model = with_num_classes(module_from_json(self.config["model"]), self.config["c_max"])
        with library_prng():
            key = jax.random.fold_in(jax.random.PRNGKey(self.config["random_state"]), 2**31 - 1)
            fixed = jax.device_get(init_random_network(model, key,
                                                       tuple(self._data["sample_shape"])))
        return model, fixed

    def bank(self):
        """The cached sub-tasks as padded arrays (``x``, ``labels``, ``mask``, ``rows``, ``targets``)."""
        tasks = self.tasks()
        if not tasks:
            raise ValueError(f"The cache at {self.directory!r} is empty; call extend() first.")
        c_max, n_max = self.config["c_max"], self.config["max_images"]
        bank = pad_bank([t.X for t in tasks], [t.labels for t in tasks], n_max, c_max)
        bank["rows"] = np.stack([t.rows for t in tasks]).astype(np.int32)
        return bank
