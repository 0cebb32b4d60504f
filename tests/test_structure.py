"""`repalign_jax._structure`: dataset-level predictions (docs/theory.md sections 5, 6 and 10),
Pearson correlation over pairs and classical MDS, against closed forms and invariants."""

import numpy as np
import pytest

import repalign_jax as rj

RATES = rj.EffectiveRates(0.02, 0.005)
RATIO = 0.02 / 0.005  # eta_enc / eta_dec


def dataset(n=6, d_in=3, d_out=2, width=8, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, d_in)),
        rng.normal(size=(n, d_out)),
        rng.normal(size=(n, width)),
        0.3 * rng.normal(size=(n, d_out)),
    )


def sq(a, i, j):
    return float(np.sum((np.asarray(a[i]) - np.asarray(a[j])) ** 2))


def h_inf_by_hand(dx2, dy2, h0, y0, ratio):
    """docs/theory.md section 6, written out again."""
    a_low = np.sqrt(ratio) * np.sqrt(dx2) * np.sqrt(dy2)
    a_high = h0 - ratio * dx2 * y0 / h0
    return a_high / 2 + np.sqrt(a_high**2 / 4 + a_low**2)


# --- predicted_final_distances -------------------------------------------------------------


def test_two_points_reduce_to_final_distance(x64):
    x = np.array([[-1.0], [0.0]])
    targets = np.array([[0.6], [0.6 + np.sqrt(0.5)]])
    hidden0 = np.array([[0.3, -0.1, 0.4], [0.1, 0.2, 0.0]])
    outputs0 = np.array([[0.05], [-0.02]])
    pred = rj.predicted_final_distances(x, targets, hidden0, outputs0, RATES)
    assert isinstance(pred, rj.PairwiseDistances)
    assert pred.squared.shape == pred.distance.shape == (2, 2)
    h0, y0 = sq(hidden0, 0, 1), sq(outputs0, 0, 1)
    expected = float(rj.final_distance(h0, y0, dx2=1.0, dy2=0.5, rates=RATES))
    np.testing.assert_allclose(pred.squared[0, 1], expected, rtol=1e-12)
    np.testing.assert_allclose(pred.squared[1, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(pred.distance, np.sqrt(pred.squared), rtol=1e-12)
    assert pred.squared[0, 0] == pred.squared[1, 1] == 0.0


def test_every_pair_is_section_6s_closed_form(x64):
    data = dataset()
    pred = rj.predicted_final_distances(*data, RATES)
    x, t, h, o = data
    n = len(x)
    expected = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                expected[i, j] = h_inf_by_hand(sq(x, i, j), sq(t, i, j), sq(h, i, j), sq(o, i, j), RATIO)
    np.testing.assert_allclose(pred.squared, expected, rtol=1e-10, atol=0)
    np.testing.assert_allclose(pred.distance, np.sqrt(expected), rtol=1e-10, atol=0)


def test_each_pair_sits_at_the_stable_fixed_point_of_the_conserved_relation(x64):
    """Section 5-6: y(h) = a h^2 + C h, a = eta_dec / (eta_enc dx2), C = y0/h0 - a h0, reaches
    y = dy2 at the positive root h_inf."""
    x, t, h, o = dataset(n=5, seed=1)
    pred = rj.predicted_final_distances(x, t, h, o, RATES)
    for i in range(5):
        for j in range(i + 1, 5):
            dx2, dy2, h0, y0 = sq(x, i, j), sq(t, i, j), sq(h, i, j), sq(o, i, j)
            a = 1.0 / (RATIO * dx2)
            c = y0 / h0 - a * h0
            hf = pred.squared[i, j]
            assert hf > 0
            assert a * hf**2 + c * hf == pytest.approx(dy2, rel=1e-9)


def test_symmetric_with_zero_diagonal_and_non_negative():
    pred = rj.predicted_final_distances(*dataset(n=7, seed=2), RATES)
    for m in (pred.squared, pred.distance):
        assert isinstance(m, np.ndarray) and m.shape == (7, 7)
        np.testing.assert_array_equal(m, m.T)
        np.testing.assert_array_equal(np.diag(m), 0.0)
        assert np.all(m >= 0)
    off = ~np.eye(7, dtype=bool)
    assert np.all(pred.squared[off] > 0)


def test_equivariant_under_permutation_and_invariant_under_rigid_motions(x64):
    x, t, h, o = dataset(seed=3)
    base = rj.predicted_final_distances(x, t, h, o, RATES).squared
    perm = np.random.default_rng(0).permutation(len(x))
    permuted = rj.predicted_final_distances(x[perm], t[perm], h[perm], o[perm], RATES).squared
    np.testing.assert_allclose(permuted, base[np.ix_(perm, perm)], rtol=1e-12)

    def move(a, seed):
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(a.shape[1], a.shape[1])))
        return a @ q + 5.0

    moved = rj.predicted_final_distances(move(x, 1), move(t, 2), move(h, 3), move(o, 4), RATES).squared
    np.testing.assert_allclose(moved, base, rtol=1e-9)


