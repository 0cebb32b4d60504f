"""Do a network's effective rates depend on the input distance? Fit them at several ||dx||.

    python examples/rates_vs_dx.py [--networks default,tanh] [--seeds 5] [--dx 0.5,1,1.5] [--epochs 6000] [--out FILE]

The theory assumes that `eta_enc`, `eta_dec` belong to the network, not to the task;
Figure 5 (`reproduce final_distance`) fits them at `||dx|| = 1` and predicts the
final distance at every `||dx||`. This script fits them at each `||dx||` of the
grid directly (the two-point task with `||dy||^2 = 0.5`, Table 1's learning rate,
`--epochs` epochs, `--seeds` seeds as one vmapped batch) and prints `eta_enc`,
`eta_dec` and their ratio, the only thing `h_inf` depends on, over the fits that
succeed and explain their run (`FitResult.explains`). REPRODUCTION.md quotes its
full-size run (default and tanh, 5 seeds): the default network's ratio falls
19-fold from `||dx||` 0.5 to 1.5, tanh's rises 1.3-fold.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import repalign_jax as rj
from repalign_jax import paper


def fit_at(row: paper.Table1Row, dx: float, seeds: int, epochs: int, progress: bool = False) -> dict:
    """Rates of Table-1 network `row` fitted on the two-point task at `||dx|| = dx` (`||dy||^2 = 0.5`)."""
    data = rj.two_point(dx2=dx**2, dy2=0.5)
    spec = row.spec()
    config = rj.TrainConfig(epochs=epochs, track_layer=row.track_layer)
    t0 = time.perf_counter()
    res, _, fit = rj.train_and_fit(
        data.x, data.targets, spec, config, gains=row.gain, seeds=np.arange(seeds), lrs=row.lr, progress=progress
    )
    ok = np.asarray(fit.explains).ravel() & ~np.asarray(res.diverged).ravel()
    enc, dec = (np.asarray(getattr(fit, k), np.float64).ravel() for k in ("eta_enc", "eta_dec"))
    ratio = enc[ok] / dec[ok]
    return {
        "dx": dx,
        "explained": int(ok.sum()),
        "seeds": seeds,
        "eta_enc": float(enc[ok].mean()) if ok.any() else float("nan"),
        "eta_dec": float(dec[ok].mean()) if ok.any() else float("nan"),
        "ratio_mean": float(ratio.mean()) if ok.any() else float("nan"),
        "ratio_sd": float(ratio.std()) if ok.any() else float("nan"),
        "final_loss": np.asarray(res.loss)[:, -1].tolist(),
        "wall_seconds": time.perf_counter() - t0,
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, no usage dump
        self.exit(2, f"rates_vs_dx: error: {message}\n")


def main(argv=None) -> int:
    p = _Parser(description="Fit a network's effective rates at several input distances ||dx||.")
    p.add_argument("--networks", default="default,tanh", help="comma-separated Table-1 row names")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--dx", default="0.5,1,1.5", help="comma-separated input distances ||dx||")
    p.add_argument("--epochs", type=int, default=6000)
    p.add_argument("--out", default=None, help="write the numbers to this JSON file")
    args = p.parse_args(argv)
    rows = {r.name: r for r in paper.table1("code")}
    names = [n.strip() for n in args.networks.split(",")]
    unknown = [n for n in names if n not in rows]
    if unknown:
        p.error(f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(rows)}")
    try:
        dxs = [float(v) for v in args.dx.split(",")]
    except ValueError:
        p.error(f"--dx: expected comma-separated numbers, got {args.dx!r}")
    if min(dxs) <= 0 or args.seeds < 1 or args.epochs < 1:
        p.error("--dx values, --seeds and --epochs must be positive")
    out: dict = {}
    print(f"{'network':<12} {'||dx||':>6} {'explained':>9} {'eta_enc':>10} {'eta_dec':>10} {'enc/dec':>18}")
    for name in names:
        for dx in dxs:
            r = fit_at(rows[name], dx, args.seeds, args.epochs)
            out.setdefault(name, []).append(r)
            print(
                f"{name:<12} {dx:>6.3g} {r['explained']:>5}/{r['seeds']:<3} {r['eta_enc']:>10.3g} {r['eta_dec']:>10.3g} "
                f"{r['ratio_mean']:>9.3g} +- {r['ratio_sd']:<6.2g}",
                flush=True,
            )
            if args.out:  # after every fit, so an interrupted run keeps what it finished
                with open(args.out, "w") as f:
                    json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
