"""Verdicts on the paper's claims, computed from saved results alone.

`evaluate(experiment, numbers)` takes the numbers an experiment saved
(`DIR/NAME/NAME.json`, as written by `python -m repalign_jax.reproduce NAME`)
and returns one `Evaluation` per claim of `repalign_jax.claims` (per network
where a claim is per network). Nothing here trains or reads a file: the report
re-evaluates every verdict from the saved numbers, so a changed test needs a
rerun only where the saved numbers lack what it reads.

Every number a verdict uses carries a 95% bootstrap interval over seeds
(`bootstrap`); a threshold decides only when the whole interval is on one side
of it (`decide`), else the verdict is *undecided*.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Sequence

import numpy as np

from . import claims as C


class Verdict(str, enum.Enum):
    """What a claim's test concluded."""

    REPRODUCED = "reproduced"
    NETWORK_DIFFERS = "not reproduced: the network behaves otherwise"
    RUN_FAILED = "not reproduced: the run failed"
    NOT_TESTABLE = "not testable here"
    UNDECIDED = "undecided"
    NOT_RUN = "not run"  # no saved result, or saved results lack what the test reads
    CANNOT_FAIL = "not a test (cannot fail)"

    @property
    def label(self) -> str:
        """A short label for tables."""
        return _LABELS[self]


