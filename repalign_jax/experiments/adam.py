"""Adam (appendix C.3, Figures 13-16): the trajectories stop following the theory,
the final-structure predictions do not.

1. The default two-point network at the gains of the rich-to-lazy series, trained
   with plain gradient descent and with Adam (same initialisations), each fitted
   with the theory: under Adam the R^2 of the fit falls.
2. The final structure: predicted final distance `h_inf` (from each Adam run's
   fitted rates and its own initial state) against the measured final distance.
3. XOR at low gain with Adam: the equal-output pairs still merge.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import repalign_jax as rj
from repalign_jax.plots import plot_predicted_vs_measured

from ._common import DEFAULT, EPOCHS, Context, default_rates, grouped_study, mean_or_nan, quick_row, train_two_point

ADAM_LR = 1e-5  # per step, for 20 x 500 networks; --quick uses 1e-3 on its small networks


def run(ctx: Context) -> dict:
    base = quick_row(DEFAULT) if ctx.quick else DEFAULT
    epochs = 1500 if ctx.quick else EPOCHS
    gains = [0.9, 1.1, 1.3] if not ctx.quick else [0.75, 1.0, 1.25]
    adam_lr = 1e-3 if ctx.quick else ADAM_LR
    sgd_rows = [
        dataclasses.replace(base, name=f"sgd gain {g}", gain=g, lr=0.02 if ctx.quick else rj.paper_lr(g)) for g in gains
    ]
    adam_rows = [dataclasses.replace(r, name=f"adam gain {g}", lr=adam_lr) for r, g in zip(sgd_rows, gains)]
    seeds = np.arange(ctx.seeds)
    sgd = train_two_point(ctx, sgd_rows, seeds, epochs, name="sgd")
    adam = train_two_point(ctx, adam_rows, seeds, epochs, name="adam", optimizer="adam")

    table, pred, meas = [], [], []
    for opt, runs in (("sgd", sgd), ("adam", adam)):
        for g, r in zip(gains, runs):
            runs = r.runs
            ok = runs["fit_success"]
            row = {"optimizer": opt, "gain": g, "lr": r.row.lr, "fitted": int(ok.sum())}
            for k in ("eta_enc", "eta_dec", "r2_h", "r2_y", "r2_w"):
                row[k] = mean_or_nan(runs["fit_" + k], ok)
                row[k + "_per_seed"] = np.asarray(runs["fit_" + k], np.float64).tolist()
            row["fit_ok_per_seed"] = ok.tolist()
            table.append(row)
            if opt == "adam":
                h_inf = rj.final_distance(
                    runs["h"][:, 0],
                    runs["y"][:, 0],
                    dx2=1.0,
                    dy2=0.5,
                    rates=rj.EffectiveRates(runs["fit_eta_enc"], runs["fit_eta_dec"]),
                )
                pred += list(np.asarray(h_inf)[ok])
                meas += list(runs["h"][:, -1][ok])
    cols = ("optimizer", "gain", "lr", "fitted", "eta_enc", "eta_dec", "r2_h", "r2_y", "r2_w")
    ctx.say(
        ctx.write_table(
            "adam",
            table,
            cols,
            {"lr": ".2g", "eta_enc": ".3e", "eta_dec": ".3e", "r2_h": ".4f", "r2_y": ".4f", "r2_w": ".4f"},
        )
    )

    plot_predicted_vs_measured(ctx.out / "adam_final_h.png", pred, meas, title="Adam: final h, measured vs h_inf")

    # XOR at low gain under Adam: do the equal-output pairs merge?
    data = rj.xor()
    spec = rj.NetworkSpec(d_in=2, d_out=1, width=base.width, depth=base.depth)
    xor_epochs = 1000 if not ctx.quick else 600
    xor_lr = adam_lr * (10 if not ctx.quick else 1)

    def train(_, progress) -> dict[str, np.ndarray]:
        config = rj.TrainConfig(epochs=xor_epochs, optimizer="adam", keep_hidden=True)
        res = rj.train_networks(
            data.x, data.targets, spec, config, gains=0.7, seeds=seeds, lrs=xor_lr, progress=progress
        )
        return rj.run_columns(res, curves=False, activations=True)

    signature = {"study": "adam xor", "network": dataclasses.asdict(spec), "gain": 0.7, "lr": xor_lr}
    signature |= {"epochs": xor_epochs, "seeds": np.asarray(seeds).tolist()}
    (xor_runs,) = grouped_study(ctx, "xor-runs", signature, [0.7], float, train, len(seeds), xor_epochs)
    hf, h0, o0 = xor_runs["hidden_final"], xor_runs["hidden_initial"], xor_runs["output_initial"]
    d = np.sqrt(((hf[:, :, None] - hf[:, None]) ** 2).sum(-1))  # (seeds, 4, 4)
    same = (d[:, 0, 3] + d[:, 1, 2]) / 2
    other = (d[:, 0, 1] + d[:, 0, 2] + d[:, 1, 3] + d[:, 2, 3]) / 4
    ratio = float(np.nanmean(same / other))
    rates = default_rates(ctx)
    pd = rj.predicted_final_distances(data.x, data.targets, h0[0], o0[0], rates)
    pred_ratio = float(
        ((pd.distance[0, 3] + pd.distance[1, 2]) / 2)
        / ((pd.distance[0, 1] + pd.distance[0, 2] + pd.distance[1, 3] + pd.distance[2, 3]) / 4)
    )

    corr = float(np.corrcoef(pred, meas)[0, 1]) if len(pred) > 2 else float("nan")
    return {
        "table": table,
        "xor_equal_pair_ratio": ratio,
        "xor_equal_pair_ratio_per_seed": np.asarray(same / other, np.float64).tolist(),
        "xor_final_loss_per_seed": np.asarray(xor_runs["final_loss"], np.float64).tolist(),
        "xor_predicted_ratio": pred_ratio,
        "final_h_correlation": corr,
        "adam_lr": adam_lr,
        "epochs": epochs,
        "mean_r2_w": {opt: mean_or_nan([t["r2_w"] for t in table if t["optimizer"] == opt]) for opt in ("sgd", "adam")},
    }
