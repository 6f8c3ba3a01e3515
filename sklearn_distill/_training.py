r"""Training scaffold shared by the gradient-based distillers (FRePo, RCIG, RaT-BPTT).

A distiller built on this module writes one pure, jitted *step* ``state -> (state, loss)`` on a
pytree ``state`` (synthetic set, optimiser states, model pool, PRNG key, ...) and hands it to
:func:`run_loop`, which provides everything around it:

* a Python loop over the one compiled step: dispatch is asynchronous, and the host reads the
  losses back only every ``log_every`` steps (XLA's CPU backend also runs convolutions inside
  ``lax.scan`` / while loops several times slower than the same step called from Python); on
  accelerators ``steps_per_dispatch`` steps run inside one compiled call (:func:`run_steps`);
* a progress bar (tqdm) and a ``history`` of step, wall time and loss per logged step;
* graceful stops: Ctrl-C finishes the step in flight and returns its state, and a non-finite loss
  returns the last good state (the step must be *guarded*, see :func:`select_tree` and
  ``"ok"`` below); both emit a :class:`UserWarning` explaining what happened;
* atomic checkpoints of the whole state without pickle (:func:`save_checkpoint`,
  :func:`load_checkpoint`) and resuming from them.

Guarded steps
-------------
A step keeps a boolean ``state["ok"]``; when its loss (or the new synthetic set) is not finite it
returns its *input* state with ``ok`` set to ``False`` (``select_tree(ok, new, old)``), and a
state with ``ok == False`` never changes again. Since the host only looks every ``log_every``
steps, this is what makes "the synthetic set before the bad step" recoverable without syncing
every step.

It also holds the pieces every method initialises the same way: the synthetic set drawn from real
rows and/or noise per class (:func:`init_synthetic`), centred one-hot labels
(:func:`centred_one_hot`, :func:`init_labels`) and FRePo's label-margin regulariser
(:func:`label_margin_loss`).
"""

import hashlib
import os
import signal
import threading
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .io import load_container, save_container

__all__ = ["LoopResult", "run_loop", "run_steps", "select_tree", "tree_isfinite", "save_checkpoint",
           "load_checkpoint", "restore_state", "data_fingerprint", "init_synthetic",
           "centred_one_hot", "init_labels", "label_margin_loss",
           "scale_rows", "FLIP_OFF", "resolve_flip", "seed_description", "key_data", "sample_rows",
           "real_batch", "divergence_causes", "divergence_diagnosis"]

_INITS = ("real", "noise", "real+noise")


# --------------------------------------------------------------------------------------------
# Synthetic-set and label initialisation
# --------------------------------------------------------------------------------------------

def init_synthetic(key, X, y, n_classes, ipc, init="real", noise_scale=0.1):
    r"""Initial synthetic set: ``ipc`` samples per class, ordered class by class.

    * ``"real"``: ``ipc`` distinct real rows of each class, drawn at random;
    * ``"noise"``: Gaussian noise with the per-feature mean and standard deviation of ``X``,
      :math:`x = \mu + \sigma \odot \varepsilon`;
    * ``"real+noise"``: real rows plus ``noise_scale`` times that noise's deviation,
      :math:`x = x_{\text{real}} + \text{noise\_scale}\,\sigma \odot \varepsilon`.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    X : ndarray of shape (n, ...)
        Training data in the internal layout.
    y : ndarray of int of shape (n,)
        Class indices ``0..n_classes-1``.
    n_classes, ipc : int
    init : {"real", "noise", "real+noise"}, default="real"
    noise_scale : float, default=0.1
        Relative noise level of ``"real+noise"``.

    Returns
    -------
    X_syn : ndarray of float32, shape (n_classes * ipc, ...)
    y_syn : ndarray of int32, shape (n_classes * ipc,)
    """
    if init not in _INITS:
        raise ValueError(f"`init` must be one of {_INITS}; got {init!r}.")
    X = np.asarray(X, np.float32)
    y = np.asarray(y)
    y_syn = np.repeat(np.arange(n_classes, dtype=np.int32), ipc)
    # A NumPy generator seeded from the key's bits: host-side sampling needs no compilation,
    # and the result is still a function of the key alone.
    rng = np.random.default_rng(np.asarray(key_data(key)).ravel().tolist())
    rows = [rng.choice(np.flatnonzero(y == c), ipc, replace=False) for c in range(n_classes)]
    real = X[np.concatenate(rows)]
    if init == "real":
        return real, y_syn
    mean, std = X.mean(axis=0), X.std(axis=0)
    eps = rng.standard_normal(real.shape).astype(np.float32)
    if init == "noise":
        return (mean + std * eps).astype(np.float32), y_syn
    return (real + noise_scale * std * eps).astype(np.float32), y_syn


