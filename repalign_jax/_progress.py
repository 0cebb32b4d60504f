"""Progress bars for long work: training epochs, sweep chunks, rate fits.

One small class, so that every long loop of the package reports the same way: a
`tqdm.auto` bar (a widget in a notebook, a bar on stderr in a terminal) fed with the
amount of work *done*, never the amount queued (JAX dispatches asynchronously: the
callers wait on a result before they report it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import jax


@runtime_checkable
class Meter(Protocol):
    """What long work reports to: called with the amount of work *done* so far.

    A `Progress` bar is one; so is any callable of one integer (`list.append`, a
    logger). `train_networks(progress=...)`, `fit_effective_rates(progress=...)` and
    `train_and_fit(progress=...)` take a meter, or `True` for a bar of their own.
    """

    def __call__(self, done: int, /) -> None: ...


class Progress:
    """A progress meter: a bar over `epochs * chunks` steps of `unit`.

    The one object long work reports to (the way diffrax passes a progress meter
    rather than a flag): `train_networks(progress=meter)`, `run_groups(meter=...)`.

    - `meter(epoch)`: the steps reached in the current chunk (for work without
      chunks, the steps done so far).
    - `meter.start_chunk(k)`: the work moves on to chunk `k` (0-based); its
      steps count after the `k` chunks before it.
    - `meter.extend(n)`: `n` more steps per chunk (work found on the way, e.g. fits retried).
    - `meter.close()`.

    The rate, hence the ETA, is a moving average of recent reports, so the
    compilation before the first one does not count.
    """

    def __init__(self, epochs: int, chunks: int = 1, stream=None, label: str = "train", unit: str = "epoch"):
        from tqdm.auto import tqdm  # noqa: PLC0415 (slow to import; only where a bar is shown)

        self.epochs, self.chunks, self.label = epochs, chunks, label
        self._chunk = 0
        self._done = 0
        self._bar = tqdm(
            total=epochs * chunks,
            desc=label,
            unit=unit,
            file=stream,
            dynamic_ncols=True,
            mininterval=0.5,
            smoothing=0.3,
        )

    @property
    def chunk(self) -> int:
        """The chunk the work is in (set with `start_chunk`)."""
        return self._chunk

    def start_chunk(self, k: int) -> None:
        if not 0 <= k < self.chunks:
            raise ValueError(f"Progress.start_chunk({k}): this meter has chunks 0..{self.chunks - 1}")
        self._chunk = int(k)

    def __call__(self, epoch: int):
        done = self._chunk * self.epochs + epoch
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done
        if self.chunks > 1:
            self._bar.set_postfix_str(f"chunk {self._chunk + 1}/{self.chunks}", refresh=False)

    def extend(self, n: int):
        self.epochs += n
        self._bar.total = self.epochs * self.chunks
        self._bar.refresh()

    def close(self):
        self._bar.close()


def report_computed(report: Callable[[int], None], value, done: int):
    """`report(done)` once `value` (a JAX pytree, the last piece of that work) has been computed.

    JAX dispatches asynchronously: a report right after the call would count work queued,
    not done, and a bar would reach its end long before the work does. Loops call this for
    a piece only after queueing the next one, so the device never idles.
    """
    jax.block_until_ready(value)
    report(done)
