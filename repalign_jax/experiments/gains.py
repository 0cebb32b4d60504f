"""The rich-to-lazy series (Figure 3): plateau length and fit against the initial-weight gain.

The default two-point network at gains 0.9 ... 1.4, 1.6 with the paper's per-gain
learning rates (the authors' series; 1.6 uses 1.5e-6), fitted with the theory.
The JSON keeps every run's fit and the shape of its representation loss
(`gainsweep.loss_shape`); the claims' verdicts (`repalign_jax.verdicts`:
`gains.plateau_to_decay`, `gains.theory_breaks_down`) are computed from them.
"""

from __future__ import annotations

from repalign_jax import gainsweep

from ._common import Context, run_study, study_store


def run(ctx: Context) -> dict:
    if ctx.quick:
        gains, lrs = [0.75, 1.0, 1.25, 1.5], [0.02] * 4
        shape = dict(epochs=800, width=64, depth=6, hidden_layer=3)
    else:
        st = ctx.settings("gains")
        gains, lrs = list(st["gains"]), list(st["lrs"])
        shape = dict(epochs=st["epochs"], width=st["width"], depth=st["depth"], hidden_layer=st["track_layer"])
    seeds = list(range(ctx.seeds))
    cfg = gainsweep.SweepConfig(
        gains=gains,
        seeds=seeds,
        lrs=lrs,
        activation="leaky_relu",
        arch="mlp",
        optimizer="sgd",
        dx2=1.0,
        dy2=0.5,
        chunk_size=len(gains) * len(seeds),
        lr_source="paper",
        **shape,
    )
    arrays = run_study(ctx, study_store(ctx, "chunks", cfg.signature()), gainsweep.sweep_groups(cfg), cfg.epochs)
    table = gainsweep.write_outputs(ctx.out, arrays, cfg, plots=True)
    ctx.say(ctx.write_table("gains", table, gainsweep.TABLE_COLUMNS, gainsweep.TABLE_FORMATS))
    per_run = gainsweep.summary_rows(arrays, cfg)  # one row per gain and seed (what the verdicts read)
    return {
        "table": table,
        "per_run": per_run,
        "settings": {"gains": gains, "lrs": lrs, "seeds": seeds, "dy2": cfg.dy2, **shape},
    }
