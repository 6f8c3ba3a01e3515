"""Evaluation protocols by name: how a network is trained from scratch on a synthetic set.

Each paper measured its accuracies with its own evaluation: optimiser, learning rate, schedule,
number of steps, batch, augmentation and label loss. An :class:`EvalProtocol` holds those values;
:func:`get_protocol` returns the named ones, read off the official code (the values and the file
and line each comes from are tabulated in the documentation page "Fidelity to the official
protocols"):

``"library"``
    This library's protocol: Adam 1e-3, linear warm-up over 10 % of the steps then cosine decay
    to 0, :func:`library_steps`, 256 rows drawn with replacement, one DSA operation per *image*,
    MSE on learned labels and cross-entropy on hard labels.
``"frepo"``
    FRePo's ``script/eval.py`` (yongchao97/FRePo at 9b98c65): Adam 3e-4, 500 warm-up steps then
    cosine decay to 1 %, :func:`frepo_steps`, the first ``min(n, 500)`` rows of the repeated set
    in order, one augmax operation per *batch*, MSE.
``"rcig"``
    RCIG's ``eval.py`` (yolky/RCIG at a9fb1fa): Adam 1e-4, 500 warm-up steps then cosine decay to
    1 % over N steps (:func:`rcig_steps`), 2.5 N steps run without augmentation (the setting of
    the published accuracies), RGB sets extended with their mirror images, 256 rows without
    replacement once the set has more than 256 images, MSE.
``"ratbptt"``
    RaT-BPTT's ``test`` (fengyzpku/Simple_Dataset_Distillation at 7915c5a): Adam 1e-3 without
    schedule, 3,000 steps, the whole set each step, one of flip and rotation per *batch*,
    cross-entropy (learned labels as target weights).
``"dc"``
    DC/DSA's ``evaluate_synset`` (VICO-UoE/DatasetCondensation at 53f63a6): SGD 0.01 with
    momentum 0.9 and weight decay 5e-4, the rate divided by 10 (momentum restarted) after 502 of
    1,001 epochs of batches of 256 reshuffled every epoch, one DSA operation per *batch*,
    cross-entropy.

A protocol is a frozen dataclass, hashable, so it is a static argument of the jitted trainer;
:func:`dataclasses.replace` derives variants (e.g. RCIG's augmented evaluation,
``replace(get_protocol("rcig"), augmentation="augmax_image")``).
"""

import dataclasses
import math
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import optax

from ._labels import LOSS_OF_LABEL_KIND, label_kind
from .augment import ImageAugmentation

__all__ = ["EvalProtocol", "get_protocol", "PROTOCOL_NAMES", "library_steps", "frepo_steps",
           "rcig_steps"]

PROTOCOL_NAMES = ("library", "frepo", "rcig", "ratbptt", "dc")

_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("warmup_cosine", "constant", "step")
_STEP_RULES = ("library", "frepo", "rcig", "ratbptt", "dc")
_BATCHES = ("replace", "cycle", "without", "epoch")
_AUGMENTATIONS = ("library", "augmax_batch", "augmax_image", "flip_rotate_batch", "dsa_batch",
                  "none")
_LOSSES = ("mse", "ce")


# --------------------------------------------------------------------------------------------
# Step tables
# --------------------------------------------------------------------------------------------

def library_steps(n_train):
    """Training steps of the ``"library"`` protocol for a set of ``n_train`` rows.

    1,000 steps up to 10 rows (ipc 1 on ten classes), 2,000 up to 100, 5,000 up to 500, 10,000
    beyond.

    Examples
    --------
    >>> library_steps(10), library_steps(100), library_steps(500), library_steps(5000)
    (1000, 2000, 5000, 10000)
    """
    for limit, steps in ((10, 1000), (100, 2000), (500, 5000)):
        if n_train <= limit:
            return steps
    return 10000


# FRePo's script/eval.py:207-209, keyed by the exact size of the synthetic set.
_FREPO_TABLE = ((10, 1000), (100, 2000), (200, 20000), (400, 5000), (500, 5000), (1000, 10000),
                (2000, 40000), (5000, 40000))


