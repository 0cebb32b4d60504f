"""Depth (Figure 10): the effective rates fitted at every hidden layer of the default network.

The default two-point network is trained once per seed while `h, y, w` are
recorded at every hidden layer; the theory is fitted layer by layer. The paper
predicts (THEORY.md section 11) that `eta_enc` grows and `eta_dec` shrinks with
depth (more parameters before the layer, fewer after it), and that the
linearisation, hence the fit, is best in later layers.
"""

from __future__ import annotations

import numpy as np

from ._common import DEFAULT, EPOCHS, Context, claim, quick_row, train_two_point

COLUMNS = ("layer", "fitted", "eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w")
FORMATS = {"eta_enc": ".3e", "eta_dec": ".3e", "tau": ".1f", "r2_h": ".4f", "r2_y": ".4f", "r2_w": ".4f"}


def _spearman(a, b) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a[ok])), np.argsort(np.argsort(b[ok]))
    return float(np.corrcoef(ra, rb)[0, 1])


def run(ctx: Context) -> dict:
    row = quick_row(DEFAULT) if ctx.quick else DEFAULT
    epochs = 1500 if ctx.quick else EPOCHS
    run_ = train_two_point(ctx, [row], np.arange(ctx.seeds), epochs, all_layers=True)[0]
    fit = run_.fit  # (seeds, 1 pair, L layers)
    ok = np.asarray(fit.success)[:, 0]  # (seeds, L)
    table = []
    for layer in range(row.depth):
        good = ok[:, layer]

        def mean(field, layer=layer, good=good):
            v = np.asarray(getattr(fit, field))[:, 0, layer][good]
            return float(np.mean(v)) if v.size else float("nan")

        table.append({"layer": layer, "fitted": int(good.sum()),
                      **{k: mean(k) for k in ("eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w")}})
    ctx.say(ctx.write_table("depth", table, COLUMNS, FORMATS))

    layers = np.arange(row.depth, dtype=float)
    ee = np.log([t["eta_enc"] for t in table])
    ed = np.log([t["eta_dec"] for t in table])
    r2h = np.array([t["r2_h"] for t in table])
    rho_enc, rho_dec = _spearman(layers, ee), _spearman(layers, ed)

    from repalign_jax._plots import _plt

    plt = _plt()
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

    half = row.depth // 2
    early, late = np.nanmean(r2h[:half]), np.nanmean(r2h[half:])
    return {
        "table": table, "epochs": epochs, "network": {"width": row.width, "depth": row.depth, "lr": row.lr},
        "spearman_layer_log_eta_enc": rho_enc, "spearman_layer_log_eta_dec": rho_dec,
        "claims": [
            claim("eta_enc grows with depth", f"Spearman(layer, eta_enc) = {rho_enc:.2f}",
                  None if ctx.quick else rho_enc > 0.5),
            claim("eta_dec shrinks with depth", f"Spearman(layer, eta_dec) = {rho_dec:.2f}",
                  None if ctx.quick else rho_dec < -0.5),
            claim("the fit is better in later layers", f"mean R^2 of h: first half {early:.3f}, second half {late:.3f}",
                  None if ctx.quick else late >= early),
        ],
    }
