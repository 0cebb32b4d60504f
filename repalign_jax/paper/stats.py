"""Statistics the paper's verdicts share: intervals over seeds, decisions against a threshold, and
the scores several experiments compute.

Every number a verdict uses carries an interval over seeds; a threshold decides
only when the whole interval is on one side of it (`decide`), else the verdict is
*undecided*. A per-seed number is summarised by its median with a distribution-free
order-statistic interval (`median_interval`), whose coverage is exact for any
continuous distribution: at least 95% from 6 seeds on; with fewer seeds no pair of
order statistics reaches 95%, and the interval is all the seeds' range, said as such
(`fmt`: "all 3 seeds in [a, b]", 75% coverage for 3 seeds). Statistics of several
seeds at once (a rank correlation over layers, a score over grid points) keep a
percentile bootstrap (`bootstrap`), stratified where the seeds are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ._claim import Evaluation, Verdict

#: The coverage an interval is meant to have.
LEVEL = 0.95


class Interval(tuple):
    """`(estimate, low, high)` with the interval's `coverage` (`nan`: not known, a bootstrap) and the
    number of seeds `n` it is over. Unpacks as the 3-tuple."""

    coverage: float
    n: int

    def __new__(cls, estimate: float, low: float, high: float, coverage: float = float("nan"), n: int = 0):
        self = super().__new__(cls, (float(estimate), float(low), float(high)))
        self.coverage, self.n = float(coverage), int(n)
        return self

    @property
    def all_seeds(self) -> bool:
        """Whether the interval is the range of all `n` seeds because fewer seeds allow no interval
        of `LEVEL` coverage."""
        return self.n > 0 and math.isfinite(self.coverage) and self.coverage < LEVEL


def median_coverage(n: int, k: int) -> float:
    """The coverage of `[x_(k), x_(n + 1 - k)]` (order statistics, 1-based) for the median of a
    continuous distribution from `n` samples: `1 - 2 P(Binomial(n, 1/2) <= k - 1)`."""
    tail = sum(math.comb(n, j) for j in range(k)) / 2.0**n
    return 1.0 - 2.0 * tail


def median_interval(values, level: float = LEVEL) -> Interval:
    """The median of the finite `values` with the narrowest symmetric order-statistic interval whose
    coverage is at least `level`; with too few values for one (fewer than 6 at 95%), their whole
    range with its smaller coverage (`Interval.all_seeds`). NaN without values."""
    v = np.sort(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    n = int(v.size)
    if not n:
        return Interval(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    est = float(np.median(v))
    k = 1
    while k + 1 <= (n + 1) // 2 and median_coverage(n, k + 1) >= level:
        k += 1
    return Interval(est, v[k - 1], v[n - k], median_coverage(n, k) if n > 1 else 0.0, n)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    strata: Sequence[np.ndarray] | np.ndarray,
    n: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`(estimate, low, high)`: `statistic(indices)` on all units and its 95% percentile interval
    when the units are resampled with replacement within each stratum.

    `strata` is a list of index arrays (units of one stratum: the seeds of one grid point, one
    gain), or one index array for a single stratum. Resamples whose statistic is not finite are
    dropped; with fewer than 2 units in every stratum the interval is the estimate itself.
    """
    groups = [np.asarray(strata)] if np.ndim(strata[0]) == 0 else [np.asarray(s) for s in strata]
    groups = [g for g in groups if g.size]
    everything = np.concatenate(groups)
    est = float(statistic(everything))
    if all(g.size < 2 for g in groups):
        return est, est, est
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        v = float(statistic(idx))
        if math.isfinite(v):
            values.append(v)
    if not values:
        return est, float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return est, float(lo), float(hi)


def decide(interval: tuple[float, float, float], threshold: float, side: str) -> bool | None:
    """Whether `interval = (estimate, low, high)` is on `side` (`"above"` or `"below"`) of
    `threshold`: `True` when the whole interval is, `False` when the whole interval is on the other
    side (or the estimate is not finite), `None` when the interval crosses it."""
    est, lo, hi = interval
    if not (math.isfinite(est) and math.isfinite(lo) and math.isfinite(hi)):
        return False if not math.isfinite(est) else None
    if side == "above":
        return True if lo > threshold else (False if hi <= threshold else None)
    if side == "below":
        return True if hi < threshold else (False if lo >= threshold else None)
    raise ValueError(f"side must be 'above' or 'below', got {side!r}")


def combine(results: Sequence[bool | None]) -> Verdict:
    """All conditions hold: reproduced; any fails: the network differs; else undecided."""
    if any(r is False for r in results):
        return Verdict.NETWORK_DIFFERS
    if any(r is None for r in results):
        return Verdict.UNDECIDED
    return Verdict.REPRODUCED