def key_data(key):
    """The raw ``uint32`` data of a PRNG key, typed (``jax.random.key``) or legacy."""
    if jnp.issubdtype(jnp.result_type(key), jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def centred_one_hot(y, n_classes):
    r"""Centred one-hot targets: :math:`1 - 1/C` for the class, :math:`-1/C` elsewhere.

    Examples
    --------
    >>> centred_one_hot(np.array([0, 1]), 2).tolist()
    [[0.5, -0.5], [-0.5, 0.5]]
    """
    return (np.eye(n_classes, dtype=np.float32)[np.asarray(y)] - 1.0 / n_classes).astype(np.float32)


def init_labels(y, n_classes, scale=True):
    r"""Initial learned labels: centred one-hot, divided by :math:`\sqrt{C/10}` when ``scale``.

    The scaling keeps the label norm of many-class problems comparable to ten classes, as FRePo
    does (CIFAR-100 labels start at a tenth of the energy of unscaled ones).
    """
    labels = centred_one_hot(y, n_classes)
    if scale:
        labels = labels / np.sqrt(n_classes / 10.0)
    return labels.astype(np.float32)


def label_margin_loss(labels, margin=None):
    r"""FRePo's label-margin regulariser, :math:`-\frac1n\sum_i \min(y_{i,(1)} - y_{i,(2)}, m)`.

    :math:`y_{i,(1)}` and :math:`y_{i,(2)}` are the two largest entries of row :math:`i`; the term
    rewards a margin of up to :math:`m` between them and nothing beyond, so learned labels stay
    decisive without being pushed to grow. ``margin`` is :math:`m`; ``None`` means :math:`1/C`
    (FRePo; RCIG uses :math:`1/(2C)`).

    Examples
    --------
    >>> round(float(label_margin_loss(jnp.array([[1.0, 0.0], [0.2, 0.0]]))), 4)  # margins 1 -> 0.5, 0.2
    -0.35
    """
    n_classes = labels.shape[-1]
    top2 = jax.lax.top_k(labels, 2)[0]
    margin = 1.0 / n_classes if margin is None else margin
    return -jnp.mean(jnp.minimum(top2[:, 0] - top2[:, 1], margin))


def sample_rows(key, n, batch_size, p=None):
    """Indices of ``batch_size`` of ``n`` rows drawn without replacement (weighted by ``p``).

    All ``n`` rows, in order, when ``batch_size >= n``.
    """
    if batch_size < n:
        return jax.random.choice(key, n, (batch_size,), replace=False, p=p)
    return jnp.arange(n)


def real_batch(key, X_real, Y_real, batch_size, placement, *, p=None, transform=None):
    """A batch of real rows and targets for a meta-step, split over the devices of ``placement``.

    ``batch_size`` rows are drawn without replacement (weighted by ``p``), or all rows are used
    when there are no more; ``transform(x)`` (an augmentation) is applied to the inputs before
    they are split. Everything else in a step stays replicated.
    """
    if batch_size < X_real.shape[0]:
        rows = sample_rows(key, X_real.shape[0], batch_size, p)
        X_real, Y_real = X_real[rows], Y_real[rows]
    if transform is not None:
        X_real = transform(X_real)
    return placement.rows(X_real), placement.rows(Y_real)


def scale_rows(updates, row_scale):
    """Multiply the rows (leading axis) of every leaf of ``updates`` by ``row_scale``.

    Applied to the optimiser's updates of the synthetic set, this scales the learning rate of each
    synthetic row; a zero leaves a row exactly as it was (Boost-DD's frozen blocks).
    """
    def scale(u):
        return u * row_scale.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype)

    return jax.tree.map(scale, updates)


