"""Fitting the effective learning rates to measured trajectories (paper Eq. 49).

The objective is the paper's: the summed squared error between the measured
`h, y, w` of every epoch and the solution of the 3-variable system started from
the measured initial values. It is minimised by Levenberg-Marquardt
(`optimistix`) on the log-rates, with the Jacobian from forward-mode autodiff
through the diffrax solve, for a whole batch of trajectories under one `vmap`
and one cached `jit`. `tau` is then fitted to the loss curve with the rates held
fixed (docs/theory.md section 4).

The starting point comes from the data without any solve ("integral matching"):
integrating the three equations of docs/theory.md section 3 from `ts[0]` gives, for
each of `v = h, y, w`, `v(t) - v(0) = eta_dec * I_A,v(t) + eta_enc * I_B,v(t)`
with `I` cumulative (trapezoid) integrals of measured quantities, which is linear
in the two rates. Integrals, unlike finite differences, do not amplify noise.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.core import Tracer
from jaxtyping import Array

from ._chunks import plan_chunks
from ._progress import Meter, Progress, report_computed
from ._rates import EffectiveRates
from ._theory import SolverOptions, max_step, representation_loss, solve_single, state_scale
from ._trajectory import PairTrajectory

#: The theory *explains* a run when its fit succeeded and each of `h`, `y` and `w` has
#: `R^2 >= EXPLAINS_R2` (`explains`): the one definition the fit, the sweep, the atlas and
#: the paper's claims share (Figure 2: "the theory matches all three curves quite well").
EXPLAINS_R2 = 0.9


def explains(success, r2_h, r2_y, r2_w):
    """Whether the theory explains a run: its fit succeeded and the `R^2` of each of `h`, `y`
    and `w` is at least `EXPLAINS_R2` (0.9). The one definition of "explained" in the package
    (`FitResult.explains`, the sweep's and the atlas's tables, the paper's Figure-2 test); a
    NaN `R^2` does not explain. Works on NumPy and JAX arrays alike (broadcasting)."""
    xp = jnp if any(isinstance(v, jax.Array) for v in (success, r2_h, r2_y, r2_w)) else np
    r2 = xp.minimum(xp.minimum(xp.asarray(r2_h), xp.asarray(r2_y)), xp.asarray(r2_w))
    return xp.asarray(success, bool) & (xp.nan_to_num(r2, nan=-xp.inf) >= EXPLAINS_R2)


class FitWarning(UserWarning):
    """Warnings of `fit_effective_rates` about its input (filter them alone with this class)."""


# --------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------


class FitResult(eqx.Module):
    """What `fit_effective_rates` found, one entry per trajectory of the batch.

    **Fields** (all of the trajectories' batch shape):

    - `eta_enc`, `eta_dec`: fitted effective learning rates per epoch.
    - `tau`: fitted time constant of the output mean (NaN without a loss curve).
    - `m0`: the `m0` used for `tau` (given, or fitted; NaN without a loss curve).
    - `fit_loss`: the paper's objective at the optimum, the summed squared error
      of `h, y, w` over all epochs.
    - `tau_fit_loss`: the summed squared error of the loss curve (NaN without one).
    - `success`: the element was valid, the optimiser converged, the final solve
      succeeded, the rates are identifiable and every number is finite. Where
      `False`, the rates are NaN.
    - `identifiable`: the measured trajectory determines both rates: the
      objective changes with each of them at the optimum (the Jacobian of the
      residuals has a column of norm above `1e-6` of the data's scale in each
      log-rate). A trajectory without dynamics (constant `h`, `y = w = 0` with
      `dy2 = 0`: a fixed point for every rate) is not; nor is one whose rate
      has no effect in the fitted window.
    - `explains`: the fit succeeded *and* explains the data: `R^2 >= 0.9`
      (`EXPLAINS_R2`) for each of `h`, `y` and `w` (`explains`, the package's one
      definition). A converged fit can still not explain its run (the paper's
      gain-1.4 network: `R^2` of `h` far below 0).
    - `r2_h`, `r2_y`, `r2_w`, `r2_loss`: coefficient of determination of the
      theory against the measurement for each quantity (`r2_loss` NaN without a
      loss curve): 1 is a perfect fit.
    - `num_steps`: optimiser steps taken for the rates.
    - `h0`, `y0`, `w0`: the initial state of the theory curve (the measured one,
      or the fitted one with `FitOptions(fit_initial_state=True)`).
    """

    eta_enc: Array
    eta_dec: Array
    tau: Array
    m0: Array
    fit_loss: Array
    tau_fit_loss: Array
    success: Array
    identifiable: Array
    explains: Array
    r2_h: Array
    r2_y: Array
    r2_w: Array
    r2_loss: Array
    num_steps: Array
    h0: Array
    y0: Array
    w0: Array

    @property
    def rates(self) -> EffectiveRates:
        return EffectiveRates(self.eta_enc, self.eta_dec, self.tau)


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Settings of `fit_effective_rates` (hashable: a static `jit` argument).

    **Fields:**

    - `solver`: `SolverOptions` of the ODE solves.
    - `max_steps`: Levenberg-Marquardt steps allowed per fit.
    - `rtol`, `atol`: its termination tolerances on the log-rates and the
      objective; `None` picks `1e-10` in float64 and `1e-6` in float32.
    - `fallback_grid`: points per axis of the coarse log-grid over
      `(eta_enc, eta_dec)` searched for elements whose data-driven starting
      point is unusable or whose first fit failed (0 disables it).
    - `grid_range`: `(low, high)` bounds of that grid, per epoch.
    - `chunk_size`: trajectories per vmapped solve. A vmapped adaptive solve takes as
      many steps as its stiffest member, so the batch is sorted by an estimate of
      the steps each trajectory needs and fitted in chunks of this size (one
      compilation for all chunks). `None`: the whole batch on an accelerator; 1 on
      a CPU, where vmapped adaptive solves measured slower than one trajectory at
      a time (`benchmarks/README.md`) and separate dispatches use every core.
    - `fit_initial_state`: `False` (the paper's method) starts the theory from the
      measured values at `ts[0]`; `True` fits those three values too. Use it when
      measurements are noisy: a noisy first point offsets the whole theory curve,
      and on trajectories where `h` moves little that offset biases `eta_enc`.
    """

    solver: SolverOptions = SolverOptions()
    max_steps: int = 64
    rtol: float | None = None
    atol: float | None = None
    fallback_grid: int = 9
    grid_range: tuple[float, float] = (1e-6, 1.0)
    fit_initial_state: bool = False
    chunk_size: int | None = None

    def resolved_chunk_size(self, batch: int) -> int:
        """`chunk_size`, or by default 1 on a CPU and the whole batch on an accelerator."""
        if self.chunk_size is not None:
            return max(1, min(self.chunk_size, batch))
        return 1 if jax.default_backend() == "cpu" else batch

    def tolerances(self, dtype) -> tuple[float, float]:
        double = jnp.dtype(dtype) == jnp.float64
        default = 1e-10 if double else 1e-6
        return (self.rtol if self.rtol is not None else default, self.atol if self.atol is not None else default)


# --------------------------------------------------------------------------------------
# Single-trajectory pieces (vmapped below)
# --------------------------------------------------------------------------------------


def _cumtrapz(f: Array, ts: Array) -> Array:
    dt = jnp.diff(ts)
    return jnp.concatenate([jnp.zeros_like(f[:1]), jnp.cumsum(0.5 * (f[1:] + f[:-1]) * dt)])


def initial_guess(ts: Array, h: Array, y: Array, w: Array, dx2: Array, dy2: Array) -> Array:
    """Starting rates `(eta_enc, eta_dec)` from one measured trajectory, no solve.

    Integral matching: the integrated equations of docs/theory.md section 3 are linear
    in the rates; their least-squares solution (each equation scaled by the range
    of its variable) is returned. Either entry may come out non-positive or
    non-finite on awkward data; callers check.
    """
    enc_h = -dx2 * w
    dec_y = -w * h
    enc_y = -dx2 * w * y / h
    dec_w = -0.5 * h * (3.0 * w - y + dy2)
    enc_w = -0.5 * dx2 * w * (y + w) / h
    rows_dec, rows_enc, rhs = [], [], []
    for v, dec, enc in ((h, jnp.zeros_like(h), enc_h), (y, dec_y, enc_y), (w, dec_w, enc_w)):
        dv = v - v[0]
        scale = jnp.max(jnp.abs(dv))
        scale = jnp.where(scale > 0, scale, 1.0)
        rows_dec.append(_cumtrapz(dec, ts) / scale)
        rows_enc.append(_cumtrapz(enc, ts) / scale)
        rhs.append(dv / scale)
    a_dec, a_enc, b = (jnp.concatenate(r) for r in (rows_dec, rows_enc, rhs))
    m11, m12, m22 = a_dec @ a_dec, a_dec @ a_enc, a_enc @ a_enc
    r1, r2 = a_dec @ b, a_enc @ b
    det = m11 * m22 - m12**2
    eta_dec = (m22 * r1 - m12 * r2) / det
    eta_enc = (m11 * r2 - m12 * r1) / det
    return jnp.stack([eta_enc, eta_dec])


def _start_state(params: Array, states: Array) -> Array:
    """Initial state of the theory curve: measured, shifted by `params[2:]` if fitted.

    The shifts are in units of each variable's range over the trajectory, so that
    all parameters are of order one.
    """
    if params.shape[0] == 2:
        return states[0]
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(states), axis=0))
    return states[0] + scale * params[2:]


