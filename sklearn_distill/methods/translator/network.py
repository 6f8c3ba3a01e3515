"""The translator network and its saved form (:class:`Translator`, :class:`PretrainedTranslator`)."""

import dataclasses
import json
import os
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ..._jax import library_prng
from ..._validation import random_seed
from ...io import load_container, save_container
from ...networks import MLP, ConvNet, NetworkSpec

__all__ = ["Translator", "PretrainedTranslator", "module_to_json", "module_from_json"]

_TRANSLATOR_FORMAT = "sklearn_distill.translator/1"


def module_to_json(module):
    """A network's specification (class and fields) as JSON, for files without pickle."""
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.name not in ("parent", "name")}
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}
    return {"class": type(module).__name__, "fields": fields}


def module_from_json(spec):
    """The network of :func:`module_to_json`'s ``spec`` (ConvNet, MLP or Translator)."""
    classes = {"ConvNet": ConvNet, "MLP": MLP, "Translator": Translator}
    if spec.get("class") not in classes:
        raise ValueError(f"Unknown network class {spec.get('class')!r} in a saved file; expected one "
                         f"of {sorted(classes)}.")
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["fields"].items()}
    if spec["class"] == "Translator":
        # Translators saved before the moment anchor existed were trained without it.
        fields.setdefault("match_moments", False)
    return classes[spec["class"]](**fields)



def _as_images(x):
    """Tabular rows become 1x1 images with one channel per feature (the translator's view)."""
    return x.reshape(x.shape[0], 1, 1, x.shape[1]) if x.ndim == 2 else x



class Translator(NetworkSpec, nn.Module):
    r"""Fully convolutional residual encoder-decoder: ``x -> x + delta(x)``.

    A 3x3 stem of ``width`` channels, ``depth`` stride-2 3x3 blocks doubling the width, and a
    decoder that resizes back to each skip connection's size (any resolution works, odd sizes
    included), concatenates it and applies a 3x3 convolution. The last 3x3 convolution predicts
    the change to the input and is initialised to zero, so an untrained translator is exactly
    the identity.

    The KRR objective in random ReLU networks without normalisation barely changes when the
    images are rescaled, so nothing in the loss holds the translator's output scale, and Adam's
    noise lets it drift (the pixel std of CIFAR-10 images grew more than tenfold in a short
    pre-training and adaptation). With ``match_moments`` (the default) each output sample is
    therefore shifted and rescaled to the mean and standard deviation of its input sample,
    taken over all its pixels and channels:

    .. math::

        \tilde x = x + \delta(x), \qquad
        T(x) = \mu_x + \frac{\sigma_x}{\sigma_{\tilde x}} (\tilde x - \mu_{\tilde x}),

    with :math:`\sigma^2` the variance plus :math:`10^{-12}`, so that constant (e.g. zero-padded)
    samples keep a finite gradient. The identity start is exact either way.

    Parameters
    ----------
    width : int, default=32
        Channels of the stem.
    depth : int, default=2
        Down-sampling blocks.
    match_moments : bool, default=True
        Give each translated sample its input's mean and standard deviation (the scale anchor
        above). ``False`` returns :math:`x + \delta(x)` unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_distill import PretrainedTranslator, Translator
    >>> t = PretrainedTranslator.identity(Translator(width=8, depth=2), channels=1)
    >>> x = np.random.default_rng(0).normal(size=(2, 7, 7, 1)).astype(np.float32)
    >>> bool(np.array_equal(t.translate(x), x))  # the identity before training
    True
    """

    width: int = 32
    depth: int = 2
    match_moments: bool = True

    def __post_init__(self):
        if int(self.width) < 1 or int(self.depth) < 0:
            raise ValueError(f"Translator needs width >= 1 and depth >= 0; got width={self.width}, "
                             f"depth={self.depth}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"Translator expects NHWC images; got shape {x.shape}.")
        h = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME", name="stem")(x))
        skips = []
        for i in range(self.depth):
            skips.append(h)
            width = self.width * 2 ** (i + 1)
            h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", name=f"down_{i}")(h))
            h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"mid_{i}")(h))
        for i in reversed(range(self.depth)):
            skip = skips[i]
            h = jax.image.resize(h, skip.shape[:3] + (h.shape[-1],), "nearest")
            h = jnp.concatenate([h, skip], axis=-1)
            h = nn.relu(nn.Conv(self.width * 2 ** i, (3, 3), padding="SAME", name=f"up_{i}")(h))
        delta = nn.Conv(x.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros,
                        bias_init=nn.initializers.zeros, name="out")(h)
        if not self.match_moments:
            return x + delta
        return x + _moment_matched_change(x, delta)


def _moment_matched_change(x, delta, eps=1e-12):
    """``T(x) - x`` for the moment-anchored output (see :class:`Translator`), per sample.

    Written in the centred change ``d`` rather than as ``mu + s * (x + delta - m)`` so that a
    zero ``delta`` gives a change of exactly zero: XLA may reduce ``x`` and ``x + 0`` in a
    different order, and the untrained translator must be the identity bit for bit.
    """
    axes = tuple(range(1, x.ndim))
    x_c = x - jnp.mean(x, axis=axes, keepdims=True)
    d = delta - jnp.mean(delta, axis=axes, keepdims=True)
    var_x = jnp.mean(jnp.square(x_c), axis=axes, keepdims=True)
    var_out = var_x + jnp.mean(d * (2.0 * x_c + d), axis=axes, keepdims=True)
    ratio = jnp.sqrt((var_x + eps) / jnp.maximum(var_out + eps, eps))
    return (ratio - 1.0) * (x_c + d) + d


def _translate_apply(network, params, x):
    """Apply the translator to images or tabular rows (as 1x1 images)."""
    return network.apply({"params": params}, _as_images(x)).reshape(x.shape)


