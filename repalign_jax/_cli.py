"""What the command-line tools share: one-line usage errors, ranges, SIGTERM, the compile-cache flag,
the machine description recorded with results."""

from __future__ import annotations

import argparse
import math

import numpy as np


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr with exit code 2."""


class ArgParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors raise `UsageError` (one line, exit 2) instead of exiting."""

    def error(self, message):
        raise UsageError(message)


def add_compile_cache_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, in ~/.cache/repalign_jax/jax "
        "or $REPALIGN_JAX_CACHE)",
    )


def parse_range(text: str, name: str, *, integer: bool = False, default_step: float = 0.1) -> list:
    """`START:STOP[:STEP]` (inclusive) or a comma list of positive numbers, all distinct.

    Raises `UsageError` with one line naming `--name`.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else default_step
            if step <= 0:
                raise UsageError(f"--{name}: STEP must be positive, got {step:g}")
            if stop < start:
                raise UsageError(f"--{name}: STOP ({stop:g}) is below START ({start:g})")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + k * step, 10) for k in range(n)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--{name}: cannot read {text!r}; use START:STOP[:STEP] or a comma list") from None
    if not values:
        raise UsageError(f"--{name}: the range is empty")
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise UsageError(f"--{name}: values must be positive, got {text!r}")
    if integer:
        if any(v != int(v) for v in values):
            raise UsageError(f"--{name}: values must be integers, got {text!r}")
        values = [int(v) for v in values]
    if len(set(values)) != len(values):
        raise UsageError(f"--{name}: repeated values in {text!r}")
    return values


def sigterm_to_interrupt(signum, frame):
    """A SIGTERM handler: stop as Ctrl-C does (finished work is kept)."""
    raise KeyboardInterrupt


def describe_machine() -> str:
    """The machine results are recorded with: host, CPU cores, jax version, backend and device kinds."""
    import os
    import platform

    import jax

    kinds = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores; jax {jax.__version__} on {jax.default_backend()} ({kinds})"