_LABELS = {
    Verdict.REPRODUCED: "reproduced",
    Verdict.NETWORK_DIFFERS: "not reproduced (network differs)",
    Verdict.RUN_FAILED: "not reproduced (run failed)",
    Verdict.NOT_TESTABLE: "not testable here",
    Verdict.UNDECIDED: "undecided",
    Verdict.NOT_RUN: "not run",
    Verdict.CANNOT_FAIL: "cannot fail (not a test)",
}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One claim's verdict: `number` is the key number with its 95% interval, `cause` one line,
    `details` further numbers (for the report's sections), `network` the Table-1 row where the
    claim is evaluated per network."""

    key: str
    verdict: Verdict
    number: str
    cause: str
    details: dict = dataclasses.field(default_factory=dict)
    network: str | None = None


# ---------------------------------------------------------------- statistics


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
    """`"estimate [low, high]"`."""
    est, lo, hi = interval
    if lo == hi == est:
        return f"{est:{spec}}"
    return f"{est:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def plateau_shape(rep_loss0, rep_t_half, rep_slope0) -> np.ndarray:
    """The plateau-shape measure `S = 1 - max(0, -L'(0)) t_half / (L0 ln 2)`, clipped to `[0, 1]`,
    of a decaying loss `L` (`L0 = L(0)`, `t_half` the time at which `L` first halves, `L'(0)` its
    initial slope): 0 for an exponential decay `L0 exp(-t / tau)` (and for any start at least as
    steep), near 1 when `L` stays flat (or first rises) before it falls. Its two times cancel, so
    it does not depend on the learning rate. NaN where `L` never halved. The inputs are
    `repalign_jax.gainsweep.loss_shape`'s."""
    l0, th, s0 = (np.asarray(v, np.float64) for v in (rep_loss0, rep_t_half, rep_slope0))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 1.0 - np.maximum(0.0, -s0) * th / (l0 * math.log(2.0))
    return np.where(np.isfinite(s), np.clip(s, 0.0, 1.0), np.nan)


def min_r2(*r2, clip: float = -1.0) -> np.ndarray:
    """The elementwise minimum of R^2 arrays, clipped below at `clip` (one stalled fit's R^2 of
    -3000 would otherwise dominate any mean); NaN stays NaN."""
    m = np.min(np.stack([np.asarray(v, np.float64) for v in r2]), axis=0)
    return np.where(np.isnan(m), np.nan, np.maximum(m, clip))


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


# ---------------------------------------------------------------- helpers


def _not_run(key: str, why: str, network: str | None = None) -> Evaluation:
    return Evaluation(key, Verdict.NOT_RUN, "-", why, network=network)


def _arr(v) -> np.ndarray:
    """Saved numbers as float64 (`None`, JSON's NaN, as NaN)."""
    return np.asarray([np.nan if x is None else x for x in v], np.float64)


def _bools(v) -> np.ndarray:
    return np.asarray(v, bool)


def _per_network(numbers: dict) -> list[tuple[str, dict]]:
    """final_distance's saved networks: `[(name, piece)]` (one network at the top level, several under
    `networks`)."""
    if numbers.get("networks"):
        return list(numbers["networks"].items())
    name = (numbers.get("settings") or {}).get("network", "default")
    return [(name, numbers)]


# ---------------------------------------------------------------- universality


def _universality(key: str, curves: tuple[str, ...]):
    def evaluate(numbers: dict) -> list[Evaluation]:
        table = numbers.get("table") or []
        if not table or "per_seed" not in table[0]:
            return [_not_run(key, "saved results predate per-seed R^2 (rerun `reproduce universality`)")]
        out = []
        for row in table:
            ps = row["per_seed"]
            loss = _arr(ps["final_loss"])
            trained = _bools(ps["fit_ok"]) & ~_bools(ps["diverged"]) & (loss <= C.TRAINED_LOSS)
            name = row["network"]
            if not trained.any():
                out.append(
                    Evaluation(
                        key,
                        Verdict.RUN_FAILED,
                        f"0 of {trained.size} seeds trained",
                        f"no seed reached loss {C.TRAINED_LOSS:g} (stalled on its plateau: final loss "
                        f"{np.nanmin(loss):.3g}-{np.nanmax(loss):.3g})",
                        network=name,
                    )
                )
                continue
            m = min_r2(*(ps[c] for c in curves))[trained]
            iv = bootstrap(lambda i, m=m: float(np.median(m[i])), np.arange(m.size))
            ok = decide(iv, C.EXPLAINED_R2, "above")
            verdict = combine([ok])
            worst = curves[int(np.argmin([np.nanmedian(_arr(ps[c])[trained]) for c in curves]))]
            cause = (
                f"{trained.sum()} of {trained.size} seeds trained; weakest curve {worst.replace('r2_', '')}"
                if verdict is not Verdict.REPRODUCED
                else f"{trained.sum()} of {trained.size} seeds trained"
            )
            out.append(
                Evaluation(
                    key,
                    verdict,
                    f"median min R^2 {fmt(iv)}",
                    cause,
                    {c: float(np.nanmedian(_arr(ps[c])[trained])) for c in curves},
                    network=name,
                )
            )
        return out

    return evaluate


# ---------------------------------------------------------------- gains


def _gain_runs(numbers: dict) -> tuple[np.ndarray, list[dict]] | None:
    runs = numbers.get("per_run")
    if not runs or "rep_t_half" not in runs[0]:
        return None
    return np.array([r["gain"] for r in runs], np.float64), runs


def _plateau_to_decay(numbers: dict) -> list[Evaluation]:
    key = "gains.plateau_to_decay"
    got = _gain_runs(numbers)
    if got is None:
        return [_not_run(key, "saved results predate the loss-shape numbers (rerun `reproduce gains`)")]
    gains, runs = got
    s = plateau_shape(*([r[k] for r in runs] for k in ("rep_loss0", "rep_t_half", "rep_slope0")))
    lo_g, hi_g = gains.min(), gains.max()
    lo_i, hi_i = np.flatnonzero((gains == lo_g) & np.isfinite(s)), np.flatnonzero((gains == hi_g) & np.isfinite(s))
    plateau_epochs = _arr([r["plateau_epochs"] for r in runs])
    by_gain, plateau = {}, {}
    for g in np.unique(gains):
        at = gains == g
        by_gain[float(g)] = float(np.mean(s[at][np.isfinite(s[at])])) if np.isfinite(s[at]).any() else float("nan")
        p = plateau_epochs[at]
        plateau[float(g)] = float(np.mean(p[np.isfinite(p)])) if np.isfinite(p).any() else float("nan")
    lrs = {float(r["gain"]): r["lr"] for r in runs}
    details = {
        "shape_by_gain": by_gain,
        "plateau_epochs_by_gain": plateau,
        "plateau_epochs_x_lr_by_gain": {g: plateau[g] * lrs[g] for g in plateau},
        "spearman_gain_shape": spearman(gains, s),
    }
    if not lo_i.size or not hi_i.size:
        end = lo_g if not lo_i.size else hi_g
        return [Evaluation(key, Verdict.RUN_FAILED, "-", f"at gain {end:g} no run's loss halved", details)]
    a = bootstrap(lambda i: float(np.mean(s[i])), lo_i)
    b = bootstrap(lambda i: float(np.mean(s[i])), hi_i)
    verdict = combine([decide(a, C.PLATEAU, "above"), decide(b, C.DECAY, "below")])
    cause = {
        Verdict.REPRODUCED: f"S falls from {a[0]:.2f} to {b[0]:.2f} over the series",
        Verdict.UNDECIDED: "an end's interval crosses its threshold",
    }.get(verdict, f"S is {a[0]:.2f} at gain {lo_g:g} and {b[0]:.2f} at gain {hi_g:g}")
    return [Evaluation(key, verdict, f"S {fmt(a, '.2f')} at {lo_g:g}, {fmt(b, '.2f')} at {hi_g:g}", cause, details)]


def _theory_breaks_down(numbers: dict) -> list[Evaluation]:
    key = "gains.theory_breaks_down"
    got = _gain_runs(numbers)
    if got is None:
        return [_not_run(key, "saved results predate per-run R^2 (rerun `reproduce gains`)")]
    gains, runs = got
    m = min_r2(*([r[k] for r in runs] for k in ("r2_h", "r2_y", "r2_w")))
    ok = np.array([r["fit_ok"] and not r["diverged"] for r in runs])
    m = np.where(ok, m, -1.0)  # a failed fit explains nothing
    uniq = np.unique(gains)
    med = {float(g): float(np.median(m[gains == g])) for g in uniq}
    first_below = next((g for g in med if med[g] < C.EXPLAINED_R2), None)
    a = bootstrap(lambda i: float(np.median(m[i])), np.flatnonzero(gains == uniq[0]))
    b = bootstrap(lambda i: float(np.median(m[i])), np.flatnonzero(gains == uniq[-1]))
    verdict = combine([decide(a, C.EXPLAINED_R2, "above"), decide(b, C.EXPLAINED_R2, "below")])
    cause = (
        f"the median min R^2 first falls below 0.9 at gain {first_below:g}"
        if first_below is not None
        else "every gain's median min R^2 is above 0.9"
    )
    return [
        Evaluation(
            key,
            verdict,
            f"min R^2 {fmt(a, '.2f')} at {uniq[0]:g}, {fmt(b, '.2f')} at {uniq[-1]:g}",
            cause,
            {"median_min_r2_by_gain": med},
        )
    ]


# ---------------------------------------------------------------- final distance


def final_distance_scores(per_run: dict) -> dict:
    """What `final_distance.follows_h_inf` reads of one network's saved runs: the kept runs with
    `||dy|| > 0`, the theory's and the baselines' scores with intervals, r and the slope through 0."""
    dx, dy = _arr(per_run["dx"]), _arr(per_run["dy"])
    meas, pred, h0 = _arr(per_run["measured"]), _arr(per_run["predicted"]), _arr(per_run["h0"])
    conv = _bools(per_run["converged"])
    keep = conv & np.isfinite(pred) & (pred > 0) & np.isfinite(meas) & (meas > 0)
    rich = np.flatnonzero(keep & (dy > 0))
    points = {}
    for i in rich:
        points.setdefault((dx[i], dy[i]), []).append(i)
    strata = [np.asarray(v) for v in points.values()]
    base = {"constant": np.ones_like(meas), "h0": h0, "||dy||": dy}

    def theory(i):
        return log2_score(meas[i], pred[i])

    def best_baseline(i):
        return min([scaled_baseline_score(meas[i], b[i]) for b in base.values()])

    out = {
        "runs": int(dx.size),
        "kept": int(keep.sum()),
        "rich_kept": int(rich.size),
        "line": line_stats(pred[keep], meas[keep]),
        "h_dx_exponent": {
            "measured": dx_exponent(dx, dy, meas, keep),
            "predicted": dx_exponent(dx, dy, pred, keep),
        },
    }
    if rich.size < 3:
        return out
    out["theory"] = bootstrap(theory, strata)
    out["baselines"] = {k: scaled_baseline_score(meas[rich], b[rich]) for k, b in base.items()}
    out["theory_minus_best_baseline"] = bootstrap(lambda i: theory(i) - best_baseline(i), strata)
    return out


MIN_RICH_RUNS = 3


def _follows_h_inf(numbers: dict) -> list[Evaluation]:
    key = "final_distance.follows_h_inf"
    out = []
    for name, piece in _per_network(numbers):
        pr = piece.get("per_run")
        if not pr:
            out.append(_not_run(key, "no per-run numbers saved", network=name))
            continue
        sc = final_distance_scores(pr)
        line = sc["line"]
        beside = f"r {line['pearson']:.3f}, slope through 0 {line['slope_through_origin']:.3f}"
        if sc["rich_kept"] < MIN_RICH_RUNS:
            stalled = sc["runs"] - sc["kept"]
            out.append(
                Evaluation(
                    key,
                    Verdict.RUN_FAILED,
                    f"{sc['rich_kept']} kept runs with ||dy|| > 0",
                    f"{stalled} of {sc['runs']} runs did not converge (final loss > {C.TRAINED_LOSS:g})",
                    sc,
                    network=name,
                )
            )
            continue
        t, d = sc["theory"], sc["theory_minus_best_baseline"]
        verdict = combine([decide(t, C.LOG2_TOLERANCE, "below"), decide(d, 0.0, "below")])
        base = sc["baselines"]
        best = min(base, key=lambda k: base[k])
        e = sc["h_dx_exponent"]
        vs = f"best baseline {best} {sc['baselines'][best]:.2f}"
        if verdict is Verdict.REPRODUCED or d[0] < 0:
            cause = f"{vs}; h ~ ||dx||^{e['measured']:.2f}, h_inf ~ ||dx||^{e['predicted']:.2f}"
        else:
            cause = f"no better than {best} alone ({sc['baselines'][best]:.2f}); h ~ ||dx||^{e['measured']:.2f}"
        number = f"median |log2| {fmt(t, '.2f')}; {beside}"
        out.append(Evaluation(key, verdict, number, cause, sc, network=name))
    return out


# ---------------------------------------------------------------- XOR


def _xor_table(numbers: dict) -> dict[str, dict] | None:
    table = numbers.get("table") or []
    if not table or "measured_per_seed" not in table[0]:
        return None
    return {t["network"]: t for t in table}


def _trained(row: dict) -> np.ndarray:
    loss = _arr(row["final_loss_per_seed"])
    return ~_bools(row["diverged_per_seed"]) & (loss <= C.TRAINED_LOSS)


def _xor_row(key: str, numbers: dict, net: str) -> tuple[dict, np.ndarray] | list[Evaluation]:
    """XOR network `net`'s saved row and which of its seeds trained, or the evaluation that stops
    the test: not run (no per-seed matrices saved) or a failed run (no seed trained)."""
    rows = _xor_table(numbers)
    if rows is None:
        return [_not_run(key, "saved results predate per-seed matrices (rerun `reproduce xor`)")]
    row = rows[net]
    ok = _trained(row)
    if not ok.any():
        loss = _arr(row["final_loss_per_seed"])
        return [
            Evaluation(
                key,
                Verdict.RUN_FAILED,
                f"0 of {ok.size} seeds trained",
                f"final loss {np.nanmin(loss):.3g}: the {net} network stays on its plateau",
            )
        ]
    return row, ok


_EQUAL, _OTHER = ((0, 3), (1, 2)), ((0, 1), (0, 2), (1, 3), (2, 3))


def pair_ratios(dist) -> np.ndarray:
    """XOR: each equal-target pair's distance over the mean distance of the four other pairs, `(2,)`
    (both `sqrt(2)`-ish in input space, 0 when merged)."""
    d = np.asarray(dist, np.float64)
    other = np.mean([d[i, j] for i, j in _OTHER])
    return np.array([d[i, j] / other for i, j in _EQUAL])


def _ratio_claim(key: str, net: str, threshold: float, side: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        got = _xor_row(key, numbers, net)
        if isinstance(got, list):
            return got
        row, ok = got
        meas = np.array([pair_ratios(m).mean() for m in row["measured_per_seed"]])[ok]
        pred = float(np.mean([pair_ratios(p).mean() for p in np.asarray(row["predicted_per_seed"])[ok]]))
        iv = bootstrap(lambda i: float(np.mean(meas[i])), np.arange(meas.size))
        pred_ok = pred < threshold if side == "below" else pred > threshold
        verdict = combine([decide(iv, threshold, side), pred_ok])
        cause = f"predicted {pred:.3f}; {ok.sum()} of {ok.size} seeds trained"
        return [Evaluation(key, verdict, f"merge ratio {fmt(iv)}", cause, {"predicted": pred})]

    return evaluate


def _rel_error(meas: np.ndarray, pred: np.ndarray, fit_scale: bool) -> float:
    iu = np.triu_indices(4, 1)
    m, p = meas[iu], pred[iu]
    if fit_scale:
        p = p * (np.dot(m, p) / np.dot(p, p)) if np.dot(p, p) > 0 else p
    return float(np.linalg.norm(m - p) / np.linalg.norm(m))


def _xor_intermediate(numbers: dict) -> list[Evaluation]:
    key = "xor.intermediate"
    got = _xor_row(key, numbers, "intermediate")
    if isinstance(got, list):
        return got
    row, ok = got
    meas, pred, init = (
        np.asarray(row[k], np.float64)[ok] for k in ("measured_per_seed", "predicted_per_seed", "initial_per_seed")
    )
    rich = np.zeros((4, 4))
    for i, j in ((0, 1), (0, 2), (1, 3), (2, 3)):
        rich[i, j] = rich[j, i] = 1.0  # the rich limit: equal-target pairs at 0, the others alike
    theory = np.array([_rel_error(m, p, False) for m, p in zip(meas, pred)])
    lazy = np.array([_rel_error(m, p, True) for m, p in zip(meas, init)])
    merged = np.array([_rel_error(m, rich, True) for m in meas])
    idx = np.arange(theory.size)
    t = bootstrap(lambda i: float(np.mean(theory[i])), idx)
    d = bootstrap(lambda i: float(np.mean(theory[i]) - min(np.mean(lazy[i]), np.mean(merged[i]))), idx)
    verdict = combine([decide(t, 0.25, "below"), decide(d, 0.0, "below")])
    base = {"initial distances": float(lazy.mean()), "rich limit": float(merged.mean())}
    best = min(base, key=lambda k: base[k])
    return [
        Evaluation(
            key,
            verdict,
            f"relative error {fmt(t, '.2f')}",
            f"best baseline {best} {base[best]:.2f}",
            {"baselines": base},
        )
    ]


def _xor_two_layer(numbers: dict) -> list[Evaluation]:
    key = "xor.two_layer"
    got = _xor_row(key, numbers, "2 layers")
    if isinstance(got, list):
        return got
    row, ok = got
    r = np.array([pair_ratios(m) for m in np.asarray(row["measured_per_seed"])[ok]])
    rp = np.array([pair_ratios(p) for p in np.asarray(row["predicted_per_seed"])[ok]])
    small, large = r.min(1), r.max(1)
    idx = np.arange(small.size)
    a = bootstrap(lambda i: float(np.mean(small[i])), idx)
    b = bootstrap(lambda i: float(np.mean(large[i])), idx)
    pred_small, pred_large = float(rp.min(1).mean()), float(rp.max(1).mean())
    verdict = combine([decide(a, C.MERGED, "below"), decide(b, C.KEPT, "above"), pred_large < C.MERGED])
    return [
        Evaluation(
            key,
            verdict,
            f"pairs {fmt(a, '.2f')} / {fmt(b, '.2f')}",
            f"predicted {pred_small:.3f} / {pred_large:.3f}",
        )
    ]


# ---------------------------------------------------------------- feature collapse


def _fc_rows(numbers: dict, adam: bool = False) -> list[dict] | None:
    rows = numbers.get("adam_table" if adam else "table") or []
    if not rows or "target_fraction_final_per_seed" not in rows[0]:
        return None
    return sorted(rows, key=lambda t: t["gain"])


def _fraction_claim(key: str, which: str, threshold: float, side: str, adam: bool = False):
    def evaluate(numbers: dict) -> list[Evaluation]:
        rows = _fc_rows(numbers, adam)
        if rows is None:
            return [_not_run(key, "saved results predate these per-seed numbers (rerun `reproduce feature_collapse`)")]
        row = rows[0] if which == "lowest" else rows[-1]
        f = np.asarray(row["fraction_final_per_seed"], np.float64)
        if not f.size:
            return [Evaluation(key, Verdict.RUN_FAILED, "-", f"every seed diverged at gain {row['gain']:g}")]
        iv = bootstrap(lambda i: float(np.mean(f[i])), np.arange(f.size))
        verdict = combine([decide(iv, threshold, side)])
        init = float(np.mean(row["fraction_initial_per_seed"]))
        return [
            Evaluation(
                key,
                verdict,
                f"F {fmt(iv)} at gain {row['gain']:g}",
                f"F at initialisation {init:.3f}; final loss {row['final_loss']:.2e}",
            )
        ]

    return evaluate


def _single_line(numbers: dict) -> list[Evaluation]:
    key = "feature_collapse.single_line"
    rows = _fc_rows(numbers)
    if rows is None:
        return [_not_run(key, "saved results predate the target fraction (rerun `reproduce feature_collapse`)")]
    lo, nxt = rows[0], rows[1]
    a = np.asarray(lo["target_fraction_final_per_seed"], np.float64)
    b = np.asarray(nxt["target_fraction_final_per_seed"], np.float64)
    n = min(a.size, b.size)
    t = bootstrap(lambda i: float(np.mean(a[i])), np.arange(a.size))
    d = bootstrap(lambda i: float(np.mean(a[i]) - np.mean(b[i])), np.arange(n))
    verdict = combine([decide(t, C.SINGLE_LINE, "above"), decide(d, 0.0, "above")])
    return [
        Evaluation(
            key,
            verdict,
            f"T {fmt(t)} at gain {lo['gain']:g}",
            f"T {np.mean(b):.3f} at gain {nxt['gain']:g}",
        )
    ]


# ---------------------------------------------------------------- Adam


def _adam_trajectories(numbers: dict) -> list[Evaluation]:
    key = "adam.trajectories"
    table = numbers.get("table") or []
    if not table or "r2_w_per_seed" not in table[0]:
        return [_not_run(key, "saved results predate per-seed R^2 (rerun `reproduce adam`)")]

    def runs(opt):
        rows = [t for t in table if t["optimizer"] == opt]
        m = np.concatenate([min_r2(t["r2_h_per_seed"], t["r2_y_per_seed"], t["r2_w_per_seed"]) for t in rows])
        ok = np.concatenate([_bools(t["fit_ok_per_seed"]) for t in rows])
        return np.where(ok, m, -1.0)

    sgd, adam = runs("sgd"), runs("adam")
    n = min(sgd.size, adam.size)
    idx = np.arange(n)  # the same gains and seeds, in the same order, under both optimisers
    a = bootstrap(lambda i: float(np.mean(adam[i])), idx)
    d = bootstrap(lambda i: float(np.mean(sgd[i]) - np.mean(adam[i])), idx)
    verdict = combine([decide(a, C.EXPLAINED_R2, "below"), decide(d, 0.0, "above")])
    return [
        Evaluation(key, verdict, f"min R^2 Adam {fmt(a, '.2f')}", f"SGD {float(np.mean(sgd)):.2f} on the same runs")
    ]


def _adam_xor(numbers: dict) -> list[Evaluation]:
    key = "adam.xor_merge"
    r = numbers.get("xor_equal_pair_ratio_per_seed")
    if r is None:
        return [_not_run(key, "saved results predate per-seed ratios (rerun `reproduce adam`)")]
    r = np.asarray(r, np.float64)
    loss = _arr(numbers["xor_final_loss_per_seed"])
    ok = np.isfinite(r) & (loss <= C.TRAINED_LOSS)
    if not ok.any():
        return [Evaluation(key, Verdict.RUN_FAILED, "0 seeds trained", f"final loss {np.nanmin(loss):.3g}")]
    iv = bootstrap(lambda i: float(np.mean(r[ok][i])), np.arange(int(ok.sum())))
    verdict = combine([decide(iv, C.MERGED, "below")])
    pred = numbers.get("xor_predicted_ratio", float("nan"))
    return [
        Evaluation(key, verdict, f"merge ratio {fmt(iv)}", f"predicted {pred:.3f}; {ok.sum()} of {ok.size} trained")
    ]


# ---------------------------------------------------------------- depth


def _depth_arrays(numbers: dict):
    ps = numbers.get("per_seed")
    if not ps:
        return None
    ok = np.asarray(ps["fit_ok"], bool)
    return ok, {k: np.where(ok, np.asarray(ps[k], np.float64), np.nan) for k in ("eta_enc", "eta_dec", "r2_h")}


def _layer_mean_log(v: np.ndarray, i: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.log(v[i]), axis=0)


def _depth(key: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        got = _depth_arrays(numbers)
        if got is None:
            return [_not_run(key, "saved results predate per-seed rates (rerun `reproduce depth`)")]
        ok, a = got
        seeds = np.arange(ok.shape[0])
        layers = np.arange(ok.shape[1], dtype=float)
        if key == "depth.enc_grows":
            iv = bootstrap(lambda i: spearman(layers, _layer_mean_log(a["eta_enc"], i)), seeds)
            return [Evaluation(key, combine([decide(iv, 0.5, "above")]), f"Spearman {fmt(iv, '.2f')}", "")]
        if key == "depth.dec_falls_later":
            ed = _layer_mean_log(a["eta_dec"], seeds)
            peak = int(np.nanargmax(ed))
            if ok.shape[1] - peak < 3:
                return [Evaluation(key, Verdict.NETWORK_DIFFERS, "-", f"eta_dec peaks at layer {peak}, near the end")]
            after = layers[peak:]
            rho = bootstrap(lambda i: spearman(after, _layer_mean_log(a["eta_dec"], i)[peak:]), seeds)
            drop = bootstrap(
                lambda i: float(np.exp(_layer_mean_log(a["eta_dec"], i)[-1] - _layer_mean_log(a["eta_dec"], i)[peak])),
                seeds,
            )
            verdict = combine([decide(rho, -0.5, "below"), decide(drop, 0.8, "below")])
            return [
                Evaluation(
                    key, verdict, f"Spearman {fmt(rho, '.2f')} after layer {peak}", f"last / peak {fmt(drop, '.2f')}"
                )
            ]
        half = ok.shape[1] // 2
        r2 = a["r2_h"]
        iv = bootstrap(lambda i: float(np.nanmean(r2[i][:, half:]) - np.nanmean(r2[i][:, :half])), seeds)
        return [
            Evaluation(
                key,
                combine([decide(iv, 0.0, "above")]),
                f"R^2 h later - earlier {fmt(iv, '.3f')}",
                f"earlier {np.nanmean(r2[:, :half]):.3f}, later {np.nanmean(r2[:, half:]):.3f}",
            )
        ]

    return evaluate


# ---------------------------------------------------------------- digits


def _digits(key: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        source = str(numbers.get("source") or "")
        if not source.startswith("mnist"):
            return [
                Evaluation(
                    key,
                    Verdict.NOT_TESTABLE,
                    "-",
                    "MNIST is not on this machine (`--mnist DIR`); scikit-learn's 8 x 8 digits are another dataset",
                )
            ]
        if key == "digits.pair":
            rows = [t for t in numbers["table"] if t["fitted"] and not t["diverged"]]
            if not rows:
                return [Evaluation(key, Verdict.RUN_FAILED, "0 seeds fitted", "no seed's fit succeeded")]
            m = min_r2([t["r2_h"] for t in rows], [t["r2_y"] for t in rows], [t["r2_w"] for t in rows])
            iv = bootstrap(lambda i: float(np.median(m[i])), np.arange(m.size))
            return [Evaluation(key, combine([decide(iv, C.EXPLAINED_R2, "above")]), f"median min R^2 {fmt(iv)}", "")]
        st = numbers["structure_table"]
        a, b = (np.array([t[k] for t in st], np.float64) for k in ("corr", "corr_without_blocks"))
        ia = bootstrap(lambda i: float(np.mean(a[i])), np.arange(a.size))
        ib = bootstrap(lambda i: float(np.mean(b[i])), np.arange(b.size))
        verdict = combine([decide(ia, 0.5, "above"), decide(ib, 0.3, "above")])
        return [Evaluation(key, verdict, f"r {fmt(ia, '.2f')}", f"without the blocks {fmt(ib, '.2f')}")]

    return evaluate


# ---------------------------------------------------------------- random features


def _spread_vanishes(numbers: dict) -> list[Evaluation]:
    key = "random_features.spread_vanishes"
    samples = numbers.get("h_inf_samples")
    if not samples:
        return [_not_run(key, "saved results predate the samples (rerun `reproduce random_features`)")]
    table = numbers["table"]
    cv = np.array([t["h_inf_cv"] for t in table])
    lo, hi = np.asarray(samples[0], np.float64), np.asarray(samples[-1], np.float64)

    def cv_of(v):
        return lambda i: float(np.std(v[i]) / np.mean(v[i]))

    a = bootstrap(cv_of(lo), np.arange(lo.size))
    b = bootstrap(cv_of(hi), np.arange(hi.size))
    rel = float(table[0]["rel_dev_from_A_low"])
    monotone = bool(np.all(np.isfinite(cv)) and np.all(np.diff(cv) >= -1e-6))
    verdict = combine([monotone, decide(b, a[2] + 1e-6, "above"), rel < 0.1])
    return [
        Evaluation(
            key,
            verdict,
            f"CV {fmt(a)} at gain {table[0]['gain']:g}, {fmt(b)} at {table[-1]['gain']:g}",
            f"mean h_inf off A_low by {rel:.2g} at the smallest gain",
        )
    ]


# ---------------------------------------------------------------- registry of tests


def _listed(key: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        return [Evaluation(key, Verdict.CANNOT_FAIL, "-", C.claim(key).fair)]

    return evaluate


TESTS: dict[str, Callable[[dict], list[Evaluation]]] = {
    "universality.all_curves": _universality("universality.all_curves", ("r2_h", "r2_y", "r2_w")),
    "universality.loss_fit": _universality("universality.loss_fit", ("r2_loss",)),
    "gains.plateau_to_decay": _plateau_to_decay,
    "gains.theory_breaks_down": _theory_breaks_down,
    "final_distance.follows_h_inf": _follows_h_inf,
    "xor.rich_merge": _ratio_claim("xor.rich_merge", "rich", C.MERGED, "below"),
    "xor.lazy_keeps": _ratio_claim("xor.lazy_keeps", "lazy", C.KEPT, "above"),
    "xor.intermediate": _xor_intermediate,
    "xor.two_layer": _xor_two_layer,
    "feature_collapse.rich_collapse": _fraction_claim("feature_collapse.rich_collapse", "lowest", C.COLLAPSED, "below"),
    "feature_collapse.lazy_keeps": _fraction_claim("feature_collapse.lazy_keeps", "highest", C.SQUARE, "above"),
    "feature_collapse.single_line": _single_line,
    "adam.trajectories": _adam_trajectories,
    "adam.xor_merge": _adam_xor,
    "adam.blobs_collapse": _fraction_claim("adam.blobs_collapse", "lowest", C.COLLAPSED, "below", adam=True),
    "adam.own_rates": _listed("adam.own_rates"),
    "depth.enc_grows": _depth("depth.enc_grows"),
    "depth.dec_falls_later": _depth("depth.dec_falls_later"),
    "depth.later_layers_accurate": _depth("depth.later_layers_accurate"),
    "digits.pair": _digits("digits.pair"),
    "digits.structure": _digits("digits.structure"),
    "random_features.spread_vanishes": _spread_vanishes,
    "random_features.a_low_fixed": _listed("random_features.a_low_fixed"),
}

#: The experiments of `python -m repalign_jax.reproduce` (the claims' `experiment`s).
EXPERIMENTS_OF_CLAIMS = C.EXPERIMENTS

#: Where a claim's results come from another experiment's saved numbers.
SOURCE = {"adam.blobs_collapse": "feature_collapse"}


def source_of(key: str) -> str:
    """The experiment whose saved numbers `key`'s test reads."""
    return SOURCE.get(key, C.claim(key).experiment)


def evaluate_claim(key: str, numbers: dict | None) -> list[Evaluation]:
    """`key`'s evaluations from `numbers` (its source experiment's saved JSON; `None`: not run).
    A quick run is never a verdict (`NOT_RUN`)."""
    if not C.claim(key).can_fail:
        return TESTS[key]({})
    if key.startswith("digits.") and (numbers is None or not str(numbers.get("source", "")).startswith("mnist")):
        return TESTS[key]({})  # not testable without MNIST, whatever was run
    if numbers is None:
        return [_not_run(key, f"no saved result (run `reproduce {source_of(key)}`)")]
    if numbers.get("quick"):
        return [_not_run(key, "only a --quick run is saved (no verdict at quick sizes)")]
    return TESTS[key](numbers)


def evaluate(experiment: str, numbers: dict | None) -> list[Evaluation]:
    """Every evaluation whose test reads `experiment`'s saved numbers, in registry order."""
    return [e for c in C.CLAIMS if source_of(c.key) == experiment for e in evaluate_claim(c.key, numbers)]