def test_depends_on_the_rates_only_through_their_ratio(x64):
    data = dataset(seed=4)
    base = rj.predicted_final_distances(*data, RATES).squared
    scaled = rj.predicted_final_distances(*data, rj.EffectiveRates(0.02 * 7.0, 0.005 * 7.0, tau=3.0)).squared
    np.testing.assert_allclose(scaled, base, rtol=1e-12)
    other = rj.predicted_final_distances(*data, rj.EffectiveRates(0.02, 0.05)).squared
    assert not np.allclose(other, base)


def test_rich_limit_is_set_by_the_data(x64):
    """Section 6/8: h0 ~ s^2, y0 ~ s^4, so A_high -> 0 and h_inf -> A_low = sqrt(ratio) D_x D_y;
    pairs with equal targets merge."""
    x, t, h, o = dataset(seed=5)
    t[1] = t[0]  # one pair with equal targets
    s = 1e-3
    pred = rj.predicted_final_distances(x, t, s * h, s**2 * o, RATES).squared
    a_low = np.sqrt(RATIO) * rj.pairwise_distances(x) * rj.pairwise_distances(t)
    off = ~np.eye(len(x), dtype=bool)
    off[0, 1] = off[1, 0] = False
    np.testing.assert_allclose(pred[off], a_low[off], rtol=1e-4)
    assert pred[0, 1] < 10 * s**2 * sq(h, 0, 1)  # merged: of the order of A_high, not of A_low
    assert pred[0, 1] < 1e-4 * a_low[off].min()


def test_lazy_limit_keeps_the_initial_distances(x64):
    """Equal initial outputs: A_high = h0, and h_inf = h0 + A_low^2 / h_inf lies in [h0, h0 + A_low^2 / h0]."""
    x, t, h, _ = dataset(seed=6)
    o = np.zeros_like(t)
    off = ~np.eye(len(x), dtype=bool)
    a_low2 = (RATIO * rj.pairwise_distances(x) ** 2 * rj.pairwise_distances(t) ** 2)[off]
    for s in (1.0, 30.0):
        h0 = (rj.pairwise_distances(s * h) ** 2)[off]
        pred = rj.predicted_final_distances(x, t, s * h, o, RATES).squared[off]
        assert np.all(pred >= h0 * (1 - 1e-12))
        assert np.all(pred <= (h0 + a_low2 / h0) * (1 + 1e-12))
        if s == 30.0:  # lazy: the initial distances stay
            np.testing.assert_allclose(pred, h0, rtol=1e-4)
        else:  # not yet lazy: the data still moves the pairs
            assert not np.allclose(pred, h0, rtol=1e-2)


def test_equal_targets_and_equal_outputs_leave_a_pair_where_it_started(x64):
    x, t, h, o = dataset(seed=7)
    t[3], o[3] = t[2], o[2]
    pred = rj.predicted_final_distances(x, t, h, o, RATES)
    np.testing.assert_allclose(pred.squared[2, 3], sq(h, 2, 3), rtol=1e-12)


def test_identical_points_get_zero():
    x, t, h, o = dataset(seed=8)
    for a in (x, t, h, o):
        a[4] = a[1]
    pred = rj.predicted_final_distances(x, t, h, o, RATES)
    assert pred.squared[1, 4] == pred.squared[4, 1] == pred.distance[1, 4] == 0.0
    assert pred.squared[1, 2] > 0


# --- exponential_weighting ------------------------------------------------------------------


def test_exponential_weighting_of_two_points():
    """A = [[0, a], [a, 0]], E = [[1, e], [e, 1]], e = exp(-a): E A E = [[2ae, a(1+e^2)], [a(1+e^2), 2ae]]."""
    dx, dy = 1.5, 0.4
    a = dx * dy
    e = np.exp(-a)
    got = rj.exponential_weighting([[0, dx], [dx, 0]], [[0, dy], [dy, 0]])
    np.testing.assert_allclose(got, [[2 * a * e, a * (1 + e**2)], [a * (1 + e**2), 2 * a * e]], rtol=1e-14)


def test_exponential_weighting_with_far_apart_classes_sums_blocks():
    """Large input distances: E is the same-label indicator, so within a class the prediction is 0
    and between classes it is the sum of A over the two classes' block."""
    labels = np.array([0, 0, 1, 1, 1])
    rng = np.random.default_rng(0)
    dist_x = rj.pairwise_distances(1e4 * rng.normal(size=(5, 4)))
    dist_y = rj.pairwise_distances(np.eye(2)[labels])
    got = rj.exponential_weighting(dist_x, dist_y)
    a = dist_x * dist_y
    block = a[np.ix_(labels == 0, labels == 1)].sum()
    same = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(got[same], 0.0)
    np.testing.assert_allclose(got[~same], block, rtol=1e-12)