# --------------------------------------------------------------------------------------------
# Guarded steps
# --------------------------------------------------------------------------------------------

def select_tree(pred, on_true, on_false):
    """Leafwise ``jnp.where(pred, on_true, on_false)`` over two pytrees of one structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def tree_isfinite(tree):
    """Scalar boolean: every floating leaf of ``tree`` is finite."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


# --------------------------------------------------------------------------------------------
# Checkpoints (no pickle: an .npz of the flattened leaves plus a JSON description)
# --------------------------------------------------------------------------------------------

# The settings in which a method's official code turns the mirrored support images off although
# the images are RGB, each as (image shape, number of classes, smallest ipc): the official codes
# name datasets, which the fit recognises by their shape and number of classes. The official
# codes give ipc values only; a rule holds from its smallest one on.
FLIP_OFF = {
    # yongchao97/FRePo at 9b98c65, script/distill.py:147-189.
    "frepo": (((32, 32, 3), 100, 10),    # CIFAR-100 at ipc 10 and 50 (lines 154-163)
              ((64, 64, 3), 200, 10),    # Tiny ImageNet at ipc 10 (lines 168-174)
              ((64, 64, 3), 1000, 1)),   # ImageNet 64x64 (lines 179-180)
    # yolky/RCIG at a9fb1fa: readme.md:20-27 names the configuration of each dataset, whose
    # `use_flip` is false in configs_final/cifar100_50.txt:30 and depth_4_big.txt:30.
    "rcig": (((32, 32, 3), 100, 50),     # CIFAR-100 at ipc 50 (cifar100_50.txt)
             ((64, 64, 3), 200, 10),     # Tiny ImageNet at ipc 10 (depth_4_big.txt)
             ((64, 64, 3), 1000, 1)),    # ImageNet 64x64 (depth_4_big.txt)
}


def resolve_flip(flip, sample_shape, n_classes=None, ipc=None, method=None):
    """Whether mirrored copies of the synthetic images are used, from a ``flip`` parameter.

    ``"auto"``: for RGB (3-channel) images, except in the settings where ``method``'s official
    code turns them off (:data:`FLIP_OFF`: images of that shape with that many classes and at
    least that many synthetic images per class); never for greyscale images or tabular rows,
    where ``flip=True`` is an error.

    Parameters
    ----------
    flip : {"auto"} or bool
    sample_shape : tuple of int
        ``(H, W, C)`` images or ``(d,)`` rows.
    n_classes, ipc : int, default=None
        Classes of the fit and its synthetic images per class (the rules need both).
    method : {"frepo", "rcig"} or None, default=None
        Whose rules apply (``None``: none).

    Returns
    -------
    bool
    """
    if len(sample_shape) == 1:
        if flip is True:
            raise ValueError("`flip`=True needs images; the data is tabular (2-D rows without "
                             "`image_shape`). Use flip='auto' or False.")
        return False
    if flip == "auto":
        if sample_shape[-1] != 3:
            return False
        return not any(tuple(sample_shape) == shape and n_classes == classes
                       and ipc is not None and ipc >= smallest
                       for shape, classes, smallest in FLIP_OFF.get(method, ()))
    return bool(flip)


