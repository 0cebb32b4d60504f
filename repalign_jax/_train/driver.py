"""The host driver: a chunk's compiled segments in order, progress, snapshots, and the
stopping loop that drops stopped runs from the batch (compaction)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _snapshot
from .._progress import report_computed
from .._sharding import round_up, shard_runs
from .core import TrainResult, _Carry, _finish_jit, _Runs, _segment_jit, _start_jit, segment_length, start_config


def _train_chunk(
    x,
    targets,
    pairs,
    gains,
    seeds,
    lrs,
    acts,
    params=None,
    report=None,
    save=None,
    snap=None,
    *,
    spec,
    config,
    compact=False,
    mesh=None,
) -> TrainResult:
    """Train `R` runs (`gains`, `seeds`, `lrs`, `acts` of shape `(R,)`) of one chunk.

    The epoch loop runs as compiled segments of `segment_length(config)` epochs (one
    executable, called again and again; no host callback inside, so the executables
    can live in JAX's persistent compilation cache); `report(epoch)` is called on the
    host once each has been computed (not merely queued). With `stop_loss` the loop is
    `_stopping_loop` (runs that stopped may leave the batch with `compact`; once every
    run has stopped no segment is run).
    `x`, `targets` are shared `(N, d)` or per run `(R, N, d)`; `params` is `None`
    (fresh Xavier weights from `gains`, `seeds`) or a batch of parameter states.
    `save(state)` is offered the chunk's state (a function building its snapshot
    arrays, `_snapshot`) after each segment but the last; `snap` is a snapshot to
    continue from (its `"epoch"` epochs are not run again).
    """
    kw = dict(spec=spec, config=config)
    start_args = (x, targets, pairs, gains, seeds, lrs, acts, params, np.int32(config.epochs))
    carry, runs, initial = _start_jit(*start_args, spec=spec, config=start_config(config))
    if config.stop_loss is not None:
        carry, loss_series, rec_series = _stopping_loop(
            carry, x, targets, pairs, runs, report, compact, mesh, save, snap, **kw
        )
        return _finish_jit(carry, x, targets, pairs, runs, loss_series, rec_series, initial, **kw)
    E, S = config.epochs, segment_length(config)
    losses, recs, start = [], [], 0
    if snap is not None:
        start = int(snap["epoch"])
        carry = _snapshot.restore_tree(carry, snap, "carry", functools.partial(shard_runs, mesh))
        saved = [jnp.asarray(v) for v in _snapshot.series(snap)]
        losses.append(saved[0])
        recs.append(tuple(saved[1:]))
    for epoch0 in range(start, E, S):
        carry, (loss, rec) = _segment_jit(carry, x, targets, pairs, runs, np.int32(epoch0), **kw)
        losses.append(loss)
        recs.append(rec)
        if report is not None and len(losses) > 1:
            report_computed(report, (losses[-2], recs[-2]), epoch0)
        if save is not None and epoch0 + S < E:
            save(functools.partial(_plain_state, epoch0 + S, carry, losses, recs))
    if report is not None:
        report_computed(report, (losses[-1], recs[-1]), E)
    loss_series = jnp.concatenate(losses)[:E]
    rec_series = tuple(jnp.concatenate(parts)[:E] for parts in zip(*recs))
    return _finish_jit(carry, x, targets, pairs, runs, loss_series, rec_series, initial, **kw)


def _plain_state(reached: int, carry: _Carry, losses, recs) -> dict:
    """The snapshot arrays of a chunk without `stop_loss` after `reached` epochs."""
    series = [np.concatenate([np.asarray(v) for v in losses])]
    series += [np.concatenate([np.asarray(r[k]) for r in recs]) for k in range(len(recs[0]))]
    return {
        "epoch": np.asarray(reached),
        **_snapshot.tree_arrays("carry", carry),
        **{f"series.{k}": v[:reached] for k, v in enumerate(series)},
    }


def _cpu_backend() -> bool:
    """Whether the arrays live in host memory (a CPU backend): there, rows are picked and joined
    with NumPy, where a device gather or concatenation would compile one program per shape."""
    return jax.default_backend() == "cpu"


def _host_array(v) -> bool:
    """Whether `v` is handled with NumPy (`_cpu_backend`; random keys have no NumPy form)."""
    return _cpu_backend() and not jnp.issubdtype(v.dtype, jax.dtypes.prng_key)


def _rows(v, idx):
    """`v[idx]` along the leading axis (with NumPy on a CPU, see `_cpu_backend`)."""
    return np.asarray(v)[idx] if _host_array(v) else v[idx]


def _joined(parts, order):
    """The runs of `parts` (arrays with a leading run axis) concatenated, then put in `order`."""
    xp = np if _host_array(parts[0]) else jnp
    return xp.concatenate(parts)[order]


def _take(tree, idx, mesh=None):
    """Runs `idx` of a pytree whose leaves all have the leading run axis (split over `mesh`)."""
    return jax.tree_util.tree_map(lambda v: shard_runs(mesh, _rows(v, idx)), tree)


def _stopping_loop(
    carry: _Carry,
    x,
    targets,
    pairs,
    runs: _Runs,
    report,
    compact=False,
    mesh=None,
    save=None,
    snap=None,
    *,
    spec,
    config,
):
    """The epoch loop with `stop_loss`, its records gathered on the host segment by segment
    (its host state: a `_StoppingLoop`).

    Once every run has stopped, the remaining segments are not run: their records
    repeat the last ones, as the compiled loop would record them. With `compact`:
    a run that has stopped steps nothing more and repeats its last records, so
    computing it is wasted work. After each segment, once at most half of the runs
    still in the batch are training, the stopped ones leave it: their state is set
    aside, their remaining records are their last records (what the compiled loop
    would record), and the next segments run on the smaller batch (one compilation
    per batch size, at most `log2(R)` of them; over a mesh, stopped runs pad the batch
    to a multiple of its devices and stay in it). Runs that diverged leave it too, with
    NaN records (as the compiled loop masks them); only their `keep_hidden` final
    activations, from non-finite weights either way, may differ. Runs are independent
    under `vmap`, so the records are those of the full batch (to float tolerance).
    `save` and `snap` as in `_train_chunk`.
    Returns the full final carry and the `(E, R, ...)` loss and record series.
    """
    kw = dict(spec=spec, config=config)
    E, S = config.epochs, segment_length(config)
    loop = _StoppingLoop(carry, x, targets, runs, mesh, E)
    if snap is not None:
        loop.restore(snap)
    for epoch0 in range(loop.start, E, S):
        carry, (loss, rec) = _segment_jit(loop.carry, loop.x, loop.targets, pairs, loop.runs, np.int32(epoch0), **kw)
        loop.record(carry, epoch0, min(epoch0 + S, E), loss, rec)
        if report is not None:
            report(loop.start)
        if loop.start == E:
            break
        if loop.all_stopped():
            loop.fill(loop.active, loop.carry)
            if report is not None:
                report(E)
            break
        if compact:
            loop.compact()
        if save is not None:
            save(loop.snapshot)
    return loop.finish()


class _StoppingLoop:
    """The host state of `_stopping_loop`, between two compiled segments.

    - `carry`, `x`, `targets`, `runs`: the batch still training (after compaction a
      subset of the chunk's runs: `active`, their positions in the chunk).
    - `parked`: the runs that left it, `(positions, their carry without halt_epoch)`.
    - `bufs`: the host `(E, R, ...)` series, loss then records, filled to `start` epochs.
    """

    def __init__(self, carry: _Carry, x, targets, runs: _Runs, mesh, epochs: int):
        self.carry, self.x, self.targets, self.runs = carry, x, targets, runs
        self.mesh, self.E, self.R = mesh, epochs, runs.lrs.shape[0]
        self.per_run = x.ndim == 3
        self.active = np.arange(self.R)
        self.parked: list[tuple[np.ndarray, Any]] = []
        self.bufs: list[np.ndarray] | None = None
        self.start = 0

    def _new_bufs(self, like) -> None:
        self.bufs = [np.empty((self.E, self.R) + v.shape[2:], v.dtype) for v in like]

    def record(self, carry: _Carry, epoch0: int, end: int, loss, rec) -> None:
        """A segment's result: the new `carry` and its series of epochs `epoch0 .. end`."""
        self.carry, self.start = carry, end
        series = [np.asarray(loss)] + [np.asarray(r) for r in rec]
        if self.bufs is None:
            self._new_bufs(series)
        assert self.bufs is not None
        for b, v in zip(self.bufs, series):
            b[epoch0:end, self.active] = v[: end - epoch0]

    def all_stopped(self) -> bool:
        assert self.carry.halt_epoch is not None
        return int(self.carry.halt_epoch) < self.E

    def fill(self, idx, part) -> None:
        """The remaining records of runs `idx` that left the batch: their last ones (NaN if diverged)."""
        assert self.bufs is not None
        alive = np.asarray(part.alive)
        last = jax.tree_util.tree_map(
            lambda v: np.where(alive.reshape((-1,) + (1,) * (v.ndim - 1)), np.asarray(v), np.nan), part.last
        )
        for b, v in zip(self.bufs, (last[0],) + tuple(last[1])):
            b[self.start :, idx] = v[None]

    def compact(self) -> None:
        """Once at most half of the batch still trains, the stopped and diverged runs leave it."""
        mesh = self.mesh
        done = np.asarray(self.carry.frozen) | ~np.asarray(self.carry.alive)  # stopped, or diverged (NaN records)
        n_keep = round_up(int(np.count_nonzero(~done)), mesh)
        if not 0 < n_keep <= len(self.active) // 2:
            return
        order = np.argsort(done, kind="stable")  # the runs still training first, then padding
        keep, gone = np.sort(order[:n_keep]), np.sort(order[n_keep:])
        self.parked.append((self.active[gone], _take(self.carry._replace(halt_epoch=None), gone)))
        self.fill(*self.parked[-1])
        halt = self.carry.halt_epoch
        self.carry = _take(self.carry._replace(halt_epoch=None), keep, mesh)._replace(halt_epoch=halt)
        self.runs = _take(self.runs, keep, mesh)
        if self.per_run:
            self.x, self.targets = shard_runs(mesh, _rows(self.x, keep)), shard_runs(mesh, _rows(self.targets, keep))
        self.active = self.active[keep]

    def snapshot(self) -> dict:
        """The snapshot arrays after `start` epochs (`_snapshot`)."""
        assert self.bufs is not None
        out = {"epoch": np.asarray(self.start), "active": self.active, **_snapshot.tree_arrays("carry", self.carry)}
        out.update({f"series.{k}": b[: self.start] for k, b in enumerate(self.bufs)})
        for j, (idx, part) in enumerate(self.parked):
            out.update({f"parked.{j}.idx": idx, **_snapshot.tree_arrays(f"parked.{j}.carry", part)})
        return out

    def restore(self, snap) -> None:
        """Continue after `snap`'s epochs, on the runs it left in the batch (`self` as just made)."""
        mesh = self.mesh
        self.start, self.active = int(snap["epoch"]), np.asarray(snap["active"])
        saved = _snapshot.series(snap)
        self._new_bufs(saved)
        assert self.bufs is not None
        for b, v in zip(self.bufs, saved):
            b[: self.start] = v
        free = self.carry._replace(halt_epoch=None)
        while f"parked.{len(self.parked)}.idx" in snap:
            j = len(self.parked)
            self.parked.append(
                (np.asarray(snap[f"parked.{j}.idx"]), _snapshot.restore_tree(free, snap, f"parked.{j}.carry"))
            )
            self.fill(*self.parked[-1])
        self.carry = _snapshot.restore_tree(
            self.carry, snap, "carry", lambda v: shard_runs(mesh, v) if v.ndim else jnp.asarray(v)
        )
        if len(self.active) < self.R:
            self.runs = _take(self.runs, self.active, mesh)
            if self.per_run:
                self.x = shard_runs(mesh, _rows(self.x, self.active))
                self.targets = shard_runs(mesh, _rows(self.targets, self.active))

    def finish(self):
        """The chunk's full final carry (parked runs back in place) and its series as JAX arrays."""
        assert self.bufs is not None
        carry = self.carry
        if self.parked:
            parts = self.parked + [(self.active, carry._replace(halt_epoch=None))]
            order = np.argsort(np.concatenate([i for i, _ in parts]))
            halt = carry.halt_epoch
            carry = jax.tree_util.tree_map(lambda *v: shard_runs(self.mesh, _joined(v, order)), *[t for _, t in parts])
            carry = carry._replace(halt_epoch=halt)
        return carry, jnp.asarray(self.bufs[0]), tuple(jnp.asarray(b) for b in self.bufs[1:])
