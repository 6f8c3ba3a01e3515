"""Networks used to distil and to evaluate: the ConvNet of the dataset-distillation papers, an MLP,
and the small-image ResNet-18 and VGG-11 of the papers' cross-architecture tables.

A network instance is also the *specification* passed as the ``model`` parameter of the
estimators, e.g. ``ConvNet(width=128, depth=3, norm="batch")``. ``num_classes`` is usually left
unset: the estimators fill it in with :meth:`flax.linen.Module.clone` once they have seen ``y``.

All networks share one calling convention::

    logits = net.apply(variables, x, train=False)
    features = net.apply(variables, x, train=False, return_features=True)

where ``features`` are the flattened penultimate activations (the input of the linear head, which
kernel methods such as FRePo regress on). With ``norm="batch"`` and ``train=True`` the call needs
``mutable=["batch_stats"]``.
"""

import dataclasses
import math
from numbers import Real
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ConvNet", "MLP", "ResNet18", "VGG11", "init_variables", "has_batch_norm",
           "with_num_classes", "default_network", "features"]

_NORMS = ("none", "batch", "instance", "layer")
_ACTIVATIONS = ("relu", "softplus")
_INITS = ("lecun", "pytorch")
_NORM_POSITIONS = ("after", "before")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")


def _kernel_init(init):
    if init == "pytorch":
        # PyTorch's default (Kaiming-uniform with a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    return nn.initializers.lecun_normal()


def _bias_init(init, fan_in):
    if init == "pytorch":
        bound = 1.0 / math.sqrt(fan_in)
        return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return nn.initializers.zeros


def _activation(name, temperature):
    if name == "softplus":
        # Softplus with temperature beta: a smooth ReLU, used by RCIG while distilling.
        return lambda x: jax.nn.softplus(temperature * x) / temperature
    return jax.nn.relu


def _first_padding(size, depth):
    """Padding of the first convolution so the spatial size divides 2**depth.

    The papers pad 28-pixel MNIST by 3 in the first layer (28 -> 32) so that three 2x2 poolings
    end on a 4x4 map; this generalises that rule. Other layers use 'SAME' padding (1 for 3x3).
    """
    step = 2 ** depth
    target = -(-size // step) * step
    extra = target - size
    return 1 + extra // 2 if extra % 2 == 0 else 1


def _rebuild(cls, fields):
    return cls(**fields)


class NetworkSpec:
    """Pickle a network as its specification: the class and its fields.

    Flax modules carry a unique internal id, so two equal specifications would otherwise pickle
    differently; scikit-learn compares parameters by their pickled hash (joblib.hash) to check
    that ``fit`` leaves them untouched.
    """

    def __reduce__(self):
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("parent", "name")}
        return _rebuild, (type(self), fields)