def _residuals_and_solution(params: Array, data, options: SolverOptions) -> tuple[Array, tuple[Array, Array]]:
    """Residuals of the paper's objective for one trajectory, and the solve they came from.

    `params` is `(log eta_enc, log eta_dec)`, or those and three shifts of the
    initial state (`FitOptions.fit_initial_state`). Returns `(3 T,)` residuals and
    `(states (T, 3), ok)` of the solve.
    """
    ts, states, dx2, dy2 = data
    rates = jnp.exp(params[:2])
    sol, ok, _ = solve_single(_start_state(params, states), (rates[0], rates[1], dx2, dy2), ts, options)
    r = (sol - states).reshape(-1)
    # A failed solve gives a residual larger than any reachable one, so LM rejects the step.
    penalty = 1e3 * (jnp.max(jnp.abs(states)) + 1.0)
    return jnp.where(ok & jnp.all(jnp.isfinite(r)), r, penalty), (sol, ok)


def _residuals(params: Array, data, options: SolverOptions) -> Array:
    """`_residuals_and_solution`'s residuals alone: `(3 T,)`."""
    return _residuals_and_solution(params, data, options)[0]


def fit_objective(log_rates: Array, traj: PairTrajectory, solver: SolverOptions = SolverOptions()) -> Array:
    """The paper's objective (Eq. 49) for one unbatched trajectory.

    `sum_t ||(h, y, w)_theory(t) - (h, y, w)_measured(t)||^2` with the theory
    started from the measured values at `ts[0]` and rates `exp(log_rates)`
    (`log_rates = (log eta_enc, log eta_dec)`). Differentiable: use
    `jax.jacfwd` with the default forward-mode solver options, or `jax.grad`
    with `SolverOptions(adjoint="reverse")`.
    """
    states = jnp.stack([traj.h, traj.y, traj.w], -1)
    r = _residuals(log_rates, (traj.ts, states, traj.dx2, traj.dy2), solver)
    return jnp.sum(r**2)


