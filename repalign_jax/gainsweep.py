"""The gain sweep as functions: its configuration, one chunk's training and fitting, the analysis.

The application layer of `python -m repalign_jax.sweep` (which only parses the
command line, in `sweep.py`) and of the `gains` experiment: a `SweepConfig`,
`train_and_fit_chunk` (one compiled batch through `train_and_fit`), and the
tables, trajectory file and figures of finished runs (`write_outputs`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

import repalign_jax as rj

from . import NetworkSpec, TrainConfig
from . import plots as figures
from .results import atomic_save_npz, atomic_write_text, markdown_table, mean_or_nan, write_csv

SUMMARY_COLUMNS = (
    "gain",
    "seed",
    "lr",
    "eta_enc",
    "eta_dec",
    "tau",
    "fit_loss",
    "fit_ok",
    "explains",
    "r2_h",
    "r2_y",
    "r2_w",
    "r2_loss",
    "h0",
    "y0",
    "w0",
    "h_final",
    "y_final",
    "w_final",
    "h_inf_theory",
    "plateau_epochs",
    "rep_loss0",
    "rep_t_half",
    "rep_t_tenth",
    "rep_slope0",
    "final_loss",
    "diverged",
    "diverged_epoch",
)
# Settings that change the results: a resumed sweep must match them all.
RESULT_KEYS = (
    "gains",
    "seeds",
    "lrs",
    "epochs",
    "width",
    "depth",
    "hidden_layer",
    "activation",
    "arch",
    "optimizer",
    "dx2",
    "dy2",
    "chunk_size",
)


@dataclasses.dataclass
class SweepConfig:
    gains: list
    seeds: list
    lrs: list
    epochs: int
    width: int
    depth: int
    hidden_layer: int
    activation: str
    arch: str
    optimizer: str
    dx2: float
    dy2: float
    chunk_size: int
    lr_source: str

    def signature(self) -> dict:
        """The settings that change the results (`RESULT_KEYS`): the sweep's `RunStore` signature."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def runs(self):
        """`(gain, seed, lr)` arrays of all runs, gain-major."""
        return rj.run_grid(self.gains, self.lrs, self.seeds)

    def spec(self):
        arch = "mlp" if self.arch == "dropout" else self.arch
        return NetworkSpec(
            d_in=1,
            d_out=1,
            width=self.width,
            depth=self.depth,
            activation=self.activation,
            arch=arch,
            dropout=0.1 if self.arch == "dropout" else 0.0,
        )

    def train_config(self):
        return TrainConfig(epochs=self.epochs, optimizer=self.optimizer, track_layer=self.hidden_layer)


# --------------------------------------------------------------------------------------
# Per-chunk work and the analysis of finished runs (pure functions of arrays)
# --------------------------------------------------------------------------------------


def train_and_fit_chunk(cfg: SweepConfig, gains, seeds, lrs, progress) -> dict[str, np.ndarray]:
    """Train one chunk of runs and fit the theory to each: `run_columns` plus `gain`, `seed`, `lr`."""
    data = rj.two_point(dx2=cfg.dx2, dy2=cfg.dy2)
    res, _, fit = rj.train_and_fit(
        data.x,
        data.targets,
        cfg.spec(),
        cfg.train_config(),
        gains=gains,
        seeds=seeds,
        lrs=lrs,
        chunk_size=len(gains),
        progress=progress,
    )  # diverged runs are reported as such (the fit's warnings are silenced)
    return {"gain": np.asarray(gains), "seed": np.asarray(seeds), "lr": np.asarray(lrs)} | rj.run_columns(res, fit)


def sweep_groups(cfg: SweepConfig) -> list[rj.Group]:
    """The sweep's runs as `cfg.chunk_size` runs per group (`chunk_00000`, ...): equal shapes, a
    short last chunk padded rather than recompiled (the padding is dropped before saving)."""
    gains, seeds, lrs = cfg.runs()

    def group(idx, real):
        def compute(meter):
            arrays = train_and_fit_chunk(cfg, gains[idx], seeds[idx], lrs[idx], meter or False)
            return {k: np.asarray(v)[:real] for k, v in arrays.items()}

        return compute

    return [
        rj.Group(f"chunk_{c:05d}", group(idx, real), real)
        for c, (idx, real) in enumerate(rj.plan_chunks(len(gains), cfg.chunk_size))
    ]


def plateau_epochs(y, w, dy2) -> np.ndarray:
    """First epoch at which `(dy2 - y + 2 w) / 8` is below half its initial value (NaN: never)."""
    with np.errstate(invalid="ignore", over="ignore"):  # diverged runs hold inf and NaN
        rep = (dy2 - np.asarray(y) + 2 * np.asarray(w)) / 8
        below = rep <= 0.5 * rep[:, :1]
    first = np.argmax(below, axis=1).astype(float)
    first[~below.any(axis=1)] = np.nan
    return first


