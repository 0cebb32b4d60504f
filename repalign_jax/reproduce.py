"""`python -m repalign_jax.reproduce`: the paper's experiments, one command each.

The command lives in `repalign_jax.paper.reproduce` (its help: `--help`); this
module keeps its name on the command line.
"""

from __future__ import annotations

import sys

from .paper.reproduce import build_parser, main, report, run_experiment

__all__ = ["build_parser", "main", "report", "run_experiment"]

if __name__ == "__main__":
    sys.exit(main())
