"""The universality atlas as functions: its grid, one cell's training and fitting, the maps.

The application layer of `python -m repalign_jax.atlas` (which parses the
command line and divides the cells among processes, in `atlas.py`). A *cell* is
one network shape `(arch, width, depth)`: every activation, gain and seed of it
trains as one vectorised batch from one compiled executable (the nonlinearity is
traced), then the theory is fitted to every run, from the start and, with
`fit_from`, from the end of the early transient. Uses the public API only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

import numpy as np

import repalign_jax as rj

from .gainsweep import plateau_epochs
from .plots import pyplot
from .results import markdown_table, mean_or_nan

#: `fit_from="auto"` starts the second fit this many fitted `tau` after the start.
FIT_FROM_TAUS = 3.0
#: The theory explains a run when `rj.explains` says so: its fit succeeded and `min(r2_h, r2_y, r2_w)`
#: is at least `rj.EXPLAINS_R2` (0.9), the package's one definition; the maps show that minimum.
EXPLAINED = rj.EXPLAINS_R2

COLUMNS = (
    "arch",
    "activation",
    "width",
    "depth",
    "gain",
    "seed",
    "lr",
    "lambda_max",
    "epochs_trained",
    "initial_loss",
    "final_loss",
    "converged",
    "diverged",
    "eta_enc",
    "eta_dec",
    "tau",
    "fit_ok",
    "explains",
    "r2_h",
    "r2_y",
    "r2_w",
    "r2_loss",
    "plateau_epochs",
    "h0",
    "h_final",
    "h_inf_theory",
    "regime",
    "fit_from",
    "eta_enc_after",
    "eta_dec_after",
    "fit_ok_after",
    "r2_h_after",
    "r2_y_after",
    "r2_w_after",
    "h_inf_after",
)

#: Settings that change the results: a resumed atlas must match them all.
RESULT_KEYS = (
    "widths",
    "depths",
    "gains",
    "activations",
    "archs",
    "seeds",
    "epochs",
    "stop_loss",
    "lr",
    "lr_c",
    "dx2",
    "dy2",
    "fit_from",
)


@dataclasses.dataclass
class AtlasConfig:
    """The atlas's grid and budget.

    - `widths`, `depths`, `gains`, `activations`, `archs` (`"mlp"`, `"resnet"`),
      `seeds` (a list of seeds): the grid.
    - `epochs`: the budget; a run stops once its loss is below `stop_loss`.
    - `lr`: `"auto"` (`c / lambda_max` at initialisation, `c = lr_c`) or a number.
    - `dx2`, `dy2`: the two-point task.
    - `fit_from`: `None` (one fit, from the start), an epoch, or `"auto"`
      (`FIT_FROM_TAUS` times each run's fitted `tau`): a second fit from there.
    """

    widths: list
    depths: list
    gains: list
    activations: list
    archs: list
    seeds: list
    epochs: int
    stop_loss: float
    lr: str | float
    lr_c: float
    dx2: float
    dy2: float
    fit_from: str | int | None

    def signature(self) -> dict:
        """The settings that change the results (`RESULT_KEYS`): the atlas's `RunStore` signature."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def cells(self) -> list[tuple[str, int, int]]:
        """Every network shape `(arch, width, depth)` of the grid, in a fixed order.

        A residual network adds the activation from two layers back from its third
        hidden layer on: with fewer than 3 hidden layers it is the MLP, and is left out.
        """
        return [
            (arch, w, d)
            for arch in self.archs
            for d in self.depths
            for w in self.widths
            if not (arch == "resnet" and d < 3)
        ]

    def fit_window(self) -> tuple[int, int] | None:
        """`(latest start, window length)` of the second fit: every run's window has the same
        length, so one compiled fit serves every cell; `None` without `fit_from`."""
        if self.fit_from is None:
            return None
        cap = self.epochs // 2 if self.fit_from == "auto" else int(self.fit_from)
        return cap, self.epochs + 1 - cap


def atlas_groups(cfg: AtlasConfig, cells=None, *, devices=None) -> list[rj.Group]:
    """The atlas's runs as one group per network shape (`cells`, default all), named `cell_name`;
    each trains reporting to the meter `run_groups` hands it (none: quiet)."""
    n = len(cfg.activations) * len(cfg.gains) * len(cfg.seeds)

    def compute(cell):
        return lambda meter: run_cell(cfg, cell, progress=meter or False, devices=devices)

    return [rj.Group(cell_name(c), compute(c), n) for c in (cfg.cells() if cells is None else cells)]


def cell_name(cell) -> str:
    arch, width, depth = cell
    return f"{arch}-w{width}-d{depth}"


def cell_runs(cfg: AtlasConfig):
    """`(activations, gains, seeds)` per run of a cell: activation-major, then gain, then seed."""
    a, g, s = np.meshgrid(np.arange(len(cfg.activations)), cfg.gains, cfg.seeds, indexing="ij")
    names = np.asarray(cfg.activations, dtype=object)[a.ravel()]
    return names, g.ravel().astype(float), s.ravel().astype(np.int64)


def run_cell(cfg: AtlasConfig, cell, *, progress=False, devices=None) -> dict[str, np.ndarray]:
    """Train every run of one cell as one batch, fit the theory to each: one array per column."""
    arch, width, depth = cell
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=width, depth=depth, arch=arch)
    data = rj.two_point(dx2=cfg.dx2, dy2=cfg.dy2)
    names, gains, seeds = cell_runs(cfg)
    lam = rj.initial_sharpness(data.x, data.targets, spec, gains=gains, seeds=seeds, activations=list(names))
    if cfg.lr == "auto":
        lrs = rj.auto_lr(np.where(np.isfinite(lam) & (lam > 0), lam, np.inf), c=cfg.lr_c)
    else:
        lrs = np.full(len(gains), float(cfg.lr))
    config = rj.TrainConfig(epochs=cfg.epochs, stop_loss=cfg.stop_loss)
    res, traj, fit = rj.train_and_fit(
        data.x,
        data.targets,
        spec,
        config,
        gains=gains,
        seeds=seeds,
        lrs=lrs,
        activations=list(names),
        progress=progress,
        devices=devices,
    )
    loss = np.asarray(res.loss, np.float64)
    initial, final = loss[:, 0], loss[:, -1]
    with np.errstate(invalid="ignore"):
        unstable = np.asarray(res.diverged) | ~np.isfinite(final) | (final > initial)
    stop = np.asarray(res.stop_epoch)
    out = {
        "arch": np.full(len(gains), arch),
        "activation": names.astype(str),
        "width": np.full(len(gains), width),
        "depth": np.full(len(gains), depth),
        "gain": gains,
        "seed": seeds,
        "lr": lrs,
        "lambda_max": np.asarray(lam, np.float64),
        "epochs_trained": np.where(np.asarray(res.diverged), np.asarray(res.diverged_epoch), stop),
        "initial_loss": initial,
        "final_loss": final,
        "converged": (stop < cfg.epochs) & ~unstable,
        "diverged": unstable,
        "plateau_epochs": plateau_epochs(res.y[..., 0], res.w[..., 0], cfg.dy2),
        "h_final": np.asarray(res.h, np.float64)[:, -1, 0],
    }
    out.update(_fit_columns(fit, cfg, ""))
    window = cfg.fit_window()
    if window is None:
        for k in ("eta_enc", "eta_dec", "fit_ok", "r2_h", "r2_y", "r2_w", "h_inf"):
            out[k + "_after"] = np.full(len(gains), np.nan)
        out["fit_from"] = np.full(len(gains), np.nan)
    else:
        starts = fit_starts(cfg, np.asarray(fit.tau)[:, 0])
        later = _fit_from(traj, starts, window[1])
        cols = _fit_columns(later, cfg, "_after")
        out.update({k: v for k, v in cols.items() if k.endswith("_after")})
        out["fit_from"] = starts.astype(float)
    return out


