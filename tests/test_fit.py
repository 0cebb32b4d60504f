"""fit_effective_rates: recovery of known rates, batching, gradients, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repalign_jax as rj


def _traj(s, idx: slice | int | np.ndarray = slice(None), noise=0.0, seed=0, loss=False, m0=False):
    rng = np.random.default_rng(seed)

    def noisy(v):
        return v * (1 + noise * rng.standard_normal(v.shape)) if noise else v

    return rj.PairTrajectory(
        s["ts"],
        noisy(s["h"][idx]),
        noisy(s["y"][idx]),
        noisy(s["w"][idx]),
        s["dx2"],
        s["dy2"],
        loss=noisy(s["loss"][idx]) if loss else None,
        m0=s["m0"][idx] if m0 else None,
    )


def _rel(got, want):
    return np.abs(np.asarray(got) / want - 1)


def test_recovers_rates_noise_free(synthetic, x64):
    res = rj.fit_effective_rates(_traj(synthetic, loss=True))
    assert res.eta_enc.shape == (len(synthetic["rates"]),)
    assert np.all(res.success)
    assert np.all(_rel(res.eta_enc, synthetic["rates"][:, 0]) <= 1e-4)
    assert np.all(_rel(res.eta_dec, synthetic["rates"][:, 1]) <= 1e-4)
    assert np.all(_rel(res.tau, synthetic["tau"]) <= 1e-4)
    assert np.all(_rel(res.m0, synthetic["m0"]) <= 1e-4)
    for r2 in (res.r2_h, res.r2_y, res.r2_w, res.r2_loss):
        assert np.all(np.asarray(r2) > 1 - 1e-8)


def test_recovers_rates_noise_free_float32(synthetic):
    res = rj.fit_effective_rates(_traj(synthetic))
    assert res.eta_enc.dtype == jnp.float32
    assert np.all(res.success)
    assert np.all(_rel(res.eta_enc, synthetic["rates"][:, 0]) <= 1e-3)
    assert np.all(_rel(res.eta_dec, synthetic["rates"][:, 1]) <= 1e-3)
    assert np.all(np.isnan(res.tau)) and np.all(np.isnan(res.r2_loss))


def test_recovers_rates_with_one_percent_noise(synthetic, x64):
    # With noisy measurements the initial state is fitted too (a noisy first point would
    # offset the whole theory curve). A rate is identifiable only where its effect stands
    # above the noise: trajectories whose h moves by less than twice the noise level (the
    # corners with a slow encoder and a fast decoder, where the outputs fit before the
    # representation moves) carry no information on eta_enc, so they are checked only for
    # finite results, not accuracy.
    traj = _traj(synthetic, noise=0.01, seed=1, loss=True)
    res = rj.fit_effective_rates(traj, rj.FitOptions(fit_initial_state=True))
    h = synthetic["h"]
    informative = np.abs(h - h[:, :1]).max(1) / h.max(1) >= 0.02
    assert informative.sum() >= 8
    assert np.all(res.success)
    assert np.all(_rel(res.eta_enc, synthetic["rates"][:, 0])[informative] <= 0.05)
    assert np.all(_rel(res.eta_dec, synthetic["rates"][:, 1]) <= 0.05)
    assert np.all(_rel(res.tau, synthetic["tau"]) <= 0.05)
    # The paper's method (measured initial state) on the same data: the decoder rate and
    # tau stay within 5% wherever the fit reports success.
    paper = rj.fit_effective_rates(traj)
    ok = np.asarray(paper.success)
    assert ok[informative].mean() >= 0.75
    assert np.all(_rel(paper.eta_dec, synthetic["rates"][:, 1])[ok] <= 0.05)


def test_fitted_initial_state_noise_free(synthetic, x64):
    # (with the loss curve: the executable of the noisy test above, one compilation for both)
    res = rj.fit_effective_rates(_traj(synthetic, slice(0, 4), loss=True), rj.FitOptions(fit_initial_state=True))
    assert np.all(res.success)
    np.testing.assert_allclose(res.eta_enc, synthetic["rates"][:4, 0], rtol=1e-4)
    np.testing.assert_allclose(res.h0, synthetic["h"][:4, 0], rtol=1e-6)


def test_tau_with_given_m0(synthetic, x64):
    res = rj.fit_effective_rates(_traj(synthetic, loss=True, m0=True))
    assert np.all(res.success)
    assert np.all(_rel(res.tau, synthetic["tau"]) <= 1e-4)
    np.testing.assert_array_equal(res.m0, synthetic["m0"])


def test_vmap_equals_loop(synthetic, x64):
    idx = np.array([0, 3, 6, 9])
    batch = rj.fit_effective_rates(_traj(synthetic, idx, noise=0.01, seed=2, loss=True))
    rng_traj = _traj(synthetic, idx, noise=0.01, seed=2, loss=True)
    for k in range(len(idx)):
        one = rj.fit_effective_rates(
            jax.tree_util.tree_map(lambda v, k=k: v[k] if v.ndim and v.shape[0] == len(idx) else v, rng_traj)
        )
        assert one.eta_enc.shape == ()
        for field in ("eta_enc", "eta_dec", "tau", "fit_loss", "r2_w"):
            np.testing.assert_allclose(getattr(batch, field)[k], getattr(one, field), rtol=1e-7)


def test_batch_shape_is_kept(synthetic):
    traj = rj.PairTrajectory(
        synthetic["ts"],
        synthetic["h"][:6].reshape(2, 3, -1),
        synthetic["y"][:6].reshape(2, 3, -1),
        synthetic["w"][:6].reshape(2, 3, -1),
        dx2=1.0,
        dy2=np.full((2, 1), 0.5),
    )
    res = rj.fit_effective_rates(traj)
    for field in ("eta_enc", "eta_dec", "tau", "fit_loss", "success", "r2_h"):
        assert getattr(res, field).shape == (2, 3)
    np.testing.assert_allclose(res.eta_enc, synthetic["rates"][:6, 0].reshape(2, 3), rtol=1e-3)


def test_second_call_does_not_recompile(synthetic, compiles):
    traj = _traj(synthetic, slice(0, 3))
    rj.fit_effective_rates(traj)
    assert compiles  # the first call compiled (the counter can fail)
    compiles.clear()
    other = _traj(synthetic, slice(3, 6))
    res = rj.fit_effective_rates(other)
    assert compiles == []
    assert np.all(res.success)
    # The settings read on the host (fallback grid, chunking) do not reach the compiled fit.
    host = rj.FitOptions(fallback_grid=3, grid_range=(1e-5, 0.1), chunk_size=1)
    compiles.clear()  # (`np.all` above may have compiled a reduction)
    same = rj.fit_effective_rates(other, host)
    assert compiles == []
    np.testing.assert_array_equal(same.eta_enc, res.eta_enc)


@pytest.mark.parametrize("adjoint", ["forward", "reverse"])
def test_objective_gradient_matches_finite_differences(synthetic, x64, adjoint):
    traj = _traj(synthetic, 7, noise=0.01, seed=3)
    true = np.log(synthetic["rates"][7])
    p = jnp.asarray(true + np.array([0.05, -0.08]))
    solver = rj.SolverOptions(adjoint=adjoint)
    diff = jax.jacfwd if adjoint == "forward" else jax.grad
    g = np.asarray(jax.jit(diff(lambda q: rj.fit_objective(q, traj, solver)))(p))
    eps = 1e-6
    steps = np.array([[eps, 0.0], [-eps, 0.0], [0.0, eps], [0.0, -eps]])
    # The four objectives as one compiled program (eagerly, every operation would compile its own).
    f = np.asarray(jax.jit(jax.vmap(lambda q: rj.fit_objective(q, traj)))(p + steps))
    for k in range(2):
        fd = (f[2 * k] - f[2 * k + 1]) / (2 * eps)
        np.testing.assert_allclose(g[k], fd, rtol=1e-5)
    assert np.linalg.norm(g) > 0


def test_initial_guess_is_close_without_a_solve(synthetic, x64):
    for k in range(len(synthetic["rates"])):
        g = rj.initial_guess(
            synthetic["ts"], synthetic["h"][k], synthetic["y"][k], synthetic["w"][k], jnp.asarray(1.0), jnp.asarray(0.5)
        )
        np.testing.assert_allclose(g, synthetic["rates"][k], rtol=0.05)


def test_goodness_of_fit_is_r2(synthetic, x64):
    noisy = _traj(synthetic, slice(5, 7), noise=0.05, seed=4)
    # The first point stays clean: `solve_effective` returns NaN from a state that breaks
    # Cauchy-Schwarz, as 5% noise on y0 and w0 can make it.
    h, y, w = (np.asarray(v).copy() for v in (noisy.h, noisy.y, noisy.w))
    for v, k in ((h, "h"), (y, "y"), (w, "w")):
        v[:, 0] = synthetic[k][5:7, 0]
    traj = rj.PairTrajectory(noisy.ts, h, y, w, noisy.dx2, noisy.dy2)
    res = rj.fit_effective_rates(traj)
    h, y, w = rj.solve_effective(
        traj.h[:, 0], traj.y[:, 0], traj.w[:, 0], dx2=1.0, dy2=0.5, rates=res.rates, ts=traj.ts
    )
    for got, meas, th in ((res.r2_h, traj.h, h), (res.r2_y, traj.y, y), (res.r2_w, traj.w, w)):
        want = 1 - ((meas - th) ** 2).sum(-1) / ((meas - meas.mean(-1, keepdims=True)) ** 2).sum(-1)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert np.all(np.asarray(got) < 1)
    sse = ((traj.h - h) ** 2 + (traj.y - y) ** 2 + (traj.w - w) ** 2).sum(-1)
    np.testing.assert_allclose(res.fit_loss, sse, rtol=1e-6)


# ---------------------------------------------------------------------------- bad input


def test_mismatched_shapes_raise(synthetic):
    s = synthetic
    with pytest.raises(ValueError, match="same shape"):
        rj.fit_effective_rates(rj.PairTrajectory(s["ts"], s["h"][:2], s["y"][:3], s["w"][:2], 1.0, 0.5))
    with pytest.raises(ValueError, match="ts must have shape"):
        rj.fit_effective_rates(rj.PairTrajectory(s["ts"][:-1], s["h"][:2], s["y"][:2], s["w"][:2], 1.0, 0.5))
    with pytest.raises(ValueError, match="dx2"):
        rj.fit_effective_rates(rj.PairTrajectory(s["ts"], s["h"][:2], s["y"][:2], s["w"][:2], np.ones(3), 0.5))
    with pytest.raises(ValueError, match="loss"):
        rj.fit_effective_rates(
            rj.PairTrajectory(s["ts"], s["h"][:2], s["y"][:2], s["w"][:2], 1.0, 0.5, loss=s["loss"][:2, :10])
        )
    with pytest.raises(ValueError, match="at least 3"):
        rj.fit_effective_rates(rj.PairTrajectory(s["ts"][:2], s["h"][:2, :2], s["y"][:2, :2], s["w"][:2, :2], 1.0, 0.5))


def test_ts_not_increasing_raises(synthetic):
    s = synthetic
    ts = s["ts"].copy()
    ts[10] = ts[9]
    with pytest.raises(ValueError, match="strictly increasing"):
        rj.fit_effective_rates(rj.PairTrajectory(ts, s["h"][:2], s["y"][:2], s["w"][:2], 1.0, 0.5))
    with pytest.raises(ValueError, match="dx2 must be positive"):
        rj.fit_effective_rates(rj.PairTrajectory(s["ts"], s["h"][:2], s["y"][:2], s["w"][:2], 0.0, 0.5))


@pytest.mark.parametrize("field,value", [("h", np.nan), ("w", np.inf), ("h", -0.1), ("h", 0.0), ("loss", np.nan)])
def test_bad_values_flag_only_that_element(synthetic, x64, field, value):
    s = synthetic
    arrays = {k: s[k][:3].copy() for k in ("h", "y", "w", "loss")}
    arrays[field][1, 500] = value
    traj = rj.PairTrajectory(s["ts"], arrays["h"], arrays["y"], arrays["w"], 1.0, 0.5, loss=arrays["loss"])
    with pytest.warns(UserWarning, match=field if field != "h" or np.isnan(value) else "h <= 0"):
        res = rj.fit_effective_rates(traj)
    np.testing.assert_array_equal(res.success, [True, False, True])
    assert np.isnan(res.eta_enc[1]) and np.isnan(res.eta_dec[1]) and np.isnan(res.tau[1])
    np.testing.assert_allclose(np.asarray(res.eta_enc)[[0, 2]], s["rates"][[0, 2], 0], rtol=1e-3)


def test_solver_step_limit_flags_instead_of_raising(synthetic, x64):
    # Rates of 10 per epoch: no solve finishes within the step limit, at the start or after any
    # step of the optimiser (the executables of the fallback test below: no compilation of its own).
    traj = _traj(synthetic, slice(4, 6), loss=True)
    res = rj.fit_effective_rates(traj, rj.FitOptions(fallback_grid=0), start=rj.EffectiveRates(10.0, 10.0))
    assert not np.any(res.success)
    assert np.all(np.isnan(res.eta_enc)) and np.all(np.isnan(res.tau))
    steps = rj.solve_effective(
        traj.h[:, 0], traj.y[:, 0], traj.w[:, 0], dx2=1.0, dy2=0.5, rates=rj.EffectiveRates(10.0, 10.0), ts=traj.ts
    )
    assert np.all(np.isnan(steps[0]))  # the solve itself fails (its step limit), it does not raise


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_fallback_grid_rescues_a_bad_start(synthetic, x64, chunk_size):
    # A start of 10 per epoch: the solves cannot finish, the first fit fails,
    # and the coarse grid search must find the basin again. chunk_size None fits the three
    # together and retries one trajectory at a time on a CPU; 2 fits and retries them in two
    # batches of two, the second padded (the batch-2 executables of the step-limit test above).
    traj = _traj(synthetic, slice(4, 7), loss=True)
    bad = rj.EffectiveRates(10.0, 10.0)
    no_grid = rj.fit_effective_rates(traj, rj.FitOptions(fallback_grid=0, chunk_size=chunk_size), start=bad)
    assert not np.any(no_grid.success)
    res = rj.fit_effective_rates(traj, rj.FitOptions(chunk_size=chunk_size), start=bad)
    assert np.all(res.success)
    np.testing.assert_allclose(res.eta_enc, synthetic["rates"][4:7, 0], rtol=1e-4)
    np.testing.assert_allclose(res.eta_dec, synthetic["rates"][4:7, 1], rtol=1e-4)


def test_start_per_trajectory_and_its_shape_checked(synthetic, x64):
    """`start` broadcasts to the batch: the true rates of each trajectory give the same fit as
    the data-driven start; rates that do not broadcast are a one-line ValueError."""
    traj = _traj(synthetic, slice(4, 6), loss=True)
    true = synthetic["rates"][4:6]
    res = rj.fit_effective_rates(traj, start=rj.EffectiveRates(true[:, 0], true[:, 1]))
    assert np.all(res.success)
    np.testing.assert_allclose(res.eta_enc, true[:, 0], rtol=1e-6)
    np.testing.assert_allclose(res.eta_dec, true[:, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="do not broadcast to the batch shape"):
        rj.fit_effective_rates(traj, start=rj.EffectiveRates(np.ones(3), np.ones(3)))


def test_api_edges_integer_input_and_no_dynamics():
    """Integer arrays are cast; a trajectory without dynamics says its rates are not identifiable."""
    T = 6001  # the length of the synthetic trajectories: the float32 fit compiled for them serves
    ts = np.arange(T)
    flat = rj.PairTrajectory(ts, np.ones(T, int), np.zeros(T, int), np.zeros(T, int), dx2=1, dy2=0)
    assert jnp.issubdtype(flat.h.dtype, jnp.floating) and jnp.issubdtype(flat.ts.dtype, jnp.floating)
    fit = rj.fit_effective_rates(flat)
    assert not bool(fit.identifiable) and not bool(fit.success) and not bool(fit.explains)
    assert np.isnan(float(fit.eta_enc))
    with pytest.raises(ValueError, match="real numbers"):
        rj.PairTrajectory(ts, np.ones(T, complex), np.zeros(T), np.zeros(T), dx2=1.0, dy2=0.0)


def test_explained_has_one_definition_over_all_three_curves():
    """`rj.explains`: a succeeded fit with R^2 of h, y and w each >= 0.9 (finding 9 of round 2: the fit
    asked for h and y, the atlas for h and y >= 0.95, the claims for all three >= 0.9)."""
    ok = np.array([True, True, True, False, True])
    r2_h = np.array([0.95, 0.95, 0.95, 0.99, np.nan])
    r2_y = np.array([0.95, 0.95, 0.89, 0.99, 0.99])
    r2_w = np.array([0.95, 0.6, 0.95, 0.99, 0.99])
    want = [True, False, False, False, False]  # w alone misses in the second: h and y no longer suffice
    assert np.asarray(rj.explains(ok, r2_h, r2_y, r2_w)).tolist() == want
    assert np.asarray(jax.jit(rj.explains)(ok, r2_h, r2_y, r2_w)).tolist() == want
    assert rj.explains(True, 0.9, 0.9, rj.EXPLAINS_R2) and rj.EXPLAINS_R2 == 0.9
    from repalign_jax.atlasmap import EXPLAINED
    from repalign_jax.paper._claim import EXPLAINED_R2

    assert EXPLAINED == EXPLAINED_R2 == rj.EXPLAINS_R2


def test_explains_flags_a_converged_fit_that_misses_the_data(synthetic):
    """`explains` = success and R^2 of h, y and w >= 0.9: a clean trajectory is explained, a corrupted one not."""
    s = synthetic
    clean = rj.PairTrajectory(s["ts"], s["h"][5], s["y"][5], s["w"][5], dx2=s["dx2"], dy2=s["dy2"])
    fit = rj.fit_effective_rates(clean)
    assert bool(fit.success) and bool(fit.identifiable) and bool(fit.explains)
    # h halves in the first tenth and stays flat: the theory cannot do that (the paper's gain 1.4).
    h = np.asarray(s["h"][5]).copy()
    h[:600] = h[0] * (1 - 0.5 * np.arange(600) / 600)
    h[600:] = h[0] * 0.5
    bent = rj.PairTrajectory(s["ts"], h, s["y"][5], s["w"][5], dx2=s["dx2"], dy2=s["dy2"])
    fit = rj.fit_effective_rates(bent)
    assert float(fit.r2_h) < 0.9 and not bool(fit.explains)


def test_fit_warnings_have_their_own_class(synthetic):
    traj = rj.PairTrajectory(synthetic["ts"], np.full(6001, np.nan), synthetic["y"][0], synthetic["w"][0], 1.0, 0.5)
    with pytest.warns(rj.FitWarning, match="non-finite"):
        rj.fit_effective_rates(traj)


def test_solve_effective_from_an_invalid_state_is_nan():
    ts = np.arange(5.0)
    h, y, w = rj.solve_effective(
        np.array([0.8, -1.0, 0.8, 0.8]),
        np.array([1e-3, 1e-3, 1e-3, 0.5]),
        np.array([-1e-6, 0.0, 0.5, 0.5 - np.sqrt(0.25)]),
        dx2=1.0,
        dy2=0.5,
        rates=rj.EffectiveRates(1e-3, 1e-2),
        ts=ts,
    )
    ok = np.all(np.isfinite(np.asarray(h)), axis=-1)
    # valid; h0 <= 0; |y0 - w0| > sqrt(dy2 y0); on the Cauchy-Schwarz bound (1-d outputs): valid
    assert ok.tolist() == [True, False, False, True]
    assert not bool(rj.valid_state(1.0, -0.1, 0.0, dx2=1.0, dy2=0.5))


@pytest.mark.parametrize("chunk_size,want", [(None, [1, 2]), (1, [1, 2]), (2, [2])])
def test_progress_counts_fits_as_they_are_computed(synthetic, x64, chunk_size, want):
    """`progress` gets the number of trajectories fitted, once their chunk has been computed."""
    traj = _traj(synthetic, slice(4, 6), loss=True)
    seen = []
    res = rj.fit_effective_rates(traj, rj.FitOptions(chunk_size=chunk_size), progress=seen.append)
    assert seen == want
    quiet = rj.fit_effective_rates(traj, rj.FitOptions(chunk_size=chunk_size))
    np.testing.assert_array_equal(res.eta_enc, quiet.eta_enc)  # reporting changes nothing


def test_progress_counts_fits_retried_from_the_grid(synthetic, x64, capsys):
    traj = _traj(synthetic, slice(4, 6), loss=True)
    bad = rj.EffectiveRates(10.0, 10.0)
    seen = []
    res = rj.fit_effective_rates(traj, start=bad, progress=seen.append)
    assert np.all(res.success)
    assert seen == [1, 2, 3, 4]  # two first fits (both fail), then their two retries
    rj.fit_effective_rates(traj, start=bad, progress=True)
    err = capsys.readouterr().err
    assert "fit: 100%" in err and "4/4" in err, err[-300:]
