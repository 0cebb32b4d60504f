"""The effective theory: the 3-variable system, its solution and its closed forms.

Everything here implements `docs/theory.md` sections 3-8 as pure functions of arrays:
they can be `jit`-ed, `vmap`-ed and differentiated, and every public function
accepts leading batch dimensions (broadcast against each other).

Conventions: `h = ||dh||^2`, `y = ||dyh||^2`, `w = y - dy . dyh`, time in epochs,
`dx2 = ||dx||^2`, `dy2 = ||dy||^2`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jaxtyping import Array, ArrayLike

from ._rates import EffectiveRates

# --------------------------------------------------------------------------------------
# Vector fields
# --------------------------------------------------------------------------------------


def vector_field(t, state: Array, args) -> Array:
    """Right-hand side of the 3-variable system (docs/theory.md section 3).

    **Arguments:**

    - `t`: time in epochs (unused: the system is autonomous).
    - `state`: array `(..., 3)` holding `(h, y, w)`.
    - `args`: `(eta_enc, eta_dec, dx2, dy2)`, scalars or arrays broadcastable
      against `state[..., 0]`.

    **Returns:** `d(h, y, w)/dt`, same shape as `state`.

    For a diffrax solve of your own: `diffrax.ODETerm(vector_field)`, with
    `args=(eta_enc, eta_dec, dx2, dy2)` (`solve_effective` does this for you).
    """
    del t
    eta_enc, eta_dec, dx2, dy2 = args
    h, y, w = state[..., 0], state[..., 1], state[..., 2]
    enc = eta_enc * dx2
    dh = -enc * w
    dy = -w * (eta_dec * h + enc * y / h)
    dw = -0.5 * eta_dec * h * (3.0 * w - y + dy2) - 0.5 * enc * w * (y + w) / h
    return jnp.stack([dh, dy, dw], axis=-1)


def coupling(eta_enc: ArrayLike, eta_dec: ArrayLike, dx2: ArrayLike) -> Array:
    """`a = eta_dec / (eta_enc * dx2)` of docs/theory.md section 5."""
    return jnp.asarray(eta_dec) / (jnp.asarray(eta_enc) * dx2)


def conserved_c(h: ArrayLike, y: ArrayLike, *, dx2: ArrayLike, rates: EffectiveRates) -> Array:
    """The constant of motion `C = y / h - a h` (docs/theory.md section 5).

    Along every solution of the 3-variable system `y = a h^2 + C h`, so `C`
    computed from any point of a trajectory is the same number.
    """
    h = jnp.asarray(h)
    return jnp.asarray(y) / h - coupling(rates.eta_enc, rates.eta_dec, dx2) * h


def reduced_vector_field(t, state: Array, args) -> Array:
    """The closed 2-variable system in `(h, w)` (docs/theory.md section 5).

    `y` is eliminated with the conserved relation `y = a h^2 + C h`.

    **Arguments:**

    - `state`: array `(..., 2)` holding `(h, w)`.
    - `args`: `(eta_enc, eta_dec, dx2, dy2, C)`.

    **Returns:** `d(h, w)/dt`, same shape as `state`.
    """
    del t
    eta_enc, eta_dec, dx2, dy2, c = args
    h, w = state[..., 0], state[..., 1]
    a = coupling(eta_enc, eta_dec, dx2)
    enc = eta_enc * dx2
    y = a * h**2 + c * h
    dh = -enc * w
    # (y + w) / h written without dividing y by h, so that it stays finite as h -> 0.
    dw = -0.5 * eta_dec * h * (3.0 * w - y + dy2) - 0.5 * enc * w * (a * h + c + w / h)
    return jnp.stack([dh, dw], axis=-1)


# --------------------------------------------------------------------------------------
# Closed forms: final distance, fixed points
# --------------------------------------------------------------------------------------


def structure_scales(
    h0: ArrayLike, y0: ArrayLike, *, dx2: ArrayLike, dy2: ArrayLike, rates: EffectiveRates
) -> tuple[Array, Array]:
    """`(A_low, A_high)` of docs/theory.md section 6.

    `A_low = sqrt(eta_enc / eta_dec) ||dx|| ||dy||` is set by the data (rich
    regime), `A_high = h0 - (eta_enc / eta_dec) dx2 y0 / h0` by the initial
    representation (lazy regime).
    """
    h0 = jnp.asarray(h0)
    ratio = rates.eta_enc / rates.eta_dec
    a_low = jnp.sqrt(ratio * dx2 * dy2)
    a_high = h0 - ratio * dx2 * jnp.asarray(y0) / h0
    return a_low, a_high


def final_distance(h0: ArrayLike, y0: ArrayLike, *, dx2: ArrayLike, dy2: ArrayLike, rates: EffectiveRates) -> Array:
    """The final squared representational distance `h_inf` (docs/theory.md section 6).

    `h_inf = A_high / 2 + sqrt(A_high^2 / 4 + A_low^2)`: the stable fixed point
    that a solution started at `(h0, y0, .)` converges to. It depends on the rates
    only through `eta_enc / eta_dec`.

    **Returns:** `h_inf`, the broadcast shape of the arguments.
    """
    a_low, a_high = structure_scales(h0, y0, dx2=dx2, dy2=dy2, rates=rates)
    half = 0.5 * a_high
    # Stable form of half + sqrt(half^2 + a_low^2) when half is large and negative.
    root = jnp.sqrt(half**2 + a_low**2)
    return jnp.where(half >= 0, half + root, a_low**2 / jnp.where(root - half > 0, root - half, 1.0))


class PairwiseDistances(NamedTuple):
    """Predicted final distances between every pair of points of a dataset."""

    distance: Array
    """`(..., N, N)`: predicted final representational distances `sqrt(h_inf)`."""
    squared: Array
    """`(..., N, N)`: predicted final squared distances `h_inf`."""


def final_distance_matrix(
    dist_x: ArrayLike,
    dist_y: ArrayLike,
    dist_h0: ArrayLike,
    dist_y0: ArrayLike,
    *,
    rates: EffectiveRates,
) -> PairwiseDistances:
    """Pairwise final distances for a whole dataset (docs/theory.md section 6).

    Applies `final_distance` to every pair with `dx2 = D_x^2`, `dy2 = D_y^2`,
    `h0 = D_h0^2`, `y0 = D_y0^2`:
    `A_low = sqrt(eta_enc/eta_dec) D_x D_y`,
    `A_high = ((D_h0/D_x)^2 - (D_y0/D_h0)^2 eta_enc/eta_dec) D_x^2`.

    **Arguments:** (not squared) distance matrices `(..., N, N)`: of the inputs
    `dist_x`, of the targets `dist_y`, of the initial hidden representations
    `dist_h0` and of the initial network outputs `dist_y0`.

    **Returns:** a `PairwiseDistances(distance, squared)`. Pairs of identical
    points (zero initial hidden distance, the diagonal included) get 0.
    """
    dist_x, dist_y = jnp.asarray(dist_x), jnp.asarray(dist_y)
    dist_h0, dist_y0 = jnp.asarray(dist_h0), jnp.asarray(dist_y0)
    same = dist_h0 <= 0
    h0 = jnp.where(same, 1.0, dist_h0**2)
    h_inf = final_distance(h0, dist_y0**2, dx2=dist_x**2, dy2=dist_y**2, rates=rates)
    h_inf = jnp.where(same, 0.0, h_inf)
    return PairwiseDistances(distance=jnp.sqrt(h_inf), squared=h_inf)


class FixedPoints(NamedTuple):
    """Fixed points of the reduced system in `(h, w)`, with their linear stability.

    The last axis of every field indexes the three points
    `(h_inf, 0, negative root)`.
    """

    h: Array
    """`(..., 3)`: `h` of each point (`w = 0` at all of them, `y = a h^2 + C h`)."""
    eigenvalues: Array
    """`(..., 3, 2)` complex: eigenvalues of the reduced system's Jacobian."""
    stable: Array
    """`(..., 3)` bool: both eigenvalues have negative real part."""
    saddle: Array
    """`(..., 3)` bool: real eigenvalues of opposite signs."""


