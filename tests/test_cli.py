"""`repalign_jax._cli`, what the command-line tools share: interrupts, ranges, usage errors."""

import os
import signal

import pytest

from repalign_jax._cli import ArgParser, Interruptible, UsageError, parse_range


def test_sigterm_stops_the_block_like_ctrl_c_and_the_handler_is_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    done = []
    with Interruptible() as run:
        done.append("first")  # saved before the signal
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("never")
    assert run.interrupted and done == ["first"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert run.resume_hint("sweep", "2 of 5 chunk(s)", "runs/x") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sweep: interrupted; 2 of 5 chunk(s) are saved in runs/x; "
        "continue with: python -m repalign_jax.sweep ... --out runs/x --resume"
    ]


def test_a_block_that_finishes_or_fails_otherwise_is_not_interrupted():
    with Interruptible() as run:
        pass
    assert not run.interrupted
    with pytest.raises(ValueError), Interruptible() as run:
        raise ValueError("not an interrupt: passes through")
    assert not run.interrupted


def test_keyboard_interrupt_is_caught_and_the_hint_names_where_things_are(capsys):
    with Interruptible() as run:
        raise KeyboardInterrupt
    assert run.interrupted
    run.resume_hint("atlas", "finished shapes", "out", where="out/cells")
    assert "finished shapes are saved in out/cells; continue with: python -m repalign_jax.atlas ... --out out" in (
        capsys.readouterr().err
    )


def test_argparse_errors_are_usage_errors():
    p = ArgParser(prog="x")
    p.add_argument("--n", type=int)
    with pytest.raises(UsageError):
        p.parse_args(["--n", "two"])


def test_parse_range_inclusive_and_bad_input():
    assert parse_range("0.9:1.1:0.1", "gains") == pytest.approx([0.9, 1.0, 1.1])
    assert parse_range("1,3", "depths", integer=True, default_step=1) == [1, 3]
    with pytest.raises(UsageError):
        parse_range("a:b", "gains")