class ConvNet(NetworkSpec, nn.Module):
    """The ConvNet of the dataset-distillation literature.

    ``depth`` blocks of [3x3 convolution, normalisation, activation, 2x2 average pooling], then a
    linear classifier on the flattened features.

    Two layouts of the normalisation are offered (``norm_position``):

    * ``"after"`` (DC, DSA, MTT, RaT-BPTT and RCIG): after every convolution, before the
      activation; the features are the pooled activations of the *normalised* last convolution.
    * ``"before"`` (FRePo's ``Conv``, ``lib/models/networks.py`` of yongchao97/FRePo at commit
      9b98c65): on the *input* of convolutions 2 to ``depth`` (after the previous block's
      pooling) and nowhere after the last one, so the features, the pooled activations of the last
      convolution, are not normalised.

    The official FRePo and RCIG networks build batch norm with flax's ``momentum=0.1``
    (``norm_momentum=0.1``): the running averages keep a tenth of their old value, so after an
    online step they are close to the statistics of the last training batch.

    Parameters
    ----------
    width : int, default=128
        Channels of the first block.
    depth : int, default=3
        Number of blocks (3 for images up to 32 px, 4 for 64 px).
    norm : {"none", "batch", "instance", "layer"}, default="none"
        Normalisation after each convolution.
    width_doubling : bool, default=False
        Double the width in every block (128, 256, 512), as FRePo and RCIG do.
    activation : {"relu", "softplus"}, default="relu"
    softplus_temperature : float, default=60.0
        ``softplus(beta x) / beta``; only used with ``activation="softplus"``.
    weight_init : {"lecun", "pytorch"}, default="lecun"
        LeCun-normal weights and zero biases (JAX papers) or PyTorch's uniform defaults.
    num_classes : int or None
        Output size of the head; the estimators set it from the data.
    norm_position : {"after", "before"}, default="after"
        Where the normalisation sits: after every convolution, or on the input of convolutions
        2 to ``depth`` only (FRePo's layout, see above). Irrelevant with ``norm="none"``.
    norm_momentum : float, default=0.9
        Batch norm's running-average decay in flax's convention, in ``[0, 1)``: each training
        call sets ``running = momentum * running + (1 - momentum) * batch``. FRePo and RCIG
        use 0.1. Only used with ``norm="batch"``.
    norm_epsilon : float or None, default=None
        The constant added to the variance inside the normalisation, positive. ``None``: flax's
        default of each layer (1e-6 for instance and layer norm, 1e-5 for batch norm). PyTorch's
        ``GroupNorm``, the instance norm of the DC and RaT-BPTT ConvNets, uses 1e-5.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = ConvNet(width=8, depth=2, num_classes=10)
    >>> x = jnp.zeros((4, 8, 8, 1))
    >>> variables = net.init(jax.random.PRNGKey(0), x)
    >>> net.apply(variables, x).shape
    (4, 10)
    >>> net.apply(variables, x, return_features=True).shape  # 8 channels on a 2x2 map
    (4, 32)

    FRePo's layout: batch norm only on the input of the second convolution here.

    >>> frepo = ConvNet(width=8, depth=2, norm="batch", norm_position="before",
    ...                 norm_momentum=0.1, num_classes=10)
    >>> sorted(frepo.init(jax.random.PRNGKey(0), x)["batch_stats"])
    ['norm_1']
    """

    width: int = 128
    depth: int = 3
    norm: str = "none"
    width_doubling: bool = False
    activation: str = "relu"
    softplus_temperature: float = 60.0
    weight_init: str = "lecun"
    num_classes: Optional[int] = None
    norm_position: str = "after"
    norm_momentum: float = 0.9
    norm_epsilon: Optional[float] = None

    def __post_init__(self):
        _check_choice("norm", self.norm, _NORMS)
        _check_choice("activation", self.activation, _ACTIVATIONS)
        _check_choice("weight_init", self.weight_init, _INITS)
        _check_choice("norm_position", self.norm_position, _NORM_POSITIONS)
        if int(self.width) < 1 or int(self.depth) < 1:
            raise ValueError(f"`width` and `depth` must be positive; got width={self.width}, "
                             f"depth={self.depth}.")
        momentum = self.norm_momentum
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum < 1:
            raise ValueError(f"`norm_momentum` must be a number in [0, 1); got {momentum!r}.")
        eps = self.norm_epsilon
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, Real) or not eps > 0):
            raise ValueError(f"`norm_epsilon` must be a positive number or None; got {eps!r}.")
        super().__post_init__()

    def _norm(self, x, train, i):
        return _normalize(self.norm, x, train, f"norm_{i}", self.norm_momentum,
                          self.norm_epsilon)

    @nn.compact
    def __call__(self, x, train=False, return_features=False):
        if x.ndim != 4:
            raise ValueError(f"ConvNet expects NHWC images; got shape {x.shape}.")
        act = _activation(self.activation, self.softplus_temperature)
        channels = x.shape[-1]
        for i in range(self.depth):
            width = self.width * (2 ** i if self.width_doubling else 1)
            pad = _first_padding(x.shape[1], self.depth) if i == 0 else 1
            fan_in = 9 * channels
            if self.norm_position == "before" and i > 0:
                x = self._norm(x, train, i)
            x = nn.Conv(width, (3, 3), padding=pad, kernel_init=_kernel_init(self.weight_init),
                        bias_init=_bias_init(self.weight_init, fan_in), name=f"conv_{i}")(x)
            if self.norm_position == "after":
                x = self._norm(x, train, i)
            x = act(x)
            if min(x.shape[1:3]) >= 2:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            channels = width
        features = x.reshape((x.shape[0], -1))
        if return_features:
            return features
        return _head(self.num_classes, self.weight_init, features)


