"""The vocabulary of the paper's claims: a `Claim` (the paper's sentence and the test that decides it),
a `Verdict`, an `Evaluation`, and the thresholds the tests share.

Each `Claim` records the figure or section, the paper's sentence quoted verbatim
from its text (`shared/seeds/002_86af288b2609196e.txt`; where the text lost a
formula the quote keeps the gap), the quantity measured, the test with its
threshold, why that test is a fair reading of the sentence, and the date the test
was fixed. Its `digest` fingerprints quote, measure, test and threshold: every
saved result records the digests of the claims it was produced under, and the
report marks a verdict whose claim changed after its result existed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import json
from collections.abc import Callable

import repalign_jax as rj


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's claims and the test that decides it.

    - `key`: `"experiment.name"`, unique; `experiment` is the `reproduce` experiment
      whose saved results the test reads.
    - `figure`: the paper's figure or section.
    - `short`: the claim in a few words (the report's summary table).
    - `quote`: the paper's sentence, verbatim.
    - `measures`: the quantity measured, from which runs.
    - `test`: the decision rule with its thresholds and the interval it uses.
    - `fair`: why the test reads the sentence fairly.
    - `fixed`: the date (ISO) the test was fixed.
    - `can_fail`: `False` for a statement that holds by construction; it is listed, marked,
      and never counted as reproduced.
    - `evaluate`: the test itself, `numbers -> [Evaluation]` (the saved numbers of the experiment
      it reads); its source code enters the digest.
    - `reads`: the experiment whose saved numbers `evaluate` reads, where it is not `experiment`.
    """

    key: str
    figure: str
    short: str
    quote: str
    measures: str
    test: str
    fair: str
    fixed: str
    can_fail: bool = True
    evaluate: Callable[[dict], list[Evaluation]] | None = dataclasses.field(default=None, compare=False, repr=False)
    reads: str | None = None

    @property
    def experiment(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def source(self) -> str:
        """The experiment whose saved numbers the test reads."""
        return self.reads or self.experiment

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the SHA-256 of what decides the claim: its key, quote, measure and
        test text, the shared thresholds (`THRESHOLDS`), and the source code of `evaluate` with the
        values it closes over and its default arguments (lines stripped, blank lines and comments
        dropped). A saved result records it (`claim_digests`); a claim whose digest differs from the one its result was
        produced under was changed after that result existed. The wording of `short`, `fair` and
        `figure` does not enter it; a change to a shared statistic (`repalign_jax.paper.stats`) does
        not either, and is logged in the changelog by hand."""
        payload = json.dumps(
            [self.key, self.quote, self.measures, self.test, THRESHOLDS, _code_of(self.evaluate)],
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _code_of(fn) -> str:
    """`fn`'s source, normalised (stripped lines, no blank or comment-only lines), and the reprs of the
    values its closure holds and of its default arguments; `""` for `None`."""
    if fn is None:
        return ""
    try:
        lines = inspect.getsource(fn).splitlines()
    except (OSError, TypeError):
        lines = [getattr(fn, "__qualname__", repr(fn))]
    code = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    cells = [repr(c.cell_contents) for c in (getattr(fn, "__closure__", None) or ()) if _plain(c)]
    defaults = [repr(d) for d in (getattr(fn, "__defaults__", None) or ())]
    return "\n".join(code + cells + defaults)


def _plain(cell) -> bool:
    try:
        return isinstance(cell.cell_contents, (str, int, float, bool, tuple))
    except ValueError:  # an empty cell
        return False


#: Thresholds the tests share (named once, quoted in the tests' text).
# a curve "matches quite well": R^2 >= 0.9, the package's one definition of "explained"
# (`repalign_jax.explains`: a succeeded fit with R^2 of h, y and w each >= EXPLAINS_R2)
EXPLAINED_R2 = rj.EXPLAINS_R2
TRAINED_LOSS = 1e-3  # a run trained (left its plateau and fitted): final loss <= 1e-3
LOG2_TOLERANCE = 0.5  # final-distance predictions within a factor sqrt(2) of h, in median
PLATEAU, DECAY = 0.7, 0.3  # plateau-shape measure: a plateau above 0.7, immediate decay below 0.3
MERGED, KEPT = 0.3, 0.7  # XOR merge ratio (sqrt(2) in input space): merged below 0.3, kept above 0.7
COLLAPSED, SQUARE = 0.1, 0.25  # irrelevant-feature variance fraction (0.5 for a 2-d square)
SINGLE_LINE = 0.9  # share of the representation's variance explained by the target alone (2026-12-05 test)

#: The shared thresholds by name (part of every claim's digest).
THRESHOLDS = {
    "EXPLAINED_R2": EXPLAINED_R2,
    "TRAINED_LOSS": TRAINED_LOSS,
    "LOG2_TOLERANCE": LOG2_TOLERANCE,
    "PLATEAU": PLATEAU,
    "DECAY": DECAY,
    "MERGED": MERGED,
    "KEPT": KEPT,
    "COLLAPSED": COLLAPSED,
    "SQUARE": SQUARE,
    "SINGLE_LINE": SINGLE_LINE,
}


class Verdict(str, enum.Enum):
    """What a claim's test concluded."""

    REPRODUCED = "reproduced"
    NETWORK_DIFFERS = "not reproduced: the network behaves otherwise"
    RUN_FAILED = "not reproduced: the run failed"
    FIT_FAILED = "not reproduced: the fit failed"
    OUTSIDE = "outside the claim"  # a network the claim's sentence does not speak of (listed, never counted)
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
    Verdict.FIT_FAILED: "not reproduced (fit failed)",
    Verdict.OUTSIDE: "outside the claim",
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
