"""The vectorised training engine: every gain, seed and learning rate as one compiled batch.

`train_networks` trains R networks of one `NetworkSpec` on one dataset with
plain gradient descent (or Adam) on `0.5 * mean squared error`, one step per
epoch (or shuffled mini-batches), and records at every epoch, *before* that
epoch's step (index 0 is the initial state) and once after the last:

- the training loss on the whole dataset;
- `h, y, w` (docs/theory.md section 3) of every tracked pair of points at the tracked
  hidden layer, or at every hidden layer.

The compiled core is a `lax.scan` over epochs whose body is `vmap`-ped over the
runs; gains, seeds and learning rates are traced arrays, so a new grid never
recompiles. Runs whose loss turns non-finite are flagged, frozen, and their
later records are NaN; the rest of the batch is unaffected. When the batch does
not fit in memory it is trained in chunks of equal shape (one compilation).

Three rooms: `core` (the configuration, the result and the compiled programs:
pure functions of arrays), `driver` (the host loop over a chunk's segments:
progress, snapshots, the stopping loop that drops stopped runs) and `memory`
(how many runs fit in a chunk). `train_networks`, here, validates its input,
plans the chunks and hands each to the driver.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jaxtyping import ArrayLike

from .. import _snapshot
from .._chunks import Chunk, plan_chunks
from .._networks import NetworkSpec, activation_indices, init_state
from .._progress import Meter, Progress
from .._sharding import replicate, round_up, run_mesh, shard_runs

# The package's rooms: the compiled core, the host driver, memory sizing. What the rest of the
# package and the tests use is re-exported here.
from .core import TrainConfig as TrainConfig
from .core import TrainResult as TrainResult
from .core import _segment_jit as _segment_jit
from .core import _start_jit as _start_jit
from .core import segment_length as segment_length
from .driver import _train_chunk
from .memory import _param_count as _param_count
from .memory import available_memory as available_memory
from .memory import bytes_per_run as bytes_per_run
from .memory import fitting_runs as fitting_runs


def _as_runs(name, v, R, dtype):
    arr = np.broadcast_to(np.asarray(v, dtype), (R,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def train_networks(
    x: ArrayLike,
    targets: ArrayLike,
    spec: NetworkSpec,
    config: TrainConfig,
    *,
    gains: ArrayLike | None = None,
    seeds: ArrayLike = 0,
    lrs: ArrayLike,
    activations: str | Sequence[str] | None = None,
    pairs: Sequence[tuple[int, int]] | ArrayLike = ((0, 1),),
    initial_params=None,
    chunk_size: int | None = None,
    progress: bool | Meter = False,
    devices: Sequence | None = None,
    compact: bool | None = None,
    checkpoint: Callable[[dict[str, np.ndarray]], None] | None = None,
    checkpoint_every: float = 300.0,
    resume: Mapping[str, np.ndarray] | None = None,
) -> TrainResult:
    """Train a batch of networks of one architecture, one compiled call per chunk.

    **Arguments:**

    - `x`: inputs `(N, d_in)`, shared by every run, or `(R, N, d_in)`, one
      dataset per run (e.g. a grid of two-point tasks: one compilation for all);
      `targets`: `(N, d_out)` or `(R, N, d_out)` likewise.
    - `spec`: the `NetworkSpec`; `config`: the `TrainConfig`.
    - `gains`, `seeds`, `lrs`: per run, broadcast against each other to `(R,)`:
      Xavier gain (required unless `initial_params` are given), integer seed
      (initialisation, dropout and shuffling streams), learning rate per step.
    - `activations`: the nonlinearity of each run (a name of `ACTIVATIONS`, or one
      per run, broadcast like `gains`); `None`: `spec.activation` for every run.
      The nonlinearity is traced: every activation of one network shape trains in
      one vectorised batch from one compiled executable (`NetworkSpec.shape`).
    - `pairs`: `(n_pairs, 2)` indices of the tracked point pairs (point 2 minus point 1).
    - `initial_params`: start from these parameters instead of fresh Xavier
      weights (`gains` is then unused): a batch of parameter states with a
      leading run axis `R`, laid out as `init_state` makes them: an `nnx.State`
      (or nested dict) `{"layers": {k: {"kernel": ..., "bias": ...}}}` for layer
      `k = 0 .. n_layers - 1` in forward order. A dense kernel is `(in, out)`
      (PyTorch's `nn.Linear.weight` transposed), a convolution kernel
      `(kernel, in_channels, out_channels)` (PyTorch's `nn.Conv1d.weight`
      as `weight.transpose(2, 1, 0)`), biases `(out,)`. `params_from_torch`
      converts a PyTorch `state_dict` of the authors' models.
    - `chunk_size`: runs per compiled call; default, as many as fit in 70% of the
      device's free memory (see `bytes_per_run`).
    - `progress`: `True` for a progress bar on stderr, or a `Meter` (a `Progress`, or any
      callable of one integer) given the epoch reached in the current chunk, called as
      each compiled segment of `segment_length(config)` epochs has been computed
      (not when it is queued: JAX dispatches asynchronously); a `Progress` passed in
      is left open for the caller.
    - `devices`: devices to spread the runs over (default: all that JAX sees, at
      most one per run; on a CPU see `use_host_cores`); with more than one, each
      chunk is sharded along the run axis (`jax.sharding`, a mesh axis `"runs"`).
    - `compact`: with `TrainConfig.stop_loss`, drop the runs that have stopped (or
      diverged) from the batch between compiled segments, once at most half of it is
      still training (over several devices: rounded up to a multiple of them). The
      records are those of the full batch to float rounding (which a long run can
      amplify; in float64, to 1e-10); the time is that
      of the runs that still train (the authors' final-distance grid spends most of
      its epochs waiting for its slowest run), plus one compilation per new batch
      size. `None` (default): on a CPU, whose time per epoch grows with the batch;
      not on an accelerator, where a smaller batch saves little and a compilation
      takes seconds. `False` keeps every run in the batch to the end.
    - `checkpoint`: called on the host with a snapshot of the training so far (a
      flat `dict` of NumPy arrays, for `np.savez`) after a compiled segment or a
      chunk has been computed, at most every `checkpoint_every` seconds (a
      snapshot waits for the device and copies the state to the host), never
      after the last; the caller saves it (e.g. `results.atomic_save_npz`).
    - `resume`: such a snapshot (e.g. `results.load_npz` of the file): the
      training continues after its epochs and chunks, and the result equals that
      of the uninterrupted training bit for bit. It must come from a call with
      the same data, runs, network, configuration, chunking and devices, else
      `SnapshotMismatch` (a `ValueError`; train from the start then).

    **Returns:** a `TrainResult` of NumPy arrays with leading axis `R`. The same
    seed gives the same run alone, in any batch and in any chunking (to float
    tolerance).
    """
    batch = _validate(x, targets, spec, config, gains, seeds, lrs, activations, pairs, initial_params)
    layout = _layout(batch, spec, config, chunk_size, devices, compact)
    saver, parts, first, snap = _snapshots(batch, spec, config, layout, checkpoint, checkpoint_every, resume)
    if progress is True:
        reporter = Progress(config.epochs, len(layout.chunks))
        try:
            return _train_chunks(batch, spec, config, layout, reporter, True, saver, parts, first, snap)
        finally:
            reporter.close()
    reporter = progress if callable(progress) else None
    return _train_chunks(batch, spec, config, layout, reporter, False, saver, parts, first, snap)


class _Batch(NamedTuple):
    """`train_networks`' arguments, checked: data of the training dtype, per-run arrays `(R,)`."""

    x: np.ndarray  # (N, d_in), or (R, N, d_in) per run
    targets: np.ndarray
    pairs: np.ndarray  # (n_pairs, 2) int32
    gains: np.ndarray
    seeds: np.ndarray  # uint32
    lrs: np.ndarray
    acts: np.ndarray  # activation indices
    params: Any  # the initial parameter state (`_check_params`), or None
    R: int

    @property
    def per_run(self) -> bool:
        return self.x.ndim == 3


def _validate(x, targets, spec: NetworkSpec, config: TrainConfig, gains, seeds, lrs, activations, pairs, params):
    """The `_Batch` of `train_networks`' arguments; raises `ValueError` naming the first bad one."""
    x = np.asarray(x)
    targets = np.asarray(targets)
    dtype = np.float64 if bool(getattr(jax.config, "jax_enable_x64")) else np.float32
    per_run = x.ndim == 3
    if x.ndim not in (2, 3) or x.shape[-1] != spec.d_in:
        raise ValueError(f"x must have shape (N, {spec.d_in}) or (R, N, {spec.d_in}), got {x.shape}")
    if targets.shape != x.shape[:-1] + (spec.d_out,):
        raise ValueError(f"targets must have shape {x.shape[:-1] + (spec.d_out,)}, got {targets.shape}")
    n_points = x.shape[-2]
    pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
    if pairs.size == 0 or pairs.min() < 0 or pairs.max() >= n_points or np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError(f"pairs must be distinct point indices in [0, {n_points}), got {pairs.tolist()}")
    config.layer(spec)
    if gains is None:
        if params is None:
            raise ValueError("gains are required unless initial_params are given")
        gains = 1.0
    acts = activation_indices(activations, spec)
    shapes = [np.shape(gains), np.shape(seeds), np.shape(lrs), np.shape(acts)] + ([x.shape[:1]] if per_run else [])
    leaf = None
    if params is not None:
        leaf, params = _check_params(spec, params, dtype)
        shapes.append(leaf.shape[:1])
    try:
        R = int(np.prod(np.broadcast_shapes(*shapes)))
    except ValueError:
        raise ValueError(f"the per-run arguments do not broadcast to one run axis: shapes {shapes}") from None
    if R < 1:
        raise ValueError("no runs: gains, seeds and lrs broadcast to an empty batch")
    if per_run and x.shape[0] != R:
        raise ValueError(f"x has data for {x.shape[0]} runs, the other arguments for {R}")
    if leaf is not None and leaf.shape[0] != R:
        raise ValueError(f"initial_params hold {leaf.shape[0]} runs, the other arguments {R}")
    gains = _as_runs("gains", gains, R, dtype)
    lrs = _as_runs("lrs", lrs, R, dtype)
    seeds = np.broadcast_to(np.asarray(seeds, np.int64), (R,)).astype(np.uint32)
    acts = np.broadcast_to(acts, (R,)).copy()
    if np.any(np.asarray(gains) <= 0):
        raise ValueError("gains must be positive")
    if np.any(np.asarray(lrs) <= 0):
        raise ValueError("learning rates must be positive")
    return _Batch(np.asarray(x, dtype), np.asarray(targets, dtype), pairs, gains, seeds, lrs, acts, params, R)


class _Layout(NamedTuple):
    """Where and in what pieces the batch trains."""

    devices: list  # at most one per run
    mesh: Any  # over `devices` (`run_mesh`)
    compact: bool
    chunk: int  # runs per compiled call, a multiple of the devices
    chunks: list[Chunk]


def _layout(batch: _Batch, spec: NetworkSpec, config: TrainConfig, chunk_size, devices, compact) -> _Layout:
    """The devices, mesh, compaction and chunks of `batch` (`chunk_size=None`: what fits in memory)."""
    # At most one device per run: a device without a run of its own would train padding.
    used = list(jax.devices() if devices is None else devices)[: batch.R]
    mesh = run_mesh(used)
    if compact is None:
        compact = used[0].platform == "cpu"
    if chunk_size is None:
        chunk_size = fitting_runs(spec, config, batch.x.shape[-2], len(batch.pairs), mesh)
    R = batch.R
    chunk = round_up(int(max(1, min(R, chunk_size))), mesh)  # padding (copies of the last run) fills every device
    chunks = plan_chunks(R, chunk) if chunk <= R else [Chunk(np.arange(chunk).clip(max=R - 1), R)]
    return _Layout(used, mesh, bool(compact), chunk, chunks)


def _snapshots(batch: _Batch, spec, config: TrainConfig, layout: _Layout, checkpoint, every, resume):
    """`(saver, finished chunks, first chunk to train, its snapshot)`: a `_snapshot.Saver` for
    `checkpoint` (or `None`), and where `resume` (a snapshot of this very training, else
    `SnapshotMismatch`) leaves off (no snapshot: `(None, [], 0, None)`)."""
    if checkpoint is None and resume is None:
        return None, [], 0, None
    fp = _snapshot.fingerprint(
        repr(spec),
        repr(config),
        batch.x,
        batch.targets,
        batch.pairs,
        batch.gains,
        batch.seeds,
        batch.lrs,
        batch.acts,
        *([] if batch.params is None else [np.asarray(v) for v in jax.tree_util.tree_leaves(batch.params)]),
        layout.chunk,
        [str(d) for d in layout.devices],
        layout.compact,
    )
    saver = None if checkpoint is None else _snapshot.Saver(checkpoint, every, fp)
    parts, first, snap = [], 0, None
    if resume is not None:
        first, parts, snap = _snapshot.unpack(resume, fp, TrainResult, config.loss)
        if "epoch" not in snap:
            snap = None
    return saver, parts, first, snap


def _train_chunks(batch: _Batch, spec, config, layout: _Layout, reporter, own, saver, parts, first, snap):
    """Every chunk from `first` on through the driver (`_train_chunk`), offering `saver` the state
    after each; `parts`: the chunks finished before. `own`: `reporter` is this call's `Progress`
    (moved to each chunk). **Returns:** the `TrainResult` of the `R` runs, NumPy arrays."""
    mesh = layout.mesh
    place_data = shard_runs if batch.per_run else replicate
    pj = replicate(mesh, batch.pairs)
    xj = tj = None
    if not batch.per_run:
        xj, tj = replicate(mesh, batch.x), replicate(mesh, batch.targets)
    core = spec.shape()  # one executable per shape: the nonlinearity is traced (`acts`)
    for c, (idx, _) in enumerate(layout.chunks):
        if c < first:  # finished before the snapshot
            continue
        if own:
            reporter.start_chunk(c)
        g, sd, lr, ac = (
            shard_runs(mesh, np.asarray(v)[idx]) for v in (batch.gains, batch.seeds, batch.lrs, batch.acts)
        )
        if batch.per_run:
            xj, tj = place_data(mesh, batch.x[idx]), place_data(mesh, batch.targets[idx])
        params = None
        if batch.params is not None:
            params = jax.tree_util.tree_map(lambda v, idx=idx: shard_runs(mesh, np.asarray(v)[idx]), batch.params)
        out = _train_chunk(
            xj,
            tj,
            pj,
            g,
            sd,
            lr,
            ac,
            params,
            reporter,
            None if saver is None else functools.partial(saver.maybe, c, list(parts)),
            snap if c == first else None,
            spec=core,
            config=config,
            compact=layout.compact,
            mesh=mesh,
        )
        parts.append(jax.tree_util.tree_map(np.asarray, out))
        if saver is not None and c + 1 < len(layout.chunks):
            saver.maybe(c + 1, parts)
    return jax.tree_util.tree_map(lambda *v: np.concatenate(v)[: batch.R], *parts)


def _check_params(spec: NetworkSpec, params, dtype):
    """`(a leaf, the state)`: `params` as an `nnx.State` of `dtype` with `init_state`'s structure and
    a leading run axis; raises `ValueError` naming the first mismatch."""
    abstract = jax.eval_shape(lambda: init_state(spec, 1.0, jax.random.key(0)))
    want = jax.tree_util.tree_flatten_with_path(abstract)[0]
    want_paths = [_path_key(p) for p, _ in want]
    got = {_path_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    if set(got) != set(want_paths):
        missing = sorted(set(want_paths) - set(got))
        extra = sorted(set(got) - set(want_paths))
        raise ValueError(
            f"initial_params do not match the network's layout: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    leaves = []
    R = None
    for path, (_, leaf) in zip(want_paths, want):
        v = np.asarray(got[path], dtype)
        if v.shape[1:] != leaf.shape:
            raise ValueError(f"initial_params {path}: expected (R,) + {leaf.shape}, got {v.shape}")
        if R is None:
            R = v.shape[0]
        elif v.shape[0] != R:
            raise ValueError(f"initial_params {path}: {v.shape[0]} runs, the first parameter has {R}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"initial_params {path}: not finite")
        leaves.append(v)
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), leaves)
    return leaves[0], state


def _path_key(path) -> str:
    """`"layers/3/kernel"` from a pytree key path (attribute keys such as an `nnx.Param`'s value dropped)."""
    names = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            names.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            names.append(str(k.idx))
    return "/".join(names)