def _r2(measured: Array, predicted: Array) -> Array:
    ss_res = jnp.sum((measured - predicted) ** 2)
    ss_tot = jnp.sum((measured - jnp.mean(measured)) ** 2)
    return 1.0 - ss_res / ss_tot


def _lm(fn, x0, args, options: FitOptions, dtype):
    rtol, atol = options.tolerances(dtype)
    sol = optx.least_squares(
        fn,
        optx.LevenbergMarquardt(rtol=rtol, atol=atol),
        x0,
        args=args,
        max_steps=options.max_steps,
        throw=False,
    )
    return sol.value, sol.result == optx.RESULTS.successful, sol.stats["num_steps"]


def _tau_residuals(params: Array, data) -> Array:
    t, excess, m0_given = data
    tau = jnp.exp(params[0])
    m0 = jnp.exp(params[1]) if m0_given is None else m0_given
    return excess - 0.5 * m0 * jnp.exp(-2.0 * t / tau)


class _RatesFit(eqx.Module):
    """What the fit of the rates gives one trajectory (`_fit_rates_one`, the first of the fit's two
    stages; `_fit_tau_one` is the second)."""

    params: Array  # the optimum: log-rates (and initial-state shifts)
    state0: Array  # the theory's initial state
    sol: Array  # (T, 3): the theory at the optimum
    ok: Array  # valid, converged, solved, identifiable, finite
    identifiable: Array
    fit_loss: Array
    num_steps: Array