def fmt(interval: tuple[float, float, float], spec: str = ".3g") -> str:
    """`"estimate [low, high]"`; `"estimate (all n seeds in [low, high])"` for an `Interval` over too
    few seeds for its level (`Interval.all_seeds`), `"estimate (1 seed)"` for one."""
    est, lo, hi = interval
    n = getattr(interval, "n", 0)
    if n == 1:
        return f"{est:{spec}} (1 seed)"
    if getattr(interval, "all_seeds", False):
        return f"{est:{spec}} (all {n} seeds in [{lo:{spec}}, {hi:{spec}}])"
    if lo == hi == est:
        return f"{est:{spec}}"
    return f"{est:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def min_r2(*r2, clip: float = -1.0) -> np.ndarray:
    """The elementwise minimum of R^2 arrays, clipped below at `clip` (one stalled fit's R^2 of
    -3000 would otherwise dominate any mean); NaN stays NaN."""
    m = np.min(np.stack([np.asarray(v, np.float64) for v in r2]), axis=0)
    return np.where(np.isnan(m), np.nan, np.maximum(m, clip))


def r2_score(measured, predicted) -> float:
    """The coefficient of determination of `predicted` against `measured`, `1 - SSE / SST` (the fit's
    R^2; NaN where either is not finite, or `measured` is constant)."""
    m, p = np.asarray(measured, np.float64), np.asarray(predicted, np.float64)
    sst = float(np.sum((m - m.mean()) ** 2))
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(p))) or sst == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((m - p) ** 2)) / sst


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties get their order's rank); NaN with fewer than 3 finite pairs."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a[ok])), np.argsort(np.argsort(b[ok]))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def line_stats(pred, meas) -> dict:
    """Pearson r and the least-squares line of measured on predicted (with intercept, and through 0)."""
    pred, meas = np.asarray(pred, np.float64), np.asarray(meas, np.float64)
    if pred.size < 3 or pred.std() == 0 or meas.std() == 0:
        nan = float("nan")
        return {"pearson": nan, "slope": nan, "intercept": nan, "slope_through_origin": nan, "n": int(pred.size)}
    slope, intercept = np.polyfit(pred, meas, 1)
    return {
        "pearson": float(np.corrcoef(pred, meas)[0, 1]),
        "slope": float(slope),
        "intercept": float(intercept),
        "slope_through_origin": float(np.dot(pred, meas) / np.dot(pred, pred)),
        "n": int(pred.size),
    }


def dx_exponent(dx, dy, values, keep) -> float:
    """How `values` (final h, measured or predicted) scale with `||dx||`: the slope of
    `log value` on `log ||dx||` by least squares at each `||dy|| > 0` (kept runs with a
    positive value, at least two distinct `||dx||`), averaged over `||dy||`; NaN when no
    `||dy||` has two. The theory's `h_inf` grows about in proportion to `||dx||` (exponent 1:
    `A_low = sqrt(eta_enc / eta_dec) ||dx|| ||dy||`); a measured exponent far from the
    predicted one suggests effective rates that depend on the input distance, which the
    theory assumes they do not (`examples/rates_vs_dx.py` fits them at each `||dx||`)."""
    dx, dy, values = (np.asarray(v, np.float64) for v in (dx, dy, values))
    keep = np.asarray(keep, bool)
    slopes = []
    for b in np.unique(dy[dy > 0]):
        at = keep & (dy == b) & (values > 0)
        if np.unique(dx[at]).size >= 2:
            slopes.append(np.polyfit(np.log(dx[at]), np.log(values[at]), 1)[0])
    return float(np.mean(slopes)) if slopes else float("nan")


def log2_score(measured, predicted) -> float:
    """Median `|log2(measured / predicted)|`: 0 for exact predictions, 1 for a factor 2."""
    m, p = np.asarray(measured, np.float64), np.asarray(predicted, np.float64)
    return float(np.median(np.abs(np.log2(m / p)))) if m.size else float("nan")


def scaled_baseline_score(measured, base) -> float:
    """`log2_score` of the predictor `c * base` with its constant fitted on the same runs
    (`c` = the median of `measured / base`)."""
    m, b = np.asarray(measured, np.float64), np.asarray(base, np.float64)
    if not m.size:
        return float("nan")
    c = float(np.exp(np.median(np.log(m / b))))
    return log2_score(m, c * b)


# ---------------------------------------------------------------- reading saved numbers


def not_run(key: str, why: str, network: str | None = None) -> Evaluation:
    """`key`'s evaluation when no saved result can be read: *not run*, with `why`."""
    return Evaluation(key, Verdict.NOT_RUN, "-", why, network=network)


def arr(v) -> np.ndarray:
    """Saved numbers as float64 (`None`, JSON's NaN, as NaN)."""
    return np.asarray([np.nan if x is None else x for x in v], np.float64)


def bools(v) -> np.ndarray:
    """Saved flags as a boolean array."""
    return np.asarray(v, bool)
