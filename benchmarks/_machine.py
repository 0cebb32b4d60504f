"""Describe the machine a benchmark ran on (printed with every benchmark)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def describe() -> str:
    import jax

    cpu = cpu_name()
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"{cpu}; {os.cpu_count()} cores; python {platform.python_version()}; "
        f"jax {jax.__version__} on {jax.default_backend()} ({devices})"
    )