def _fit_rates_one(ts, states, dx2, dy2, valid, start, options: FitOptions) -> _RatesFit:
    """Fit the rates of one (possibly invalid, then neutralised) trajectory from `start` rates."""
    dtype = states.dtype
    states = _neutral_where_invalid(states, dy2, valid)
    start = jnp.where(valid & jnp.all(jnp.isfinite(start)) & jnp.all(start > 0), start, 1e-3)
    data = (ts, states, dx2, dy2)
    residuals = functools.partial(_residuals, options=options.solver)
    p0 = jnp.log(start)
    if options.fit_initial_state:
        p0 = jnp.concatenate([p0, jnp.zeros(3, dtype)])
    params, converged, n_steps = _lm(residuals, p0, data, options, dtype)
    rates = jnp.exp(params[:2])
    state0 = _start_state(params, states)
    # The solve at the optimum and, in the same forward-mode pass (one solve compiled, not two),
    # the identifiability: does the objective respond to each log-rate there?
    jac, (sol, solve_ok) = jax.jacfwd(
        lambda r: _residuals_and_solution(jnp.concatenate([r, params[2:]]), data, options.solver), has_aux=True
    )(params[:2])
    fit_loss = jnp.sum((sol - states) ** 2)
    scale = jnp.sqrt(jnp.sum(states**2)) + jnp.finfo(dtype).tiny
    identifiable = jnp.all(jnp.sqrt(jnp.sum(jac**2, axis=0)) > 1e-6 * scale)
    ok = valid & converged & solve_ok & identifiable & jnp.all(jnp.isfinite(rates)) & jnp.isfinite(fit_loss)
    return _RatesFit(params, state0, sol, ok, identifiable, fit_loss, n_steps)


def _neutral_where_invalid(states, dy2, valid):
    """Invalid elements are replaced by a fixed point of the system (zero residual at any
    rates), so that they never hold the vmapped optimiser loop open."""
    dtype = states.dtype
    neutral = jnp.broadcast_to(jnp.stack([jnp.ones((), dtype), dy2, jnp.zeros((), dtype)]), states.shape)
    return jnp.where(valid, states, neutral)


def _fit_tau_one(ts, states, dy2, loss, m0, valid, fit: _RatesFit, options: FitOptions) -> FitResult:
    """The fit's second stage: `tau` (and `m0`) fitted to the loss curve with the rates held,
    and the `FitResult` of one trajectory."""
    dtype = states.dtype
    nan = jnp.array(jnp.nan, dtype)
    states = _neutral_where_invalid(states, dy2, valid)
    sol = fit.sol
    if loss is None:
        tau = m0_out = tau_loss = r2_loss = nan
        tau_ok = True
    else:
        t = ts - ts[0]
        excess = loss - representation_loss(sol[:, 1], sol[:, 2], dy2=dy2)
        # Invalid elements get an exact curve (m0 = 1, tau = t[-1] / 10): the fit stops at once.
        excess = jnp.where(valid, excess, 0.5 * jnp.exp(-20.0 * t / t[-1]))
        m0_start = 2.0 * excess[0] if m0 is None else m0
        # The area under m0/2 exp(-2t/tau) is m0 tau / 4.
        area = _cumtrapz(excess, ts)[-1]
        tau_start = 4.0 * area / m0_start
        tau_start = jnp.where(jnp.isfinite(tau_start) & (tau_start > 0), tau_start, t[-1] / 10)
        m0_safe = jnp.where(m0_start > 0, m0_start, 1.0)
        p0 = jnp.log(jnp.stack([tau_start, m0_safe]))
        m0_given = None if m0 is None else m0_safe
        p, tau_conv, _ = _lm(_tau_residuals, p0, (t, excess, m0_given), options, dtype)
        tau = jnp.exp(p[0])
        m0_out = jnp.exp(p[1]) if m0 is None else m0
        fitted = 0.5 * m0_out * jnp.exp(-2.0 * t / tau)
        tau_loss = jnp.sum((excess - fitted) ** 2)
        r2_loss = _r2(loss, loss - excess + fitted)
        tau_ok = tau_conv & (m0_start > 0) & jnp.isfinite(tau) & jnp.isfinite(tau_loss)

    success = fit.ok & tau_ok
    rates = jnp.exp(fit.params[:2])
    r2 = [_r2(states[:, k], sol[:, k]) for k in range(3)]

    def mask(v):
        return jnp.where(success, v, nan)

    return FitResult(
        h0=mask(fit.state0[0]),
        y0=mask(fit.state0[1]),
        w0=mask(fit.state0[2]),
        eta_enc=mask(rates[0]),
        eta_dec=mask(rates[1]),
        tau=mask(tau),
        m0=mask(m0_out),
        fit_loss=jnp.where(valid, fit.fit_loss, nan),
        tau_fit_loss=jnp.where(valid, tau_loss, nan),
        success=success,
        identifiable=valid & fit.identifiable,
        explains=jnp.asarray(explains(success, r2[0], r2[1], r2[2])),
        r2_h=jnp.where(valid, r2[0], nan),
        r2_y=jnp.where(valid, r2[1], nan),
        r2_w=jnp.where(valid, r2[2], nan),
        r2_loss=jnp.where(valid, r2_loss, nan),
        num_steps=fit.num_steps,
    )


