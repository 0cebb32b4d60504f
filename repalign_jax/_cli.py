"""What the command-line tools share: one-line usage errors, ranges, SIGTERM, the compile-cache flag,
the machine description recorded with results, the checks of an `--out` folder."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import signal
import sys

import jax
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


MAX_RANGE = 100_000  # values one START:STOP:STEP may give (a typo in STEP must not hang the tool)


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
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise UsageError(f"--{name}: START, STOP and STEP must be finite, got {text!r}")
            if step <= 0:
                raise UsageError(f"--{name}: STEP must be positive, got {step:g}")
            if stop < start:
                raise UsageError(f"--{name}: STOP ({stop:g}) is below START ({start:g})")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            if n > MAX_RANGE:
                raise UsageError(f"--{name}: {text!r} gives {n} values, more than {MAX_RANGE}; use a larger STEP")
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


class Interruptible:
    """`with Interruptible() as run:` a block that Ctrl-C or SIGTERM stops; afterwards
    `run.interrupted` says whether it was, and `run.resume_hint(tool, saved, out)` prints the
    one-line message of every command-line tool and returns its exit code, 130. Whatever the
    block saved stays saved; SIGTERM's handler is restored on the way out."""

    interrupted = False

    def __enter__(self) -> Interruptible:
        self._old = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
        return self

    def __exit__(self, kind, value, tb) -> bool:
        signal.signal(signal.SIGTERM, self._old)
        self.interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        return self.interrupted

    @staticmethod
    def resume_hint(tool: str, saved: str, out, where=None) -> int:
        print(
            f"{tool}: interrupted; {saved} are saved in {where or out}; "
            f"continue with: python -m repalign_jax.{tool} ... --out {out} --resume",
            file=sys.stderr,
        )
        return 130


def describe_machine() -> str:
    """The machine results are recorded with: host, CPU cores, jax version, backend and device kinds."""
    kinds = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores; jax {jax.__version__} on {jax.default_backend()} ({kinds})"


def out_folder(out: str | None, resume: bool, what: str) -> tuple[pathlib.Path, dict | None]:
    """The `--out` folder of a sweep or atlas (`what`) and the config.json it already holds (`None`).

    Nothing is overwritten without `--resume`: a folder that holds a `what` needs it, and
    so does a folder that is not empty; `--resume` needs a folder. Without `--out` the
    folder is `runs/WHAT-STAMP`. The caller compares the saved config with its own.
    Raises `UsageError` (one line).
    """
    if out is None:
        if resume:
            raise UsageError(f"--resume needs the --out folder of the {what} to continue")
        path = pathlib.Path("runs") / f"{what}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    else:
        path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a folder")
    if resume and not path.exists():
        raise UsageError(f"--resume: --out {path} does not exist; nothing to continue")
    cfg_path = path / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            raise UsageError(f"{cfg_path} is unreadable; choose another --out") from None
        if not resume:
            raise UsageError(
                f"--out {path} already holds {'an' if what[0] in 'aeiou' else 'a'} {what}; "
                "pass --resume to continue it or choose another --out"
            )
        return path, old
    if path.exists() and any(path.iterdir()) and not resume:
        raise UsageError(f"--out {path} exists and is not empty; choose another --out")
    return path, None