def _eig2(jac: Array) -> Array:
    """Eigenvalues of 2 x 2 matrices `(..., 2, 2)` in closed form (any backend)."""
    tr = jac[..., 0, 0] + jac[..., 1, 1]
    det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
    disc = jnp.sqrt((0.25 * tr**2 - det).astype(jnp.result_type(tr.dtype, jnp.complex64)))
    return jnp.stack([0.5 * tr + disc, 0.5 * tr - disc], axis=-1)


def fixed_points(h0: ArrayLike, y0: ArrayLike, *, dx2: ArrayLike, dy2: ArrayLike, rates: EffectiveRates) -> FixedPoints:
    """Fixed points of the reduced 2-variable system and their stability (section 6).

    With `C` fixed by the initial state `(h0, y0)`, the fixed points are `w = 0`
    with `a h^2 + C h = dy2` (two roots, one positive: `h_inf`, one negative) and
    `h = 0`. The Jacobian at the roots is that of `reduced_vector_field` (by
    forward-mode autodiff); at `h = 0`, where the field is singular, its limit
    along `w = 0`: `[[0, -eta_enc dx2], [-eta_dec dy2 / 2, -eta_enc dx2 C / 2]]`.
    """
    h0, y0 = jnp.broadcast_arrays(jnp.asarray(h0), jnp.asarray(y0))
    eta_enc, eta_dec = rates.eta_enc, rates.eta_dec
    a = coupling(eta_enc, eta_dec, dx2)
    c = y0 / h0 - a * h0
    disc = jnp.sqrt(c**2 + 4.0 * a * dy2)
    h_pos = final_distance(h0, y0, dx2=dx2, dy2=dy2, rates=rates)
    h_neg = (-c - disc) / (2.0 * a)
    shape = jnp.broadcast_shapes(h0.shape, jnp.shape(a), jnp.shape(dy2), jnp.shape(eta_enc))

    def jac_at(h, ee, ed, dx2_, dy2_, c_):
        state = jnp.stack([h, jnp.zeros_like(h)])
        return jax.jacfwd(lambda s: reduced_vector_field(0.0, s, (ee, ed, dx2_, dy2_, c_)))(state)

    bcast = [jnp.broadcast_to(v, shape).ravel() for v in (eta_enc, eta_dec, dx2, dy2, c)]
    jac_roots = [
        jax.vmap(jac_at)(jnp.broadcast_to(hr, shape).ravel(), *bcast).reshape(shape + (2, 2)) for hr in (h_pos, h_neg)
    ]
    enc = jnp.broadcast_to(eta_enc * dx2, shape)
    jac_zero = jnp.stack(
        [
            jnp.stack([jnp.zeros(shape, enc.dtype), -enc], -1),
            jnp.stack([jnp.broadcast_to(-0.5 * eta_dec * dy2, shape), -0.5 * enc * c], -1),
        ],
        -2,
    )
    jacs = jnp.stack([jac_roots[0], jac_zero, jac_roots[1]], axis=-3)
    eig = _eig2(jacs)
    re = eig.real
    stable = jnp.all(re < 0, axis=-1)
    saddle = (jnp.abs(eig.imag).max(-1) == 0) & (re.max(-1) > 0) & (re.min(-1) < 0)
    hs = jnp.stack([jnp.broadcast_to(h_pos, shape), jnp.zeros(shape, h_pos.dtype), jnp.broadcast_to(h_neg, shape)], -1)
    return FixedPoints(h=hs, eigenvalues=eig, stable=stable, saddle=saddle)