def fit_starts(cfg: AtlasConfig, tau) -> np.ndarray:
    """The epoch each run's second fit starts from: `fit_from`, or `FIT_FROM_TAUS * tau`
    (0 where `tau` is unknown), at most the window's latest start."""
    cap, _ = cfg.fit_window()  # type: ignore[misc]
    if cfg.fit_from == "auto":
        tau = np.asarray(tau, float)
        starts = np.where(np.isfinite(tau), np.ceil(FIT_FROM_TAUS * np.nan_to_num(tau)), 0)
        return np.clip(starts, 0, cap).astype(int)
    return np.full(np.shape(tau), cap, int)


def _fit_from(traj, starts, length):
    """Fit every run from its own start epoch over a window of `length` epochs (batched times)."""
    idx = starts[:, None] + np.arange(length)[None, :]  # (R, K)

    def cut(v):
        v = np.asarray(v)  # (R, 1, T)
        return np.take_along_axis(v, idx[:, None, :], axis=-1)

    ts = np.asarray(traj.ts, np.float64)[idx][:, None, :]
    # No loss: after the transient the output mean has decayed, its time constant tau is not
    # determined, and a failed tau fit would mark a fit of the rates with R^2 0.999 as failed.
    window = rj.PairTrajectory(ts, cut(traj.h), cut(traj.y), cut(traj.w), traj.dx2, traj.dy2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rj.FitWarning)
        return rj.fit_effective_rates(window)


