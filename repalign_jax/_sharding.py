"""The run axis over several devices (`jax.sharding`).

When JAX sees more than one device (GPUs, TPU cores, hosts after
`jax.distributed.initialize`, or CPU devices forced with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`), the independent runs of a
batch are split across them with a one-axis `Mesh` named `"runs"`. Each run's
arithmetic is unchanged, so the results equal a single-device run.

On a CPU, XLA runs most of a training step's kernels on one thread, so one
device uses about one core: `use_host_cores()` (called by the command-line
tools before JAX starts) splits the host into one device per core, and a batch
of runs trains on all of them (1.3-1.4x the model-steps per second of one
device on this project's 2-core machines; `benchmarks/README.md`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def use_host_cores(n: int | None = None) -> bool:
    """Split the host CPU into `n` JAX devices (default: one per core this process may use).

    Only possible before JAX initialises its backends (before the first array
    operation); it does nothing then, nor when the count was already chosen
    (`XLA_FLAGS=--xla_force_host_platform_device_count=N`, `JAX_NUM_CPU_DEVICES`,
    `jax.config.update("jax_num_cpu_devices", N)`), nor on one core. GPUs and
    TPUs are unaffected: JAX's default devices stay the accelerators.

    **Returns:** whether the split was made.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    chosen = getattr(jax.config, "jax_num_cpu_devices") != -1 or "host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    )
    if n < 2 or chosen:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError:  # the backends are already initialised
        return False
    return True


def shares_host_memory(mesh: Mesh | None) -> bool:
    """Whether the mesh's devices are parts of one host's memory (CPU devices), not separate memories."""
    return mesh is None or mesh.devices.flat[0].platform == "cpu"


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
