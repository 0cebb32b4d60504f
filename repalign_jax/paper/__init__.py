"""The paper's experiments, one module each: settings, run, claims and verdicts.

`python -m repalign_jax.reproduce NAME` runs the module `repalign_jax.paper.NAME`
(`EXPERIMENTS`); `registry` gathers their claims and settings, `stats` holds the
statistics the verdicts share, and `report` writes REPRODUCTION.md from saved
results. This wing uses only the library's public API (`import repalign_jax as rj`).
"""

from ._claim import Claim as Claim
from ._claim import Evaluation as Evaluation
from ._claim import Verdict as Verdict
from ._table1 import PROFILES as PROFILES
from ._table1 import Row as Table1Row
from ._table1 import table1 as table1
from .registry import CLAIMS as CLAIMS
from .registry import EXPERIMENTS as EXPERIMENTS
from .registry import claim as claim
from .registry import claims_of as claims_of
from .registry import differs as differs
from .registry import digests as digests
from .registry import evaluate as evaluate
from .registry import evaluate_claim as evaluate_claim
from .registry import format_registry as format_registry
from .registry import settings as settings
from .registry import source_of as source_of

__all__ = [
    "CLAIMS",
    "Claim",
    "EXPERIMENTS",
    "Evaluation",
    "PROFILES",
    "Table1Row",
    "Verdict",
    "claim",
    "claims_of",
    "differs",
    "digests",
    "evaluate",
    "evaluate_claim",
    "format_registry",
    "settings",
    "source_of",
    "table1",
]
