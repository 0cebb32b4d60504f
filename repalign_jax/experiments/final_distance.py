"""Final representational distance (Figure 5): measured final h against the theory's h_inf.

1. The effective rates of the default two-point network (`dx2 = 1`, `dy2 = 0.5`)
   are fitted (paper Eq. 49) for many trials and averaged over the trials whose
   fit succeeded (paper: 50 trials; `--quick`: `--seeds` trials, shared with the
   other experiments' default rates).
2. The same network is trained on a grid of two-point tasks, `||dx||` in
   `linspace(0.5, 1.5, 5)` and `||dy||` in `linspace(0, 1, 5)` (`--quick`: 3 x 3),
   one network per grid point as in the paper (`--quick`: `--seeds` per point),
   at a fifth of the default learning rate, until its loss is below 1e-4
   (`TrainConfig.stop_loss`, within an epoch budget); a run counts as converged
   when its final loss is below 1e-4. Non-converged runs are discarded and
   counted. Every grid point is its own `train_networks` call (the data differ;
   the shapes do not, so the training core compiles once), so each stops as soon
   as it has converged.
3. Each run's prediction is `h_inf = final_distance(h0, y0)` (THEORY.md section
   6) from that run's own measured initial `h0, y0` and the averaged rates; it
   is compared with the run's final `h` by the Pearson correlation and the
   least-squares line of measured on predicted. At `||dy|| = 0` the two targets
   are equal and the rich prediction is a merge (`h_inf` small): those points
   are kept.

The rates enter only through `eta_enc / eta_dec`, which does not depend on the
learning rate, so rates fitted at the default learning rate predict the slower
grid runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import repalign_jax as rj

from ._common import DEFAULT, EPOCHS, Context, claim, quick_row, rates_json, spec_of, train_two_point

LOSS_TOL = 1e-4
COLUMNS = ("dx", "dy", "runs", "converged", "epochs_to_tol", "h0", "A_low", "A_high", "predicted", "measured",
           "ratio")
FORMATS = {"dx": ".3g", "dy": ".3g", "epochs_to_tol": ".0f", "h0": ".3e", "A_low": ".4f", "A_high": ".3e",
           "predicted": ".4f", "measured": ".4f", "ratio": ".3f"}


def settings(ctx: Context) -> dict:
    """The experiment's settings; `--set KEY=VALUE` overrides the numeric ones (see `Context.override`)."""
    return ctx.override(_settings(ctx))


def _settings(ctx: Context) -> dict:
    row = quick_row(DEFAULT) if ctx.quick else DEFAULT
    if ctx.quick:
        return dict(row=row, n_trials=ctx.seeds, fit_epochs=1500, grid=3, lr=row.lr / 5, epochs=8000,
                    seeds_per_point=ctx.seeds)
    # At lr 0.001 the slowest grid point (||dx|| = 0.5, ||dy|| = 0.25) needs of the
    # order of 1e5 epochs to leave its plateau (its escape rate scales with
    # ||dx|| ||dy||); a budget of 120000 epochs lets nearly every run reach the 1e-4
    # loss, and each run stops once it has.
    return dict(row=row, n_trials=50, fit_epochs=EPOCHS, grid=5, lr=row.lr / 5, epochs=120_000, seeds_per_point=1)


def averaged_rates(ctx: Context, row, n_trials: int, epochs: int) -> tuple[rj.EffectiveRates, int | None]:
    """The default network's rates averaged over `n_trials` trials, and how many fits succeeded.

    With `n_trials == ctx.seeds` this is exactly `default_rates(ctx)` (same row,
    epochs and seeds) and shares its cache; if another experiment already filled
    that cache the number of successful fits is not known here (None).
    """
    shared = n_trials == ctx.seeds
    key = ("final_distance_rates", n_trials)
    if key in ctx.cache:
        return ctx.cache[key]
    if shared and "default_rates" in ctx.cache:
        return ctx.cache["default_rates"], None
    ctx.say(f"  (fitting the default network's rates: {n_trials} trial(s), {epochs} epochs)")
    run = train_two_point(ctx, [row], np.arange(n_trials), epochs)[0]
    ok = np.asarray(run.fit.success).ravel() & ~np.asarray(run.result.diverged).ravel()
    if not ok.any():
        raise RuntimeError("the default network's fit failed for every trial")
    ee, ed, tau = (np.asarray(getattr(run.fit, f)).ravel()[ok] for f in ("eta_enc", "eta_dec", "tau"))
    rates = rj.EffectiveRates(float(ee.mean()), float(ed.mean()), float(np.nanmean(tau)))
    ctx.cache[key] = (rates, int(ok.sum()))
    if shared:
        ctx.cache.setdefault("default_rates", rates)
    return ctx.cache[key]


