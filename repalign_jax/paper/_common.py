"""Shared pieces of the paper's experiments: context, Table 1, two-point training and fitting."""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar

import jax
import numpy as np

import repalign_jax as rj
from repalign_jax.results import atomic_write_json, atomic_write_text, markdown_table, mean_or_nan, write_csv  # noqa: F401

from ._table1 import Row, table1

S = TypeVar("S")


class Provenance(TypedDict, total=False):
    """What `reproduce` adds to every experiment's record (`NAME.json`) around its numbers: how long the
    run took and where, its settings profile, when it started and ended, the claims' digests it was
    produced under (taken as it started), the package version and the commit it started from."""

    wall_seconds: float
    quick: bool
    settings_profile: str
    machine: str
    started: str
    finished: str
    claim_digests: dict[str, str]
    package_version: str
    commit: str | None
    networks_arg: str


@dataclasses.dataclass
class Context:
    """What every experiment gets: where to write, how big to run, how to talk.

    - `out`: the experiment's own folder (`DIR/NAME/`), created.
    - `quick`: shrink epochs, widths and trial counts to minutes on a 2-core CPU.
    - `seeds`: seeds per network (trials).
    - `mnist`: folder of MNIST IDX files, or `None` for scikit-learn's digits.
    - `progress`: show progress bars.
    - `say`: print a line (silent with `--quiet`).
    - `cache`: shared between experiments of one invocation (e.g. the default rates).
    - `overrides`: `--set KEY=VALUE` settings replacing an experiment's own (see
      `Context.override`); recorded in its JSON.
    - `profile`: `"code"` (what the authors' code ran, the default) or `"paper"`
      (the printed tables); see `repalign_jax.paper.settings`.
    - `networks`: the Table-1 rows of `universality` and `final_distance`
      (`default`, `all`, or comma-separated row names; `None`: the experiment's
      default, see `table1_rows`).
    - `resume`: reuse the pieces an earlier, interrupted invocation saved in `out`
      when their settings match (`final_distance` saves each network as it
      finishes); without it they are recomputed and overwritten.
    - `machine`: one line naming the machine (host, cores, JAX backend), recorded
      with pieces that may be reused on another machine.
    """

    out: pathlib.Path
    quick: bool = False
    seeds: int = 10
    mnist: str | None = None
    progress: bool = True
    say: Callable[..., None] = print
    cache: dict = dataclasses.field(default_factory=dict)
    overrides: dict = dataclasses.field(default_factory=dict)
    profile: str = "code"
    networks: str | None = None
    resume: bool = False
    machine: str = ""

    def settings(self, profiles: Mapping[str, dict]) -> dict:
        """A fresh copy of an experiment's full-size settings (its module's `SETTINGS`, by profile) in
        this context's profile."""
        return copy.deepcopy(dict(profiles.get(self.profile, {})))

    def override(self, settings: dict) -> dict:
        """`settings` with `self.overrides` applied, each converted to the type of the value it replaces.

        Raises `ValueError` (one line) for a key the experiment does not have or a
        value of the wrong kind.
        """
        out = dict(settings)
        numeric = [k for k, v in settings.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for key, text in self.overrides.items():
            if key not in numeric:
                known = ", ".join(numeric)
                raise ValueError(f"--set {key}: not a numeric setting of this experiment (it has: {known})")
            kind = type(out[key])
            try:
                value = kind(text) if kind is float else int(text)
            except ValueError:
                raise ValueError(
                    f"--set {key}={text}: expected {'a number' if kind is float else 'an integer'}"
                ) from None
            if value <= 0:
                raise ValueError(f"--set {key}={text}: must be positive")
            out[key] = value
        return out

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self.out / name, obj)

    def write_table(self, stem: str, rows: Sequence[dict], columns: Sequence[str], formats=None) -> str:
        """`stem.csv` and `stem.md`; returns the Markdown."""
        write_csv(self.out / f"{stem}.csv", rows, columns)
        md = markdown_table(rows, columns, formats)
        atomic_write_text(self.out / f"{stem}.md", md + "\n")
        return md


def study_store(ctx: Context, name: str, signature: dict) -> rj.RunStore:
    """An experiment's `rj.RunStore` at `ctx.out / name` under `signature` and whether float64 is on
    (with `ctx.machine`): what an earlier invocation saved there is reused with `ctx.resume` (a store
    of other settings then raises `rj.GridMismatch`) and forgotten without it."""
    signature = {**signature, "x64": bool(jax.config.read("jax_enable_x64"))}
    return rj.RunStore(ctx.out / name, signature, fresh=not ctx.resume, machine=ctx.machine)