def _fit_columns(fit, cfg: AtlasConfig, suffix: str) -> dict[str, np.ndarray]:
    def col(name):
        return np.asarray(getattr(fit, name), np.float64)[:, 0]

    ok = np.asarray(fit.success)[:, 0]
    rates = rj.EffectiveRates(col("eta_enc"), col("eta_dec"))
    h0, y0 = col("h0"), col("y0")
    safe = rj.EffectiveRates(np.where(ok, rates.eta_enc, 1.0), np.where(ok, rates.eta_dec, 1.0))
    h_inf = np.asarray(rj.final_distance(h0, y0, dx2=cfg.dx2, dy2=cfg.dy2, rates=safe), np.float64)
    _, a_high = rj.structure_scales(h0, y0, dx2=cfg.dx2, dy2=cfg.dy2, rates=safe)
    nan = np.full(ok.shape, np.nan)
    cols = {
        "eta_enc": np.where(ok, rates.eta_enc, nan),
        "eta_dec": np.where(ok, rates.eta_dec, nan),
        "tau": np.where(ok, col("tau"), nan),
        "fit_ok": ok,
        "explains": np.asarray(fit.explains)[:, 0],
        "r2_h": col("r2_h"),
        "r2_y": col("r2_y"),
        "r2_w": col("r2_w"),
        "r2_loss": col("r2_loss"),
        "h0": h0,
        "h_inf": np.where(ok, h_inf, nan),
        "regime": np.where(ok, np.asarray(a_high, np.float64) / h_inf, nan),
    }
    if not suffix:
        cols["h_inf_theory"] = cols.pop("h_inf")
        return cols
    return {k + suffix: v for k, v in cols.items()}


# --------------------------------------------------------------------------------------
# Tables, maps and the boundary (pure functions of the finished rows)
# --------------------------------------------------------------------------------------


def rows_of(arrays: dict[str, np.ndarray]) -> list[dict]:
    """One dict per run, columns in `COLUMNS` order."""
    n = len(arrays["gain"])
    rows = []
    for i in range(n):
        row = {}
        for c in COLUMNS:
            v = np.asarray(arrays[c])[i]
            row[c] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return rows


def fit_quality(arrays, after: bool = False) -> np.ndarray:
    """`min(r2_h, r2_y, r2_w)` per run, what `rj.explains` compares with `EXPLAINED` (NaN where the
    fit failed or the run diverged)."""
    sfx = "_after" if after else ""
    q = np.minimum.reduce([np.asarray(arrays[f"r2_{c}{sfx}"], float) for c in "hyw"])
    ok = np.asarray(arrays["fit_ok" + sfx], float) > 0
    return np.where(ok & ~np.asarray(arrays["diverged"], bool), q, np.nan)


def grid_median(arrays, values, select, rows_key, rows_vals, cols_key, cols_vals) -> np.ndarray:
    """`(len(rows_vals), len(cols_vals))` medians of `values` over the runs in `select` (over seeds)."""
    out = np.full((len(rows_vals), len(cols_vals)), np.nan)
    for i, r in enumerate(rows_vals):
        for j, c in enumerate(cols_vals):
            m = select & np.isclose(arrays[rows_key].astype(float), r) & np.isclose(arrays[cols_key].astype(float), c)
            v = values[m]
            v = v[np.isfinite(v)]
            if v.size:
                out[i, j] = float(np.median(v))
    return out


