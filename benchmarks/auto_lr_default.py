"""`--lr auto` against the paper's tuned learning rates on the paper's default network.

    python benchmarks/auto_lr_default.py [--epochs 1500] [--seeds 2]

For gains 0.9 to 1.4 of the default network (20 x 500 leaky ReLU, two points):
`lambda_max` of the loss Hessian at initialisation, the auto learning rate
`AUTO_LR_C / lambda_max`, the paper's rate (`paper_lr`), their ratio, and, trained
at the auto rate until the loss is below 1e-5 (budget `--epochs`), whether the
runs diverged, when they stopped and how well the theory fits them. One batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import repalign_jax as rj


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    rj.use_host_cores()
    from _machine import describe  # benchmarks/_machine.py

    gains = np.array([0.9, 1.0, 1.1, 1.2, 1.3, 1.4])
    seeds = np.arange(args.seeds)
    g, s, paper = rj.run_grid(gains, [rj.paper_lr(x) for x in gains], seeds)
    data = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=500, depth=20)
    t0 = time.perf_counter()
    lam = rj.initial_sharpness(data.x, data.targets, spec, gains=g, seeds=s)
    auto = rj.auto_lr(lam)
    t1 = time.perf_counter()
    res, _, fit = rj.train_and_fit(
        data.x, data.targets, spec, rj.TrainConfig(epochs=args.epochs, stop_loss=1e-5), gains=g, seeds=s, lrs=auto
    )
    t2 = time.perf_counter()
    print(f"machine: {describe()}; sharpness {t1 - t0:.0f} s, training and fitting {t2 - t1:.0f} s")
    print(
        "| gain | seed | lambda_max | auto lr | paper lr | auto / paper | diverged | stop epoch | final loss | R^2 h | R^2 y |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in range(len(g)):
        print(
            f"| {g[k]:.1f} | {s[k]} | {lam[k]:.3g} | {auto[k]:.3g} | {paper[k]:.3g} | {auto[k] / paper[k]:.0f} | "
            f"{bool(res.diverged[k])} | {int(res.stop_epoch[k])} | {res.loss[k, -1]:.2e} | "
            f"{float(fit.r2_h[k, 0]):.3f} | {float(fit.r2_y[k, 0]):.3f} |"
        )


if __name__ == "__main__":
    main()