def identical_targets_solution(
    h0: ArrayLike, y0: ArrayLike, *, dx2: ArrayLike, rates: EffectiveRates, ts: ArrayLike
) -> tuple[Array, Array]:
    """Exact solution for identical targets, `dy = 0` (docs/theory.md section 7).

    Then `w = y` and `dh/dt = -k h - eta_dec h^2` with `k = eta_enc dx2 C`, so
    `1/h(t) = (1/h0 + eta_dec/k) exp(k t) - eta_dec/k` (written with `expm1` so
    that `k -> 0` gives `h0 / (1 + eta_dec h0 t)` without cancellation), and
    `y = w = a h^2 + C h`, evaluated as `(h / h0)^2 y0 exp(k t)` (the same number,
    without cancellation as `y -> 0`).

    **Arguments:** `ts` has shape `(T,)` or `(..., T)`; time is counted from
    `ts[..., 0]`, where the state is `(h0, y0, y0)`.

    **Returns:** `(h, y)`, each of shape `batch + (T,)`.
    """
    ts = jnp.asarray(ts)
    h0e, y0e = jnp.asarray(h0)[..., None], jnp.asarray(y0)[..., None]
    ee, ed = jnp.asarray(rates.eta_enc)[..., None], jnp.asarray(rates.eta_dec)[..., None]
    dx2e = jnp.asarray(dx2)[..., None]
    a = ed / (ee * dx2e)
    c = y0e / h0e - a * h0e
    k = ee * dx2e * c
    t = ts - ts[..., :1]
    kt = k * t
    # expm1(kt) / k, continuous at k = 0 (where it equals t).
    safe_k = jnp.where(kt == 0, 1.0, k)
    growth = jnp.where(kt == 0, t, jnp.expm1(kt) / safe_k)
    inv_h = jnp.exp(kt) / h0e + ed * growth
    h = 1.0 / inv_h
    # y = a h^2 + C h = h^2 (y0 / h0^2) exp(k t): the second form has no cancellation
    # as y -> 0 (C < 0), where a h and C nearly cancel.
    return h, (h / h0e) ** 2 * y0e * jnp.exp(kt)


