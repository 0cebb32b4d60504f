"""`repalign_jax._cli`, what the command-line tools share: interrupts, ranges, usage errors."""

import os
import pathlib
import re
import signal

import jax
import pytest

from repalign_jax._cli import (
    ArgParser,
    Interruptible,
    UsageError,
    add_compile_cache_flag,
    describe_machine,
    out_folder,
    parse_range,
    sigterm_to_interrupt,
)


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


# --- parse_range: every documented refusal names the flag, in one line --------------------


@pytest.mark.parametrize(
    "text,match",
    [
        ("1:2:0", r"^--gains: STEP must be positive, got 0$"),
        ("1:2:-0.5", r"^--gains: STEP must be positive, got -0\.5$"),
        ("2:1", r"^--gains: STOP \(1\) is below START \(2\)$"),
        ("1:2:3:4", r"^--gains: cannot read '1:2:3:4'; use START:STOP\[:STEP\] or a comma list$"),
        ("1", None),  # one value is a valid list
        (":", r"cannot read"),
        ("1,x", r"cannot read"),
        (",", r"^--gains: the range is empty$"),
        ("", r"the range is empty"),
        ("0,1", r"^--gains: values must be positive, got '0,1'$"),
        ("-1:1", r"values must be positive"),
        ("nan", r"values must be positive"),
        ("1,inf", r"values must be positive"),
        ("1,2,1", r"^--gains: repeated values in '1,2,1'$"),
        ("1:inf", r"^--gains: START, STOP and STEP must be finite, got '1:inf'$"),
        ("0.1:1e9:1e-3", r"^--gains: '0.1:1e9:1e-3' gives \d+ values, more than 100000; use a larger STEP$"),
    ],
)
def test_parse_range_refusals(text, match):
    if match is None:
        assert parse_range(text, "gains") == [1.0]
        return
    with pytest.raises(UsageError, match=match) as e:
        parse_range(text, "gains")
    assert "\n" not in str(e.value)


def test_parse_range_is_inclusive_on_a_rounded_grid():
    assert parse_range("0.1:0.3:0.1", "gains") == [0.1, 0.2, 0.3]  # no 0.30000000000000004, no lost end
    assert parse_range("1:2", "gains") == [round(1 + k / 10, 10) for k in range(11)]  # default step 0.1
    assert parse_range("1:2:0.5", "gains", default_step=0.01) == [1.0, 1.5, 2.0]  # an explicit step wins
    assert parse_range("1:2:0.3", "gains") == [1.0, 1.3, 1.6, 1.9]  # STOP off the grid: not reached
    assert parse_range("0.5:0.5", "gains") == [0.5]
    assert parse_range(" 2, 1 ,3 ", "gains") == [2.0, 1.0, 3.0]  # a list keeps its order


def test_parse_range_integers():
    got = parse_range("1:7:3", "depths", integer=True)
    assert got == [1, 4, 7] and all(type(v) is int for v in got)
    with pytest.raises(UsageError, match=r"^--depths: values must be integers, got '1.5,2'$"):
        parse_range("1.5,2", "depths", integer=True)
    with pytest.raises(UsageError, match="integers"):
        parse_range("1:2", "depths", integer=True)  # the default step 0.1 gives 1.1, ...


# --- ArgParser, the compile-cache flag, SIGTERM --------------------------------------------


def test_argparse_errors_are_one_line_usage_errors_with_argparses_message():
    p = ArgParser(prog="x")
    p.add_argument("--n", type=int)
    with pytest.raises(UsageError, match=r"argument --n: invalid int value: 'two'") as e:
        p.parse_args(["--n", "two"])
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match=r"unrecognized arguments: --bogus"):
        p.parse_args(["--bogus"])
    assert p.parse_args(["--n", "3"]).n == 3


def test_compile_cache_flag_defaults_to_the_cache_on():
    p = ArgParser(prog="x")
    add_compile_cache_flag(p)
    assert p.parse_args([]).no_compile_cache is False
    assert p.parse_args(["--no-compile-cache"]).no_compile_cache is True


def test_sigterm_handler_raises_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt):
        sigterm_to_interrupt(signal.SIGTERM, None)


def test_interruptible_installs_its_handler_and_restores_a_custom_one():
    def custom(signum, frame):
        raise AssertionError("never called here")

    before = signal.signal(signal.SIGTERM, custom)
    try:
        with pytest.raises(ValueError), Interruptible():
            assert signal.getsignal(signal.SIGTERM) is sigterm_to_interrupt
            raise ValueError
        assert signal.getsignal(signal.SIGTERM) is custom
        with Interruptible() as run:
            raise KeyboardInterrupt
        assert run.interrupted and signal.getsignal(signal.SIGTERM) is custom
    finally:
        signal.signal(signal.SIGTERM, before)


def test_an_interrupted_run_does_not_mark_the_next_one():
    with Interruptible() as first:
        raise KeyboardInterrupt
    with Interruptible() as second:
        pass
    assert first.interrupted and not second.interrupted
    assert Interruptible.interrupted is False


def test_interruptible_lets_other_base_exceptions_through():
    with pytest.raises(SystemExit), Interruptible() as run:
        raise SystemExit(3)
    assert not run.interrupted


# --- describe_machine ------------------------------------------------------------------------


def test_describe_machine_names_cores_jax_backend_and_devices():
    text = describe_machine()
    assert f": {os.cpu_count()} CPU cores; " in text
    assert f"jax {jax.__version__} on {jax.default_backend()} (" in text
    for kind in {d.device_kind for d in jax.devices()}:
        assert kind in text
    assert "\n" not in text


# --- out_folder ------------------------------------------------------------------------------


def test_out_folder_without_out_is_a_fresh_stamped_folder_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, old = out_folder(None, False, "sweep")
    assert old is None
    assert path.parent == pathlib.Path("runs")
    assert re.fullmatch(r"sweep-\d{8}-\d{6}", path.name)
    assert not path.exists()  # chosen, not made


def test_out_folder_article_and_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert out_folder(str(tmp_path / "empty"), False, "sweep") == (tmp_path / "empty", None)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "config.json").write_text('{"seeds": 2}')
    with pytest.raises(
        UsageError, match=r"already holds a sweep; pass --resume to continue it or choose another --out"
    ):
        out_folder(str(tmp_path / "s"), False, "sweep")


def test_out_folder_resume_needs_an_existing_folder(tmp_path):
    with pytest.raises(UsageError, match=r"^--resume: --out .*typo does not exist; nothing to continue$"):
        out_folder(str(tmp_path / "typo"), True, "sweep")
    assert not (tmp_path / "typo").exists()
