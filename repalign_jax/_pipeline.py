"""Train -> trajectories -> fit: the application layer's one pipeline, with a typed result.

The sweep, the experiments (and the atlas to come) train a batch of networks,
turn the records into `PairTrajectory`s and fit the theory the same way; this is
that way, written once, on the public API only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from jaxtyping import ArrayLike

from ._fit import FitOptions, FitResult, FitWarning, fit_effective_rates
from ._networks import NetworkSpec
from ._progress import Meter
from ._train import TrainConfig, TrainResult, train_networks
from ._trajectory import PairTrajectory, to_pair_trajectory


def run_grid(
    gains: npt.ArrayLike, lrs: npt.ArrayLike, seeds: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (setting, seed) pair as per-run arrays, setting-major: `(gains, seeds, lrs)` of length `S * n`.

    `gains`, `lrs`: one entry per setting (`S`); `seeds`: the `n` seeds each setting
    runs with. Run `k * n + j` is setting `k` with seed `seeds[j]`, the layout every
    table of the package slices back into settings.
    """
    gains, lrs = np.asarray(gains, float).ravel(), np.asarray(lrs, float).ravel()
    seeds = np.asarray(seeds, np.int64).ravel()
    if gains.shape != lrs.shape:
        raise ValueError(f"run_grid: {gains.size} gains but {lrs.size} learning rates")
    return np.repeat(gains, seeds.size), np.tile(seeds, gains.size), np.repeat(lrs, seeds.size)


class TrainedAndFitted(NamedTuple):
    """What `train_and_fit` returns, each with the leading run axis `R`.

    - `result`: the `TrainResult` of `train_networks`.
    - `trajectory`: its records as a `PairTrajectory` (batch `(R, n_pairs[, L])`).
    - `fit`: the `FitResult` of `fit_effective_rates` on that trajectory.
    """

    result: TrainResult
    trajectory: PairTrajectory
    fit: FitResult


def train_and_fit(
    x: ArrayLike,
    targets: ArrayLike,
    spec: NetworkSpec,
    config: TrainConfig,
    *,
    pairs: Sequence[tuple[int, int]] | ArrayLike = ((0, 1),),
    progress: bool | Meter = False,
    fit_options: FitOptions = FitOptions(),
    quiet_fit: bool = True,
    **train_options: Any,
) -> TrainedAndFitted:
    """Train a batch of networks (`train_networks`) and fit the theory to every run.

    `train_options`: every other keyword of `train_networks` (`gains`, `seeds`,
    `lrs`, `activations`, `initial_params`, `chunk_size`, `devices`, `compact`,
    `checkpoint`, `checkpoint_every`, `resume`), passed on as they are, so the two
    cannot drift apart. `progress=True` shows a bar over the fits too (a callable
    gets the training's epochs only). `quiet_fit`: silence the fit's `FitWarning`s
    (diverged runs, `h <= 0`), which the result reports anyway (`fit.success`,
    `result.diverged`); other warnings pass. **Returns:** a `TrainedAndFitted`.
    """
    result = train_networks(x, targets, spec, config, pairs=pairs, progress=progress, **train_options)
    trajectory = to_pair_trajectory(result, x, targets, pairs)
    with warnings.catch_warnings():
        if quiet_fit:
            warnings.simplefilter("ignore", FitWarning)
        fit = fit_effective_rates(trajectory, fit_options, progress=progress is True)
    return TrainedAndFitted(result, trajectory, fit)