# --------------------------------------------------------------------------------------
# Batched, jitted stages
# --------------------------------------------------------------------------------------


def _valid(ts, states, loss):
    ok = jnp.all(jnp.isfinite(states), axis=(-2, -1)) & jnp.all(states[..., 0] > 0, axis=-1)
    ok &= jnp.all(jnp.isfinite(ts), axis=-1)
    if loss is not None:
        ok &= jnp.all(jnp.isfinite(loss), axis=-1)
    return ok


_valid_jit = jax.jit(_valid)


@jax.jit
def _guess_batch(ts, states, dx2, dy2):
    return jax.vmap(lambda t, s, a, b: initial_guess(t, s[:, 0], s[:, 1], s[:, 2], a, b))(ts, states, dx2, dy2)


def _fit_batch(ts, states, dx2, dy2, loss, m0, start, options: FitOptions) -> FitResult:
    """The fit of a batch, as two compiled programs: the rates, whose program (the optimiser
    through the ODE solves: seconds to compile) serves fits with and without a loss curve or a
    given `m0`, and then `tau` with the result. Both see `options` only by the fields they read,
    so that another fallback grid or chunk size (host-side settings) compiles nothing new."""
    host_side = dict(fallback_grid=0, grid_range=FitOptions.grid_range, chunk_size=None)
    options = dataclasses.replace(options, **host_side)
    valid = _valid_jit(ts, states, loss)
    rates = _fit_rates_batch(ts, states, dx2, dy2, valid, start, options)
    return _fit_tau_batch(ts, states, dy2, loss, m0, valid, rates, options)


@eqx.filter_jit
def _fit_rates_batch(ts, states, dx2, dy2, valid, start, options: FitOptions) -> _RatesFit:
    return jax.vmap(lambda *a: _fit_rates_one(*a, options=options))(ts, states, dx2, dy2, valid, start)


@eqx.filter_jit
def _fit_tau_batch(ts, states, dy2, loss, m0, valid, rates: _RatesFit, options: FitOptions) -> FitResult:
    fit = jax.vmap(
        lambda *a: _fit_tau_one(*a, options=options),
        in_axes=(0, 0, 0, None if loss is None else 0, None if m0 is None else 0, 0, 0),
    )
    return fit(ts, states, dy2, loss, m0, valid, rates)


@eqx.filter_jit
def _grid_objective(ts, states, dx2, dy2, grid, solver: SolverOptions):
    """Objective of each trajectory at every point of `grid` `(G, 2)`: `(B, G)`."""

    def one(t, s, a, b):
        return jax.vmap(lambda g: jnp.sum(_residuals(jnp.log(g), (t, s, a, b), solver) ** 2))(grid)

    return jax.vmap(one)(ts, states, dx2, dy2)


