"""Train the paper's default two-point network and fit the effective theory to it.

    python examples/default_network_fit.py [--seeds 3] [--epochs 6000] [--out DIR]

Default network (docs/experiments.md, Table 1 "default"): 20 hidden layers of 500
leaky-ReLU units, Xavier gain 1.0, learning rate 0.005, 6000 epochs, dx2 = 1,
dy2 = 0.5, hidden layer 10 tracked. All seeds train as one vmapped batch; then the
rates are fitted (paper Eq. 49) and R^2 of the theory against the network is
printed for h, y, w and the loss, and saved as JSON with a plot.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import repalign_jax as rj


def run(seeds=3, epochs=6000, width=500, depth=20, gain=1.0, lr=0.005, progress=True):
    data = rj.two_point(dx2=1.0, dy2=0.5)
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=width, depth=depth)
    config = rj.TrainConfig(epochs=epochs)
    t0 = time.perf_counter()
    result = rj.train_networks(
        data.x, data.targets, spec, config, gains=gain, seeds=np.arange(seeds), lrs=lr, progress=progress
    )
    train_s = time.perf_counter() - t0
    traj = rj.to_pair_trajectory(result, data.x, data.targets)
    t0 = time.perf_counter()
    fit = rj.fit_effective_rates(traj)
    fit_s = time.perf_counter() - t0
    return result, traj, fit, train_s, fit_s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6000)
    p.add_argument("--out", default="runs/default_network_fit")
    args = p.parse_args(argv)
    result, traj, fit, train_s, fit_s = run(args.seeds, args.epochs)
    print(f"trained {args.seeds} runs x {args.epochs} epochs in {train_s:.1f} s; fitted in {fit_s:.1f} s")
    rows = []
    print("seed  eta_enc    eta_dec    tau       R2_h    R2_y    R2_w    R2_loss  ok")
    for s in range(args.seeds):
        row = {
            k: float(np.asarray(getattr(fit, k))[s, 0])
            for k in ("eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w", "r2_loss")
        }
        row["success"] = bool(np.asarray(fit.success)[s, 0])
        rows.append(row)
        print(
            f"{s:4d}  {row['eta_enc']:.3e}  {row['eta_dec']:.3e}  {row['tau']:8.2f}  {row['r2_h']:.4f}  "
            f"{row['r2_y']:.4f}  {row['r2_w']:.4f}  {row['r2_loss']:.4f}   {row['success']}"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps({"runs": rows, "train_seconds": train_s, "fit_seconds": fit_s}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = rj.solve_effective(fit.h0, fit.y0, fit.w0, dx2=traj.dx2, dy2=traj.dy2, rates=fit.rates, ts=traj.ts)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, name, meas, pred in zip(axes, "hyw", (traj.h, traj.y, traj.w), th):
        for s in range(args.seeds):
            ax.plot(traj.ts, np.asarray(meas)[s, 0], color=f"C{s}")
            ax.plot(traj.ts, np.asarray(pred)[s, 0], color=f"C{s}", ls="--")
        ax.set(title=f"{name}: network (solid), theory (dashed)", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(out / "fit.png", dpi=120)
    print(f"wrote {out}/fit.json and fit.png")


if __name__ == "__main__":
    main()