class MLP(NetworkSpec, nn.Module):
    """A fully connected network for tabular data.

    Parameters
    ----------
    hidden_sizes : tuple of int, default=(256, 256)
    activation : {"relu", "softplus"}, default="relu"
    softplus_temperature : float, default=60.0
    weight_init : {"lecun", "pytorch"}, default="lecun"
    num_classes : int or None

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = MLP(hidden_sizes=(16,), num_classes=3)
    >>> variables = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)))
    >>> net.apply(variables, jnp.ones((2, 5))).shape
    (2, 3)
    """

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    softplus_temperature: float = 60.0
    weight_init: str = "lecun"
    num_classes: Optional[int] = None

    def __post_init__(self):
        _check_choice("activation", self.activation, _ACTIVATIONS)
        _check_choice("weight_init", self.weight_init, _INITS)
        # A tuple keeps the module hashable, which jit's static arguments require.
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train=False, return_features=False):
        act = _activation(self.activation, self.softplus_temperature)
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(self.hidden_sizes):
            x = act(nn.Dense(h, kernel_init=_kernel_init(self.weight_init),
                             bias_init=_bias_init(self.weight_init, x.shape[-1]), name=f"dense_{i}")(x))
        if return_features:
            return x
        return _head(self.num_classes, self.weight_init, x)


def _normalize(norm, x, train, name, momentum=0.9, epsilon=None):
    """The normalisation layer ``norm`` applied to NHWC ``x`` (identity for ``"none"``).

    ``epsilon``: the variance offset, ``None`` for flax's default of the layer.

    Instance norm is skipped on a 1x1 map: its per-image statistics would be those of a single
    value, which sends every image to the same output.
    """
    eps = {} if epsilon is None else {"epsilon": float(epsilon)}
    if norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=momentum, name=name, **eps)(x)
    if norm == "instance":
        if x.shape[1] * x.shape[2] == 1:
            return x
        return nn.InstanceNorm(name=name, **eps)(x)
    if norm == "layer":
        return nn.LayerNorm(reduction_axes=(-3, -2, -1), name=name, **eps)(x)
    return x


def _check_image_net(net):
    _check_choice("norm", net.norm, _NORMS)
    _check_choice("activation", net.activation, _ACTIVATIONS)
    _check_choice("weight_init", net.weight_init, _INITS)
    if int(net.width) < 1:
        raise ValueError(f"`width` must be positive; got width={net.width}.")