@jax.jit
def _cost_estimate(ts, states, dx2, dy2, start):
    """Lower bound on the solver steps of each trajectory: time span / largest stable step."""

    def one(t, s, a, b, r):
        r = jnp.where(jnp.all(jnp.isfinite(r) & (r > 0)), r, 1e-3)
        s0 = jnp.where(jnp.all(jnp.isfinite(s[0])) & (s[0, 0] > 0), s[0], jnp.ones_like(s[0]))
        args = (r[0], r[1], a, b)
        return (t[-1] - t[0]) / max_step(s0, args, state_scale(s0, args))

    return jax.vmap(one)(ts, states, dx2, dy2, start)


def _take(idx, *arrays):
    """The trajectories `idx` of each batch array (`None`s stay `None`)."""
    return tuple(None if a is None else a[idx] for a in arrays)


def _fit_sorted_chunks(ts, states, dx2, dy2, loss, m0, start, options: FitOptions, report=None) -> FitResult:
    """`_fit_batch` over chunks of trajectories of similar stiffness, in the input order.

    `report(n)` (host side, optional, never under tracing) is called with the number of
    trajectories fitted so far as each chunk has been computed."""
    B = ts.shape[0]
    chunk = options.resolved_chunk_size(B)
    if chunk >= B or isinstance(ts, Tracer):
        out = _fit_batch(ts, states, dx2, dy2, loss, m0, start, options)
        if report is not None:
            report_computed(report, out, B)
        return out
    # One at a time the order does not matter (and sorting would compile per batch size).
    order = None if chunk == 1 else np.argsort(np.asarray(_cost_estimate(ts, states, dx2, dy2, start)), kind="stable")
    # Chunks are cut on the host: indexing device arrays would compile a gather per shape.
    host = _on_host(ts, states, dx2, dy2, loss, m0, start)
    parts, done = [], 0
    for idx, real in plan_chunks(B, chunk, order):
        t, s, a, b, lo, m, r = _take(idx, *host)
        parts.append(_fit_batch(t, s, a, b, lo, m, r, options))
        if report is not None and len(parts) > 1:  # the chunk before this one, now queued behind it
            report_computed(report, parts[-2], done)
        done += real
    if report is not None:
        report_computed(report, parts[-1], done)
    inverse = np.arange(B)
    if order is not None:
        inverse[order] = np.arange(B)
    return jax.tree_util.tree_map(lambda *v: jnp.asarray(np.concatenate([np.asarray(p) for p in v])[inverse]), *parts)


def _on_host(*arrays):
    """NumPy copies (`None`s stay `None`)."""
    return tuple(None if a is None else np.asarray(a) for a in arrays)


def _grid(options: FitOptions, dtype) -> Array:
    lo, hi = np.log10(options.grid_range)
    axis = np.logspace(lo, hi, options.fallback_grid)
    ee, ed = np.meshgrid(axis, axis, indexing="ij")
    return jnp.asarray(np.stack([ee.ravel(), ed.ravel()], -1), dtype)