# --------------------------------------------------------------------------------------
# Numerical solution with diffrax
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How the 3-variable system is integrated (hashable: a static `jit` argument).

    **Fields:**

    - `rtol`, `atol`: tolerances of the adaptive step-size controller. The state is
      rescaled to order one before integration (`h` by `max(h0, h_inf)`, `y` and
      `w` by `max(y0, |w0|, dy2)`), so `atol` is relative to those scales. `None`
      picks `1e-9` / `1e-11` in float64 and `2e-6` / `1e-8` in float32.
    - `max_steps`: solver steps allowed per solve; a solve that needs more is
      reported as failed (NaN from `solve_effective`, `success=False` in a fit).
    - `solver`: `"tsit5"` (explicit, default), `"dopri8"` or `"kvaerno5"` (implicit,
      for stiff problems: horizons much longer than `1 / eta` of the faster rate,
      where an explicit solver's step is capped by stability).
    - `adjoint`: `"forward"` (forward-mode autodiff, what Gauss-Newton needs) or
      `"reverse"` (`jax.grad` through the solve).
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 8192
    solver: str = "tsit5"
    adjoint: str = "forward"

    def __post_init__(self):
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {sorted(_SOLVERS)}, got {self.solver!r}")
        if self.adjoint not in ("forward", "reverse"):
            raise ValueError(f"adjoint must be 'forward' or 'reverse', got {self.adjoint!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")

    def tolerances(self, dtype) -> tuple[float, float]:
        double = jnp.dtype(dtype) == jnp.float64
        rtol = self.rtol if self.rtol is not None else (1e-9 if double else 2e-6)
        atol = self.atol if self.atol is not None else (1e-11 if double else 1e-8)
        return rtol, atol


_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri8": diffrax.Dopri8, "kvaerno5": diffrax.Kvaerno5}
_IMPLICIT = ("kvaerno5",)


def state_scale(state0: Array, args) -> Array:
    """Order-one scales of `(h, y, w)` for a solve started at `state0` (no gradient)."""
    eta_enc, eta_dec, dx2, dy2 = args
    h0, y0, w0 = state0[0], state0[1], state0[2]
    h_inf = final_distance(h0, y0, dx2=dx2, dy2=dy2, rates=EffectiveRates(eta_enc, eta_dec))
    sh = jnp.maximum(h0, jnp.where(jnp.isfinite(h_inf), h_inf, h0))
    sy = jnp.maximum(jnp.maximum(y0, jnp.abs(w0)), dy2)
    tiny = jnp.finfo(state0.dtype).tiny ** 0.5
    sh = jnp.where(sh > tiny, sh, 1.0)
    sy = jnp.where(sy > tiny, sy, 1.0)
    return jax.lax.stop_gradient(jnp.stack([sh, sy, sy]))


def max_step(state0: Array, args, scale: Array) -> Array:
    """Largest step that keeps the explicit solver's *linearisation* stable (no gradient).

    Near the fixed point the solution barely moves, so error control lets the step
    grow without bound; the primal stays put but forward- or reverse-mode tangents,
    which follow the linearised dynamics, would then blow up. The step is capped at
    `3 / L` with `L` a Gershgorin bound on the Jacobian's eigenvalues (in the scaled
    variables) at the initial state and at the final fixed point.
    """
    eta_enc, eta_dec, dx2, dy2 = args
    h_inf = final_distance(state0[0], state0[1], dx2=dx2, dy2=dy2, rates=EffectiveRates(eta_enc, eta_dec))
    end = jnp.stack([jnp.where(jnp.isfinite(h_inf) & (h_inf > 0), h_inf, state0[0]), dy2, 0.0 * dy2])

    def bound(state):
        jac = jax.jacfwd(lambda z: _scaled_field(0.0, z, (scale, args)))(state / scale)
        return jnp.max(jnp.sum(jnp.abs(jac), axis=-1))

    lip = jnp.maximum(bound(state0), bound(end))
    lip = jnp.where(jnp.isfinite(lip) & (lip > 0), lip, 1.0)
    return jax.lax.stop_gradient(3.0 / lip)


def _scaled_field(t, z, args):
    scale, params = args
    return vector_field(t, z * scale, params) / scale


_scaled_term = diffrax.ODETerm(_scaled_field)


def solve_single(state0: Array, args, ts: Array, options: SolverOptions = SolverOptions()):
    """Solve one trajectory: the unbatched building block of `solve_effective`.

    **Arguments:**

    - `state0`: `(3,)` initial `(h, y, w)` at `ts[0]`.
    - `args`: `(eta_enc, eta_dec, dx2, dy2)` scalars.
    - `ts`: `(T,)` increasing save times.
    - `options`: a `SolverOptions`.

    **Returns:** `(states, ok, num_steps)`: `states` `(T, 3)` read off the solver's
    dense output at `ts` (one vectorised interpolation, no loop over `ts`), `ok`
    whether the solver finished, `num_steps` its accepted and rejected steps.
    `states` is not masked: callers decide what a failed solve means.
    """
    scale = state_scale(state0, args)
    rtol, atol = options.tolerances(state0.dtype)
    # Implicit solvers are A-stable, tangents included: no cap needed.
    dtmax = None if options.solver in _IMPLICIT else max_step(state0, args, scale)
    adjoint = diffrax.ForwardMode() if options.adjoint == "forward" else diffrax.RecursiveCheckpointAdjoint()
    sol = diffrax.diffeqsolve(
        _scaled_term,
        _SOLVERS[options.solver](),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=state0 / scale,
        args=(scale, args),
        saveat=diffrax.SaveAt(dense=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmax=dtmax),
        max_steps=options.max_steps,
        adjoint=adjoint,
        throw=False,
    )
    states = jax.vmap(sol.evaluate)(ts) * scale
    ok = sol.result == diffrax.RESULTS.successful
    return states, ok, sol.stats["num_steps"]


def valid_state(h: ArrayLike, y: ArrayLike, w: ArrayLike, *, dx2: ArrayLike, dy2: ArrayLike) -> Array:
    """Whether `(h, y, w)` is a state the theory can start from (docs/theory.md section 3).

    `h > 0`, `y >= 0`, `|y - w| <= sqrt(dy2 * y)` (Cauchy-Schwarz; a relative slack
    of 1000 machine epsilons admits measured 1-d states, which sit on the bound),
    `dx2 > 0`, `dy2 >= 0`, all finite. Broadcasts; returns a boolean array.
    """
    h, y, w, dx2, dy2 = (jnp.asarray(v) for v in (h, y, w, dx2, dy2))
    eps = 1000 * jnp.finfo(jnp.result_type(h, y, w, float)).eps
    bound = jnp.sqrt(jnp.maximum(dy2 * y, 0.0))
    cs = jnp.abs(y - w) <= bound * (1 + eps) + eps * (jnp.abs(y) + jnp.abs(w))
    finite = jnp.isfinite(h) & jnp.isfinite(y) & jnp.isfinite(w) & jnp.isfinite(dx2) & jnp.isfinite(dy2)
    return finite & (h > 0) & (y >= 0) & cs & (dx2 > 0) & (dy2 >= 0)


def solve_effective(
    h0: ArrayLike,
    y0: ArrayLike,
    w0: ArrayLike,
    *,
    dx2: ArrayLike,
    dy2: ArrayLike,
    rates: EffectiveRates,
    ts: ArrayLike,
    options: SolverOptions = SolverOptions(),
) -> tuple[Array, Array, Array]:
    """Solve the 3-variable system (docs/theory.md section 3) with diffrax.

    **Arguments:**

    - `h0, y0, w0`: initial state at `ts[..., 0]`; any broadcastable batch shape.
    - `dx2, dy2`: squared input and target distances, broadcastable likewise.
    - `rates`: `EffectiveRates` (`tau` is not used), broadcastable likewise.
    - `ts`: save times `(T,)` shared by all, or `batch + (T,)`; increasing.
    - `options`: `SolverOptions` (tolerances, solver, step limit).

    **Returns:** `(h, y, w)`, each `batch + (T,)`. A solve that failed (step limit,
    non-finite state) gives NaN throughout, never a silently wrong number; so does
    an element that starts from an invalid state: `h0 <= 0`, `y0 < 0`, or
    `|y0 - w0| > sqrt(dy2 * y0)` (Cauchy-Schwarz, section 3; equality, which 1-d
    outputs always reach, is allowed to rounding), or with `dx2 <= 0` or `dy2 < 0`.
    """
    values = (h0, y0, w0, dx2, dy2, rates.eta_enc, rates.eta_dec)
    # Concrete input is broadcast and flattened with NumPy, so that one compiled program per
    # batch size (not per batch shape) serves every call; under tracing, with jax.numpy.
    traced = any(isinstance(v, Tracer) for v in (*values, ts))
    xp = jnp if traced else np
    dtype = jnp.result_type(*values[:3], ts, float)
    ts = xp.asarray(ts, dtype)
    batch = tuple(np.broadcast_shapes(*(np.shape(v) for v in values), ts.shape[:-1]))
    T = ts.shape[-1]
    flat = [xp.broadcast_to(xp.asarray(v, dtype), batch).reshape(-1) for v in values]
    if ts.ndim > 1:
        ts = xp.broadcast_to(ts, batch + (T,)).reshape(-1, T)
    h, y, w = _solve_flat(*flat, ts, options)
    return h.reshape(batch + (T,)), y.reshape(batch + (T,)), w.reshape(batch + (T,))


@functools.partial(jax.jit, static_argnums=8)
def _solve_flat(h0, y0, w0, dx2, dy2, eta_enc, eta_dec, ts, options: SolverOptions):
    """`solve_effective` of `(N,)` arguments and `(T,)` or `(N, T)` times: `(N, T)` each of
    `h, y, w`, one compiled program per `N` (eagerly, every operation of the set-up would compile
    one of its own)."""
    state0 = jnp.stack([h0, y0, w0], -1)
    args = (eta_enc, eta_dec, dx2, dy2)
    in_ts = 0 if ts.ndim > 1 else None
    states, ok, _ = jax.vmap(lambda s, a, t: solve_single(s, a, t, options), in_axes=(0, 0, in_ts))(state0, args, ts)
    ok = ok & valid_state(h0, y0, w0, dx2=dx2, dy2=dy2)
    states = jnp.where(ok[:, None, None], states, jnp.nan)
    return states[..., 0], states[..., 1], states[..., 2]


#: Training-loss scales: the factor in front of the mean squared error
#: (`TrainConfig.loss`); the theory's loss (section 4) is that of `"half_mse"`.
LOSS_SCALES = {"half_mse": 0.5, "mse": 1.0}


def theory_loss(
    ts: ArrayLike,
    y: ArrayLike,
    w: ArrayLike,
    *,
    dy2: ArrayLike,
    m0: ArrayLike,
    tau: ArrayLike,
    loss: str = "half_mse",
) -> Array:
    """Training loss predicted by the theory (docs/theory.md section 4).

    `L(t) = 1/2 m0 exp(-2 t / tau) + 1/8 (dy2 - y + 2 w)`, with `t` counted from
    `ts[..., 0]` (where `m0 = ||y_bar - yh_bar||^2` is taken).

    **Arguments:** `ts`, `y`, `w` of shape `batch + (T,)` (or `(T,)` for `ts`);
    `dy2`, `m0`, `tau` of the batch shape.

    `loss`: the training loss's scale, `"half_mse"` (`0.5 * MSE`, the paper's) or
    `"mse"` (PyTorch's `MSELoss`: twice the above), as `TrainConfig.loss`.

    **Returns:** the loss, `batch + (T,)`. Divide by the output dimension to compare
    with a mean-over-elements loss for outputs that are not 1-d.
    """
    if loss not in LOSS_SCALES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_SCALES)}, got {loss!r}")
    ts = jnp.asarray(ts)
    t = ts - ts[..., :1]
    m0, tau = (jnp.asarray(v)[..., None] for v in (m0, tau))
    value = 0.5 * m0 * jnp.exp(-2.0 * t / tau) + representation_loss(y, w, dy2=dy2)
    return value * (LOSS_SCALES[loss] / LOSS_SCALES["half_mse"])


def representation_loss(y: ArrayLike, w: ArrayLike, *, dy2: ArrayLike) -> Array:
    """The output-difference part of the loss, `(dy2 - y + 2 w) / 8` (section 4)."""
    return 0.125 * (jnp.asarray(dy2)[..., None] - jnp.asarray(y) + 2.0 * jnp.asarray(w))