def _conv(features, kernel, stride, padding, use_bias, init, in_channels, name):
    fan_in = kernel * kernel * in_channels
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                   kernel_init=_kernel_init(init), bias_init=_bias_init(init, fan_in), name=name)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected) identity shortcut."""

    features: int
    stride: int
    norm: str
    activation: str
    softplus_temperature: float
    weight_init: str

    @nn.compact
    def __call__(self, x, train):
        act = _activation(self.activation, self.softplus_temperature)
        bias = self.norm == "none"
        channels = x.shape[-1]
        out = _conv(self.features, 3, self.stride, 1, bias, self.weight_init, channels, "conv_0")(x)
        out = act(_normalize(self.norm, out, train, "norm_0"))
        out = _conv(self.features, 3, 1, 1, bias, self.weight_init, self.features, "conv_1")(out)
        out = _normalize(self.norm, out, train, "norm_1")
        if self.stride != 1 or channels != self.features:
            x = _conv(self.features, 1, self.stride, 0, bias, self.weight_init, channels,
                      "shortcut_conv")(x)
            x = _normalize(self.norm, x, train, "shortcut_norm")
        return act(out + x)


class ResNet18(NetworkSpec, nn.Module):
    """ResNet-18 for small images, as in the cross-architecture tables of dataset distillation.

    The CIFAR variant used by DC, DSA, MTT and FRePo: a 3x3 stem convolution (stride 1, no
    max-pooling), four stages of two basic blocks with ``width``, ``2 width``, ``4 width`` and
    ``8 width`` channels and strides 1, 2, 2, 2 (a 1x1 projection shortcut where the shape
    changes), global average pooling and a linear head. A stage stops striding once the feature
    map is 1x1, so 8x8 digits, 28x28 MNIST and 32x32 CIFAR all work.

    Convolutions have no bias when a normalisation layer follows them (its shift takes that
    role); with ``norm="none"`` they have one. At ``width=64`` with batch norm on 32x32x3 inputs
    and 10 classes the network has 11,173,962 parameters, the standard count.

    Parameters
    ----------
    width : int, default=64
        Channels of the stem and first stage (the paper's 64).
    norm : {"none", "batch", "instance", "layer"}, default="batch"
        Normalisation after each convolution (instance norm is skipped where the map is 1x1).
    activation : {"relu", "softplus"}, default="relu"
    softplus_temperature : float, default=60.0
        ``softplus(beta x) / beta``; only used with ``activation="softplus"``.
    weight_init : {"lecun", "pytorch"}, default="lecun"
        LeCun-normal weights and zero biases, or PyTorch's uniform defaults.
    num_classes : int or None
        Output size of the head; the estimators set it from the data.

    See Also
    --------
    ConvNet : the network the distillation papers distil and evaluate with.
    VGG11 : the other network of the cross-architecture tables.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = ResNet18(width=4, norm="batch", num_classes=10)
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> variables = net.init(jax.random.PRNGKey(0), x)
    >>> sorted(variables)  # batch norm keeps running statistics
    ['batch_stats', 'params']
    >>> net.apply(variables, x).shape
    (2, 10)
    >>> net.apply(variables, x, return_features=True).shape  # 8 * width channels, pooled
    (2, 32)
    """

    width: int = 64
    norm: str = "batch"
    activation: str = "relu"
    softplus_temperature: float = 60.0
    weight_init: str = "lecun"
    num_classes: Optional[int] = None

    def __post_init__(self):
        _check_image_net(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train=False, return_features=False):
        if x.ndim != 4:
            raise ValueError(f"ResNet18 expects NHWC images; got shape {x.shape}.")
        act = _activation(self.activation, self.softplus_temperature)
        x = _conv(self.width, 3, 1, 1, self.norm == "none", self.weight_init, x.shape[-1],
                  "conv_stem")(x)
        x = act(_normalize(self.norm, x, train, "norm_stem"))
        for stage, multiple in enumerate((1, 2, 4, 8)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 and min(x.shape[1:3]) >= 2 else 1
                x = _BasicBlock(self.width * multiple, stride, self.norm, self.activation,
                                self.softplus_temperature, self.weight_init,
                                name=f"stage_{stage}_block_{block}")(x, train)
        features = jnp.mean(x, axis=(1, 2))
        if return_features:
            return features
        return _head(self.num_classes, self.weight_init, features)


# VGG-11 ("configuration A"): channels as multiples of the width, "M" a 2x2 max-pooling.
_VGG11_CFG = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG11(NetworkSpec, nn.Module):
    """VGG-11 for small images, as in the cross-architecture tables of dataset distillation.

    Configuration "A" of Simonyan & Zisserman scaled by ``width / 64``: 3x3 convolutions with
    ``width``, M, ``2 width``, M, ``4 width``, ``4 width``, M, ``8 width``, ``8 width``, M,
    ``8 width``, ``8 width``, M channels (M: 2x2 max-pooling), each followed by the normalisation
    and the activation, then a linear head on the flattened features (the CIFAR variant of DC,
    DSA and MTT: no hidden fully connected layers). Pooling stops once the feature map is 1x1,
    and the first convolution pads small inputs so that the poolings divide the map exactly
    (28x28 MNIST becomes 32x32, as in those papers), so 8x8 digits, MNIST and CIFAR all work.

    At ``width=64`` without normalisation on 32x32x3 inputs and 10 classes the network has
    9,225,610 parameters (9,231,114 with batch norm).

    Parameters
    ----------
    width : int, default=64
        Channels of the first convolution (the paper's 64).
    norm : {"none", "batch", "instance", "layer"}, default="batch"
        Normalisation after each convolution (instance norm is skipped where the map is 1x1, as
        for the last convolutions on 8x8 digits).
    activation : {"relu", "softplus"}, default="relu"
    softplus_temperature : float, default=60.0
        ``softplus(beta x) / beta``; only used with ``activation="softplus"``.
    weight_init : {"lecun", "pytorch"}, default="lecun"
        LeCun-normal weights and zero biases, or PyTorch's uniform defaults.
    num_classes : int or None
        Output size of the head; the estimators set it from the data.

    See Also
    --------
    ConvNet, ResNet18

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = VGG11(width=4, norm="instance", num_classes=3)
    >>> x = jnp.zeros((2, 28, 28, 1))
    >>> variables = net.init(jax.random.PRNGKey(0), x)
    >>> net.apply(variables, x).shape
    (2, 3)
    >>> net.apply(variables, x, return_features=True).shape  # 8 * width channels on a 1x1 map
    (2, 32)
    """

    width: int = 64
    norm: str = "batch"
    activation: str = "relu"
    softplus_temperature: float = 60.0
    weight_init: str = "lecun"
    num_classes: Optional[int] = None

    def __post_init__(self):
        _check_image_net(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train=False, return_features=False):
        if x.ndim != 4:
            raise ValueError(f"VGG11 expects NHWC images; got shape {x.shape}.")
        act = _activation(self.activation, self.softplus_temperature)
        size = min(x.shape[1:3])
        # As many poolings as halve the map down to 1x1 (at most the five of the configuration).
        n_pools = max(0, min(_VGG11_CFG.count("M"), int(math.floor(math.log2(size)))))
        i = 0
        for item in _VGG11_CFG:
            if item == "M":
                if min(x.shape[1:3]) >= 2:
                    x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            pad = _first_padding(size, n_pools) if i == 0 else 1
            x = _conv(self.width * item, 3, 1, pad, True, self.weight_init, x.shape[-1],
                      f"conv_{i}")(x)
            x = act(_normalize(self.norm, x, train, f"norm_{i}"))
            i += 1
        features = x.reshape((x.shape[0], -1))
        if return_features:
            return features
        return _head(self.num_classes, self.weight_init, features)


def _head(num_classes, init, features):
    if num_classes is None:
        raise ValueError("The network's `num_classes` is not set; estimators set it in fit, or pass "
                         "num_classes=... when using the network directly.")
    return nn.Dense(num_classes, kernel_init=_kernel_init(init),
                    bias_init=_bias_init(init, features.shape[-1]), name="head")(features)


def with_num_classes(model, num_classes):
    """Return ``model`` with its head sized for ``num_classes`` (a copy; the spec is untouched)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"`model` must be a network such as ConvNet(...) or MLP(...); got {model!r}.")
    return model.clone(num_classes=int(num_classes), parent=None)


def has_batch_norm(model):
    """Whether the network keeps batch statistics (and so needs ``mutable=["batch_stats"]``)."""
    return getattr(model, "norm", "none") == "batch"


def init_variables(model, key, sample_shape):
    """Initialise a network's variables for inputs of shape ``sample_shape`` (no batch axis)."""
    return model.init(key, jnp.zeros((1,) + tuple(sample_shape), jnp.float32), train=False)


def default_network(sample_shape, *, norm="none", width_doubling=False, activation="relu",
                    softplus_temperature=None, depth=None, norm_position=None,
                    norm_momentum=None, weight_init=None, norm_epsilon=None):
    """The field's default network for samples of ``sample_shape`` (no batch axis).

    Images: ``ConvNet(width=128, depth=3)``, depth 4 from 64 pixels on the shorter side (the
    depth the papers use for 64-pixel Tiny ImageNet); tabular rows: ``MLP(hidden_sizes=(256,
    256))``. The keywords pick a method's variant: ``norm``, ``width_doubling``, ``depth``,
    ``norm_position``, ``norm_momentum`` and ``norm_epsilon`` (ConvNet only), ``activation``,
    ``softplus_temperature`` and ``weight_init`` (both); ``None`` keeps the default.

    Examples
    --------
    >>> default_network((32, 32, 3)).depth, default_network((64, 64, 3)).depth
    (3, 4)
    >>> default_network((5,)).hidden_sizes
    (256, 256)
    """
    act = {} if activation == "relu" else {"activation": activation}
    if softplus_temperature is not None:
        act["softplus_temperature"] = softplus_temperature
    if weight_init is not None:
        act["weight_init"] = weight_init
    if len(sample_shape) == 1:
        return MLP(hidden_sizes=(256, 256), **act)
    if depth is None:
        depth = 4 if min(sample_shape[:2]) >= 64 else 3
    conv = {"width_doubling": True} if width_doubling else {}
    if norm_position is not None:
        conv["norm_position"] = norm_position
    if norm_momentum is not None:
        conv["norm_momentum"] = norm_momentum
    if norm_epsilon is not None:
        conv["norm_epsilon"] = norm_epsilon
    return ConvNet(width=128, depth=depth, norm=norm, **conv, **act)


def features(model, variables, x):
    """Penultimate activations of ``model`` on ``x`` in inference mode (no batch statistics taken).

    The features that define the conjugate kernel of FRePo and of the KRR objective.
    """
    return model.apply(variables, x, train=False, return_features=True)