def _pad_to_bucket(idx: np.ndarray) -> np.ndarray:
    """Pad an index set to a power-of-two length (bounds the number of compilations)."""
    size = 1 << int(np.ceil(np.log2(max(len(idx), 1))))
    return np.concatenate([idx, np.full(size - len(idx), idx[0])])


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def _check(traj: PairTrajectory):
    """Shape and value checks; returns flattened arrays and the batch shape."""
    h, y, w = traj.h, traj.y, traj.w
    if h.ndim < 1 or h.shape != y.shape or h.shape != w.shape:
        raise ValueError(f"h, y and w must have the same shape batch + (T,); got {h.shape}, {y.shape}, {w.shape}")
    batch, T = h.shape[:-1], h.shape[-1]
    if T < 3:
        raise ValueError(f"a trajectory needs at least 3 time points, got T = {T}")
    ts = traj.ts
    if ts.shape[-1:] != (T,):
        raise ValueError(f"ts must have shape (T,) or batch + (T,) with T = {T}, got {ts.shape}")
    for name in ("dx2", "dy2", "m0"):
        v = getattr(traj, name)
        if v is not None:
            try:
                jnp.broadcast_shapes(v.shape, batch)
            except ValueError:
                raise ValueError(f"{name} of shape {v.shape} does not broadcast to the batch shape {batch}") from None
    if traj.loss is not None and traj.loss.shape != h.shape:
        raise ValueError(f"loss must have the shape of h, {h.shape}, got {traj.loss.shape}")
    concrete = not any(isinstance(v, Tracer) for v in jax.tree_util.tree_leaves(traj))
    try:
        tsb = np.broadcast_to(np.asarray(ts), batch + (T,)) if concrete else jnp.broadcast_to(ts, batch + (T,))
    except ValueError:
        raise ValueError(f"ts of shape {ts.shape} does not broadcast to {batch + (T,)}") from None

    if concrete:
        if np.all(np.isfinite(tsb)) and not np.all(np.diff(tsb, axis=-1) > 0):
            raise ValueError("ts must be strictly increasing")
        if not np.all(np.isfinite(tsb)):
            raise ValueError("ts has non-finite values")
        if np.any(np.asarray(traj.dx2) <= 0) or not np.all(np.isfinite(np.asarray(traj.dx2))):
            raise ValueError("dx2 must be positive and finite (the two inputs must differ)")
        if np.any(np.asarray(traj.dy2) < 0) or not np.all(np.isfinite(np.asarray(traj.dy2))):
            raise ValueError("dy2 must be non-negative and finite")
        for name in ("h", "y", "w", "loss"):
            v = getattr(traj, name)
            if v is None:
                continue
            bad = ~np.all(np.isfinite(np.asarray(v)), axis=-1)
            if bad.any():
                warnings.warn(
                    f"{name} has non-finite values in {int(bad.sum())} of {bad.size} trajectories; "
                    "those are not fitted (success=False)",
                    FitWarning,
                    stacklevel=3,
                )
        nonpos = np.any(np.asarray(h) <= 0, axis=-1)
        if nonpos.any():
            warnings.warn(
                f"h <= 0 in {int(nonpos.sum())} of {nonpos.size} trajectories (the theory needs two distinct "
                "representations); those are not fitted (success=False)",
                FitWarning,
                stacklevel=3,
            )
    return batch, T, tsb


