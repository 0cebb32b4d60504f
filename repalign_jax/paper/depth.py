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
from typing import Any, TypedDict

import numpy as np

from repalign_jax.plots import pyplot

from ._claim import Claim, Evaluation, Verdict
from ._common import DEFAULT, Context, Provenance, mean_or_nan, quick_row, train_two_point
from .stats import bootstrap, combine, decide, fmt, not_run, spearman

#: This experiment's full-size settings in both profiles (`repalign_jax.paper.settings`).
SETTINGS: dict[str, dict] = {
    # 2_points_depth.ipynb: lr 0.01 for 3000 epochs (the same lr x epochs as Table 1).
    "code": dict(lr=0.01, epochs=3000),
    "paper": dict(lr=0.005, epochs=6000),
}


COLUMNS = ("layer", "fitted", "eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w")
FORMATS = {"eta_enc": ".3e", "eta_dec": ".3e", "tau": ".1f", "r2_h": ".4f", "r2_y": ".4f", "r2_w": ".4f"}


class DepthPerSeed(TypedDict):
    """`(seeds, layers)` lists: each layer's fit."""

    fit_ok: list[list[bool]]
    eta_enc: list[list[float]]
    eta_dec: list[list[float]]
    r2_h: list[list[float]]
    r2_y: list[list[float]]
    r2_w: list[list[float]]


class DepthRecord(Provenance):
    """`depth.json`: a row per layer (`table`), every seed's fit at every layer (`per_seed`, what the
    verdicts read) and the rank correlations of the rates with depth."""

    table: list[dict[str, Any]]
    epochs: int
    network: dict[str, float]
    per_seed: DepthPerSeed
    eta_dec_peak_layer: int
    spearman_after_peak: float
    spearman_before_peak: float
    spearman_layer_log_eta_enc: float
    spearman_layer_log_eta_dec: float


def run(ctx: Context) -> DepthRecord:
    st = ctx.settings(SETTINGS)
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

    def per_layer(field) -> list[list[float]]:
        return np.asarray(runs["fit_" + field], np.float64).tolist()

    return {
        "table": table,
        "epochs": epochs,
        "network": {"width": row.width, "depth": row.depth, "lr": row.lr},
        "per_seed": {  # (seeds, layers): what the verdicts read
            "fit_ok": ok.tolist(),
            "eta_enc": per_layer("eta_enc"),
            "eta_dec": per_layer("eta_dec"),
            "r2_h": per_layer("r2_h"),
            "r2_y": per_layer("r2_y"),
            "r2_w": per_layer("r2_w"),
        },
        "eta_dec_peak_layer": peak,
        "spearman_after_peak": rho_after,
        "spearman_before_peak": rho_before,
        "spearman_layer_log_eta_enc": rho_enc,
        "spearman_layer_log_eta_dec": rho_dec,
    }


# ---------------------------------------------------------------- verdicts


def _depth_arrays(numbers: dict):
    ps = numbers.get("per_seed")
    if not ps:
        return None
    ok = np.asarray(ps["fit_ok"], bool)
    return ok, {k: np.where(ok, np.asarray(ps[k], np.float64), np.nan) for k in ("eta_enc", "eta_dec", "r2_h")}


def _layer_mean_log(v: np.ndarray, i: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.log(v[i]), axis=0)


def _depth(key: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        got = _depth_arrays(numbers)
        if got is None:
            return [not_run(key, "saved results predate per-seed rates (rerun `reproduce depth`)")]
        ok, a = got
        seeds = np.arange(ok.shape[0])
        layers = np.arange(ok.shape[1], dtype=float)
        if key == "depth.enc_grows":
            iv = bootstrap(lambda i: spearman(layers, _layer_mean_log(a["eta_enc"], i)), seeds)
            return [Evaluation(key, combine([decide(iv, 0.5, "above")]), f"Spearman {fmt(iv, '.2f')}", "")]
        if key == "depth.dec_falls_later":
            ed = _layer_mean_log(a["eta_dec"], seeds)
            peak = int(np.nanargmax(ed))
            if ok.shape[1] - peak < 3:
                return [Evaluation(key, Verdict.NETWORK_DIFFERS, "-", f"eta_dec peaks at layer {peak}, near the end")]
            after = layers[peak:]
            rho = bootstrap(lambda i: spearman(after, _layer_mean_log(a["eta_dec"], i)[peak:]), seeds)
            drop = bootstrap(
                lambda i: float(np.exp(_layer_mean_log(a["eta_dec"], i)[-1] - _layer_mean_log(a["eta_dec"], i)[peak])),
                seeds,
            )
            verdict = combine([decide(rho, -0.5, "below"), decide(drop, 0.8, "below")])
            return [
                Evaluation(
                    key, verdict, f"Spearman {fmt(rho, '.2f')} after layer {peak}", f"last / peak {fmt(drop, '.2f')}"
                )
            ]
        half = ok.shape[1] // 2
        r2 = a["r2_h"]
        iv = bootstrap(lambda i: float(np.nanmean(r2[i][:, half:]) - np.nanmean(r2[i][:, :half])), seeds)
        return [
            Evaluation(
                key,
                combine([decide(iv, 0.0, "above")]),
                f"R^2 h later - earlier {fmt(iv, '.3f')}",
                f"earlier {np.nanmean(r2[:, :half]):.3f}, later {np.nanmean(r2[:, half:]):.3f}",
            )
        ]

    return evaluate


# ---------------------------------------------------------------- claims

CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="depth.enc_grows",
        figure="Figure 10",
        short="eta_enc grows with depth",
        quote="This should result in the effective learning rate for the encoder increasing with the depth and the "
        "effective learning rate for the decoder decreasing with the depth.",
        measures="Spearman correlation of layer and log eta_enc (the per-layer mean over seeds)",
        test="> 0.5 (95% bootstrap interval over seeds above 0.5)",
        fair="'increasing with depth' is a rank correlation; 0.5 asks for a clear trend, not a strict one",
        fixed="2026-12-05",
        evaluate=_depth("depth.enc_grows"),
    ),
    Claim(
        key="depth.dec_falls_later",
        figure="Figure 10",
        short="eta_dec falls over the later layers",
        quote="We can see that in Figure 10 this relationship holds for the later layers of the network, where the "
        "theory is accurate, although at earlier layers the effective learning rate for the decoder seems to "
        "increase.",
        measures="from the layer where the mean eta_dec peaks on: Spearman of layer and log eta_dec, and eta_dec "
        "last / peak",
        test="Spearman < -0.5 and last / peak < 0.8 (95% bootstrap intervals over seeds on their sides)",
        fair="the paper itself reads the figure as a rise then a fall; the later layers decide",
        fixed="2026-12-05",
        evaluate=_depth("depth.dec_falls_later"),
    ),
    Claim(
        key="depth.later_layers_accurate",
        figure="Figure 10 (red)",
        short="the theory is more accurate in later layers",
        quote="Indeed, as can be seen in Figure 10 (red) the effective theory models the learning behavior more "
        "accurately at the later layers.",
        measures="mean R^2 of h over the second half of the layers minus over the first half",
        test="> 0 (95% bootstrap interval over seeds above 0)",
        fair="'more accurately at the later layers' compares the two halves",
        fixed="2026-12-05",
        evaluate=_depth("depth.later_layers_accurate"),
    ),
)
