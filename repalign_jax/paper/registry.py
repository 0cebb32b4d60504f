"""The paper's experiments and claims, gathered from their modules.

Each experiment of `python -m repalign_jax.reproduce` is one module of
`repalign_jax.paper` (`EXPERIMENTS`, in the command's order) holding its
settings in both profiles (`SETTINGS`), its run (`run(ctx)`), its claims
(`CLAIMS`, each with its test) and the verdict functions those tests call. This
module gathers them: the registry of claims, the settings by experiment, and
the evaluation of saved numbers.
"""

from __future__ import annotations

import copy
import importlib
from types import ModuleType

from ._claim import Claim, Evaluation, Verdict
from ._table1 import PROFILES
from .stats import not_run

#: The experiments of `python -m repalign_jax.reproduce`, in its order (one module each).
EXPERIMENTS = (
    "universality",
    "gains",
    "final_distance",
    "xor",
    "feature_collapse",
    "digits",
    "depth",
    "adam",
    "random_features",
)


def module(experiment: str) -> ModuleType:
    """The module of `experiment` (`ValueError` naming the known ones)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"repalign_jax.paper.{experiment}")


def _all_claims() -> tuple[Claim, ...]:
    return tuple(c for name in EXPERIMENTS for c in module(name).CLAIMS)


#: Every claim, in the experiments' order.
CLAIMS: tuple[Claim, ...] = _all_claims()
_BY_KEY = {c.key: c for c in CLAIMS}


def claim(key: str) -> Claim:
    """The claim registered under `key`; `KeyError` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no claim {key!r}; known: {', '.join(_BY_KEY)}") from None


def claims_of(experiment: str) -> tuple[Claim, ...]:
    """The claims of `experiment`'s module, in registry order."""
    return tuple(c for c in CLAIMS if c.experiment == experiment)


def digests() -> dict[str, str]:
    """`{claim key: digest}` of every claim (`Claim.digest`): what a saved result records as
    `claim_digests`, the tests it was produced under."""
    return {c.key: c.digest for c in CLAIMS}


def settings(experiment: str, profile: str = "code") -> dict:
    """A fresh copy of `experiment`'s full-size settings in `profile` (`"code"` or `"paper"`): its
    module's `SETTINGS`. Raises `ValueError` for an unknown profile or experiment; an experiment
    whose settings are its own in both profiles (`adam`, `random_features`: the authors' code is
    silent or the same) gets `{}`."""
    if profile not in PROFILES:
        raise ValueError(f"unknown settings profile {profile!r}; choose from {', '.join(PROFILES)}")
    return copy.deepcopy(getattr(module(experiment), "SETTINGS", {}).get(profile, {}))


def differs(experiment: str) -> bool:
    """Whether the two profiles of `experiment` differ (else one run stands for both)."""
    return settings(experiment, "code") != settings(experiment, "paper")


def source_of(key: str) -> str:
    """The experiment whose saved numbers `key`'s test reads."""
    return claim(key).source


def evaluate_claim(key: str, numbers: dict | None) -> list[Evaluation]:
    """`key`'s evaluations from `numbers` (its source experiment's saved JSON; `None`: not run).
    A quick run is never a verdict (`NOT_RUN`); a claim that cannot fail is listed (`CANNOT_FAIL`)."""
    c = claim(key)
    if not c.can_fail or c.evaluate is None:
        return [Evaluation(key, Verdict.CANNOT_FAIL, "-", c.fair)]
    if key.startswith("digits.") and (numbers is None or not str(numbers.get("source", "")).startswith("mnist")):
        return c.evaluate({})  # not testable without MNIST, whatever was run
    if numbers is None:
        return [not_run(key, f"no saved result (run `reproduce {c.source}`)")]
    if numbers.get("quick"):
        return [not_run(key, "only a --quick run is saved (no verdict at quick sizes)")]
    return c.evaluate(numbers)


def evaluate(experiment: str, numbers: dict | None) -> list[Evaluation]:
    """Every evaluation whose test reads `experiment`'s saved numbers, in registry order."""
    return [e for c in CLAIMS if c.source == experiment for e in evaluate_claim(c.key, numbers)]


def format_registry(claims: tuple[Claim, ...] = CLAIMS) -> str:
    """The registry as text: one block per claim (what `reproduce claims` prints)."""
    blocks = []
    for c in claims:
        mark = "" if c.can_fail else "  [cannot fail: listed, never counted]"
        blocks.append(
            f"{c.key}  ({c.figure}; test fixed {c.fixed}; digest {c.digest}){mark}\n"
            f"  claim:    {c.short}\n"
            f'  paper:    "{c.quote}"\n'
            f"  measures: {c.measures}\n"
            f"  test:     {c.test}\n"
            f"  fair:     {c.fair}\n"
        )
    return "\n".join(blocks)
