"""The theory against scipy, its closed forms and its own invariants (docs/theory.md 3-8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_state, scipy_solve

import repalign_jax as rj


def _draws(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        eta_enc = 10 ** rng.uniform(-4, -1)
        eta_dec = 10 ** rng.uniform(-4, -1)
        dx2 = rng.uniform(0.25, 2.25)
        dy2 = rng.uniform(0.05, 1.0)
        yield random_state(rng, dy2), eta_enc, eta_dec, dx2, dy2


def test_solution_matches_scipy(x64):
    for state0, ee, ed, dx2, dy2 in _draws(8, 0):
        ts = np.linspace(0.0, 3.0 / min(ee, ed), 400)
        ref = scipy_solve(state0, ee, ed, dx2, dy2, ts)
        h, y, w = rj.solve_effective(*state0, dx2=dx2, dy2=dy2, rates=rj.EffectiveRates(ee, ed), ts=ts)
        for got, want in zip((h, y, w), ref):
            scale = np.max(np.abs(want))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * scale)


def test_float32_solution_matches_scipy():
    state0, ee, ed, dx2, dy2 = next(_draws(1, 1))
    ts = np.linspace(0.0, 3.0 / min(ee, ed), 200)
    ref = scipy_solve(state0, ee, ed, dx2, dy2, ts)
    out = rj.solve_effective(*state0, dx2=dx2, dy2=dy2, rates=rj.EffectiveRates(ee, ed), ts=ts)
    assert out[0].dtype == jnp.float32
    for got, want in zip(out, ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * np.max(np.abs(want)))


def test_reaches_h_inf_and_conserves_c(x64):
    for state0, ee, ed, dx2, dy2 in _draws(10, 2):
        rates = rj.EffectiveRates(ee, ed)
        ts = np.linspace(0.0, 200.0 / min(ee, ed), 300)
        # Horizons of 200 slow time constants are stiff: the implicit solver.
        h, y, w = rj.solve_effective(
            *state0, dx2=dx2, dy2=dy2, rates=rates, ts=ts, options=rj.SolverOptions(solver="kvaerno5")
        )
        h_inf = rj.final_distance(state0[0], state0[1], dx2=dx2, dy2=dy2, rates=rates)
        np.testing.assert_allclose(h[-1], h_inf, rtol=1e-6)
        np.testing.assert_allclose(y[-1], dy2, rtol=1e-6)
        assert abs(w[-1]) < 1e-7
        # y = a h^2 + C h along the solution (section 5).
        c = rj.conserved_c(h, y, dx2=dx2, rates=rates)
        np.testing.assert_allclose(c, c[0], rtol=1e-6, atol=1e-9)
        a = rj.coupling(ee, ed, dx2)
        np.testing.assert_allclose(y, a * h**2 + c[0] * h, rtol=1e-6, atol=1e-12)


def test_h_inf_is_positive_root_and_limits(x64):
    rng = np.random.default_rng(3)
    h0, y0 = rng.uniform(0.01, 5, 50), 10 ** rng.uniform(-6, 0, 50)
    ee, ed = 10 ** rng.uniform(-4, -1, 50), 10 ** rng.uniform(-4, -1, 50)
    dx2, dy2 = rng.uniform(0.1, 3, 50), rng.uniform(0.0, 2, 50)
    rates = rj.EffectiveRates(ee, ed)
    h_inf = np.asarray(rj.final_distance(h0, y0, dx2=dx2, dy2=dy2, rates=rates))
    a = ed / (ee * dx2)
    c = y0 / h0 - a * h0
    root = (-c + np.sqrt(c**2 + 4 * a * dy2)) / (2 * a)
    np.testing.assert_allclose(h_inf, root, rtol=1e-10)
    np.testing.assert_allclose(a * h_inf**2 + c * h_inf, dy2, rtol=1e-8, atol=1e-12)
    a_low, a_high = rj.structure_scales(h0, y0, dx2=dx2, dy2=dy2, rates=rates)
    np.testing.assert_allclose(a_low, np.sqrt(ee / ed * dx2 * dy2))
    # Rich limit (A_high -> 0): h_inf -> A_low; lazy limit (A_high >> A_low): h_inf -> A_high.
    rich = rj.final_distance(1e-4, 1e-4 * 1e-8, dx2=1.0, dy2=0.5, rates=rj.EffectiveRates(1e-3, 1e-2))
    np.testing.assert_allclose(rich, np.sqrt(0.1 * 0.5), rtol=1e-3)
    lazy = rj.final_distance(100.0, 1e-6, dx2=1.0, dy2=0.5, rates=rj.EffectiveRates(1e-3, 1e-2))
    np.testing.assert_allclose(lazy, 100.0, rtol=1e-3)


def test_fixed_points_stability(x64):
    rng = np.random.default_rng(4)
    n = 200
    h0, y0 = rng.uniform(0.01, 5, n), 10 ** rng.uniform(-8, 0, n)
    rates = rj.EffectiveRates(10 ** rng.uniform(-4, -1, n), 10 ** rng.uniform(-4, -1, n))
    dx2, dy2 = rng.uniform(0.1, 3, n), rng.uniform(0.01, 2, n)
    fp = rj.fixed_points(h0, y0, dx2=dx2, dy2=dy2, rates=rates)
    assert fp.h.shape == (n, 3) and fp.eigenvalues.shape == (n, 3, 2)
    np.testing.assert_allclose(fp.h[:, 0], rj.final_distance(h0, y0, dx2=dx2, dy2=dy2, rates=rates))
    assert np.all(fp.h[:, 0] > 0) and np.all(fp.h[:, 2] < 0)
    assert np.all(fp.stable[:, 0]) and not np.any(fp.saddle[:, 0])
    assert np.all(fp.saddle[:, 1]) and not np.any(fp.stable[:, 1])
    assert not np.any(fp.stable[:, 2])
    # The reduced field vanishes at the roots.
    for k in (0, 2):
        a = rj.coupling(rates.eta_enc, rates.eta_dec, dx2)
        c = y0 / h0 - a * h0
        state = jnp.stack([fp.h[:, k], jnp.zeros(n)], -1)
        f = rj.reduced_vector_field(0.0, state, (rates.eta_enc, rates.eta_dec, dx2, dy2, c))
        np.testing.assert_allclose(f, 0.0, atol=1e-12)


def test_identical_targets_closed_form(x64):
    for state0, ee, ed, dx2, _ in _draws(6, 5):
        rates = rj.EffectiveRates(ee, ed)
        y0 = state0[1]
        ts = np.linspace(0.0, 5.0 / min(ee, ed), 300)
        h_cf, y_cf = rj.identical_targets_solution(state0[0], y0, dx2=dx2, rates=rates, ts=ts)
        h, y, w = rj.solve_effective(state0[0], y0, y0, dx2=dx2, dy2=0.0, rates=rates, ts=ts)
        np.testing.assert_allclose(h, h_cf, rtol=1e-7)
        np.testing.assert_allclose(y, y_cf, rtol=1e-6, atol=1e-14)
        np.testing.assert_allclose(w, y, rtol=1e-6, atol=1e-14)


def test_identical_targets_k_zero_limit(x64):
    # C = 0 (k = 0): h(t) = h0 / (1 + eta_dec h0 t).
    ee, ed, dx2, h0 = 1e-3, 2e-2, 1.0, 0.7
    a = ed / (ee * dx2)
    ts = np.linspace(0, 1000, 11)
    h, y = rj.identical_targets_solution(h0, a * h0**2, dx2=dx2, rates=rj.EffectiveRates(ee, ed), ts=ts)
    np.testing.assert_allclose(h, h0 / (1 + ed * h0 * ts), rtol=1e-12)
    np.testing.assert_allclose(y, a * h**2, rtol=1e-12)


def test_theory_loss_is_the_two_point_loss(x64):
    # L = 1/2 mean_i (y_i - yh_i)^2 for two 1-d points equals section 4 at t = 0.
    rng = np.random.default_rng(6)
    yh, tgt = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    direct = 0.5 * np.mean((tgt - yh) ** 2, axis=1)
    _, y, w = rj.measure_hyw(np.zeros((20, 1)), np.ones((20, 1)), yh[:, :1], yh[:, 1:], tgt[:, :1], tgt[:, 1:])
    m0 = (tgt.mean(1) - yh.mean(1)) ** 2
    dy2 = (tgt[:, 1] - tgt[:, 0]) ** 2
    ts = np.arange(3.0)
    loss = rj.theory_loss(
        ts,
        np.asarray(y)[:, None] * np.ones(3),
        np.asarray(w)[:, None] * np.ones(3),
        dy2=dy2,
        m0=m0,
        tau=np.full(20, 10.0),
    )
    np.testing.assert_allclose(loss[:, 0], direct, rtol=1e-12)
    np.testing.assert_allclose(loss[:, 2] - loss[:, 0], 0.5 * m0 * (np.exp(-0.4) - 1), rtol=1e-12)


def test_measure_hyw_definitions():
    rng = np.random.default_rng(7)
    h1, h2 = rng.normal(size=(2, 5, 4, 30))
    o1, o2 = rng.normal(size=(2, 5, 4, 3))
    t1, t2 = rng.normal(size=(2, 3))
    h, y, w = rj.measure_hyw(h1, h2, o1, o2, t1, t2)
    assert h.shape == y.shape == w.shape == (5, 4)
    np.testing.assert_allclose(h, ((h2 - h1) ** 2).sum(-1), rtol=1e-5)
    dyh = o2 - o1
    np.testing.assert_allclose(y, (dyh**2).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(w, (dyh * (dyh - (t2 - t1))).sum(-1), rtol=1e-4, atol=1e-6)


def test_final_distance_matrix(x64):
    rng = np.random.default_rng(8)
    n = 6
    x, tgt, hid, out = (
        rng.normal(size=(n, 3)),
        rng.normal(size=(n, 2)),
        rng.normal(size=(n, 40)),
        rng.normal(size=(n, 2)),
    )
    tgt[1] = tgt[0]  # equal targets: this pair should merge in the rich regime

    def dist(z):
        return np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))

    rates = rj.EffectiveRates(1e-3, 1e-2)
    pred = rj.final_distance_matrix(dist(x), dist(tgt), dist(hid), dist(out), rates=rates)
    assert pred.distance.shape == (n, n)
    np.testing.assert_allclose(np.diag(pred.squared), 0.0)
    np.testing.assert_allclose(pred.squared, pred.squared.T, rtol=1e-12)
    np.testing.assert_allclose(pred.distance**2, pred.squared, rtol=1e-12)
    i, j = 2, 4
    want = rj.final_distance(
        dist(hid)[i, j] ** 2, dist(out)[i, j] ** 2, dx2=dist(x)[i, j] ** 2, dy2=dist(tgt)[i, j] ** 2, rates=rates
    )
    np.testing.assert_allclose(pred.squared[i, j], want, rtol=1e-12)
    # Rich regime (tiny initial distances): the equal-target pair collapses, others do not.
    rich = rj.final_distance_matrix(dist(x), dist(tgt), 1e-4 * dist(hid), 1e-4 * dist(out), rates=rates)
    assert rich.distance[0, 1] < 1e-3 * rich.distance[2, 3]


def test_solve_vmap_equals_loop(x64):
    draws = list(_draws(4, 9))
    ts = np.linspace(0, 2000, 50)
    s0 = np.array([d[0] for d in draws])
    ee, ed, dx2, dy2 = (np.array([d[k] for d in draws]) for k in range(1, 5))
    batch = rj.solve_effective(s0[:, 0], s0[:, 1], s0[:, 2], dx2=dx2, dy2=dy2, rates=rj.EffectiveRates(ee, ed), ts=ts)
    for i in range(4):
        one = rj.solve_effective(*s0[i], dx2=dx2[i], dy2=dy2[i], rates=rj.EffectiveRates(ee[i], ed[i]), ts=ts)
        for b, o in zip(batch, one):
            np.testing.assert_allclose(b[i], o, rtol=1e-12, atol=1e-15)
    # Broadcasting: a (2, 1) batch of h0 against (2,) rates gives (2, 2, T) (4 solves: the
    # executable of the batch above), each element the solve of its own arguments.
    h, _, _ = rj.solve_effective(
        np.array([[0.5], [1.0]]),
        1e-6,
        0.0,
        dx2=1.0,
        dy2=0.5,
        rates=rj.EffectiveRates(np.array([1e-3, 3e-3]), 1e-2),
        ts=ts,
    )
    assert h.shape == (2, 2, 50)
    corner, _, _ = rj.solve_effective(1.0, 1e-6, 0.0, dx2=1.0, dy2=0.5, rates=rj.EffectiveRates(3e-3, 1e-2), ts=ts)
    np.testing.assert_allclose(h[1, 1], corner, rtol=1e-12, atol=1e-15)


def test_solve_is_jittable_and_differentiable(x64):
    ts = jnp.linspace(0.0, 500.0, 20)

    def final_h(log_ee):
        h, _, _ = rj.solve_effective(
            0.8, 1e-6, 0.0, dx2=1.0, dy2=0.5, rates=rj.EffectiveRates(jnp.exp(log_ee), 1e-2), ts=ts
        )
        return h[-1]

    g = jax.jit(jax.jacfwd(final_h))(jnp.log(1e-3))
    eps = 1e-5
    fd = (final_h(jnp.log(1e-3) + eps) - final_h(jnp.log(1e-3) - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


def test_failed_solve_gives_nan():
    h, y, w = rj.solve_effective(
        0.8,
        1e-6,
        0.0,
        dx2=1.0,
        dy2=0.5,
        rates=rj.EffectiveRates(1e-2, 1e-1),
        ts=np.linspace(0, 6000, 10),
        options=rj.SolverOptions(max_steps=2),
    )
    assert np.all(np.isnan(h)) and np.all(np.isnan(y)) and np.all(np.isnan(w))


def test_solver_options_validation():
    with pytest.raises(ValueError, match="solver"):
        rj.SolverOptions(solver="euler")
    with pytest.raises(ValueError, match="adjoint"):
        rj.SolverOptions(adjoint="sideways")
