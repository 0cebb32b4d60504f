"""The paper's convolutional network: its convolutions as XLA convolutions and as one matmul each.

    python benchmarks/conv_throughput.py [--g 1,3,10] [--epochs 100] [--repeats 3]

Table 1's "convolution" network (a linear map to 500 units, then 11 unpadded 1-d
convolutions of kernel 11 with 20 channels, leaky ReLU, a linear read-out; the
authors' `CNN`) trains G runs at once as one vmapped batch, each run with its own
kernels. XLA's CPU backend turns a vmapped convolution into a grouped one, which
is slow for such small channel counts; `repalign_jax` writes each plain 1-d
convolution as one matmul of its shifted input slices ("im2col",
`repalign_jax._networks.conv_general_dilated`). Measured in one run:

1. the kernels: one full-batch SGD step (forward and gradient) through the 11
   convolutions of G runs on the two-point task's 2 points, with
   `jax.lax.conv_general_dilated` and with the package's matmul form;
2. the package: `train_networks` on the two-point task, G runs of the
   convolutional network (records included), next to the default 20 x 500 dense
   network for scale. The second of two calls of the same shapes is timed.

Milliseconds per run and epoch (min of `--repeats`), float32 at
`Precision.HIGHEST`, on whatever `jax.default_backend()` is, one JAX device.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import repalign_jax as rj
from repalign_jax import paper
from repalign_jax._networks import conv_general_dilated

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe  # noqa: E402

HI = jax.lax.Precision.HIGHEST
WIDTH, CHANNELS, KERNEL, CONVS = 500, 20, 11, 11


def best_time(fn, repeats):
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def conv_steps(conv, steps):
    """`steps` vmapped SGD steps through the 11 convolutions (leaky ReLU after each)."""
    dn = jax.lax.conv_dimension_numbers((2, WIDTH, 1), (KERNEL, 1, CHANNELS), ("NWC", "WIO", "NWC"))

    def loss(ws, z):
        for w in ws:
            z = conv(z, w, (1,), "VALID", dimension_numbers=dn, precision=HI)
            z = jnp.where(z > 0, z, 0.01 * z)
        return 0.5 * jnp.mean(z**2)

    def step(ws, z):
        g = jax.grad(loss)(ws, z)
        return [w - 0.002 * d for w, d in zip(ws, g)]

    run_step = jax.vmap(step, in_axes=(0, None))
    return jax.jit(lambda ws, z: jax.lax.fori_loop(0, steps, lambda i, ws: run_step(ws, z), ws))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g", default="1,3,10", help="comma-separated batch sizes (runs trained at once)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    groups = [int(g) for g in args.g.split(",")]
    print("machine:", describe())
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; {args.epochs} epochs per timed call\n")

    rng = np.random.default_rng(0)
    chans = [(1, CHANNELS)] + [(CHANNELS, CHANNELS)] * (CONVS - 2) + [(CHANNELS, 1)]
    z = jnp.asarray(rng.standard_normal((2, WIDTH, 1), np.float32))
    conv_row = next(r for r in paper.table1("code") if r.name == "convolution")
    default_row = next(r for r in paper.table1("code") if r.name == "default")
    data = rj.two_point()
    rows = []
    for g in groups:
        ws = [jnp.asarray(rng.standard_normal((g, KERNEL, i, o), np.float32) * 0.1) for i, o in chans]
        times = {}
        for name, conv in (
            ("XLA convolution", jax.lax.conv_general_dilated),
            ("matmul (package)", conv_general_dilated),
        ):
            run = conv_steps(conv, args.epochs)
            times[name] = best_time(lambda run=run, ws=ws: run(ws, z), args.repeats)
            rows.append((f"11 convolutions, {name}", g, times[name]))
        for row in (conv_row, default_row):
            config = rj.TrainConfig(epochs=args.epochs, track_layer=row.track_layer)

            def train(row=row, config=config, g=g):
                res = rj.train_networks(
                    data.x, data.targets, row.spec(), config, gains=row.gain, seeds=np.arange(g), lrs=row.lr
                )
                return res.loss

            rows.append((f"train_networks, {row.name} network", g, best_time(train, args.repeats)))
        print(f"G = {g}: XLA convolution / matmul = {times['XLA convolution'] / times['matmul (package)']:.1f}x")

    print(f"\n{'what':48s} {'G':>4s} {'ms / run-epoch':>15s}")
    for name, g, t in rows:
        print(f"{name:48s} {g:4d} {1e3 * t / (g * args.epochs):15.2f}")


if __name__ == "__main__":
    main()
