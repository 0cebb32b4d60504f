"""The run-grid layer: a study's runs as named groups, computed once, saved as they finish.

The sweep (one group per chunk of runs), the atlas (one group per network shape)
and the experiments declare their work as `Group`s, each one compiled batch whose
`compute(meter)` returns per-run columns (arrays with a leading run axis, e.g.
from `run_columns`). `run_groups` computes the groups its `RunStore` does not hold
yet, in order, saves each one atomically as soon as it is done, reports to one
progress meter, and returns the flat table of every run. Interrupted (Ctrl-C,
SIGTERM under `repalign_jax._cli.Interruptible`), it loses at most the group in
progress; the same call with the same store continues.

A `RunStore` is a folder of finished groups under one *signature*, the settings
that change the results: a store holding another signature raises
`GridMismatch` (naming the keys that differ) instead of mixing two studies.

Pure in what matters: a group's columns are a function of its declaration, so a
resumed study gives the same table, bit for bit, as one run straight through.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._fit import FitResult
from ._networks import NetworkSpec
from ._progress import Progress
from ._sharding import run_mesh
from ._snapshot import SnapshotMismatch
from ._train import TrainConfig, TrainResult, fitting_runs
from .results import atomic_save_npz, atomic_write_json, load_npz

SIGNATURE_FILE = "signature.json"
SNAPSHOT_SUFFIX = ".snapshot.npz"  # a group's training in progress (see `RunStore.train`)


class GridMismatch(ValueError):
    """A `RunStore` folder holds the groups of another study (another signature).

    `keys`: the signature's keys whose values differ.
    """

    def __init__(self, folder: pathlib.Path, keys: Sequence[str]):
        self.folder, self.keys = folder, tuple(keys)
        super().__init__(f"{folder} holds another study (differs in {', '.join(self.keys)})")


def plain_json(value: Any) -> Any:
    """`value` as plain JSON data (tuples as lists, NumPy scalars as numbers): what a signature compares."""
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


class RunStore:
    """Finished groups of one study: `FOLDER/NAME.npz` each (its columns) beside `FOLDER/NAME.json`
    (the seconds it took and the machine), under `FOLDER/signature.json`.

    - `signature`: the settings that change the results (plain JSON after
      `plain_json`). A folder saved with another signature raises `GridMismatch`
      (and is left as it is); a new folder is created with this one.
    - `fresh=True`: forget what the folder holds (its groups are deleted when the
      store is opened), for a study rerun from scratch.
    - `create=False`: only check the folder against `signature`, writing nothing
      (e.g. on every process of a distributed study before process 0 creates it).
    - `machine`: one line naming the machine, recorded with every group saved.

    A group whose training is long can save snapshots as it goes (`train`), so
    an interrupted study loses minutes, not the group.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        signature: Mapping[str, Any],
        *,
        fresh: bool = False,
        create: bool = True,
        machine: str = "",
    ):
        self.folder = pathlib.Path(folder)
        self.machine = machine
        self.signature = plain_json(dict(signature))
        sig = self.folder / SIGNATURE_FILE
        if fresh:
            if create:
                for p in [*self.folder.glob("*.npz"), *self.folder.glob("*.json")]:
                    p.unlink()
        elif sig.exists():
            old = json.loads(sig.read_text())
            keys = list(self.signature) + [k for k in old if k not in self.signature]
            diff = [k for k in keys if old.get(k) != self.signature.get(k)]
            if diff:
                raise GridMismatch(self.folder, diff)
        elif self.done():
            raise GridMismatch(self.folder, ["signature (the folder has groups but no signature.json)"])
        if create and not sig.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(sig, self.signature)

    def path(self, name: str) -> pathlib.Path:
        return self.folder / f"{name}.npz"

    def done(self) -> set[str]:
        """Names of the groups on disk."""
        if not self.folder.exists():
            return set()
        return {p.stem for p in self.folder.glob("*.npz") if not p.name.endswith(SNAPSHOT_SUFFIX)}

    def save(self, name: str, columns: Mapping[str, np.ndarray], seconds: float = float("nan")) -> None:
        """Save group `name` (and what it took); its snapshot, now superseded, is removed."""
        atomic_save_npz(self.path(name), columns)
        atomic_write_json(self.folder / f"{name}.json", {"seconds": seconds, "machine": self.machine})
        self.snapshot_path(name).unlink(missing_ok=True)

    def load(self, name: str) -> dict[str, np.ndarray]:
        return load_npz(self.path(name))

    def info(self, name: str) -> dict[str, Any]:
        """What group `name` took: `{"seconds": ..., "machine": ...}` (NaN and "" when not recorded)."""
        try:
            return {"seconds": float("nan"), "machine": "", **json.loads((self.folder / f"{name}.json").read_text())}
        except (OSError, ValueError):
            return {"seconds": float("nan"), "machine": ""}

    def snapshot_path(self, name: str) -> pathlib.Path:
        return self.folder / f"{name}{SNAPSHOT_SUFFIX}"

    def train(
        self,
        name: str,
        train: Callable[..., TrainResult],
        *,
        every: float = 300.0,
        say: Callable[[str], None] | None = None,
    ) -> TrainResult:
        """`train(checkpoint=, checkpoint_every=, resume=)` (keywords of `train_networks`) for group
        `name`, saving snapshots to `NAME.snapshot.npz` at most every `every` seconds and continuing
        the one there: the training in progress of this study (the store's signature), unless it
        was taken on another number of devices (`SnapshotMismatch`) or cannot be read, when the
        training starts again (`say` is told why). The snapshot goes when the group is saved.
        """
        path = self.snapshot_path(name)
        tell = say or (lambda _: None)
        snap = None
        if path.exists():
            try:
                snap = load_npz(path)
                tell(f"  {path.name}: continuing after epoch {int(snap.get('epoch', 0))}")
            except (OSError, ValueError):
                tell(f"  {path.name}: unreadable, training from the start")

        def save(s: Mapping[str, np.ndarray]) -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_save_npz(path, s, compressed=False)  # weights barely compress; uncompressed is ~10x faster

        try:
            return train(checkpoint=save, checkpoint_every=every, resume=snap)
        except SnapshotMismatch as e:
            if snap is None:
                raise
            tell(f"  {path.name}: {e}; training from the start")
            return train(checkpoint=save, checkpoint_every=every)

    def table(self, names: Iterable[str], columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The groups `names`, concatenated along the run axis (their `columns`, default all; none,
        `()`, reads nothing: for groups of different shapes, read one by one with `load`)."""
        if columns is not None and not columns:
            return {}
        parts = [self.load(n) for n in names]
        if not parts:
            raise ValueError(f"{self.folder}: no groups to join")
        keys = list(parts[0]) if columns is None else list(columns)
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}


class Group(NamedTuple):
    """One compiled batch of a study.

    - `name`: unique within the study (a file name: letters, digits, `-`, `_`, `.`).
    - `compute(meter)`: the group's per-run columns; `meter` is the study's
      progress meter (`None` when quiet), already moved to this group's chunk.
    - `runs`: how many runs it holds (for messages).
    """

    name: str
    compute: Callable[[Progress | None], Mapping[str, Any]]
    runs: int = 0


class GroupDone(NamedTuple):
    """What `run_groups` tells its `report` after each group: `index` of `total`, the group,
    its columns and the seconds it took (`reused`: loaded from the store, which recorded them)."""

    index: int
    total: int
    group: Group
    columns: Mapping[str, np.ndarray]
    seconds: float
    reused: bool


def run_groups(
    store: RunStore,
    groups: Sequence[Group],
    *,
    meter: Progress | None = None,
    report: Callable[[GroupDone], None] | None = None,
    columns: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Compute every group `store` does not hold, save each as it finishes; the table of all.

    `meter`: one progress meter over the groups still to compute
    (`Progress(epochs, chunks=len(todo(store, groups)))`); it is moved to each
    group's chunk (`start_chunk`) before that group computes, and left open.
    `report`: called with a `GroupDone` after every group, reused or computed.
    **Returns:** the groups' columns (`columns`, default all) concatenated in the
    order of `groups`. Raises `ValueError` for repeated names.
    """
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(
            "run_groups: group names repeat: " + ", ".join(sorted({n for n in names if names.count(n) > 1}))
        )
    done = store.done()
    new = 0
    for k, group in enumerate(groups):
        if group.name in done:
            if report is not None:
                report(
                    GroupDone(k, len(groups), group, store.load(group.name), store.info(group.name)["seconds"], True)
                )
            continue
        if meter is not None:
            meter.start_chunk(new)
        t0 = time.perf_counter()
        cols = {c: np.asarray(v) for c, v in group.compute(meter).items()}
        seconds = time.perf_counter() - t0
        store.save(group.name, cols, seconds)
        new += 1
        if report is not None:
            report(GroupDone(k, len(groups), group, cols, seconds, False))
    return store.table(names, columns)


def todo(store: RunStore, groups: Sequence[Group]) -> list[Group]:
    """The groups of `groups` that `store` does not hold yet."""
    done = store.done()
    return [g for g in groups if g.name not in done]


def runs_in_memory(spec: NetworkSpec, config: TrainConfig, n_points: int, n_pairs: int) -> int:
    """How many runs of `spec` fit in memory at once over the devices JAX sees (a group's size)."""
    return int(fitting_runs(spec, config, n_points, n_pairs, run_mesh()))


def run_columns(
    result: TrainResult,
    fit: FitResult | None = None,
    *,
    pair: int = 0,
    curves: bool = True,
    activations: bool = False,
    fit_prefix: str = "fit_",
) -> dict[str, np.ndarray]:
    """One flat table of runs from the fields of a `TrainResult` and a `FitResult`.

    - From `result`: every per-run field (`diverged`, `diverged_epoch`,
      `stop_epoch` where recorded), `final_loss` `(R,)`, and with `curves` the
      recorded curves `loss` `(R, E + 1)` and `h`, `y`, `w` of pair `pair`
      (`(R, E + 1)`, or `(R, E + 1, L)` with `all_layers`). With `activations`
      also the recorded `hidden_*` `(R, N, units)` and `output_*` `(R, N, d_out)`
      (`TrainConfig.keep_hidden`), left out by default for their size.
    - From `fit` (batch `(R, n_pairs)`): every field at pair `pair`, named
      `fit_prefix + field` (`fit_eta_enc`, `fit_r2_h`, ...).
    """
    out: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        if v is None or isinstance(v, str) or (f.name.startswith(("hidden_", "output_")) and not activations):
            continue
        v = np.asarray(v)
        if f.name in ("h", "y", "w"):
            if curves:
                out[f.name] = v[:, :, pair]
        elif f.name == "loss":
            out["final_loss"] = v[:, -1]
            if curves:
                out[f.name] = v
        else:
            out[f.name] = v
    if fit is not None:
        for f in dataclasses.fields(fit):
            out[fit_prefix + f.name] = np.asarray(getattr(fit, f.name))[:, pair]
    return out
