"""Snapshots of a training in progress: what `train_networks(checkpoint=...)` hands out and
`train_networks(resume=...)` continues from.

A snapshot is a flat `dict` of NumPy arrays (ready for `np.savez`, no pickling):

- `"fingerprint"`: a digest of everything that decides the results (data, runs,
  network, configuration, chunking, devices); a snapshot resumes only a training
  with the same one;
- `"chunk"`: the chunk in progress; `"done.{c}.{field}"`: the `TrainResult`
  fields of the chunks before it;
- of the chunk in progress, once it has run a segment: `"epoch"` (the epochs it
  has run), `"carry.{i}"` (the epoch loop's state, leaf by leaf), `"series.{k}"`
  (the loss and the records of those epochs); with `stop_loss` also `"active"`
  (the runs still in the batch) and `"parked.{j}.idx"`, `"parked.{j}.carry.{i}"`
  (the runs that left it, and their state).

Continuing from a snapshot runs the same compiled segments on the same values, so
the result equals that of the uninterrupted training bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping

import jax
import numpy as np


def fingerprint(*parts) -> str:
    """A digest of `parts`: arrays by dtype, shape and bytes, anything else by `repr`."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


class Saver:
    """Hands snapshots to `save` at most every `every_s` seconds of wall time (a snapshot
    waits for the device and copies the state to the host: not after every segment)."""

    def __init__(self, save: Callable[[dict[str, np.ndarray]], None], every_s: float, fingerprint: str):
        self.save, self.every_s, self.fingerprint = save, float(every_s), fingerprint
        self.last = time.monotonic()

    def maybe(self, chunk: int, done: list, state: Callable[[], dict] | None = None) -> None:
        """Save chunk `chunk` in progress (its `state()`, built only when due) after the finished `done`."""
        if time.monotonic() - self.last < self.every_s:
            return
        snap = {"fingerprint": np.asarray(self.fingerprint), "chunk": np.asarray(chunk)}
        for c, part in enumerate(done):
            snap.update(_fields(f"done.{c}", part))
        if state is not None:
            snap.update(state())
        self.save(snap)
        self.last = time.monotonic()


def _fields(prefix: str, result) -> dict[str, np.ndarray]:
    """The array fields of a `TrainResult` (those not `None`; not the static `loss_kind`) under `prefix`."""
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return {f"{prefix}.{k}": np.asarray(v) for k, v in values.items() if v is not None and not isinstance(v, str)}


def tree_arrays(prefix: str, tree) -> dict[str, np.ndarray]:
    """The leaves of `tree` as host arrays, `"{prefix}.{i}"` in `tree_leaves` order."""
    return {f"{prefix}.{i}": np.array(v, copy=True) for i, v in enumerate(jax.tree_util.tree_leaves(tree))}


def series(snap: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The saved `(epochs run, R, ...)` series of the chunk in progress: the loss, then the records."""
    out = []
    while f"series.{len(out)}" in snap:
        out.append(np.asarray(snap[f"series.{len(out)}"]))
    return out


def restore_tree(template, snap: Mapping[str, np.ndarray], prefix: str, place=None):
    """`template`'s structure with the leaves saved under `prefix` (each through `place`)."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    saved = []
    for i, v in enumerate(leaves):
        a = np.asarray(snap[f"{prefix}.{i}"])
        if a.dtype != np.asarray(v).dtype or a.shape[1:] != np.shape(v)[1:]:
            raise ValueError(f"the snapshot's {prefix}.{i} has {a.dtype}{a.shape}, the training needs {np.shape(v)}")
        saved.append(a if place is None else place(a))
    if f"{prefix}.{len(leaves)}" in snap:
        raise ValueError(f"the snapshot's {prefix} has more leaves than the training's state")
    return jax.tree_util.tree_unflatten(treedef, saved)


class SnapshotMismatch(ValueError):
    """`train_networks(resume=...)` was handed a snapshot of another training (its data, runs,
    network, configuration, chunking or devices differ): train from the start instead."""


def unpack(snap: Mapping[str, np.ndarray], fingerprint: str, result_type, loss_kind: str):
    """`(chunk in progress, finished chunk results, the snapshot)` of `snap`; `SnapshotMismatch`
    when it was taken of another training, `ValueError` when it is no snapshot."""
    try:
        same = str(np.asarray(snap["fingerprint"])) == fingerprint
        chunk = int(snap["chunk"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("resume= is not a snapshot handed out by train_networks(checkpoint=...)") from None
    if not same:
        raise SnapshotMismatch(
            "resume= holds a snapshot of another training (its data, runs, network, configuration, chunking "
            "or devices differ)"
        )
    done = []
    for c in range(chunk):
        fields = {k.split(".", 2)[2]: np.asarray(v) for k, v in snap.items() if k.startswith(f"done.{c}.")}
        done.append(result_type(**fields, loss_kind=loss_kind))
    return chunk, done, snap
