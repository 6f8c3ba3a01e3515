r"""The precision policy of the distillation network, applied to any flax model in one place.

A distiller's ``network_precision`` parameter sets in which dtype and at which matmul precision
the *distillation network* computes -- its convolutions, dense layers, activations and
normalisations, in the forward pass and in every backward pass through it (the meta-gradient,
the pool's online training, RaT-BPTT's unrolled inner training):

``"float32"``
    float32 with full-precision matmuls (``jax.default_matmul_precision("float32")``, i.e.
    ``Precision.HIGHEST``): no TF32 or bfloat16 passes on accelerators.
``"tf32"``
    float32 storage, convolutions and matmuls allowed TensorFloat-32 passes on GPUs
    (``jax.default_matmul_precision("tensorfloat32")``; 10-bit mantissa products, float32
    accumulation). On the CPU it computes exactly as ``"float32"``.
``"bfloat16"``
    mixed precision: the parameters (``"params"``) and the inputs are cast to bfloat16 for the
    network call, so every layer computes in bfloat16, and the outputs are cast back to the
    input's dtype. The parameters stay float32 (their gradients come back float32 through the
    cast) and flax's batch norm takes its statistics in float32, so the running averages stay
    float32.
``"float64"``
    the same mechanism as bfloat16 with float64 (needs ``jax_enable_x64``): a reference path
    for tests.

What the network returns (features, logits) is in the dtype of its input, so the code around it
-- the Gram matrices, the KRR and linear solves, the loss reductions -- computes as before, at
the distiller's own ``precision`` (float32, ``"highest"`` by default); explicit ``precision=``
arguments there are unaffected by the policy, which only covers the network call.

The mechanism is a thin wrapper, :func:`with_network_precision`, that a method puts in its static
configuration instead of the bare network: every ``init``/``apply`` of the network in the jitted
step then runs under the policy, whatever flax module the user supplied. ``init`` is unchanged
(the variables are always created in their own dtype, float32), so states, checkpoints and pools
do not depend on the policy.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from sklearn_distill.networks import ConvNet
>>> from sklearn_distill._precision import with_network_precision
>>> net = ConvNet(width=4, depth=2, num_classes=3)
>>> x = jnp.ones((2, 8, 8, 1))
>>> variables = net.init(jax.random.PRNGKey(0), x)
>>> mixed = with_network_precision(net, "bfloat16")
>>> mixed.apply(variables, x, return_features=True).dtype  # computed in bfloat16
dtype('float32')
>>> mixed.depth  # the network's attributes read through
2
"""

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _backend

__all__ = ["NETWORK_PRECISIONS", "resolve_network_precision", "with_network_precision",
           "PrecisionNetwork", "x64_enabled"]

#: The values of the ``network_precision`` parameter.
NETWORK_PRECISIONS = ("auto", "float32", "tf32", "bfloat16", "float64")

# Per resolved value: the default matmul precision the network is traced under, and the dtype
# its parameters and inputs are cast to (None: no cast).
_MATMUL = {"float32": "float32", "tf32": "tensorfloat32", "bfloat16": None, "float64": "float32"}
_DTYPE = {"float32": None, "tf32": None, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def x64_enabled():
    """Whether JAX computes in 64 bits (``jax_enable_x64``, globally or in ``jax.enable_x64``)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64


def resolve_network_precision(value):
    """The precision a fit uses for ``network_precision=value``.

    ``"auto"`` is the ``network_precision`` decision of :mod:`sklearn_distill._backend`
    (``"float32"`` on the CPU, ``"tf32"`` on accelerators).

    Raises
    ------
    ValueError
        On an unknown value, or on ``"float64"`` while JAX computes in 32 bits.
    """
    if value == "auto":
        value = _backend.network_precision()
    if value not in NETWORK_PRECISIONS[1:]:
        raise ValueError(f"`network_precision` must be one of {NETWORK_PRECISIONS}; got {value!r}.")
    if value == "float64" and not x64_enabled():
        raise ValueError("network_precision='float64' needs 64-bit JAX: enable it with "
                         "jax.config.update('jax_enable_x64', True) or inside "
                         "`with jax.enable_x64(True):` before calling fit.")
    return value


def _is_float_array(a):
    return isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if _is_float_array(a) else a, tree)


def _like(updates, variables):
    """``updates`` (new values of mutable collections) in the dtypes of the incoming ones."""
    out = {}
    for name, collection in updates.items():
        old = variables.get(name)
        if old is not None and jax.tree.structure(old) == jax.tree.structure(collection):
            collection = jax.tree.map(lambda u, o: u.astype(o.dtype) if _is_float_array(u)
                                      else u, collection, old)
        out[name] = collection
    return out


@dataclasses.dataclass(frozen=True)
class PrecisionNetwork:
    """A flax network whose ``apply`` runs under a precision policy (hashable: a jit static).

    Attributes
    ----------
    module : flax.linen.Module
        The network; every attribute not defined here is read from it (``norm``, ``depth``...).
    precision : {"float32", "tf32", "bfloat16", "float64"}
        The resolved policy (see the module docstring).
    """

    module: Any
    precision: str

    def __post_init__(self):
        if self.precision not in _DTYPE:
            raise ValueError(f"The precision of a network must be one of {tuple(_DTYPE)}; "
                             f"got {self.precision!r}.")

    def __getattr__(self, name):
        if name.startswith("__") or name in ("module", "precision"):
            raise AttributeError(name)
        return getattr(self.module, name)

    def init(self, *args, **kwargs):
        """The network's own ``init``: variables in their own dtype, whatever the policy."""
        return self.module.init(*args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        """``module.apply(variables, *args, **kwargs)`` under the policy.

        Floating inputs and parameters are cast to the policy's dtype (bfloat16, float64), the
        call is traced under its default matmul precision, floating outputs come back in the
        dtype of the first floating input (float32 in a fit), and the new values of mutable
        collections (batch statistics) in the dtypes they came in.
        """
        dtype = _DTYPE[self.precision]
        inputs = [a for a in jax.tree.leaves(args) if _is_float_array(a)]
        out_dtype = inputs[0].dtype if inputs else jnp.float32
        cast_vars = variables
        if dtype is not None:
            cast_vars = {**variables}
            if "params" in cast_vars:
                cast_vars["params"] = _cast(cast_vars["params"], dtype)
            args = _cast(args, dtype)
        matmul = _MATMUL[self.precision]
        scope = (jax.default_matmul_precision(matmul) if matmul is not None
                 else contextlib.nullcontext())
        with scope:
            result = self.module.apply(cast_vars, *args, **kwargs)
        if dtype is None:
            return result
        if kwargs.get("mutable"):
            out, updates = result
            return _cast(out, out_dtype), _like(updates, variables)
        return _cast(result, out_dtype)


def with_network_precision(model, precision):
    """``model`` under the resolved ``precision`` (a :class:`PrecisionNetwork`).

    A network already under a policy gets the new one instead.
    """
    if isinstance(model, PrecisionNetwork):
        model = model.module
    return PrecisionNetwork(model, precision)