@partial(jax.jit, static_argnums=(0,))
def _translate_jit(network, params, x):
    return _translate_apply(network, params, x)


@partial(jax.jit, static_argnums=(0, 2))
def _init_translator(network, key, channels):
    return network.init(key, jnp.zeros((1, 4, 4, channels), jnp.float32))["params"]


class PretrainedTranslator:
    """A translator network with its parameters (NumPy arrays) and a metadata record.

    Built by :meth:`identity`, :func:`pretrain_translator` or a fitted
    :class:`TranslatorDistiller` (``translator_``); saved with :meth:`save` and read with
    :meth:`load` (an ``.npz`` of the parameters plus a JSON block; no pickle).

    Parameters
    ----------
    network : Translator
        The architecture.
    params : dict
        Nested dict of parameter arrays, as ``network.init(...)["params"]``.
    channels : int
        Channels of the images it translates (features, for tabular rows).
    metadata : dict or None
        JSON-serialisable record (pre-training and adaptation settings and losses).
    distillation_network : tuple (network, variables) or None, default=None
        The fixed random network the translator's inputs were distilled in during pre-training
        (:meth:`TranslatorCache.distillation_network`, the :math:`\\theta` of Liu & Wang's
        Alg. 1 and 3); :class:`TranslatorDistiller` distils the target in it. ``None``: not
        known (an untrained translator, or a file saved before it was recorded).

    Examples
    --------
    >>> import numpy as np
    >>> t = PretrainedTranslator.identity(Translator(width=4, depth=1), channels=1, random_state=0)
    >>> x = np.ones((3, 8, 8, 1), np.float32)
    >>> bool(np.array_equal(t.translate(x), x))
    True
    """

    def __init__(self, network, params, channels, metadata=None, distillation_network=None):
        self.network = network
        self.params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
        self.channels = int(channels)
        self.metadata = dict(metadata or {})
        if distillation_network is not None:
            model, variables = distillation_network
            distillation_network = (model, jax.tree.map(lambda a: np.asarray(a, np.float32),
                                                        variables))
        self.distillation_network = distillation_network

    @classmethod
    def identity(cls, network=None, channels=1, random_state=0):
        """An untrained translator (exactly the identity map) for images with ``channels`` channels."""
        network = Translator() if network is None else network
        if not isinstance(network, Translator):
            raise ValueError(f"`network` must be a Translator; got {network!r}.")
        key = jax.random.PRNGKey(random_seed(random_state))
        with library_prng():
            params = _init_translator(network, key, int(channels))
        return cls(network, jax.device_get(params), channels, {"trained_steps": 0})

    @property
    def n_parameters(self):
        return int(sum(np.size(a) for a in jax.tree.leaves(self.params)))

    def check_channels(self, n_channels, param="translator"):
        if int(n_channels) != self.channels:
            raise ValueError(f"`{param}` translates images with {self.channels} channel(s) but the data "
                             f"has {n_channels}; a translator transfers across resolutions, not "
                             f"across channel counts.")

    def translate(self, X):
        """Translate samples in the internal layout: NHWC images (or ``(n, H, W)``), or 2-D rows."""
        X = np.asarray(X, np.float32)
        squeeze = X.ndim == 3
        X = X[..., None] if squeeze else X
        self.check_channels(X.shape[-1], "X")
        with library_prng():
            out = np.asarray(_translate_jit(self.network, jax.tree.map(jnp.asarray, self.params),
                                            jnp.asarray(X)))
        return out[..., 0] if squeeze else out

    def save(self, path):
        """Write to ``path`` (``.npz``, appended if missing) atomically; returns the path."""
        flat = traverse_util.flatten_dict(self.params, sep="/")
        meta = {"format": _TRANSLATOR_FORMAT, "network": module_to_json(self.network),
                "channels": self.channels, "parameters": sorted(flat), "metadata": self.metadata}
        arrays = {"param:" + k: np.asarray(v) for k, v in flat.items()}
        if self.distillation_network is not None:
            model, variables = self.distillation_network
            net_flat = traverse_util.flatten_dict(variables, sep="/")
            meta["distillation_network"] = {"network": module_to_json(model),
                                            "variables": sorted(net_flat)}
            arrays.update({"net:" + k: np.asarray(v) for k, v in net_flat.items()})
        path = os.fspath(path)
        path = path if path.endswith(".npz") else path + ".npz"
        return save_container(path, arrays, meta, prefix=".translator-")

    @classmethod
    def load(cls, path):
        """Read a translator written by :meth:`save` (``allow_pickle=False``)."""
        arrays, meta = load_container(path, format=_TRANSLATOR_FORMAT, what="saved translator")
        flat = {k: arrays["param:" + k] for k in meta["parameters"]}
        params = traverse_util.unflatten_dict(flat, sep="/")
        net = meta.get("distillation_network")  # absent from files saved before it was recorded
        if net is not None:
            variables = traverse_util.unflatten_dict(
                {k: arrays["net:" + k] for k in net["variables"]}, sep="/")
            net = (module_from_json(net["network"]), variables)
        return cls(module_from_json(meta["network"]), params, meta["channels"], meta["metadata"],
                   net)

    def copy(self):
        return PretrainedTranslator(self.network, jax.tree.map(np.copy, self.params), self.channels,
                                    json.loads(json.dumps(self.metadata)),
                                    self.distillation_network)

    def __repr__(self):
        steps = self.metadata.get("trained_steps", 0)
        net = self.network
        anchor = "" if net.match_moments else ", match_moments=False"
        return (f"PretrainedTranslator(Translator(width={net.width}, depth={net.depth}{anchor}), "
                f"channels={self.channels}, n_parameters={self.n_parameters}, trained_steps={steps})")
