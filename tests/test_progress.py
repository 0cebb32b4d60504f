"""`_progress`: the `Progress` bar, the `Meter` protocol and `report_computed`.

The bar is read the way a user reads it: from the text it writes to its stream.
"""

from __future__ import annotations

import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax._progress import report_computed


def _last_count(text: str) -> tuple[int, int]:
    """The last `done/total` a tqdm bar wrote."""
    counts = re.findall(r"\| (\d+)/(\d+) \[", text)
    assert counts, text
    done, total = counts[-1]
    return int(done), int(total)


def test_progress_counts_steps_done_across_chunks():
    out = io.StringIO()
    bar = rj.Progress(10, chunks=3, stream=out, label="grid")
    bar(4)
    bar.start_chunk(2)  # chunk 2 counts after the 2 chunks before it
    bar(5)
    bar(3)  # an earlier count never moves the bar back
    assert bar.chunk == 2
    bar.close()
    assert _last_count(out.getvalue()) == (25, 30)
    assert "grid" in out.getvalue() and "chunk 3/3" in out.getvalue()


def test_progress_extend_grows_every_chunk():
    out = io.StringIO()
    bar = rj.Progress(10, chunks=3, stream=out)
    bar(10)
    bar.extend(2)  # two more steps per chunk: 12 * 3
    bar.close()
    assert _last_count(out.getvalue()) == (10, 36)


def test_progress_start_chunk_outside_the_meter_is_an_error():
    bar = rj.Progress(5, chunks=2, stream=io.StringIO())
    try:
        with pytest.raises(ValueError, match=r"start_chunk\(2\): this meter has chunks 0\.\.1"):
            bar.start_chunk(2)
        with pytest.raises(ValueError):
            bar.start_chunk(-1)
        assert bar.chunk == 0  # unchanged by the refused calls
    finally:
        bar.close()


def test_a_meter_is_a_progress_or_any_callable_of_an_integer():
    bar = rj.Progress(3, stream=io.StringIO())
    try:
        assert isinstance(bar, rj.Meter)
    finally:
        bar.close()
    assert isinstance([].append, rj.Meter)
    assert isinstance(lambda done: None, rj.Meter)
    assert not isinstance(3, rj.Meter) and not isinstance("bar", rj.Meter)


def test_report_computed_reports_only_once_the_value_is_computed():
    """JAX dispatches asynchronously: the report waits for the value it stands for."""

    @jax.jit
    def slow(a):
        return jax.lax.fori_loop(0, 40, lambda i, m: jnp.tanh(m @ m) / 10.0, a)

    a = jnp.asarray(np.random.default_rng(0).normal(size=(600, 600)), jnp.float32)
    jax.block_until_ready(slow(a))  # compiled, so what follows is the computation alone
    seen = []

    def report(done):
        assert value.is_ready()  # the value exists by the time it is reported
        seen.append(done)

    value = slow(a)  # queued, returns at once
    report_computed(report, value, 7)
    assert seen == [7]


def test_train_networks_reports_to_a_progress_passed_in_and_leaves_it_open():
    d = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=8, depth=3)
    out = io.StringIO()
    bar = rj.Progress(40, stream=out, label="mine")
    res = rj.train_networks(
        d.x, d.targets, spec, rj.TrainConfig(epochs=40, progress_every=10), gains=1.0, seeds=0, lrs=0.05, progress=bar
    )
    assert np.all(np.isfinite(res.h))
    assert not out.getvalue().endswith("\n")  # still open: a closed bar ends its line
    bar.close()
    assert _last_count(out.getvalue()) == (40, 40) and "mine" in out.getvalue()


def test_train_networks_progress_true_draws_its_own_bar(capsys):
    d = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=8, depth=3)
    rj.train_networks(
        d.x, d.targets, spec, rj.TrainConfig(epochs=30, progress_every=10), gains=1.0, seeds=0, lrs=0.05, progress=True
    )
    assert _last_count(capsys.readouterr().err) == (30, 30)