def _heat(ax, grid, xlabels, ylabels, vmin, vmax, cmap, fmt="{:.2f}"):
    im = ax.imshow(np.clip(grid, vmin, vmax), origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(xlabels)), [f"{v:g}" for v in xlabels], fontsize=7)
    ax.set_yticks(range(len(ylabels)), [f"{v:g}" for v in ylabels], fontsize=7)
    for (i, j), v in np.ndenumerate(grid):
        text = "x" if not np.isfinite(v) else fmt.format(v) if v >= vmin else f"<{vmin:g}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6)
    return im


def write_figures(out: pathlib.Path, arrays, cfg: AtlasConfig) -> list[str]:
    """The atlas's PNG heatmaps and rate plots; returns the file names."""
    plt = pyplot()
    written = []
    quality = {"fit": fit_quality(arrays)}
    if cfg.fit_from is not None:
        quality["fit_after_transient"] = fit_quality(arrays, after=True)
    regime = np.asarray(arrays["regime"], float)
    acts, archs = list(cfg.activations), [a for a in cfg.archs if any(arrays["arch"] == a)]
    maps = [(name, q, 0.0, 1.0, "viridis", "min(R^2 h, R^2 y, R^2 w)") for name, q in quality.items()]
    maps.append(("regime", regime, 0.0, 1.0, "coolwarm", "regime A_high / h_inf (0 rich, 1 lazy)"))
    for name, values, vmin, vmax, cmap, label in maps:
        for arch in archs:
            # depth x width, one panel per (gain, activation)
            sel_arch = arrays["arch"] == arch
            fig, axes = plt.subplots(
                len(cfg.gains), len(acts), figsize=(2.3 * len(acts) + 1, 2.0 * len(cfg.gains) + 0.6), squeeze=False
            )
            depths = sorted({int(d) for d in arrays["depth"][sel_arch]})
            im = None
            for gi, g in enumerate(cfg.gains):
                for ai, act in enumerate(acts):
                    sel = sel_arch & (arrays["activation"] == act) & np.isclose(arrays["gain"].astype(float), g)
                    grid = grid_median(arrays, values, sel, "depth", depths, "width", cfg.widths)
                    ax = axes[gi, ai]
                    im = _heat(ax, grid, cfg.widths, depths, vmin, vmax, cmap)
                    ax.set_title(f"{act}, gain {g:g}", fontsize=8)
                    if gi == len(cfg.gains) - 1:
                        ax.set_xlabel("width", fontsize=7)
                    if ai == 0:
                        ax.set_ylabel("depth", fontsize=7)
            if im is not None:
                fig.colorbar(im, ax=axes, shrink=0.6, label=label)
            fig.suptitle(f"{label}: depth x width ({arch}; median over seeds; x: no fit)", fontsize=9)
            fname = f"{name}_depth_width_{arch}.png"
            fig.savefig(out / fname, dpi=100)
            plt.close(fig)
            written.append(fname)
            # gain x depth at a fixed width, one panel per activation
            width = fixed_width(cfg)
            fig, axes = plt.subplots(1, len(acts), figsize=(2.3 * len(acts) + 1, 2.6), squeeze=False)
            for ai, act in enumerate(acts):
                sel = sel_arch & (arrays["activation"] == act) & (arrays["width"].astype(int) == width)
                grid = grid_median(arrays, values, sel, "gain", cfg.gains, "depth", depths)
                im = _heat(axes[0, ai], grid, depths, cfg.gains, vmin, vmax, cmap)
                axes[0, ai].set_title(act, fontsize=8)
                axes[0, ai].set_xlabel("depth", fontsize=7)
            axes[0, 0].set_ylabel("gain", fontsize=7)
            if im is not None:
                fig.colorbar(im, ax=axes, shrink=0.8, label=label)
            fig.suptitle(f"{label}: gain x depth at width {width} ({arch})", fontsize=9)
            fname = f"{name}_gain_depth_{arch}.png"
            fig.savefig(out / fname, dpi=100)
            plt.close(fig)
            written.append(fname)
    # fitted rates against width and depth (mlp, middle gain)
    g = cfg.gains[len(cfg.gains) // 2]
    arch = archs[0]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    for ai, act in enumerate(acts):
        base = (arrays["arch"] == arch) & (arrays["activation"] == act) & np.isclose(arrays["gain"].astype(float), g)
        for ri, rate in enumerate(("eta_enc", "eta_dec")):
            v = np.asarray(arrays[rate], float)
            d_mid = fixed_depth(cfg)
            by_w = grid_median(
                arrays, v, base & (arrays["depth"].astype(int) == d_mid), "gain", [g], "width", cfg.widths
            )
            by_d = grid_median(
                arrays, v, base & (arrays["width"].astype(int) == fixed_width(cfg)), "gain", [g], "depth", cfg.depths
            )
            axes[ri, 0].plot(cfg.widths, by_w[0], "o-", color=f"C{ai}", label=act)
            axes[ri, 1].plot(cfg.depths, by_d[0], "o-", color=f"C{ai}", label=act)
            axes[ri, 0].set_ylabel(rate)
    for ax in axes.ravel():
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    axes[1, 0].set_xlabel(f"width (depth {fixed_depth(cfg)})")
    axes[1, 1].set_xlabel(f"depth (width {fixed_width(cfg)})")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"fitted effective rates per epoch ({arch}, gain {g:g}, median over seeds)")
    fig.tight_layout()
    fig.savefig(out / "rates.png", dpi=100)
    plt.close(fig)
    written.append("rates.png")
    return written


