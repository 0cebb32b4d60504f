"""Fit throughput: vectorised fit vs a loop of jitted single fits vs the paper's scipy method.

    python benchmarks/fit_throughput.py [--batch 50] [--scipy-n 5] [--grid 12]

B synthetic trajectories of 6000 epochs (rates over the paper's range, made by
scipy's DOP853 at rtol 1e-12) are fitted three ways in one run:

1. `fit_effective_rates` on the whole batch: one jitted, vmapped Levenberg-Marquardt;
2. a Python loop calling the same jitted fit on one trajectory at a time;
3. the authors' approach: a grid of starting guesses, each a `solve_ivp` Radau
   solve, then `scipy.optimize.minimize` from the best (timed on `--scipy-n`
   trajectories, throughput per trajectory extrapolated).

Prints trajectories per second, the ratios, and the rates' relative errors.
Timings exclude compilation (one warm-up call with the same shapes first).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe  # noqa: E402

import repalign_jax as rj  # noqa: E402

DX2, DY2 = 1.0, 0.5


def rhs(ee, ed):
    def f(t, s):
        h, y, w = s
        return [
            -ee * DX2 * w,
            -w * (ed * h + ee * DX2 * y / h),
            -0.5 * ed * h * (3 * w - y + DY2) - 0.5 * ee * DX2 * w * (y + w) / h,
        ]

    return f


def make_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    ts = np.arange(6001.0)
    rates, states = [], []
    while len(rates) < n:
        ee = 10 ** rng.uniform(-4, -1)
        ed = ee * 10 ** rng.uniform(-1, 2)
        if not 1e-4 <= ed <= 1e-1:
            continue
        h0, y0 = rng.uniform(0.1, 2), 10 ** rng.uniform(-9, -2)
        w0 = y0 - np.sqrt(DY2 * y0) * rng.uniform(-1, 1)
        sol = solve_ivp(rhs(ee, ed), (0, 6000), [h0, y0, w0], t_eval=ts, method="DOP853", rtol=1e-12, atol=1e-15)
        rates.append((ee, ed))
        states.append(sol.y)
    return ts, np.array(rates), np.array(states)


def scipy_fit(ts, state, grid, rtol):
    """The paper's procedure: best of a grid of Radau solves, then minimize from it."""

    def sse(logp):
        ee, ed = np.exp(logp)
        sol = solve_ivp(
            rhs(ee, ed), (ts[0], ts[-1]), state[:, 0], t_eval=ts, method="Radau", rtol=rtol, atol=rtol * 1e-3
        )
        if not sol.success or sol.y.shape[1] != len(ts):
            return 1e10
        return float(np.sum((sol.y - state) ** 2))

    values = [sse(np.log(g)) for g in grid]
    best = np.log(grid[int(np.argmin(values))])
    res = minimize(sse, best, method="Nelder-Mead", options=dict(xatol=1e-7, fatol=1e-14, maxiter=400))
    return np.exp(res.x)


def rel_err(got, want):
    e = np.abs(np.asarray(got) / want - 1)
    return f"median {np.median(e):.1e}, max {np.max(e):.1e}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--scipy-n", type=int, default=5, help="trajectories fitted by the scipy baseline")
    p.add_argument("--grid", type=int, default=12, help="scipy starting grid per axis (12 -> 144 guesses)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--scipy-rtol", type=float, default=1e-6, help="Radau tolerance of the baseline (atol = rtol / 1000)"
    )
    args = p.parse_args(argv)

    print("machine:", describe())
    ts, rates, states = make_batch(args.batch)
    print(f"{args.batch} trajectories of {len(ts) - 1} epochs; eta in [1e-4, 1e-1], eta_dec/eta_enc in [0.1, 100]")
    results = {}
    for label, x64 in (("float64", True), ("float32", False)):
        with jax.enable_x64(x64):
            traj = rj.PairTrajectory(ts, states[:, 0], states[:, 1], states[:, 2], DX2, DY2)
            for key, name, opts in (
                (f"vmap {label}", "one vmapped batch", rj.FitOptions(chunk_size=args.batch)),
                (f"auto {label}", "default chunking", rj.FitOptions()),
            ):
                fit = jax.block_until_ready(rj.fit_effective_rates(traj, opts))  # warm-up / compile
                best = np.inf
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    fit = jax.block_until_ready(rj.fit_effective_rates(traj, opts))
                    best = min(best, time.perf_counter() - t0)
                ok = np.asarray(fit.success)
                results[key] = args.batch / best
                print(
                    f"[1] fit_effective_rates, {name} ({label}): {best:.3f} s -> {args.batch / best:8.1f} traj/s "
                    f"({1e3 * best / args.batch:.1f} ms/traj); success {ok.sum()}/{args.batch}; "
                    f"eta_enc {rel_err(fit.eta_enc, rates[:, 0])}; eta_dec {rel_err(fit.eta_dec, rates[:, 1])}"
                )

            singles = [
                jax.tree_util.tree_map(lambda v, i=i: v[i] if v.ndim == 2 else v, traj) for i in range(args.batch)
            ]
            jax.block_until_ready(rj.fit_effective_rates(singles[0]))  # compile the single-trajectory fit
            t0 = time.perf_counter()
            loop = [jax.block_until_ready(rj.fit_effective_rates(s)) for s in singles]
            dt = time.perf_counter() - t0
            results[f"loop {label}"] = args.batch / dt
            ee = np.array([float(f.eta_enc) for f in loop])
            ed = np.array([float(f.eta_dec) for f in loop])
            print(
                f"[2] loop of jitted single fits ({label}): {dt:.3f} s -> {args.batch / dt:8.1f} traj/s; "
                f"eta_enc {rel_err(ee, rates[:, 0])}; eta_dec {rel_err(ed, rates[:, 1])}"
            )

    axis = np.logspace(-4.5, -0.5, args.grid)
    grid = np.array([(a, b) for a in axis for b in axis])
    n = min(args.scipy_n, args.batch)
    t0 = time.perf_counter()
    sp = np.array([scipy_fit(ts, states[i], grid, args.scipy_rtol) for i in range(n)])
    dt = time.perf_counter() - t0
    results["scipy"] = n / dt
    print(
        f"[3] scipy baseline ({len(grid)} Radau starts at rtol {args.scipy_rtol:g} + Nelder-Mead), {n} trajectories: {dt:.1f} s -> "
        f"{n / dt:.3f} traj/s ({dt / n:.2f} s/traj); eta_enc {rel_err(sp[:, 0], rates[:n, 0])}; "
        f"eta_dec {rel_err(sp[:, 1], rates[:n, 1])}"
    )
    print("ratios (throughput):")
    for k in ("vmap float64", "auto float64", "loop float64", "vmap float32", "auto float32", "loop float32"):
        print(f"  {k:13s} / scipy = {results[k] / results['scipy']:8.0f}x")
    print(f"  vmap float64 / loop float64 = {results['vmap float64'] / results['loop float64']:.2f}x")
    print(f"  vmap float32 / loop float32 = {results['vmap float32'] / results['loop float32']:.2f}x")


if __name__ == "__main__":
    main()