def seed_description(random_state):
    """A JSON-able description of ``random_state`` for checkpoint configurations."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return repr(random_state if random_state is None else type(random_state).__name__)


def data_fingerprint(*arrays):
    """Short hash of arrays' shapes, dtypes and bytes: ties a checkpoint to its training data."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(repr((a.shape, a.dtype.str)).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_checkpoint(path, state, step, config, extra=None):
    """Write ``state`` (a pytree of arrays) to ``path`` atomically.

    The leaves go into an ``.npz`` file in flattening order together with a JSON block holding
    the tree structure, the leaves' shapes and dtypes, ``step``, the ``config`` the run must
    match to resume, and ``extra`` (e.g. the history). The file is written under a temporary name
    in the same folder and moved into place with :func:`os.replace`, so an interruption never
    leaves a half-written checkpoint. Nothing is pickled.
    """
    leaves, treedef = jax.tree.flatten(state)
    leaves = [np.asarray(leaf) for leaf in jax.device_get(leaves)]
    meta = {"format": "sklearn_distill.checkpoint/1", "treedef": str(treedef),
            "shapes": [list(leaf.shape) for leaf in leaves],
            "dtypes": [leaf.dtype.str for leaf in leaves],
            "step": int(step), "config": config, "extra": extra or {}}
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    return save_container(path, arrays, meta, prefix=".ckpt-")


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(leaves, meta)``."""
    arrays, meta = load_container(path, what="sklearn_distill checkpoint")
    return [arrays[f"leaf_{i:05d}"] for i in range(len(meta["shapes"]))], meta


def _config_diff(saved, current):
    keys = sorted(set(saved) | set(current))
    return [f"{k}: checkpoint has {saved.get(k)!r}, this fit has {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]


def restore_state(path, template, config, param="checkpoint"):
    """Load the checkpoint at ``path`` into the structure of ``template`` after checking it.

    Raises a ``ValueError`` naming ``param`` when the checkpoint was written by a different
    configuration (parameters or data) or holds a state of another structure.

    Returns
    -------
    state : pytree
        Like ``template``, with the saved values.
    step : int
    extra : dict
    """
    leaves, meta = load_checkpoint(path)
    diff = _config_diff(meta.get("config", {}), config)
    if diff:
        raise ValueError(f"`{param}`={os.fspath(path)!r} was written by a different configuration "
                         f"and cannot be resumed ({'; '.join(diff[:6])}). Delete the file or point "
                         f"`{param}` elsewhere to start afresh.")
    t_leaves, treedef = jax.tree.flatten(template)
    shapes = [list(np.shape(leaf)) for leaf in t_leaves]
    if meta["treedef"] != str(treedef) or meta["shapes"] != shapes:
        raise ValueError(f"`{param}`={os.fspath(path)!r} holds a state of a different structure "
                         f"than this fit builds; delete the file to start afresh.")
    leaves = [np.asarray(a, dtype=np.asarray(t).dtype) for a, t in zip(leaves, t_leaves)]
    return jax.tree.unflatten(treedef, leaves), int(meta["step"]), meta.get("extra", {})


# --------------------------------------------------------------------------------------------
# The loop driver
# --------------------------------------------------------------------------------------------

def _run_steps_impl(state, n, per_step, operands, step, config, k):
    loss_dtype = jax.eval_shape(
        lambda s: step(s, *(x[0] for x in per_step), *operands, config), state)[1].dtype

    def body(i, carry):
        s, losses = carry
        s, loss = step(s, *(x[i] for x in per_step), *operands, config)
        return s, losses.at[i].set(loss)

    return jax.lax.fori_loop(0, n, body, (state, jnp.full((k,), jnp.nan, loss_dtype)))


# Donating the state lets the whole block update it in place, as a single step does.
_run_steps = jax.jit(_run_steps_impl, static_argnames=("step", "config", "k"),
                     donate_argnums=(0,))


def run_steps(state, n, operands, *, step, config, k, per_step=()):
    """Run ``n <= k`` guarded meta-steps inside one compiled call.

    The jitted ``step(state, *per_step_i, *operands, config) -> (state, loss)`` runs in a
    ``lax.fori_loop`` whose trip count ``n`` is traced, so one compilation (per ``step``,
    ``config`` and ``k``) serves every ``n``; the state is donated.

    Parameters
    ----------
    state : pytree
        The guarded state (see the module docstring): after a non-finite step it stays frozen.
    n : int
        Steps to run, ``1 <= n <= k``.
    operands : tuple
        Arguments of every step (real data, hyperparameters).
    step : jitted callable
        The meta-step; a static argument (hashable, e.g. a module-level ``jax.jit`` function).
    config : hashable
        Its static configuration.
    k : int
        The largest ``n`` (the length of the returned loss buffer).
    per_step : tuple of arrays of leading length ``k``
        Arguments that change from step to step (row ``i`` goes to step ``i``).

    Returns
    -------
    state : pytree
    losses : array of shape (k,)
        The loss of each step run; entries from ``n`` on are NaN and must be ignored.
    """
    return _run_steps(state, np.int32(n), tuple(per_step), tuple(operands), step=step,
                      config=config, k=int(k))


class LoopResult(NamedTuple):
    """What :func:`run_loop` returns.

    Attributes
    ----------
    state : pytree
        The last good state.
    step : int
        Steps taken in total (including those before a resume).
    history : dict of list
        ``"step"``, ``"time"`` (seconds since the start of the run, resumes included) and
        ``"loss"`` (mean loss of the steps since the previous log) per logged step.
    stop_reason : {"done", "interrupted", "diverged"}
    """

    state: object
    step: int
    history: dict
    stop_reason: str


class _InterruptFlag:
    """Turn the first Ctrl-C into a flag the loop checks between steps; a second one raises.

    The step function may donate its input buffers, so a KeyboardInterrupt raised between a
    dispatch and the assignment of its result could lose the state; checking a flag between
    steps cannot.
    """

    def __init__(self):
        self.set = False
        self._previous = None

    def _handler(self, signum, frame):
        self.set = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# Magnitude beyond which data or synthetic values count as extreme in a divergence diagnosis:
# standardised or [0, 1] pixels stay far below it, raw 0-255 pixels too.
_EXTREME = 1e3


def divergence_causes(x_syn, X_real=None, *, ridge=None, learning_rate=None, steps_taken=None):
    """The likely causes of a non-finite loss that can be read off the state and the settings.

    Parameters
    ----------
    x_syn : array of shape (n_synthetic, ...)
        The synthetic rows of the last good state.
    X_real : array or None
        The real training data.
    ridge : float or None
        The ridge of a kernel system (``None``: the method solves none).
    learning_rate : float or None
        The outer learning rate, named as the cause left when nothing else is detected.
    steps_taken : int or None
        Good steps before the non-finite one. At 0 the loss of the initial set itself may be
        what failed, which no learning rate changes: the learning rate is then named only when
        nothing else was found.

    Returns
    -------
    list of str
        Sentences naming each cause found, most specific first; the learning rate comes last.

    Examples
    --------
    >>> divergence_causes(np.zeros((4, 2)), ridge=0.0, learning_rate=1e-3)[:2]  # doctest: +ELLIPSIS
    ['the kernel system of the synthetic set is singular: 3 of its 4 rows repeat others...', '`ridge`=0...']
    """
    causes = []
    rows = np.asarray(jax.device_get(x_syn), dtype=np.float64).reshape(len(x_syn), -1)
    n_repeated = len(rows) - len(np.unique(rows, axis=0))
    if n_repeated:
        causes.append(f"the kernel system of the synthetic set is singular: {n_repeated} of its "
                      f"{len(rows)} rows repeat others (identical rows give identical rows of the "
                      f"kernel matrix); check for duplicated or constant training rows"
                      if ridge is not None else
                      f"{n_repeated} of the {len(rows)} synthetic rows repeat others; check for "
                      f"duplicated or constant training rows")
    if ridge is not None and float(ridge) == 0.0:
        causes.append("`ridge`=0 leaves the kernel system unregularised, so a singular or "
                      "ill-conditioned kernel matrix cannot be solved; a small ridge (e.g. 1e-6) "
                      "makes it solvable")
    if X_real is not None:
        largest = float(np.max(np.abs(np.asarray(X_real)), initial=0.0))
        if largest > _EXTREME:
            causes.append(f"the data holds extreme values (largest |x| = {largest:.3g}); "
                          f"standardise it first (e.g. ImageStandardizer or StandardScaler)")
    largest_syn = float(np.max(np.abs(rows), initial=0.0)) if rows.size else 0.0
    if largest_syn > _EXTREME and (X_real is None or largest_syn > 10 * float(
            np.max(np.abs(np.asarray(X_real)), initial=0.0))):
        causes.append(f"the synthetic values grew to |x| = {largest_syn:.3g}, the mark of a "
                      f"learning rate too large")
    if learning_rate is not None and not (causes and steps_taken == 0):
        causes.append(("otherwise " if causes else "") +
                      f"a learning rate too large for this data (`learning_rate`={learning_rate:g})")
    return causes


def divergence_diagnosis(X_real, *, ridge=None, learning_rate=None):
    """The ``diagnose`` callback of :func:`run_loop`: ``(state, steps_taken) -> causes``.

    It runs :func:`divergence_causes` on the synthetic rows ``state["x"]`` against ``X_real``,
    naming ``ridge`` (methods with a kernel solve) and ``learning_rate`` where they apply.
    """
    return lambda state, steps_taken: divergence_causes(
        state["x"], X_real, ridge=ridge, learning_rate=learning_rate, steps_taken=steps_taken)


def run_loop(step_fn, state, *, n_steps, start_step=0, log_every=100, checkpoint=None,
             checkpoint_every=None, checkpoint_config=None, history=None, verbose=0,
             description="distilling", diagnose=None, block_fn=None, steps_per_dispatch=1):
    """Drive a guarded, jitted step for ``n_steps`` steps in total.

    Parameters
    ----------
    step_fn : callable ``state -> (state, loss)``
        One optimisation step (normally ``jax.jit``-compiled, possibly donating ``state``).
        ``state`` must be a dict with a boolean ``"ok"`` leaf, set to ``False`` (and the rest of
        the state left as it was) by a step whose loss is not finite.
    state : pytree
        The state to start from (fresh, or restored from a checkpoint).
    n_steps : int
        Total number of steps of the run.
    start_step : int, default=0
        Steps already taken (when resuming).
    log_every : int, default=100
        Losses are read back from the device, checked and recorded every ``log_every`` steps
        (and at the last step); in between the host never waits on the device.
    checkpoint : path-like or None
        Where to save the state every ``checkpoint_every`` steps and when the loop stops.
    checkpoint_every : int or None
    checkpoint_config : dict
        JSON-serialisable description of the run, saved with the state (see
        :func:`restore_state`).
    history : dict of list or None
        History of a resumed run, to extend.
    verbose : int, default=0
        ``> 0`` shows a tqdm progress bar with the loss.
    description : str
        Label of the progress bar and of the warnings.
    diagnose : callable ``(state, steps_taken) -> list of str`` or None
        Called with the last good state and the number of good steps when the loss becomes
        non-finite; returns the likely
        causes it detects (see :func:`divergence_causes`), which the warning or error names.
    block_fn : callable ``(state, n) -> (state, losses)`` or None
        Runs ``n`` steps in one dispatch (e.g. :func:`run_steps`); ``losses`` holds at least
        ``n`` entries, those past ``n`` ignored. Used when ``steps_per_dispatch > 1``.
    steps_per_dispatch : int, default=1
        The most steps a dispatch of ``block_fn`` runs, ``k``. Each dispatch runs up to the next
        log, checkpoint or end boundary, so logging, divergence checks, checkpoints, Ctrl-C
        (and so time budgets) act every ``k`` steps at the finest; a divergence inside a block
        still stops at the last good step, which the guarded step froze the state at.

    Returns
    -------
    LoopResult

    Raises
    ------
    FloatingPointError
        When the loss is non-finite from the first step of a fresh run: nothing was learned, and
        the initial synthetic set must not pass for a result.
    """
    history = {k: list(v) for k, v in (history or {"step": [], "time": [], "loss": []}).items()}
    elapsed_before = history["time"][-1] if history.get("time") else 0.0
    start = time.perf_counter()
    step, pending, stop_reason = int(start_step), [], "done"
    log_every = max(1, int(log_every))
    k = max(1, int(steps_per_dispatch)) if block_fn is not None else 1
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(n_steps), initial=step, desc=description, dynamic_ncols=True)

    def save():
        if checkpoint is not None:
            save_checkpoint(checkpoint, state, step, checkpoint_config or {}, {"history": history})

    def flush():
        """Read the pending losses; returns the number of good steps among them."""
        nonlocal pending
        values = jax.device_get([loss for loss, _ in pending])
        losses = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64))[:m]
                                 for v, (_, m) in zip(values, pending)])
        pending = []
        bad = np.flatnonzero(~np.isfinite(losses))
        good = losses if bad.size == 0 else losses[:bad[0]]
        return good, bad.size > 0

    window_start = step
    with _InterruptFlag() as interrupt:
        try:
            while step < n_steps:
                if interrupt.set:
                    stop_reason = "interrupted"
                    break
                if k > 1:
                    # Up to the next log, checkpoint or end boundary, in one dispatch.
                    n = min(k, n_steps - step, log_every - step % log_every)
                    if checkpoint is not None and checkpoint_every:
                        n = min(n, checkpoint_every - step % checkpoint_every)
                    state, losses = block_fn(state, n)
                    pending.append((losses, n))
                    step += n
                else:
                    state, loss = step_fn(state)
                    pending.append((loss, 1))
                    step += 1
                if step % log_every == 0 or step == n_steps or interrupt.set:
                    good, diverged = flush()
                    if diverged:
                        # The guarded step froze the state at the last good one, reached after
                        # the good steps of this window.
                        step, stop_reason = window_start + len(good), "diverged"
                        break
                    window_start = step
                    history["step"].append(step)
                    history["time"].append(elapsed_before + time.perf_counter() - start)
                    history["loss"].append(float(np.mean(good)))
                    if bar is not None:
                        bar.update(step - bar.n)
                        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
                if (checkpoint is not None and checkpoint_every and step % checkpoint_every == 0
                        and step < n_steps):
                    save()
        except KeyboardInterrupt:
            # Raised outside the step call (e.g. while reading losses): `state` is still the
            # last state a step returned.
            stop_reason = "interrupted"
    if pending:
        good, diverged = flush()
        if diverged:
            step, stop_reason = window_start + len(good), "diverged"
    if bar is not None:
        bar.close()
    # A diverged state is frozen (ok=False); the values are the last good ones, and a resumed
    # run (with a smaller learning rate, say) must be able to move on from them.
    state = {**state, "ok": jnp.asarray(True)}
    if stop_reason == "diverged":
        causes = list(diagnose(state, step)) if diagnose is not None else []
        advice = ("Likely causes: " + "; ".join(causes) + "." if causes else
                  "Lower the learning rate, or check the data for extreme values.")
        if step == 0:
            raise FloatingPointError(
                f"{description}: the loss was non-finite (NaN or inf) from the first step, so no "
                f"step was taken and nothing was learned. {advice}")
    if stop_reason == "interrupted":
        warnings.warn(f"{description}: interrupted at step {step} of {n_steps}; keeping the state "
                      f"reached so far" + (f" (saved to {os.fspath(checkpoint)!r}; fit again to "
                                           f"resume)" if checkpoint is not None else "") + ".",
                      UserWarning, stacklevel=3)
    elif stop_reason == "diverged":
        warnings.warn(f"{description}: the loss became non-finite (NaN or inf) at step {step + 1}; "
                      f"stopped and kept the state of step {step}, the last with a finite loss. "
                      f"{advice}", UserWarning, stacklevel=3)
    save()
    return LoopResult(state, step, history, stop_reason)
