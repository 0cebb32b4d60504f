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
from .core import TrainResult, _Carry, _finish_jit, _Runs, _segment_jit, _start_jit, segment_length


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
    carry, runs, initial = _start_jit(x, targets, pairs, gains, seeds, lrs, acts, params, **kw)
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
            report_computed(report, losses[-2], epoch0)
        if save is not None and epoch0 + S < E:
            save(functools.partial(_plain_state, epoch0 + S, carry, losses, recs))
    if report is not None:
        report_computed(report, losses[-1], E)
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


def _take(tree, idx, mesh=None):
    """Runs `idx` of a pytree whose leaves all have the leading run axis (split over `mesh`)."""
    return jax.tree_util.tree_map(lambda v: shard_runs(mesh, v[idx]), tree)


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
    """The epoch loop with `stop_loss`, its records gathered on the host segment by segment.

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
    R = runs.lrs.shape[0]
    per_run = x.ndim == 3
    active = np.arange(R)
    parked: list[tuple[np.ndarray, Any]] = []  # (chunk positions, their carry without halt_epoch)
    bufs = None  # host (E, R, ...) series: loss, then the records
    xa, ta, ra = x, targets, runs
    start = 0

    def fill(idx, part):  # remaining records of runs that left the batch: their last ones (NaN if diverged)
        assert bufs is not None
        alive = np.asarray(part.alive)
        last = jax.tree_util.tree_map(
            lambda v: np.where(alive.reshape((-1,) + (1,) * (v.ndim - 1)), np.asarray(v), np.nan), part.last
        )
        for b, v in zip(bufs, (last[0],) + tuple(last[1])):
            b[start:, idx] = v[None]

    def state():  # the snapshot arrays after `start` epochs
        assert bufs is not None
        out = {"epoch": np.asarray(start), "active": active, **_snapshot.tree_arrays("carry", carry)}
        out.update({f"series.{k}": b[:start] for k, b in enumerate(bufs)})
        for j, (idx, part) in enumerate(parked):
            out.update({f"parked.{j}.idx": idx, **_snapshot.tree_arrays(f"parked.{j}.carry", part)})
        return out

    if snap is not None:  # continue after the snapshot's epochs, on the runs it left in the batch
        start, active = int(snap["epoch"]), np.asarray(snap["active"])
        saved = _snapshot.series(snap)
        bufs = [np.empty((E, R) + v.shape[2:], v.dtype) for v in saved]
        for b, v in zip(bufs, saved):
            b[:start] = v
        free = carry._replace(halt_epoch=None)
        while f"parked.{len(parked)}.idx" in snap:
            j = len(parked)
            parked.append(
                (np.asarray(snap[f"parked.{j}.idx"]), _snapshot.restore_tree(free, snap, f"parked.{j}.carry"))
            )
            fill(parked[-1][0], parked[-1][1])
        carry = _snapshot.restore_tree(
            carry, snap, "carry", lambda v: shard_runs(mesh, v) if v.ndim else jnp.asarray(v)
        )
        if len(active) < R:
            ra = _take(runs, active, mesh)
            if per_run:
                xa, ta = shard_runs(mesh, x[active]), shard_runs(mesh, targets[active])

    for epoch0 in range(start, E, S):
        carry, (loss, rec) = _segment_jit(carry, xa, ta, pairs, ra, np.int32(epoch0), **kw)
        start = min(epoch0 + S, E)
        series = [np.asarray(loss)] + [np.asarray(r) for r in rec]
        if bufs is None:
            bufs = [np.empty((E, R) + v.shape[2:], v.dtype) for v in series]
        for b, v in zip(bufs, series):
            b[epoch0:start, active] = v[: start - epoch0]
        if report is not None:
            report(start)
        if start == E:
            break
        assert carry.halt_epoch is not None
        if int(carry.halt_epoch) < E:  # every run has stopped
            fill(active, carry)
            if report is not None:
                report(E)
            break
        done = np.asarray(carry.frozen) | ~np.asarray(carry.alive)  # stopped, or diverged (NaN records from then on)
        n_keep = round_up(int(np.count_nonzero(~done)), mesh)
        if compact and 0 < n_keep <= len(active) // 2:
            order = np.argsort(done, kind="stable")  # the runs still training first, then padding
            keep, gone = np.sort(order[:n_keep]), np.sort(order[n_keep:])
            parked.append((active[gone], _take(carry._replace(halt_epoch=None), gone)))
            fill(*parked[-1])
            halt = carry.halt_epoch
            carry = _take(carry._replace(halt_epoch=None), keep, mesh)._replace(halt_epoch=halt)
            ra = _take(ra, keep, mesh)
            if per_run:
                xa, ta = shard_runs(mesh, xa[keep]), shard_runs(mesh, ta[keep])
            active = active[keep]
        if save is not None:
            save(state)
    assert bufs is not None
    if parked:
        parked.append((active, carry._replace(halt_epoch=None)))
        order = np.argsort(np.concatenate([i for i, _ in parked]))
        halt = carry.halt_epoch
        carry = jax.tree_util.tree_map(lambda *v: shard_runs(mesh, jnp.concatenate(v)[order]), *[t for _, t in parked])
        carry = carry._replace(halt_epoch=halt)
    return carry, jnp.asarray(bufs[0]), tuple(jnp.asarray(b) for b in bufs[1:])