def frepo_steps(n_train):
    """Training steps of FRePo's evaluation for a set of ``n_train`` images.

    The official table (``script/eval.py:207-209``) lists exact sizes: 10: 1,000; 100: 2,000;
    200: 20,000; 400 and 500: 5,000; 1,000: 10,000; 2,000 and 5,000: 40,000. Other sizes, an
    error there, take the entry of the smallest listed size above them (40,000 beyond 5,000),
    as the library's table counts "up to" a size.

    Examples
    --------
    >>> frepo_steps(10), frepo_steps(200), frepo_steps(2000), frepo_steps(50), frepo_steps(300)
    (1000, 20000, 40000, 2000, 5000)
    """
    for size, value in _FREPO_TABLE:
        if n_train <= size:
            return value
    return _FREPO_TABLE[-1][1]


def rcig_steps(n_train):
    """Length N of RCIG's evaluation schedule (``eval.py:203``): 1,000 for ten images, else 2,000.

    ``n_train`` counts the synthetic set before its mirror images are added; sets smaller than
    ten images also get 1,000. Without augmentation the official script runs 2.5 N steps (the
    schedule holding 1 % of the rate after N).

    Examples
    --------
    >>> rcig_steps(10), rcig_steps(100)
    (1000, 2000)
    """
    return 1000 if n_train <= 10 else 2000


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """How networks are trained from scratch on a synthetic set (see the module docstring).

    Parameters
    ----------
    name : str
        A label, e.g. ``"frepo"``.
    optimizer : {"adam", "sgd"}
        Adam (AdamW when ``weight_decay`` is positive), or SGD with ``momentum`` and coupled
        weight decay (PyTorch's ``SGD``).
    learning_rate : float
        Peak learning rate.
    schedule : {"warmup_cosine", "constant", "step"}
        ``"warmup_cosine"``: linear warm-up from 0 over ``warmup_steps`` steps (or
        ``warmup_fraction`` of the schedule when ``warmup_steps`` is None), then cosine decay to
        ``end_fraction`` of the rate at the end of the schedule, constant afterwards.
        ``"step"``: the rate times 0.1 from step ``drop_fraction * n_steps`` on, where the
        momentum also restarts.
    warmup_steps : int or None
        Warm-up length; a shortened run (fewer than twice as many steps) warms up over half of
        its schedule.
    warmup_fraction, end_fraction, drop_fraction : float
    momentum, weight_decay : float
    steps : {"library", "frepo", "rcig", "ratbptt", "dc"}
        The step table (:func:`library_steps`, :func:`frepo_steps`, :func:`rcig_steps`, 3,000,
        or 1,001 epochs of ``ceil(n / batch_size)`` batches; 301 without augmentation).
    run_factor : float
        Steps run per step of the schedule without augmentation (RCIG: 2.5).
    batch : {"replace", "cycle", "without", "epoch"}
        ``"replace"``: ``batch_size`` rows drawn with replacement; ``"cycle"``: consecutive rows
        of the repeated set in a fixed order; ``"without"``: ``batch_size`` rows without
        replacement; ``"epoch"``: batches of a permutation drawn once per epoch, the last one
        smaller. Sets no larger than ``batch_size`` (twice that once mirrored) are used whole.
    batch_size : int
    augmentation : {"library", "augmax_batch", "augmax_image", "flip_rotate_batch", "dsa_batch", "none"}
        See :meth:`image_augmentation`.
    mirror : bool
        Train on the set plus its mirror images (RGB images only; the trainer is given the
        protocol with ``mirror=False`` for other data).
    soft_loss : {"auto", "mse", "ce"}
        Loss with soft labels that are probability rows (``"auto"``: the library's rule of label
        kinds); regression targets always train with ``"mse"`` (see :meth:`loss`).
    hard_loss : {"mse", "ce"}
        Loss with hard (one-hot) labels.

    Examples
    --------
    >>> p = get_protocol("frepo")
    >>> p.learning_rate, p.n_steps(100), p.batch_size
    (0.0003, 2000, 500)
    >>> round(float(p.schedule_fn(2000)(500)), 7)  # the end of the 500-step warm-up
    0.0003
    """

    name: str
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "warmup_cosine"
    warmup_steps: object = None
    warmup_fraction: float = 0.1
    end_fraction: float = 0.0
    drop_fraction: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    steps: str = "library"
    run_factor: float = 1.0
    batch: str = "replace"
    batch_size: int = 256
    augmentation: str = "library"
    mirror: bool = False
    soft_loss: str = "auto"
    hard_loss: str = "ce"

    def __post_init__(self):
        for field, choices in (("optimizer", _OPTIMIZERS), ("schedule", _SCHEDULES),
                               ("steps", _STEP_RULES), ("batch", _BATCHES),
                               ("augmentation", _AUGMENTATIONS),
                               ("soft_loss", ("auto",) + _LOSSES), ("hard_loss", _LOSSES)):
            if getattr(self, field) not in choices:
                raise ValueError(f"EvalProtocol: `{field}` must be one of {choices}; "
                                 f"got {getattr(self, field)!r}.")
        for field in ("learning_rate", "warmup_fraction", "end_fraction", "drop_fraction",
                      "momentum", "weight_decay", "run_factor"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
                raise ValueError(f"EvalProtocol: `{field}` must be a non-negative number; "
                                 f"got {value!r}.")
        if not (isinstance(self.batch_size, Integral) and self.batch_size >= 1):
            raise ValueError(f"EvalProtocol: `batch_size` must be a positive integer; "
                             f"got {self.batch_size!r}.")
        if self.warmup_steps is not None and not (isinstance(self.warmup_steps, Integral)
                                                  and self.warmup_steps >= 0):
            raise ValueError(f"EvalProtocol: `warmup_steps` must be None or a non-negative "
                             f"integer; got {self.warmup_steps!r}.")

    # -- steps ----------------------------------------------------------------------------------

    def n_steps(self, n_train, augmented=True):
        """Steps run for a set of ``n_train`` rows (before mirroring).

        ``augmented`` says whether the run uses augmentation (RCIG runs 2.5 N steps without it,
        DC 301 instead of 1,001 epochs).
        """
        n_train = int(n_train)
        if self.steps == "frepo":
            base = frepo_steps(n_train)
        elif self.steps == "rcig":
            base = rcig_steps(n_train)
        elif self.steps == "ratbptt":
            base = 3000
        elif self.steps == "dc":
            base = (1001 if augmented else 301) * math.ceil(n_train / self.batch_size)
        else:
            base = library_steps(n_train)
        factor = 1.0 if augmented else self.run_factor
        return int(round(base * factor))

    def schedule_length(self, n_steps, augmented=True):
        """Steps spanned by the schedule of a run of ``n_steps`` steps."""
        factor = 1.0 if augmented else self.run_factor
        return max(1, int(round(n_steps / factor)))

    # -- optimiser ------------------------------------------------------------------------------

    def schedule_fn(self, n_steps, augmented=True):
        """The learning rate as a function of the step (an optax schedule) for ``n_steps``."""
        rate = float(self.learning_rate)
        if self.schedule == "constant":
            return optax.constant_schedule(rate)
        if self.schedule == "step":
            drop = int(self.drop_fraction * n_steps)
            return optax.piecewise_constant_schedule(rate, {drop: 0.1})
        length = self.schedule_length(n_steps, augmented)
        if self.warmup_steps is None:
            warmup = max(1, int(self.warmup_fraction * length))
        else:
            warmup = max(1, min(int(self.warmup_steps), length // 2))
        warm = optax.linear_schedule(0.0, rate, warmup)
        decay = optax.cosine_decay_schedule(rate, max(length - warmup, 1), alpha=self.end_fraction)
        return optax.join_schedules([warm, decay], [warmup])

    def make_optimizer(self, n_steps, augmented=True):
        """The optax optimiser for a run of ``n_steps`` steps."""
        schedule = self.schedule_fn(n_steps, augmented)
        if self.optimizer == "sgd":
            restart = (int(self.drop_fraction * n_steps) if self.schedule == "step" else -1)
            parts = []
            if self.weight_decay:
                parts.append(optax.add_decayed_weights(self.weight_decay))
            if self.momentum:
                parts.append(_restarting_trace(self.momentum, restart))
            parts.append(optax.scale_by_learning_rate(schedule))
            return optax.chain(*parts)
        if self.weight_decay:
            return optax.adamw(schedule, weight_decay=self.weight_decay)
        return optax.adam(schedule)

    # -- data -----------------------------------------------------------------------------------

    def whole_set_up_to(self):
        """Largest training set (after mirroring) that every step uses whole."""
        return self.batch_size * (2 if self.mirror else 1)

    def batch_rows(self, n):
        """Rows per step for a training set of ``n`` rows (after mirroring)."""
        if n <= self.whole_set_up_to():
            return n
        return min(n, self.batch_size)

    def select_batch(self, step_key, epoch_key, step, n):
        """Row indices ``(batch_rows(n),)`` and their weights (1, or 0 for padding) at ``step``.

        ``step_key`` is fresh every step; ``epoch_key(epoch)`` gives the key of an epoch's
        permutation (``batch="epoch"``). Jittable; ``n`` is static.
        """
        rows = self.batch_rows(n)
        ones = jnp.ones((rows,), jnp.float32)
        if rows == n:
            return jnp.arange(n), ones
        if self.batch == "cycle":
            return (step * rows + jnp.arange(rows)) % n, ones
        if self.batch == "replace":
            return jax.random.randint(step_key, (rows,), 0, n), ones
        if self.batch == "without":
            return jax.random.choice(step_key, n, (rows,), replace=False), ones
        per_epoch = math.ceil(n / rows)
        epoch, position = step // per_epoch, step % per_epoch
        order = jax.random.permutation(epoch_key(epoch), n)
        order = jnp.concatenate([order, jnp.zeros((per_epoch * rows - n,), order.dtype)])
        start = position * rows
        index = jax.lax.dynamic_slice(order, (start,), (rows,))
        return index, ((start + jnp.arange(rows)) < n).astype(jnp.float32)

    def image_augmentation(self, sample_shape):
        """The augmentation for samples of ``sample_shape`` (``(H, W, C)``), or None.

        * ``"library"``: :meth:`ImageAugmentation.default_for` (DSA strengths, one operation per
          image, flip for RGB only);
        * ``"augmax_batch"`` (FRePo): augmax strengths, one of flip (RGB only), colour, zoom,
          rotation, translation and cutout per batch;
        * ``"augmax_image"`` (RCIG's augmented variant): the same per image; greyscale images
          without flip and colour;
        * ``"flip_rotate_batch"`` (RaT-BPTT): flip or a rotation within ±15° per batch;
        * ``"dsa_batch"`` (DC/DSA): the six DSA groups, flip included, one per batch;
        * ``"none"``.

        Rows (1-D samples) are never augmented.
        """
        if len(sample_shape) != 3 or self.augmentation == "none":
            return None
        channels = int(sample_shape[-1])
        rgb = channels == 3
        if self.augmentation == "library":
            return ImageAugmentation.default_for(channels)
        if self.augmentation in ("augmax_batch", "augmax_image"):
            per_image = self.augmentation == "augmax_image"
            return ImageAugmentation(
                flip=rgb, colour=rgb or not per_image, crop=True, scale=True, rotate=True,
                cutout=True, style="augmax", brightness=0.5, colour_log_range=0.25,
                scale_ratio=0.25, crop_ratio=0.125, rotate_degrees=15.0, cutout_ratio=0.25,
                mode="one" if per_image else "one_per_batch")
        if self.augmentation == "flip_rotate_batch":
            return ImageAugmentation(flip=True, rotate=True, crop=False, scale=False, colour=False,
                                     cutout=False, mode="one_per_batch")
        return ImageAugmentation(flip=True, mode="one_per_batch")

    def loss(self, soft_labels):
        """The label loss for ``soft_labels`` (``None``: hard, one-hot labels).

        Hard labels train with ``hard_loss``. Soft labels follow the library's rule of label
        kinds (:mod:`sklearn_distill._labels`): regression targets (e.g. centred one-hot rows)
        always train with the squared error, since cross-entropy against rows with negative
        entries has no minimum; probability rows and non-negative target weights train
        with ``soft_loss``, or by the rule (cross-entropy) when it is ``"auto"``.

        Examples
        --------
        >>> p = get_protocol("library")
        >>> p.loss(None), p.loss([[0.7, 0.3]]), p.loss([[0.5, -0.5]])
        ('ce', 'ce', 'mse')
        >>> get_protocol("frepo").loss([[0.7, 0.3]])
        'mse'
        """
        if soft_labels is None:
            return self.hard_loss
        kind = label_kind(soft_labels)
        if kind == "regression":
            return "mse"
        return LOSS_OF_LABEL_KIND[kind] if self.soft_loss == "auto" else self.soft_loss


def _restarting_trace(decay, restart_step):
    """Heavy-ball momentum (``optax.trace``) whose buffer is reset to zero at ``restart_step``.

    PyTorch code that re-creates its SGD optimiser when it lowers the rate (DC's
    ``evaluate_synset``) restarts the momentum there.
    """
    inner = optax.trace(decay=decay)

    def init(params):
        return jnp.zeros([], jnp.int32), inner.init(params)

    def update(updates, state, params=None):
        count, trace_state = state
        fresh = inner.init(updates)
        trace_state = jax.tree.map(lambda f, t: jnp.where(count == restart_step, f, t),
                                   fresh, trace_state)
        updates, trace_state = inner.update(updates, trace_state, params)
        return updates, (count + 1, trace_state)

    return optax.GradientTransformation(init, update)


_PROTOCOLS = {
    "library": EvalProtocol("library"),
    "frepo": EvalProtocol("frepo", learning_rate=3e-4, warmup_steps=500, end_fraction=0.01,
                          steps="frepo", batch="cycle", batch_size=500,
                          augmentation="augmax_batch", soft_loss="mse", hard_loss="mse"),
    "rcig": EvalProtocol("rcig", learning_rate=1e-4, warmup_steps=500, end_fraction=0.01,
                         steps="rcig", run_factor=2.5, batch="without", batch_size=256,
                         augmentation="none", mirror=True, soft_loss="mse", hard_loss="mse"),
    "ratbptt": EvalProtocol("ratbptt", learning_rate=1e-3, schedule="constant", steps="ratbptt",
                            batch="without", batch_size=100_000,
                            augmentation="flip_rotate_batch", soft_loss="ce", hard_loss="ce"),
    "dc": EvalProtocol("dc", optimizer="sgd", learning_rate=0.01, schedule="step",
                       drop_fraction=502 / 1001, momentum=0.9, weight_decay=5e-4, steps="dc",
                       batch="epoch", batch_size=256, augmentation="dsa_batch", soft_loss="ce",
                       hard_loss="ce"),
}


def get_protocol(protocol):
    """The :class:`EvalProtocol` named ``protocol`` (an :class:`EvalProtocol` is returned as is).

    Parameters
    ----------
    protocol : {"library", "frepo", "rcig", "ratbptt", "dc"} or EvalProtocol

    Returns
    -------
    EvalProtocol

    Raises
    ------
    ValueError
        For an unknown name.

    Examples
    --------
    >>> get_protocol("dc").optimizer, get_protocol("ratbptt").schedule
    ('sgd', 'constant')
    """
    if isinstance(protocol, EvalProtocol):
        return protocol
    if isinstance(protocol, str) and protocol in _PROTOCOLS:
        return _PROTOCOLS[protocol]
    raise ValueError(f"`protocol` must be one of {PROTOCOL_NAMES} or an EvalProtocol; "
                     f"got {protocol!r}.")
