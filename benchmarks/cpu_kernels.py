"""Memory bandwidth of the kernels one training step of the default network is made of.

    python benchmarks/cpu_kernels.py [--g 4] [--repeats 7]

A full-batch step on the two-point task reads each `(500, 500)` weight three times
and writes it once: the forward product `a @ w` (2 rows), the backward product
`d @ w.T`, and the SGD update `w - lr * sum_n a_n d_n^T`. This times each over a
stack of G runs' 19 square weight matrices (a vmapped batch of G default
networks), as a chain through the layers like the training step, and prints the
bytes of weights each moves per second next to a plain in-place array pass (the
roofline's bandwidth). The backward product and the update are timed together,
as they run in the training step, with the product both as XLA's batched matmul
and as the multiply-reduce `repalign_jax` uses for at most 8 points.
Float32, `Precision.HIGHEST`; one JAX device (`--g` runs on it).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe  # noqa: E402
from train_throughput import measure_bandwidth  # noqa: E402

HI = jax.lax.Precision.HIGHEST
WIDTH, LAYERS, POINTS = 500, 19, 2


def best_time(fn, repeats, inner=10):
    """Min over `repeats` of the mean time of `inner` calls of `fn` (synchronised once per batch)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def sgd_update(w, a, d):
    """`w - lr * sum_n a_n d_n^T` for the two points, as the training step's fused update."""
    return w - 0.005 * (a[:, 0, :, None] * d[:, 0, None, :] + a[:, 1, :, None] * d[:, 1, None, :])


def chain(product):
    """A jitted pass through the layers: `z <- tanh(product(z, w))` (the next layer needs the last)."""

    @jax.jit
    def run(ws, z):
        for w in ws:
            z = jnp.tanh(product(z, w))
        return z

    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g", type=int, default=4, help="runs whose weights are stacked (the vmapped batch)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    G = args.g

    rng = np.random.default_rng(0)
    ws = [jnp.asarray(rng.standard_normal((G, WIDTH, WIDTH), np.float32) / WIDTH**0.5) for _ in range(LAYERS)]
    z = jnp.asarray(rng.standard_normal((G, POINTS, WIDTH), np.float32))
    nbytes = 4 * G * LAYERS * WIDTH * WIDTH
    print("machine:", describe())
    print(f"{LAYERS} weight matrices ({WIDTH}, {WIDTH}) x G = {G} runs = {nbytes / 1e6:.0f} MB; {POINTS} points\n")

    forward = chain(lambda z, w: jnp.einsum("gnk,gkm->gnm", z, w, precision=HI))
    t = best_time(lambda: forward(ws, z), args.repeats)
    rows = [("forward a @ w (batched matmul)", t, nbytes / t)]

    def backward_and_update(product):
        """The backward pass's product with each weight, then its in-place SGD update (reads, reads + writes).

        As in the training step, the update depends on the product's result (`0 * da`),
        so XLA orders the read before the in-place write instead of copying the weight."""

        def run(ws, a, d):
            new = []
            for w in ws:
                da = product(d, w)
                new.append(sgd_update(w, a, d) + 0 * da[:, :1, :1])
                d = jnp.tanh(da)
            return new, d

        return jax.jit(run, donate_argnums=0)

    variants = {
        "backward (batched matmul) + update": lambda d, w: jnp.einsum("gnm,gkm->gnk", d, w, precision=HI),
        "backward (multiply-reduce) + update": lambda d, w: jnp.sum(w[:, None] * d[:, :, None, :], axis=-1),
    }
    for name, product in variants.items():
        run = backward_and_update(product)
        box = {"ws": [w + 0 for w in ws]}

        def once(run=run, box=box):
            box["ws"], d = run(box["ws"], z, z)
            return d

        t = best_time(once, args.repeats)
        rows.append((name, t, 3 * nbytes / t))

    update = jax.jit(lambda ws, a, d: [sgd_update(w, a, d) for w in ws], donate_argnums=0)
    box = {"ws": [w + 0 for w in ws]}

    def step():
        box["ws"] = update(box["ws"], z, z)
        return box["ws"]

    t = best_time(step, args.repeats)
    rows.append(("update alone, in place (read + write)", t, 2 * nbytes / t))

    del box["ws"]
    bw = measure_bandwidth(256_000_000, args.repeats)  # the same measurement as train_throughput.py's roofline
    rows.append(("in-place v + 1 over 256 MB (roofline)", 2 * 256e6 / bw, bw))

    print(f"{'kernel':40s} {'ms':>8s} {'GB/s':>7s} {'of roofline':>12s}")
    for name, t, rate in rows:
        print(f"{name:40s} {1e3 * t:8.2f} {rate / 1e9:7.1f} {100 * rate / bw:11.0f}%")


if __name__ == "__main__":
    main()
