"""The host-side chunk planner: a batch of `n` items as chunks of one shape.

Training, fitting and the sweep cut their batches with `plan_chunks`: every chunk
has the same length (the last is padded by repeating its last item), so one
compiled executable serves them all and nothing recompiles for a short last
chunk. Callers drop the padding with `Chunk.real`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Chunk(NamedTuple):
    """Indices of one chunk: `index` `(size,)` into the batch, of which the first `real` are not padding."""

    index: np.ndarray
    real: int


def plan_chunks(n: int, size: int, order: Sequence[int] | np.ndarray | None = None) -> list[Chunk]:
    """`n` items in chunks of exactly `size` (the last padded with its last item).

    `order`: a permutation of `range(n)` to cut instead of `0 .. n - 1` (e.g. the
    fit's trajectories sorted by stiffness). Raises `ValueError` for `n < 1` or
    `size < 1`.
    """
    if n < 1 or size < 1:
        raise ValueError(f"plan_chunks needs n >= 1 and size >= 1, got n={n}, size={size}")
    items = np.arange(n) if order is None else np.asarray(order)
    size = min(size, n)
    chunks = []
    for start in range(0, n, size):
        part = items[start : start + size]
        real = len(part)
        if real < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - real)])
        chunks.append(Chunk(part, real))
    return chunks