@dataclasses.dataclass
class GridRuns:
    """Every run of the grid, flattened: one entry per (grid point, seed)."""

    dx: np.ndarray
    dy: np.ndarray
    h0: np.ndarray
    y0: np.ndarray
    h_final: np.ndarray
    h_at_tol: np.ndarray  # h at the first epoch whose loss is below LOSS_TOL (NaN if never)
    epoch_at_tol: np.ndarray  # that epoch (-1 if never)
    final_loss: np.ndarray
    converged: np.ndarray


def train_grid(ctx: Context, row, dxs, dys, seeds, lr: float, epochs: int) -> GridRuns:
    spec = spec_of(row)
    config = rj.TrainConfig(epochs=epochs, stop_loss=LOSS_TOL)
    parts = []
    for k, (dx, dy) in enumerate((a, b) for a in dxs for b in dys):
        data = rj.two_point(dx2=float(dx) ** 2, dy2=float(dy) ** 2)
        ctx.say(f"  grid point {k + 1}/{len(dxs) * len(dys)}: ||dx|| = {dx:.3g}, ||dy|| = {dy:.3g}")
        res = rj.train_networks(data.x, data.y, spec, config, gains=row.gain, seeds=seeds, lrs=lr,
                                progress=ctx.progress)
        loss = np.asarray(res.loss, np.float64)
        h = np.asarray(res.h, np.float64)[:, :, 0]
        below = np.isfinite(loss) & (loss < LOSS_TOL)
        epoch_at = np.where(below.any(axis=1), np.argmax(below, axis=1), -1)
        h_at = np.where(epoch_at >= 0, h[np.arange(len(h)), np.maximum(epoch_at, 0)], np.nan)
        final = loss[:, -1]
        conv = np.isfinite(final) & (final < LOSS_TOL) & ~np.asarray(res.diverged) & np.isfinite(h[:, -1])
        n = len(seeds)
        parts.append(dict(dx=np.full(n, dx), dy=np.full(n, dy), h0=h[:, 0], y0=np.asarray(res.y, np.float64)[:, 0, 0],
                          h_final=h[:, -1], h_at_tol=h_at, epoch_at_tol=epoch_at, final_loss=final, converged=conv))
    return GridRuns(**{f: np.concatenate([p[f] for p in parts]) for f in parts[0]})


def line_stats(pred, meas) -> dict:
    """Pearson r and the least-squares line of measured on predicted (with intercept, and through 0)."""
    pred, meas = np.asarray(pred, np.float64), np.asarray(meas, np.float64)
    if pred.size < 3 or pred.std() == 0 or meas.std() == 0:
        return {"pearson": float("nan"), "slope": float("nan"), "intercept": float("nan"),
                "slope_through_origin": float("nan"), "n": int(pred.size)}
    slope, intercept = np.polyfit(pred, meas, 1)
    return {"pearson": float(np.corrcoef(pred, meas)[0, 1]), "slope": float(slope), "intercept": float(intercept),
            "slope_through_origin": float(np.dot(pred, meas) / np.dot(pred, pred)), "n": int(pred.size)}


