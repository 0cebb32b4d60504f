"""Depth (Figure 10): the effective rates fitted at every hidden layer of the default network.

The default two-point network is trained once per seed while `h, y, w` are
recorded at every hidden layer; the theory is fitted layer by layer. The paper's
reading of its Figure 10 (section 5; docs/theory.md section 11): `eta_enc` grows with
depth; `eta_dec` falls with depth over the later layers, where the theory is
accurate, after a rise over the early ones (a peak near the middle layer); the
linearisation, hence the fit, is best in later layers. The claim on `eta_dec` is
therefore tested after its peak: Spearman(layer, eta_dec) over the layers from
the peak on, and the drop from the peak to the last layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from repalign_jax.plots import pyplot
from repalign_jax.verdicts import spearman

from ._common import DEFAULT, Context, mean_or_nan, quick_row, train_two_point

COLUMNS = ("layer", "fitted", "eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w")
FORMATS = {"eta_enc": ".3e", "eta_dec": ".3e", "tau": ".1f", "r2_h": ".4f", "r2_y": ".4f", "r2_w": ".4f"}


def run(ctx: Context) -> dict:
    st = ctx.settings("depth")
    row = quick_row(DEFAULT) if ctx.quick else dataclasses.replace(DEFAULT, lr=st["lr"])
    epochs = 1500 if ctx.quick else st["epochs"]
    run_ = train_two_point(ctx, [row], np.arange(ctx.seeds), epochs, all_layers=True)[0]
    runs = run_.runs  # fit fields (seeds, L layers)
    ok = runs["fit_success"]  # (seeds, L)
    table = []
    for layer in range(row.depth):
        good = ok[:, layer]

        def mean(field, layer=layer, good=good):
            return mean_or_nan(runs["fit_" + field][:, layer], good)

        table.append(
            {
                "layer": layer,
                "fitted": int(good.sum()),
                **{k: mean(k) for k in ("eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w")},
            }
        )
    ctx.say(ctx.write_table("depth", table, COLUMNS, FORMATS))

    layers = np.arange(row.depth, dtype=float)
    ee = np.log([t["eta_enc"] for t in table])
    ed = np.log([t["eta_dec"] for t in table])
    r2h = np.array([t["r2_h"] for t in table])
    rho_enc, rho_dec = spearman(layers, ee), spearman(layers, ed)
    finite = np.isfinite(ed)
    peak = int(np.nanargmax(np.where(finite, ed, -np.inf))) if finite.any() else 0
    rho_after = spearman(layers[peak:], ed[peak:]) if row.depth - peak >= 3 else float("nan")
    rho_before = spearman(layers[: peak + 1], ed[: peak + 1]) if peak >= 2 else float("nan")

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(layers, np.exp(ee), "o-", label="eta_enc")
    axes[0].plot(layers, np.exp(ed), "s-", label="eta_dec")
    axes[0].set(yscale="log", xlabel="hidden layer", ylabel="per epoch", title="fitted effective rates")
    axes[0].legend()
    for k in ("r2_h", "r2_y", "r2_w"):
        axes[1].plot(layers, [t[k] for t in table], "o-", label=k)
    axes[1].set(xlabel="hidden layer", ylabel="R^2", title="fit quality", ylim=(max(-0.1, np.nanmin(r2h) - 0.05), 1.01))
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(ctx.out / "depth.png", dpi=120)
    plt.close(fig)

    return {
        "table": table,
        "epochs": epochs,
        "network": {"width": row.width, "depth": row.depth, "lr": row.lr},
        "per_seed": {  # (seeds, layers): what the verdicts read
            "fit_ok": ok.tolist(),
            **{
                k: np.asarray(runs["fit_" + k], np.float64).tolist()
                for k in ("eta_enc", "eta_dec", "r2_h", "r2_y", "r2_w")
            },
        },
        "eta_dec_peak_layer": peak,
        "spearman_after_peak": rho_after,
        "spearman_before_peak": rho_before,
        "spearman_layer_log_eta_enc": rho_enc,
        "spearman_layer_log_eta_dec": rho_dec,
    }
