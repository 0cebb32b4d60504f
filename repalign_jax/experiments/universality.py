"""Universality (Figure 2; appendix C.1, Figure 11): the theory against every network of Table 1.

Every network of Table 1 is trained on the two-point task for several seeds
(networks of equal shape as one vmapped batch), the effective rates are fitted
(paper Eq. 49) and then tau from the loss; the table reports the rates and the
R^2 of the theory against h, y, w and the loss (means, and every seed's in
`per_seed`, which the verdicts of `universality.all_curves` and
`universality.loss_fit` read), the figure shows measured against fitted
trajectories for every network.
"""

from __future__ import annotations

import numpy as np

import repalign_jax as rj
from repalign_jax.plots import pyplot

from ._common import Context, mean_or_nan, table1_rows, train_two_point

#: The Table-1 rows `--networks` defaults to: every one.
NETWORKS = "all"

COLUMNS = (
    "network",
    "activation",
    "gain",
    "lr",
    "depth",
    "width",
    "seeds",
    "fitted",
    "explained",
    "diverged",
    "eta_enc",
    "eta_dec",
    "tau",
    "r2_h",
    "r2_y",
    "r2_w",
    "r2_loss",
)
FORMATS = {
    "gain": ".3g",
    "lr": ".3g",
    "eta_enc": ".3e",
    "eta_dec": ".3e",
    "tau": ".1f",
    "r2_h": ".4f",
    "r2_y": ".4f",
    "r2_w": ".4f",
    "r2_loss": ".4f",
}


def summarise(run) -> dict:
    runs = run.runs
    diverged = runs["diverged"]
    ok = runs["fit_success"] & ~diverged

    def mean(field):
        return mean_or_nan(runs["fit_" + field], ok)

    row = run.row
    return {
        "network": row.name,
        "activation": row.activation,
        "gain": row.gain,
        "lr": row.lr,
        "depth": row.depth,
        "width": row.width,
        "seeds": int(ok.size),
        "fitted": int(ok.sum()),
        "explained": int(np.sum(runs["fit_explains"] & ~diverged)),
        "diverged": int(np.sum(diverged)),
        **{k: mean(k) for k in ("eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w", "r2_loss")},
        # per seed (what the verdicts read): the fit's success and every R^2
        "per_seed": {
            "fit_ok": ok.tolist(),
            "diverged": diverged.tolist(),
            "final_loss": np.asarray(runs["loss"], np.float64)[:, -1].tolist(),
            **{
                k: np.asarray(runs["fit_" + k], np.float64).tolist()
                for k in ("eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w", "r2_loss")
            },
        },
    }


def plot_grid(path, runs) -> None:
    plt = pyplot()
    n = len(runs)
    cols = 5
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.4 * cols, 2.6 * -(-n // cols)), squeeze=False)
    for ax, run in zip(axes.ravel(), runs):
        runs = run.runs
        ax.set_title(run.row.name, fontsize=9)
        if not bool(runs["fit_success"][0]):
            ax.text(0.5, 0.5, "fit failed", ha="center", transform=ax.transAxes)
            continue
        th = rj.solve_effective(
            runs["fit_h0"][0],
            runs["fit_y0"][0],
            runs["fit_w0"][0],
            dx2=run.dx2,
            dy2=run.dy2,
            rates=rj.EffectiveRates(runs["fit_eta_enc"][0], runs["fit_eta_dec"][0]),
            ts=run.ts,
        )
        for k, (name, pred) in enumerate(zip("hyw", th)):
            m, p = runs[name][0], np.asarray(pred)
            scale = np.max(np.abs(m)) or 1.0
            ax.plot(run.ts, m / scale, color=f"C{k}", lw=1.4, label=name)
            ax.plot(run.ts, p / scale, color=f"C{k}", lw=1.0, ls="--")
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, title="solid: network\ndashed: theory", title_fontsize=6)
    fig.suptitle("h, y, w (each scaled by its largest magnitude), seed 0")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(ctx: Context) -> dict:
    st = ctx.settings("universality")
    rows = table1_rows(ctx, default=NETWORKS)
    epochs = 1000 if ctx.quick else st["epochs"]
    runs = train_two_point(ctx, rows, np.arange(ctx.seeds), epochs, name="runs")
    table = [summarise(r) for r in runs]
    md = ctx.write_table("universality", table, COLUMNS, FORMATS)
    ctx.say(md)
    plot_grid(ctx.out / "universality.png", runs)
    return {
        "table": table,
        "epochs": epochs,
        "track_layers": {r.name: r.track_layer for r in rows},
        "all_rows": len(rows) == len(st["rows"]),
    }