def test_exponential_weighting_symmetry_equivariance_and_equal_targets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    dx, dy = rj.pairwise_distances(x), rj.pairwise_distances(y)
    got = rj.exponential_weighting(dx, dy)
    np.testing.assert_allclose(got, got.T, rtol=1e-12)
    perm = rng.permutation(6)
    np.testing.assert_allclose(
        rj.exponential_weighting(dx[np.ix_(perm, perm)], dy[np.ix_(perm, perm)]), got[np.ix_(perm, perm)], rtol=1e-12
    )
    np.testing.assert_array_equal(rj.exponential_weighting(dx, np.zeros((6, 6))), 0.0)  # one target: no structure


# --- pearson_offdiagonal ---------------------------------------------------------------------


def symmetric(rng, n):
    m = rng.normal(size=(n, n))
    m = m + m.T
    np.fill_diagonal(m, 0.0)
    return m


def test_pearson_is_the_correlation_over_the_pairs_i_below_j():
    rng = np.random.default_rng(2)
    a, b = symmetric(rng, 6), symmetric(rng, 6)
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    u, v = np.array([a[p] for p in pairs]), np.array([b[p] for p in pairs])
    r = np.mean((u - u.mean()) * (v - v.mean())) / (u.std() * v.std())
    got = rj.pearson_offdiagonal(a, b)
    assert isinstance(got, float)
    assert got == pytest.approx(r, rel=1e-12)
    assert rj.pearson_offdiagonal(a, 2 * a + 3) == pytest.approx(1.0)
    assert rj.pearson_offdiagonal(a, -a) == pytest.approx(-1.0)


def test_pearson_ignores_the_diagonal_and_the_lower_triangle():
    rng = np.random.default_rng(3)
    a, b = symmetric(rng, 5), symmetric(rng, 5)
    base = rj.pearson_offdiagonal(a, b)
    b2 = b.copy()
    b2[np.tril_indices(5)] = rng.normal(size=15) * 100
    assert rj.pearson_offdiagonal(a, b2) == pytest.approx(base, rel=1e-12)


def test_pearson_mask_drops_pairs():
    rng = np.random.default_rng(4)
    a = symmetric(rng, 6)
    b = 3 * a - 1
    mask = np.ones((6, 6), bool)
    mask[0, :] = mask[:, 0] = False
    b[0, :] = b[:, 0] = rng.normal(size=6) * 10  # break the relation only on the dropped pairs
    assert rj.pearson_offdiagonal(a, b) < 0.999
    assert rj.pearson_offdiagonal(a, b, mask=mask) == pytest.approx(1.0)


def test_pearson_is_nan_when_undefined():
    rng = np.random.default_rng(5)
    a = symmetric(rng, 4)
    assert np.isnan(rj.pearson_offdiagonal(a, np.ones((4, 4))))  # constant
    assert np.isnan(rj.pearson_offdiagonal(a[:2, :2], a[:2, :2]))  # one pair
    one = np.zeros((4, 4), bool)
    one[0, 1] = True
    assert np.isnan(rj.pearson_offdiagonal(a, a, mask=one))


# --- classical_mds ---------------------------------------------------------------------------


def test_mds_recovers_a_planar_configuration_up_to_rigid_motion():
    rng = np.random.default_rng(6)
    plane = rng.normal(size=(9, 2)) * [3.0, 1.0]
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    points = np.hstack([plane, np.zeros((9, 3))]) @ q + 2.0  # the plane, rotated and moved in R^5
    dist = rj.pairwise_distances(points)
    coords2 = rj.classical_mds(dist, dims=2)
    assert coords2.shape == (9, 2)
    np.testing.assert_allclose(rj.pairwise_distances(coords2), dist, atol=1e-10)
    np.testing.assert_allclose(coords2.mean(axis=0), 0.0, atol=1e-10)  # centred
    gram = coords2.T @ coords2
    assert abs(gram[0, 1]) < 1e-8 * gram[0, 0] and gram[0, 0] >= gram[1, 1]  # principal axes, largest first
    coords3 = rj.classical_mds(dist)  # default: 3 dimensions, the third has nothing to show
    assert coords3.shape == (9, 3)
    np.testing.assert_allclose(coords3[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(rj.pairwise_distances(coords3), dist, atol=1e-6)


def test_mds_of_points_on_a_line():
    t = np.array([0.0, 1.0, 3.0, 7.0])
    coords = rj.classical_mds(np.abs(t[:, None] - t[None, :]), dims=1)
    np.testing.assert_allclose(np.abs(coords[:, 0] - coords[0, 0]), t, atol=1e-12)
