"""The run axis over several devices (`jax.sharding`).

When JAX sees more than one device (GPUs, TPU cores, hosts after
`jax.distributed.initialize`, or CPU devices forced with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`), the independent runs of a
batch are split across them with a one-axis `Mesh` named `"runs"`. Each run's
arithmetic is unchanged, so the results equal a single-device run.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def run_mesh(devices=None) -> Mesh | None:
    """A mesh over all (or the given) devices with one axis `"runs"`; `None` for one device."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < 2:
        return None
    return Mesh(np.array(devices), ("runs",))


def shard_runs(mesh: Mesh | None, array):
    """Place `array` `(R, ...)` split along its first axis over the mesh (as is without one)."""
    if mesh is None:
        return jax.numpy.asarray(array)
    return jax.device_put(array, NamedSharding(mesh, PartitionSpec("runs")))


def replicate(mesh: Mesh | None, array):
    """Place `array` whole on every device of the mesh (as is without one)."""
    if mesh is None:
        return jax.numpy.asarray(array)
    return jax.device_put(array, NamedSharding(mesh, PartitionSpec()))


def round_up(n: int, mesh: Mesh | None) -> int:
    """`n` rounded up to a multiple of the mesh size (so every device gets equal runs)."""
    size = 1 if mesh is None else mesh.size
    return -(-n // size) * size
