"""Progress bars for long work: training epochs, sweep chunks, rate fits.

One small class, so that every long loop of the package reports the same way: a
`tqdm.auto` bar (a widget in a notebook, a bar on stderr in a terminal) fed with the
amount of work *done*, never the amount queued (JAX dispatches asynchronously: the
callers wait on a result before they report it).
"""

from __future__ import annotations

from collections.abc import Callable

import jax


class Progress:
    """A progress bar over `epochs * chunks` steps of `unit`.

    Call it with the steps reached in the current chunk (`chunk` is settable; for
    work without chunks, the steps done so far). The rate, hence the ETA, is a moving
    average of recent reports, so the compilation before the first one does not count.
    `extend(n)` adds `n` steps to the total (work found on the way, e.g. fits retried).
    """

    def __init__(self, epochs: int, chunks: int = 1, stream=None, label: str = "train", unit: str = "epoch"):
        from tqdm.auto import tqdm  # noqa: PLC0415 (slow to import; only where a bar is shown)

        self.epochs, self.chunks, self.label = epochs, chunks, label
        self.chunk = 0
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

    def __call__(self, epoch: int):
        done = self.chunk * self.epochs + epoch
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done
        if self.chunks > 1:
            self._bar.set_postfix_str(f"chunk {self.chunk + 1}/{self.chunks}", refresh=False)

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