def fit_effective_rates(
    traj: PairTrajectory,
    options: FitOptions = FitOptions(),
    *,
    start: EffectiveRates | None = None,
    progress: bool | Meter = False,
) -> FitResult:
    """Fit `eta_enc`, `eta_dec` (and `tau`) to measured trajectories (paper Eq. 49).

    **Arguments:**

    - `traj`: a `PairTrajectory`, with any leading batch shape.
    - `options`: `FitOptions` (solver tolerances, optimiser limits, fallback grid).
    - `start`: where the fits start, `EffectiveRates` (rates per epoch) broadcast to the
      batch shape of `traj` (`tau` unused), e.g. the fits of a neighbouring gain; default
      the data-driven `initial_guess` of each trajectory. A start that is not positive
      and finite is replaced by `1e-3`; a fit that fails from it is retried from the
      fallback grid.
    - `progress`: `True` for a progress bar on stderr, or a `Meter` (a `Progress`, or any
      callable of one integer) given the number of fits done (trajectories, then the
      failed ones retried from the fallback grid, which extend the total), called as
      each chunk has been computed. Fits run one
      trajectory at a time on a CPU, so this is where a large batch spends its time.

    **Returns:** a `FitResult` whose fields have the batch shape of `traj`.

    Bad input raises a `ValueError` (mismatched shapes, `ts` not strictly
    increasing, `dx2 <= 0`). Trajectories with non-finite values or `h <= 0` are
    not fitted: their result has `success=False` and NaN rates (with a warning
    that names the field); the rest of the batch is unaffected.

    The whole batch is fitted by one `jit`-compiled, `vmap`-ped Levenberg-Marquardt
    solve; a second call with the same shapes does not recompile. Works in float32;
    in float64 when x64 is enabled.

    **Under tracing** (called inside `jax.jit`, `vmap` or `grad` of your own):
    shapes are still checked, but the value checks (`ts` increasing, `dx2 > 0`)
    and their `FitWarning`s are skipped, the batch is fitted as one vmapped call
    (no sorting into chunks by stiffness) and failed elements get no second try
    from the fallback grid (`success=False` reports them). Call it on concrete
    arrays for the full behaviour.
    """
    batch, T, tsb = _check(traj)
    dtype = jnp.result_type(traj.h.dtype, traj.y.dtype, traj.w.dtype, traj.ts.dtype)
    B = int(np.prod(batch)) if batch else 1
    traced = any(isinstance(v, Tracer) for v in jax.tree_util.tree_leaves((traj, start)))
    # Concrete input is laid out with NumPy: eager JAX operations would compile one small
    # program per operation and shape (hundreds over a session of fits of several shapes).
    xp = jnp if traced else np

    def flat(v, trailing=()):
        return xp.broadcast_to(xp.asarray(v, dtype), batch + trailing).reshape((B,) + trailing)

    ts = flat(tsb, (T,))
    states = xp.stack([flat(traj.h, (T,)), flat(traj.y, (T,)), flat(traj.w, (T,))], -1)
    dx2, dy2 = flat(traj.dx2), flat(traj.dy2)
    loss = None if traj.loss is None else flat(traj.loss, (T,))
    m0 = None if traj.m0 is None else flat(traj.m0)

    if start is None:
        starts = _guess_batch(ts, states, dx2, dy2)
    else:
        try:
            starts = xp.stack([flat(start.eta_enc), flat(start.eta_dec)], -1)
        except (ValueError, TypeError):
            shapes = (jnp.shape(start.eta_enc), jnp.shape(start.eta_dec))
            raise ValueError(f"start rates of shapes {shapes} do not broadcast to the batch shape {batch}") from None
    bar = Progress(B, label="fit", unit="fit") if progress is True and not traced else None
    report = bar if bar is not None else (progress if callable(progress) and not traced else None)
    try:
        result = _fit_sorted_chunks(ts, states, dx2, dy2, loss, m0, starts, options, report)
        if options.fallback_grid > 0 and not traced:
            result = _retry_from_grid(ts, states, dx2, dy2, loss, m0, result, options, dtype, report)
    finally:
        if bar is not None:
            bar.close()
    if traced:
        return jax.tree_util.tree_map(lambda v: v.reshape(batch), result)
    return jax.tree_util.tree_map(lambda v: jnp.asarray(np.asarray(v).reshape(batch)), result)


def _retry_from_grid(ts, states, dx2, dy2, loss, m0, result, options, dtype, report):
    """The second chance, outside the jitted fit: valid trajectories whose fit failed,
    restarted from the best point of a coarse log-grid. `report` counts on from the
    batch size (a `Progress` grows by the retries)."""
    valid = np.asarray(_valid_jit(ts, states, loss))
    redo = np.flatnonzero(valid & ~np.asarray(result.success))
    if not redo.size:
        return result
    # In chunks of the first fit's size (one trajectory at a time on a CPU, the
    # compiled shapes of the first fit); one padded batch on an accelerator.
    chunk = options.resolved_chunk_size(redo.size)
    idx = _pad_to_bucket(redo) if chunk >= redo.size else redo
    grid = _grid(options, dtype)
    t, s, a, b = (np.asarray(v)[idx] for v in (ts, states, dx2, dy2))
    lo, m = _take(idx, *_on_host(loss, m0))
    objs = []
    for part, real in plan_chunks(len(idx), chunk):
        objs.append(np.asarray(_grid_objective(t[part], s[part], a[part], b[part], grid, options.solver))[:real])
    obj = np.concatenate(objs)
    best = np.asarray(grid)[np.argmin(np.where(np.isfinite(obj), obj, np.inf), axis=1)]
    if isinstance(report, Progress):
        report.extend(redo.size)
    B = ts.shape[0]
    on = None if report is None else (lambda n: report(B + min(n, redo.size)))  # padding is not a fit
    retry = _fit_sorted_chunks(t, s, a, b, lo, m, best, options, on)
    improved = np.asarray(retry.success)[: redo.size]
    take = redo[improved]
    src = np.flatnonzero(improved)

    def merged(r, n):  # on the host: `.at[].set` would compile a scatter per field and shape
        r = np.array(r)
        r[take] = np.asarray(n)[src]
        return jnp.asarray(r)

    return jax.tree_util.tree_map(merged, result, retry)
