"""Data parallelism for the learned distillers: the real batch split over devices.

Every learned distiller spends most of a meta-step on a batch of real rows: their features (FRePo,
KRR, the translator), the outer loss through the linearised network (RCIG) or the real-batch loss
backpropagated through the unrolled inner training (RaT-BPTT). That batch is the one large array
of the step, and it is independent row by row, so it is what gets split: its rows are sharded
over a one-axis device mesh, while the synthetic set, the networks, the optimiser state and the
key stay replicated. XLA inserts the reductions (Gram matrices, sums of per-row losses), so the
sharded step computes the same numbers as the single-device one, up to summation order.

``devices`` is the same parameter for every method: ``None`` (the default device), an ``int`` k
(the first k of ``jax.devices()``) or a list of ``jax.Device``. Under ``jax.distributed`` the
global device list spans every host, and every process runs the same fit on the same data.
"""

from numbers import Integral
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils._param_validation import Interval

__all__ = ["DEVICES_CONSTRAINT", "DataParallel", "data_parallel", "resolve_devices"]

#: The ``_parameter_constraints`` entry of every ``devices`` parameter.
DEVICES_CONSTRAINT = [Interval(Integral, 1, None, closed="left"), list, tuple, None]

def resolve_devices(devices, param="devices"):
    """The devices named by a ``devices`` parameter, or ``None`` for the default device."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, Integral) and not isinstance(devices, bool):
        if devices < 1 or devices > len(available):
            raise ValueError(f"`{param}`={devices} but {len(available)} JAX device(s) are "
                             f"available ({available[0].platform}).")
        return list(available[:devices])
    if isinstance(devices, (list, tuple)):
        devices = list(devices)
        if devices and all(isinstance(d, jax.Device) for d in devices):
            if len(set(devices)) != len(devices):
                raise ValueError(f"`{param}` lists a device more than once: {devices!r}.")
            return devices
    raise ValueError(f"`{param}` must be None, a positive int or a non-empty list of jax.Device; "
                     f"got {devices!r}.")


class DataParallel(NamedTuple):
    """Where a fit's arrays live: rows of real batches sharded, everything else replicated.

    Hashable, so it can sit in a method's static configuration. ``mesh is None`` means a single
    device (``replicated`` is then that device, or ``None`` for JAX's default).
    """

    mesh: Optional[Any]
    replicated: Optional[Any]

    @property
    def n_devices(self):
        return 1 if self.mesh is None else self.mesh.devices.size

    def rows(self, x, axis=0):
        """``x`` with its ``axis`` sharded over the mesh (unchanged on a single device)."""
        if self.mesh is None:
            return x
        from jax.sharding import NamedSharding, PartitionSpec

        spec = PartitionSpec(*([None] * axis), "data")
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def batch_size(self, batch_size, n_rows, param="batch_size"):
        """``min(batch_size, n_rows)`` rounded down to a multiple of the number of devices."""
        size = min(int(batch_size), int(n_rows))
        size -= size % self.n_devices
        if size == 0:
            raise ValueError(f"`{param}`={batch_size} (capped at {n_rows} rows) is smaller than "
                             f"the number of `devices` ({self.n_devices}).")
        return size

    def put(self, tree):
        """``tree`` as JAX arrays on the fit's device(s), replicated."""
        if self.replicated is None:
            return jax.tree.map(jnp.asarray, tree)
        return jax.device_put(tree, self.replicated)


def data_parallel(devices, param="devices"):
    """The :class:`DataParallel` placement for a ``devices`` parameter."""
    resolved = resolve_devices(devices, param)
    if resolved is None:
        return DataParallel(None, None)
    if len(resolved) == 1:
        return DataParallel(None, resolved[0])
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(resolved), ("data",))
    return DataParallel(mesh, NamedSharding(mesh, PartitionSpec()))