def fixed_width(cfg: AtlasConfig) -> int:
    """The width of the gain x depth maps: the middle one of the grid."""
    return sorted(cfg.widths)[len(cfg.widths) // 2]


def fixed_depth(cfg: AtlasConfig) -> int:
    return sorted(cfg.depths)[len(cfg.depths) // 2]


def _explained(q) -> np.ndarray:
    """Where the quality `q` (`fit_quality`) explains a run: `>= EXPLAINED` (NaN: not explained)."""
    return np.nan_to_num(q, nan=-np.inf) >= EXPLAINED


def boundary_table(arrays, cfg: AtlasConfig, after: bool = False) -> list[dict]:
    """Per architecture, activation and gain: for each width, the deepest network up to which
    every depth of the grid keeps the median `min(r2_h, r2_y, r2_w)` at or above `EXPLAINED`
    (`"-"`: not even the shallowest; a failed fit counts as below), and the fraction of runs explained."""
    q = fit_quality(arrays, after)
    rows = []
    for arch in cfg.archs:
        depths = sorted({int(d) for d in arrays["depth"][arrays["arch"] == arch]})
        if not depths:
            continue
        for act in cfg.activations:
            for g in cfg.gains:
                sel = (
                    (arrays["arch"] == arch)
                    & (arrays["activation"] == act)
                    & np.isclose(arrays["gain"].astype(float), g)
                )
                grid = grid_median(arrays, q, sel, "depth", depths, "width", cfg.widths)
                row = {"arch": arch, "activation": act, "gain": g}
                for j, w in enumerate(cfg.widths):
                    holds = _explained(grid[:, j])
                    k = int(np.argmin(holds)) if not holds.all() else len(depths)
                    row[f"w{w}"] = str(depths[k - 1]) if k else "-"
                row["explained"] = f"{np.mean(_explained(q[sel])):.2f}" if sel.any() else "-"
                rows.append(row)
    return rows


def curve_medians(arrays, select, after: bool = False) -> str:
    """The median R^2 of each curve over the runs in `select` whose fit succeeded, e.g.
    `"h 0.99, y 0.98, w 0.65"`: which curve decides whether the runs are explained."""
    sfx = "_after" if after else ""
    ok = select & (np.asarray(arrays["fit_ok" + sfx], float) > 0) & ~np.asarray(arrays["diverged"], bool)
    parts = []
    for c in "hyw":
        v = np.asarray(arrays[f"r2_{c}{sfx}"], float)[ok]
        v = v[np.isfinite(v)]
        parts.append(f"{c} {np.median(v):.2f}" if v.size else f"{c} -")
    return ", ".join(parts)


def trend_lines(arrays, cfg: AtlasConfig, after: bool = False) -> list[str]:
    """How the median fit quality and the fraction of runs explained move with width, depth and gain,
    with each curve's median R^2 beside them (one line each)."""
    q = fit_quality(arrays, after)
    lines = []
    for key, vals in (("width", cfg.widths), ("depth", cfg.depths), ("gain", cfg.gains)):
        cells = []
        for v in vals:
            m = np.isclose(arrays[key].astype(float), v)
            x = q[m]
            med = float(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")
            frac = float(np.mean(_explained(x))) if m.any() else float("nan")
            cells.append(f"{v:g}: {med:.3f}, {frac:.2f} explained (R^2 {curve_medians(arrays, m, after)})")
        lines.append(f"- by {key}: median min(R^2 h, R^2 y, R^2 w), fraction explained: " + "; ".join(cells))
    for act in cfg.activations:
        m = arrays["activation"] == act
        lines.append(
            f"- {act}: {np.mean(_explained(q[m])):.2f} of its runs explained (R^2 {curve_medians(arrays, m, after)})"
        )
    return lines


def atlas_markdown(arrays, cfg: AtlasConfig, meta: dict) -> str:
    """`atlas.md`: what ran, and where the theory stops explaining the networks, in words and numbers."""
    n = len(arrays["gain"])
    div = int(np.sum(arrays["diverged"]))
    conv = int(np.sum(arrays["converged"]))
    fitted = int(np.sum(arrays["fit_ok"]))
    q = fit_quality(arrays)
    everything = np.ones(n, bool)
    parts = [
        "# Universality atlas",
        "",
        f"`{meta.get('command', 'python -m repalign_jax.atlas')}` on {meta.get('machine', 'this machine')}; "
        f"wall time {meta.get('wall_seconds', float('nan')):.0f} s.",
        "",
        f"{n} runs in {len(cfg.cells())} network shapes; {conv} reached loss < {cfg.stop_loss:g} within "
        f"{cfg.epochs} epochs, {div} diverged or ended above their initial loss, {fitted} fitted. "
        f"Learning rate: {'c / lambda_max at initialisation, c = ' + format(cfg.lr_c, 'g') if cfg.lr == 'auto' else cfg.lr}.",
        "",
        f"The theory explains a run when its fit succeeded and `min(R^2 h, R^2 y, R^2 w) >= {EXPLAINED:g}` "
        f"(`repalign_jax.explains`, the package's one definition): {np.mean(_explained(q)):.2f} of all runs "
        f"(median R^2 {curve_medians(arrays, everything)}).",
        "",
        "## Trends (the theory fitted from the start)",
        "",
        *trend_lines(arrays, cfg),
        "",
        "## Boundary (the theory fitted from the start)",
        "",
        "Each cell: the deepest network (of the grid's depths, from the shallowest up) to which the median",
        f"`min(R^2 h, R^2 y, R^2 w)` stays >= {EXPLAINED:g}; `-`: not even the shallowest; `explained`: the "
        "fraction of the row's runs explained.",
        "",
    ]
    table = boundary_table(arrays, cfg)
    cols = ["arch", "activation", "gain"] + [f"w{w}" for w in cfg.widths] + ["explained"]
    parts.append(markdown_table(table, cols, {"gain": "g"}))
    if cfg.fit_from is not None:
        qa = fit_quality(arrays, after=True)
        starts = np.asarray(arrays["fit_from"], float)
        parts += [
            "",
            "## After the transient",
            "",
            f"The second fit starts at {'3 x the fitted tau' if cfg.fit_from == 'auto' else 'epoch ' + str(cfg.fit_from)}"
            f" (median start epoch {np.nanmedian(starts):.0f}; the rates alone, tau is not fitted there); explained: "
            f"{np.mean(_explained(qa)):.2f} of runs (median R^2 {curve_medians(arrays, everything, after=True)}) "
            f"against {np.mean(_explained(q)):.2f} from the start. "
            f"Runs not explained from the start but explained after: {int(np.sum(~_explained(q) & _explained(qa)))}.",
            "",
            *trend_lines(arrays, cfg, after=True),
            "",
            markdown_table(boundary_table(arrays, cfg, after=True), cols, {"gain": "g"}),
        ]
    reg = np.asarray(arrays["regime"], float)
    parts += [
        "",
        "## Regime",
        "",
        "`A_high / h_inf` from the fitted rates and the run's initial state (0: rich, 1: lazy), median by gain: "
        + ", ".join(
            f"{g:g}: {mean_or_nan(np.nanmedian(reg[np.isclose(arrays['gain'].astype(float), g)])):.2f}"
            if np.isfinite(reg[np.isclose(arrays["gain"].astype(float), g)]).any()
            else f"{g:g}: -"
            for g in cfg.gains
        )
        + ".",
        "",
    ]
    return "\n".join(parts)