def plot_against_dy(path, runs: GridRuns, pred, keep, dxs) -> None:
    """Measured (points) and predicted (lines: mean over seeds) final h against ||dy||, one colour per ||dx||."""
    from repalign_jax._plots import _colours, _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for c, dx in zip(_colours(len(dxs)), dxs):
        at = runs.dx == dx
        dys = np.unique(runs.dy[at])
        mean_pred = [np.mean(pred[at & (runs.dy == dy)]) for dy in dys]
        ax.plot(dys, mean_pred, "--", color=c, lw=1.3)
        ax.plot(runs.dy[at & keep], runs.h_final[at & keep], "o", color=c, ms=5, label=f"||dx|| = {dx:.3g}")
        bad = at & ~keep
        if bad.any():
            ax.plot(runs.dy[bad], runs.h_final[bad], "x", color=c, ms=6)
    ax.set(xlabel="||dy||", ylabel="final h = ||dh||^2", title="final h: network (o), theory h_inf (dashed)")
    if (~keep).any():
        ax.plot([], [], "kx", label="not converged (discarded)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(ctx: Context) -> dict:
    s = settings(ctx)
    row = s["row"]
    rates, n_fitted = averaged_rates(ctx, row, s["n_trials"], s["fit_epochs"])
    dxs = np.linspace(0.5, 1.5, s["grid"])
    dys = np.linspace(0.0, 1.0, s["grid"])
    seeds = np.arange(s["seeds_per_point"])
    runs = train_grid(ctx, row, dxs, dys, seeds, s["lr"], s["epochs"])

    pred = np.asarray(rj.final_distance(runs.h0, runs.y0, dx2=runs.dx**2, dy2=runs.dy**2, rates=rates), np.float64)
    a_low, a_high = (np.asarray(v, np.float64) for v in
                     rj.structure_scales(runs.h0, runs.y0, dx2=runs.dx**2, dy2=runs.dy**2, rates=rates))
    keep = runs.converged & np.isfinite(pred)
    stats = line_stats(pred[keep], runs.h_final[keep])
    at_tol = keep & np.isfinite(runs.h_at_tol)
    stats_at_tol = line_stats(pred[at_tol], runs.h_at_tol[at_tol])
    merge = keep & (runs.dy == 0)

    table = []
    for dx in dxs:
        for dy in dys:
            at = (runs.dx == dx) & (runs.dy == dy)
            k = at & keep

            def mean(v, k=k):
                return float(np.mean(v[k])) if k.any() else float("nan")

            table.append({"dx": float(dx), "dy": float(dy), "runs": int(at.sum()), "converged": int(k.sum()),
                          "epochs_to_tol": mean(runs.epoch_at_tol.astype(float)), "h0": mean(runs.h0),
                          "A_low": float(a_low[at][0]), "A_high": mean(a_high), "predicted": mean(pred),
                          "measured": mean(runs.h_final),
                          "ratio": mean(runs.h_final / np.where(pred > 0, pred, np.nan))})
    ctx.say(ctx.write_table("final_distance", table, COLUMNS, FORMATS))

    from repalign_jax._plots import plot_predicted_vs_measured

    plot_predicted_vs_measured(ctx.out / "final_distance.png", pred[keep], runs.h_final[keep], colour=runs.dy[keep],
                               label="||dy||", title="final h: measured vs h_inf (Figure 5)")
    plot_against_dy(ctx.out / "final_distance_vs_dy.png", runs, pred, keep, dxs)

    n_runs, n_kept = int(runs.dx.size), int(keep.sum())
    holds = bool(np.isfinite(stats["pearson"]) and stats["pearson"] >= 0.9 and 0.8 <= stats["slope"] <= 1.25)
    fitted = "all" if n_fitted is None else f"{n_fitted} of {s['n_trials']}"
    claims = [
        claim("measured final h follows the predicted h_inf (Pearson r >= 0.9, slope of measured on predicted "
              "in 0.8-1.25)",
              f"r = {stats['pearson']:.3f}, slope = {stats['slope']:.3f} (intercept {stats['intercept']:.3g}) over "
              f"{n_kept} converged runs ({n_runs - n_kept} of {n_runs} discarded: final loss >= {LOSS_TOL:g}); "
              f"rates from {fitted} fitted trials, eta_enc/eta_dec = {rates.eta_enc / rates.eta_dec:.4g}", holds),
    ]
    return {
        "rates": rates_json(rates),
        "rate_ratio": float(rates.eta_enc / rates.eta_dec),
        "rate_trials": s["n_trials"],
        "rate_trials_fitted": n_fitted,
        "runs": n_runs,
        "converged": n_kept,
        "discarded": n_runs - n_kept,
        "fit": stats,
        "fit_h_at_loss_tol": stats_at_tol,
        "merge_points": {"runs": int(merge.sum()),
                         "predicted_mean": float(np.mean(pred[merge])) if merge.any() else float("nan"),
                         "measured_mean": float(np.mean(runs.h_final[merge])) if merge.any() else float("nan")},
        "table": table,
        "per_run": {k: np.asarray(v).tolist() for k, v in {
            "dx": runs.dx, "dy": runs.dy, "seed": np.tile(seeds, len(dxs) * len(dys)), "h0": runs.h0, "y0": runs.y0,
            "predicted": pred, "measured": runs.h_final, "h_at_loss_tol": runs.h_at_tol,
            "epoch_at_loss_tol": runs.epoch_at_tol, "final_loss": runs.final_loss, "converged": runs.converged}.items()},
        "overrides": dict(ctx.overrides),
        "settings": {"network": row.name, "width": row.width, "depth": row.depth, "gain": row.gain,
                     "activation": row.activation, "fit_lr": row.lr, "fit_epochs": s["fit_epochs"], "grid_lr": s["lr"],
                     "grid_epochs": s["epochs"], "loss_tol": LOSS_TOL, "seeds_per_point": int(s["seeds_per_point"]),
                     "dx": dxs.tolist(), "dy": dys.tolist()},
        "claims": claims,
    }
