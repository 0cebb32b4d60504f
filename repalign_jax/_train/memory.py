"""Memory sizing: how many runs of a network fit in one chunk on this machine."""

from __future__ import annotations

import math
import os

import jax

from .._networks import NetworkSpec, init_state
from .._sharding import shares_host_memory
from .core import TrainConfig


def _param_count(spec: NetworkSpec) -> int:
    shapes = jax.eval_shape(lambda: init_state(spec, 1.0, jax.random.key(0)))
    return sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(shapes))


def bytes_per_run(spec: NetworkSpec, config: TrainConfig, n_points: int, n_pairs: int) -> int:
    """Rough device memory one run of the batch needs (parameters, optimiser, activations, records)."""
    itemsize = 8 if bool(getattr(jax.config, "jax_enable_x64")) else 4
    copies = 4 if config.optimizer == "sgd" else 6  # params, grads, update (+ Adam moments)
    batch = n_points if config.batch_size is None else min(n_points, config.batch_size)
    acts = 3 * max(batch, n_points) * sum(spec.hidden_sizes())
    layers = spec.n_hidden if config.all_layers else 1
    records = (config.epochs + 1) * (1 + 3 * n_pairs * layers)
    kept = 2 * n_points * (max(spec.hidden_sizes()) + spec.d_out) if config.keep_hidden else 0
    return itemsize * (copies * _param_count(spec) + acts + records + kept)


def available_memory() -> int:
    """Bytes the batch may use: 70% of the free memory of the first device, or half the host's RAM."""
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and "bytes_limit" in stats:
        return int(0.7 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    try:
        return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def fitting_runs(spec: NetworkSpec, config: TrainConfig, n_points: int, n_pairs: int, mesh=None) -> int:
    """How many runs fit in memory at once: `available_memory() // bytes_per_run`, on every
    device of the mesh when each has its own memory (GPUs), once when they share the host's."""
    per_device = available_memory() // max(bytes_per_run(spec, config, n_points, n_pairs), 1)
    devices = 1 if mesh is None or shares_host_memory(mesh) else mesh.size
    return max(1, per_device) * devices