def _first_crossing(curve: np.ndarray, level: float) -> float:
    """The first epoch (linearly interpolated) at which `curve` is at most `level`; NaN: never."""
    below = np.flatnonzero(curve <= level)
    if not below.size:
        return float("nan")
    j = int(below[0])
    if j == 0:
        return 0.0
    a, b = curve[j - 1], curve[j]
    return j - 1 + (a - level) / (a - b) if a != b else float(j)


def loss_shape(y, w, dy2) -> dict[str, np.ndarray]:
    """What the plateau-shape measures need of each run's representation loss `L = (dy2 - y + 2 w) / 8`
    (docs/theory.md section 4: the loss less its output-mean term, which decays exponentially at
    every gain): `L0 = L(0)`; `t_half` and `t_tenth`, the first epochs (linearly interpolated) at
    which `L` is at most `L0 / 2` and `0.9 L0` (NaN: never); and `slope0 = (L(k) - L(0)) / k`, the
    initial slope over the first `k = max(1, floor(t_half / 100))` epochs. Arrays `(R,)` from
    `y, w` of shape `(R, T)`.

    `t_tenth / t_half` (`repalign_jax.paper.gains.plateau_fraction`) is `ln(0.9) / ln(0.5) = 0.152`
    for an exponential decay and near 1 for a plateau, whatever the learning rate."""
    with np.errstate(invalid="ignore", over="ignore"):  # diverged runs hold inf and NaN
        rep = (dy2 - np.asarray(y, np.float64) + 2 * np.asarray(w, np.float64)) / 8
    n, t = rep.shape
    l0 = rep[:, 0]
    t_half, t_tenth, slope0 = (np.full(n, np.nan) for _ in range(3))
    for i in range(n):
        if not (np.isfinite(l0[i]) and l0[i] > 0):
            continue
        t_half[i] = _first_crossing(rep[i], 0.5 * l0[i])
        t_tenth[i] = _first_crossing(rep[i], 0.9 * l0[i])
        if not np.isfinite(t_half[i]):
            t_tenth[i] = np.nan
            continue
        k = int(min(max(1, np.floor(t_half[i] / 100)), t - 1))
        slope0[i] = (rep[i, k] - l0[i]) / k
    return {"rep_loss0": l0, "rep_t_half": t_half, "rep_t_tenth": t_tenth, "rep_slope0": slope0}


def theory_curves(arrays, cfg: SweepConfig):
    """The fitted theory's `h, y, w` and loss for every run (NaN where the fit failed).

    Solved in float64: the loss is `dy2 - y + 2 w` near convergence, a difference of
    nearly equal numbers that float32 solver noise would dominate.
    """
    with jax.enable_x64(True):
        return _theory_curves64(arrays, cfg)


def _theory_curves64(arrays, cfg: SweepConfig):
    arrays = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v for k, v in arrays.items()}

    ts = np.arange(arrays["h"].shape[1], dtype=float)
    rates = rj.EffectiveRates(arrays["fit_eta_enc"], arrays["fit_eta_dec"])
    ok = arrays["fit_success"]
    safe = lambda v, fill: np.where(ok, v, fill)  # noqa: E731
    h, y, w = rj.solve_effective(
        safe(arrays["fit_h0"], 1.0),
        safe(arrays["fit_y0"], 0.0),
        safe(arrays["fit_w0"], 0.0),
        dx2=cfg.dx2,
        dy2=cfg.dy2,
        ts=ts,
        rates=rj.EffectiveRates(safe(rates.eta_enc, 1e-3), safe(rates.eta_dec, 1e-3)),
    )
    loss = rj.theory_loss(ts, y, w, dy2=cfg.dy2, m0=safe(arrays["fit_m0"], 0.0), tau=safe(arrays["fit_tau"], 1.0))
    nan = np.logical_not(ok)[:, None]
    return tuple(np.where(nan, np.nan, np.asarray(v)) for v in (h, y, w, loss))