def run_study(
    ctx: Context,
    store: rj.RunStore,
    groups: Sequence[rj.Group],
    epochs: int,
    columns: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """`rj.run_groups` for an experiment (its `study_store`): the reused groups said, one progress
    bar of `epochs` per group left with `ctx.progress`. **Returns:** the table of all runs (its
    `columns`, default all)."""
    name = store.folder.name
    left = rj.todo(store, groups)
    meter = rj.Progress(epochs, len(left), label=name) if ctx.progress and left else None

    def report(done: rj.GroupDone) -> None:
        if done.reused:
            info = store.info(done.group.name)
            ctx.say(
                f"  {name}/{done.group.name}: reusing the saved runs "
                f"({info['seconds']:.0f} s on {info['machine'] or 'an unnamed machine'})"
            )

    try:
        return rj.run_groups(store, groups, meter=meter, report=report, columns=columns)
    finally:
        if meter is not None:
            meter.close()


TABLE1 = table1("code")
DEFAULT = TABLE1[0]
EPOCHS = 6000


def table1_rows(ctx: Context, default: str) -> list:
    """The Table-1 rows (of `ctx.profile`) named by `ctx.networks`, or by `default` when it is `None`:
    `"all"`, or comma-separated row names (`"default"` is the default network). Quick stand-ins
    with `ctx.quick`. Raises `ValueError` naming an unknown row."""
    table = list(table1(ctx.profile))
    names = default if ctx.networks is None else ctx.networks
    if names == "all":
        rows = table
    else:
        wanted = [n.strip() for n in names.split(",")]
        by_name = {r.name: r for r in table}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise ValueError(f"--networks: unknown {', '.join(unknown)}; choose from all, {', '.join(by_name)}")
        rows = [by_name[n] for n in wanted]
    return [quick_row(r) for r in rows] if ctx.quick else rows


def quick_row(row: Row) -> Row:
    """A small stand-in for `row` (same nonlinearity, variant and gain) for `--quick`."""
    depth = min(row.depth, 6 if row.arch != "cnn" else 3)
    width = 60 if row.arch != "cnn" else 80
    layer = None if row.track_layer is None else min(row.track_layer, depth // 2)
    return dataclasses.replace(
        row, depth=depth, width=min(row.width, width), lr=min(4 * row.lr, 0.05), track_layer=layer
    )


def grouped_study(
    ctx: Context,
    name: str,
    signature: dict,
    settings: Sequence[S],
    shape: Callable[[S], Hashable],
    train: Callable[[list[S], Any], Mapping[str, Any]],
    runs_per_setting: int,
    epochs: int,
) -> list[dict[str, np.ndarray]]:
    """A study of `settings` x `runs_per_setting` runs (seeds) on the run-grid layer, saved in
    `ctx.out / name` under `signature` (`study_store`: `--resume` reuses its groups).

    Settings of equal `shape(setting)` (network shape, epochs: what one executable
    needs) are one group, trained by `train(group_settings, progress)`, which returns
    the group's per-run columns (`rj.run_columns`), setting-major: setting `k`'s runs
    are rows `k * runs_per_setting ...`. `epochs`: the progress bar's epochs per group.
    **Returns:** every setting's columns (`runs_per_setting` rows each), in the order of `settings`.
    """
    by_shape: dict[Hashable, list[int]] = {}
    for i, setting in enumerate(settings):
        by_shape.setdefault(shape(setting), []).append(i)
    members = list(by_shape.values())

    def compute(idx: list[int]) -> Callable[[Any], Mapping[str, Any]]:
        return lambda meter: train([settings[i] for i in idx], meter or False)

    groups = [rj.Group(f"group{k}", compute(idx), len(idx) * runs_per_setting) for k, idx in enumerate(members)]
    store = study_store(ctx, name, signature)
    run_study(ctx, store, groups, epochs, columns=())  # groups may differ in shape: read one by one
    out: list[dict[str, np.ndarray]] = [{} for _ in settings]
    for group, idx in zip(groups, members):
        table = store.load(group.name)
        for k, i in enumerate(idx):
            out[i] = {c: v[k * runs_per_setting : (k + 1) * runs_per_setting] for c, v in table.items()}
    return out


@dataclasses.dataclass
class TwoPointRun:
    """Trained and fitted two-point networks of one row: its runs' columns (`rj.run_columns`).

    - `runs`: one entry per seed: `loss` `(n, E + 1)`, `h`, `y`, `w` `(n, E + 1[, L])`,
      `diverged`, `diverged_epoch` and the fit's fields as `fit_eta_enc`, `fit_success`, ...
      (`(n[, L])`, every layer with `all_layers`).
    - `ts`: the epochs of the records; `dx2`, `dy2`: the task's squared distances.
    """

    row: Row
    runs: dict[str, np.ndarray]
    ts: np.ndarray
    dx2: float
    dy2: float


def train_two_point(
    ctx: Context,
    rows: Sequence[Row],
    seeds: Sequence[int] | np.ndarray,
    epochs: int,
    *,
    name: str = "runs",
    dx2=1.0,
    dy2=0.5,
    optimizer="sgd",
    all_layers=False,
    fit_options: rj.FitOptions = rj.FitOptions(),
) -> list[TwoPointRun]:
    """Train every row for every seed on the two-point task and fit the theory, as a study of
    the run-grid layer saved in `ctx.out / name` (`run_study`: `--resume` reuses its groups).

    Rows of equal network shape (width, depth, architecture, tracked layer) are one
    group: one vmapped batch from one compiled executable, their nonlinearities,
    gains and learning rates traced per run (11 of the 15 rows of Table 1 are the
    default shape). Diverged runs come back with `fit_success` False.
    """
    data = rj.two_point(dx2=dx2, dy2=dy2)
    seeds = np.asarray(seeds, np.int64)

    def train(group: list[Row], progress) -> dict[str, np.ndarray]:
        gains, sds, lrs = rj.run_grid([r.gain for r in group], [r.lr for r in group], seeds)
        config = rj.TrainConfig(
            epochs=epochs, optimizer=optimizer, all_layers=all_layers, track_layer=group[0].track_layer
        )
        res, _, fit = rj.train_and_fit(
            data.x,
            data.targets,
            group[0].spec().shape(),  # the activation traced per run: rows of one shape share it
            config,
            gains=gains,
            seeds=sds,
            lrs=lrs,
            activations=list(np.repeat([r.activation for r in group], len(seeds))),
            progress=progress,
            fit_options=fit_options,
        )
        return rj.run_columns(res, fit)

    signature = {
        "study": "two_point",
        "rows": [dataclasses.asdict(r) for r in rows],
        "seeds": seeds.tolist(),
        "epochs": epochs,
        "dx2": dx2,
        "dy2": dy2,
        "optimizer": optimizer,
        "all_layers": all_layers,
        "fit_options": repr(fit_options),
    }
    per_row = grouped_study(
        ctx, name, signature, rows, lambda r: (r.spec().shape(), r.track_layer), train, len(seeds), epochs
    )
    x, t = np.asarray(data.x, np.float64), np.asarray(data.targets, np.float64)
    task_dx2, task_dy2 = float(((x[1] - x[0]) ** 2).sum()), float(((t[1] - t[0]) ** 2).sum())
    return [
        TwoPointRun(row, runs, np.arange(runs["h"].shape[1], dtype=runs["h"].dtype), task_dx2, task_dy2)
        for row, runs in zip(rows, per_row)
    ]


def averaged_rates(
    ctx: Context, row, n_trials: int, epochs: int, loss_max: float = float("inf"), optimizer: str = "sgd"
) -> tuple[rj.EffectiveRates, int]:
    """`row`'s rates averaged over the trials (seeds `0 .. n_trials - 1`) that did not diverge,
    whose final loss is at most `loss_max` and whose fit succeeded, and how many those were
    (trained with `optimizer`, "sgd" or "adam").

    Cached in `ctx.cache` for the invocation (every experiment asking for the same
    row, trials, epochs, rule and optimizer shares one training)."""
    key = ("rates", row, n_trials, epochs, loss_max, optimizer)
    if key in ctx.cache:
        return ctx.cache[key]
    ctx.say(
        f"  ({row.name}: fitting the rates on {n_trials} trial(s), {epochs} epochs{', Adam' * (optimizer == 'adam')})"
    )
    name = "rates-" + "".join(c if c.isalnum() else "_" for c in row.name) + ("-adam" if optimizer == "adam" else "")
    runs = train_two_point(ctx, [row], np.arange(n_trials), epochs, name=name, optimizer=optimizer)[0].runs
    final = runs["loss"][:, -1]
    ok = runs["fit_success"] & ~runs["diverged"] & np.isfinite(final) & (final <= loss_max)
    if not ok.any():
        raise RuntimeError(f"{row.name}: no trial converged and fitted (final loss <= {loss_max:g})")
    ee, ed, tau = (runs["fit_" + f][ok] for f in ("eta_enc", "eta_dec", "tau"))
    ctx.cache[key] = (rj.EffectiveRates(float(ee.mean()), float(ed.mean()), float(np.nanmean(tau))), int(ok.sum()))
    return ctx.cache[key]


def default_rates(ctx: Context) -> rj.EffectiveRates:
    """Effective rates of the paper's default two-point network, averaged over `ctx.seeds` seeds.

    The XOR, structure and random-feature predictions use them, as the paper does.
    """
    row = quick_row(DEFAULT) if ctx.quick else DEFAULT
    return averaged_rates(ctx, row, ctx.seeds, 1500 if ctx.quick else EPOCHS)[0]


def rates_json(rates: rj.EffectiveRates) -> dict:
    return {"eta_enc": float(rates.eta_enc), "eta_dec": float(rates.eta_dec), "tau": float(rates.tau)}


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=float)
