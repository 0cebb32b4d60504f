"""A final-distance grid trained to a loss tolerance, with and without dropping stopped runs.

    python benchmarks/stop_loss_compaction.py [--network default] [--grid 3] [--lr-factor 1]
                                              [--epochs 20000] [--stop-loss 1e-4] [--segment 500]

The authors' final-distance experiment (Figure 5) trains every point of a grid of
two-point tasks (||dx|| from 0.5 to 1.5, ||dy|| from 0 to 1) "until the loss is below"
`--stop-loss`. In one vectorised batch, a run that has stopped steps nothing more,
but it is still computed until the slowest run stops. `train_networks(...,
compact=True)` (the default) drops stopped runs from the batch between compiled
segments once at most half of it still trains. Measured in one run, on one JAX
device: the same grid (one seed per point, the Table-1 row `--network`, its learning
rate times `--lr-factor`) with `compact=False` and with `compact=True`; wall time
(compilation included, the persistent compilation cache off), the fraction of the
batch's run-epochs that were training steps (sum of the stop epochs over runs x
the slowest), and per run the stop epoch and final h of both. In float32 a run's
rounding depends on the size of the batch it is computed in (as with any
chunking), and a long run near its plateau can amplify that into a shifted stop.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import repalign_jax as rj
from repalign_jax import paper

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--network", default="default", help="a Table-1 row (code profile)")
    ap.add_argument("--grid", type=int, default=3, help="points per axis (||dx|| 0.5-1.5, ||dy|| 0-1)")
    ap.add_argument("--lr-factor", type=float, default=1.0, help="the grid's lr over Table 1's")
    ap.add_argument("--epochs", type=int, default=20000)
    ap.add_argument("--stop-loss", type=float, default=1e-4)
    ap.add_argument("--segment", type=int, default=500, help="epochs per compiled segment")
    a = ap.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)
    rows = {r.name: r for r in paper.table1("code")}
    if a.network not in rows:
        ap.error(f"unknown network {a.network!r}; Table 1 has: {', '.join(rows)}")
    row = rows[a.network]
    spec = row.spec()
    points = [(dx, dy) for dx in np.linspace(0.5, 1.5, a.grid) for dy in np.linspace(0.0, 1.0, a.grid)]
    tasks = [rj.two_point(dx2=dx**2, dy2=dy**2) for dx, dy in points]
    x, t = np.stack([d.x for d in tasks]), np.stack([d.targets for d in tasks])
    config = rj.TrainConfig(
        epochs=a.epochs, stop_loss=a.stop_loss, track_layer=row.track_layer, progress_every=a.segment
    )
    lr = row.lr * a.lr_factor
    print(f"# {describe()}")
    print(
        f"# {row.name}: {len(points)} grid points x 1 seed, lr {lr:g}, up to {a.epochs} epochs, "
        f"stop at loss < {a.stop_loss:g}, segments of {a.segment} epochs"
    )
    results, seconds = {}, {}
    for compact in (False, True):
        t0 = time.perf_counter()
        results[compact] = rj.train_networks(x, t, spec, config, gains=row.gain, seeds=0, lrs=lr, compact=compact)
        seconds[compact] = time.perf_counter() - t0
        print(f"compact={compact!s:5}  {seconds[compact]:8.1f} s")
    kept, dropped = results[False], results[True]
    useful = kept.stop_epoch.sum() / (len(points) * max(int(kept.stop_epoch.max()), 1))
    print("per run: ||dx||, ||dy||, stop epoch (kept / dropped), final h (kept / dropped), largest |h difference|")
    for k, (dx, dy) in enumerate(points):
        print(
            f"  {dx:4.2f} {dy:4.2f}  {kept.stop_epoch[k]:6d} / {dropped.stop_epoch[k]:6d}  "
            f"{kept.h[k, -1, 0]:.6f} / {dropped.h[k, -1, 0]:.6f}  {np.nanmax(np.abs(kept.h[k] - dropped.h[k])):.2g}"
        )
    rel = np.abs(dropped.h[:, -1, 0] - kept.h[:, -1, 0]) / np.abs(kept.h[:, -1, 0])
    print(f"training steps / run-epochs of the full batch (compact=False): {useful:.2f}")
    print(f"speed-up (compact=False / compact=True): {seconds[False] / seconds[True]:.2f}x")
    print(f"final h, largest relative difference between the two: {np.nanmax(rel):.2g}")


if __name__ == "__main__":
    main()