def summary_rows(arrays, cfg: SweepConfig) -> list[dict]:
    plateau = plateau_epochs(arrays["y"], arrays["w"], cfg.dy2)
    shape = loss_shape(arrays["y"], arrays["w"], cfg.dy2)
    h_inf = np.asarray(
        rj.final_distance(
            arrays["h"][:, 0],
            arrays["y"][:, 0],
            dx2=cfg.dx2,
            dy2=cfg.dy2,
            rates=rj.EffectiveRates(arrays["fit_eta_enc"], arrays["fit_eta_dec"]),
        )
    )
    rows = []
    for i in range(len(arrays["gain"])):
        row = {"gain": float(arrays["gain"][i]), "seed": int(arrays["seed"][i]), "lr": float(arrays["lr"][i])}
        for k in ("eta_enc", "eta_dec", "tau", "fit_loss", "r2_h", "r2_y", "r2_w", "r2_loss"):
            row[k] = float(arrays["fit_" + k][i])
        row["fit_ok"] = bool(arrays["fit_success"][i])
        # explains: the fit succeeded with R^2 >= 0.9 for h, y and w (`rj.explains`, FitResult.explains)
        row["explains"] = bool(arrays["fit_explains"][i]) if "fit_explains" in arrays else False
        for k in ("h", "y", "w"):
            row[k + "0"] = float(arrays[k][i, 0])
            row[k + "_final"] = float(arrays[k][i, -1])
        row["h_inf_theory"] = float(h_inf[i])
        row["plateau_epochs"] = None if np.isnan(plateau[i]) else int(plateau[i])
        for k, v in shape.items():
            row[k] = float(v[i])
        row["final_loss"] = float(arrays["loss"][i, -1])
        row["diverged"] = bool(arrays["diverged"][i])
        row["diverged_epoch"] = int(arrays["diverged_epoch"][i]) if arrays["diverged"][i] else None
        rows.append(row)
    return rows


def gain_table(rows: list[dict]) -> list[dict]:
    """One line per gain: means over its converged, fitted runs."""
    table = []
    for g in sorted({r["gain"] for r in rows}):
        rs = [r for r in rows if r["gain"] == g]
        good = [r for r in rs if r["fit_ok"] and not r["diverged"]]

        def mean(k, good=good):
            v = np.array([r[k] for r in good if r[k] is not None], np.float64)
            return mean_or_nan(v, np.isfinite(v))

        table.append(
            {
                "gain": g,
                "lr": rs[0]["lr"],
                "runs": len(rs),
                "fitted": len(good),
                "explained": sum(r["explains"] for r in rs),
                "diverged": sum(r["diverged"] for r in rs),
                "eta_enc": mean("eta_enc"),
                "eta_dec": mean("eta_dec"),
                "tau": mean("tau"),
                "r2_h": mean("r2_h"),
                "r2_y": mean("r2_y"),
                "r2_w": mean("r2_w"),
                "plateau_epochs": mean("plateau_epochs"),
            }
        )
    return table


#: The columns of the per-gain table (`gain_table`), in order.
TABLE_COLUMNS = (
    "gain",
    "lr",
    "runs",
    "fitted",
    "explained",
    "diverged",
    "eta_enc",
    "eta_dec",
    "tau",
    "r2_h",
    "r2_y",
    "r2_w",
    "plateau_epochs",
)

TABLE_FORMATS = {
    "gain": ".3g",
    "lr": ".3g",
    "eta_enc": ".3e",
    "eta_dec": ".3e",
    "tau": ".1f",
    "r2_h": ".4f",
    "r2_y": ".4f",
    "r2_w": ".4f",
    "plateau_epochs": ".0f",
}


def write_outputs(out: pathlib.Path, arrays, cfg: SweepConfig, plots: bool) -> list[dict]:
    rows = summary_rows(arrays, cfg)
    write_csv(out / "summary.csv", rows, SUMMARY_COLUMNS)
    h_th, y_th, w_th, loss_th = theory_curves(arrays, cfg)
    atomic_save_npz(
        out / "trajectories.npz",
        {
            "gain": arrays["gain"],
            "seed": arrays["seed"],
            "lr": arrays["lr"],
            "epoch": np.arange(arrays["h"].shape[1]),
            "h": arrays["h"],
            "y": arrays["y"],
            "w": arrays["w"],
            "loss": arrays["loss"],
            "h_theory": h_th,
            "y_theory": y_th,
            "w_theory": w_th,
            "loss_theory": loss_th,
        },
    )
    table = gain_table(rows)
    cols = TABLE_COLUMNS
    atomic_write_text(out / "table.md", markdown_table(table, cols, TABLE_FORMATS) + "\n")
    if plots:
        ts = np.arange(arrays["h"].shape[1])
        first = np.array([np.flatnonzero(arrays["gain"] == g)[0] for g in sorted(set(arrays["gain"].tolist()))])
        labels = [f"gain {arrays['gain'][i]:.3g}" for i in first]
        figures.plot_hyw(
            out / "hyw.png",
            ts,
            tuple(arrays[k][first] for k in "hyw"),
            (h_th[first], y_th[first], w_th[first]),
            labels,
            title="network vs theory (first seed per gain)",
        )
        plateau = plateau_epochs(arrays["y"], arrays["w"], cfg.dy2)
        figures.plot_loss(out / "loss.png", ts, arrays["loss"][first], loss_th[first], labels, plateau[first])
        figures.plot_vs_gain(
            out / "vs_gain.png",
            arrays["gain"],
            plateau,
            arrays["fit_eta_enc"],
            arrays["fit_eta_dec"],
            arrays["fit_tau"],
        )
        figures.plot_predicted_vs_measured(
            out / "final_h.png", [r["h_inf_theory"] for r in rows], arrays["h"][:, -1], colour=arrays["gain"]
        )
    return table
