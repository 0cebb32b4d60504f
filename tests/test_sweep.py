"""`python -m repalign_jax.sweep`: outputs, plateau trend, bad input, resume, several devices."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax import gainsweep, sweep

# Every sweep here runs 120 epochs, so that one compiled fit (trajectories of 121 epochs) serves them all.
TINY = ["--width", "16", "--depth", "4", "--epochs", "120", "--lr", "0.05", "--no-plots", "--quiet"]


def _rows(path):
    with open(path / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_outputs_and_plateau_falls_with_gain(tmp_path, capsys):
    out = tmp_path / "sweep"
    # A network deep and wide enough for the plateau (at 16 x 4 it does not yet fall with the gain),
    # trained at a rate that ends the plateau of gain 0.75 within TINY's 120 epochs.
    argv = ["--gains", "0.75:1.25:0.25", "--seeds", "1", "--width", "64", "--depth", "6", "--epochs", "120"]
    code = sweep.main(argv + ["--lr", "0.1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "eta_enc" in printed and "plateau_epochs" in printed  # the table at the end
    for name in (
        "config.json",
        "summary.csv",
        "trajectories.npz",
        "table.md",
        "hyw.png",
        "loss.png",
        "vs_gain.png",
        "final_h.png",
    ):
        assert (out / name).exists(), name
    rows = _rows(out)
    assert len(rows) == 3
    assert set(sweep.SUMMARY_COLUMNS) <= set(rows[0])
    for r in rows:
        assert r["diverged"] == "false"
        for k in ("eta_enc", "eta_dec", "tau", "r2_y", "h0", "h_final", "h_inf_theory", "final_loss"):
            assert np.isfinite(float(r[k])), k
    plateau = [int(r["plateau_epochs"]) for r in rows]
    assert plateau[0] > plateau[1] > plateau[2], plateau
    traj = np.load(out / "trajectories.npz")
    assert traj["h"].shape == (3, 121) and traj["h_theory"].shape == (3, 121)
    np.testing.assert_allclose(traj["gain"], [0.75, 1.0, 1.25])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["gains"] == [0.75, 1.0, 1.25] and cfg["jax_version"] and cfg["devices"]


def test_paper_learning_rates():
    for g, lr in zip(rj.GAIN_SERIES_GAINS, rj.GAIN_SERIES_LRS):
        assert rj.paper_lr(g) == pytest.approx(lr)
    assert rj.paper_lr(0.95) == pytest.approx(np.sqrt(0.015 * 0.005))
    assert rj.paper_lr(1.5) == pytest.approx(np.sqrt(0.00025 * 1.5e-6))  # between the code's 1.4 and 1.6
    assert rj.paper_lr(1.7) == pytest.approx(1.5e-6 * (1.5e-6 / 0.00025) ** 0.5)  # the 1.4-1.6 slope
    assert sweep.parse_gains("0.9:1.4") == [0.9, 1.0, 1.1, 1.2, 1.3, 1.4]
    assert sweep.parse_gains("0.9,1.1,1.3") == [0.9, 1.1, 1.3]
    assert sweep.parse_gains("1:2:0.5") == [1.0, 1.5, 2.0]
    assert sweep.parse_seeds("3") == [0, 1, 2] and sweep.parse_seeds("0,3,7") == [0, 3, 7]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--gains", "abc"], "cannot read"),
        (["--gains", ""], "empty"),
        (["--gains", "1.4:0.9"], "below START"),
        (["--gains", "0:1"], "positive"),
        (["--gains=-1,1"], "positive"),
        (["--lr", "-0.1"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--arch", "transformer"], "invalid choice"),
        (["--activation", "softsign"], "unknown"),
        (["--hidden-layer", "20"], "outside"),
        (["--seeds", "0"], "at least one"),
        (["--resume"], "--resume needs"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_bad_input_exit_code_2(argv, match, capsys, tmp_path):
    code = sweep.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert match in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # the exit status of `python -m` needs a process of its own
def test_cli_exit_code_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "repalign_jax.sweep", "--gains", "1.4:0.9"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("sweep: error:") and "Traceback" not in proc.stderr


def test_out_holding_another_sweep_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "s"
    assert sweep.main(["--gains", "1.0", "--out", str(out)] + TINY) == 0
    before = (out / "summary.csv").read_bytes()
    assert sweep.main(["--gains", "1.0", "--out", str(out)] + TINY) == 2
    assert "already holds a sweep" in capsys.readouterr().err
    assert sweep.main(["--gains", "1.1", "--out", str(out), "--resume"] + TINY) == 2
    assert "different sweep" in capsys.readouterr().err
    assert (out / "summary.csv").read_bytes() == before


def test_interrupted_sweep_resumes_to_the_same_results(tmp_path, monkeypatch, capsys):
    args = ["--gains", "0.9,1.0,1.1", "--seeds", "1", "--chunk-size", "1"] + TINY
    fresh, broken = tmp_path / "fresh", tmp_path / "broken"
    assert sweep.main(args + ["--out", str(fresh)]) == 0
    real, calls = gainsweep.train_and_fit_chunk, []

    def interrupt_after_one(*a, **kw):  # Ctrl-C after the first chunk has been saved
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(gainsweep, "train_and_fit_chunk", interrupt_after_one)
    assert sweep.main(args + ["--out", str(broken)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in (broken / "chunks").glob("*.npz")) == ["chunk_00000.npz"]
    assert not (broken / "summary.csv").exists()
    monkeypatch.setattr(gainsweep, "train_and_fit_chunk", real)
    assert sweep.main(args + ["--out", str(broken), "--resume"]) == 0
    assert _rows(broken) == _rows(fresh)
    a, b = np.load(fresh / "trajectories.npz"), np.load(broken / "trajectories.npz")
    np.testing.assert_array_equal(a["h"], b["h"])


def test_diverged_runs_are_reported_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "d"
    assert (
        sweep.main(
            [
                "--gains",
                "1.0",
                "--seeds",
                "2",
                "--out",
                str(out),
                "--width",
                "16",
                "--depth",
                "4",
                "--epochs",
                "120",
                "--lr",
                "40",
                "--no-plots",
                "--quiet",
            ]
        )
        == 0
    )
    rows = _rows(out)
    assert all(r["diverged"] == "true" and r["fit_ok"] == "false" for r in rows)


@pytest.mark.slow  # the CPU device count is fixed when JAX starts: a process of its own
def test_forced_multi_device_run_equals_single_device(tmp_path):
    args = ["--gains", "0.9,1.0,1.1", "--seeds", "2"] + TINY
    single = tmp_path / "one"
    assert sweep.main(args + ["--out", str(single)]) == 0
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    multi = tmp_path / "four"
    proc = subprocess.run(
        [sys.executable, "-m", "repalign_jax.sweep", *args, "--out", str(multi)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((multi / "config.json").read_text())["devices"]) == 4
    a, b = np.load(single / "trajectories.npz"), np.load(multi / "trajectories.npz")
    np.testing.assert_allclose(a["h"], b["h"], rtol=1e-6)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    ra, rb = _rows(single), _rows(multi)
    for x, y in zip(ra, rb):
        np.testing.assert_allclose(float(x["eta_enc"]), float(y["eta_enc"]), rtol=1e-4)


def test_out_folder_never_overwrites(tmp_path):
    """`_cli.out_folder`, shared by sweep and atlas: every way an --out folder is refused, in one line."""
    from repalign_jax._cli import UsageError, out_folder

    def refused(*args):
        with pytest.raises(UsageError) as e:
            out_folder(*args)
        return str(e.value)

    assert "needs the --out folder of the atlas" in refused(None, True, "atlas")
    (tmp_path / "file").write_text("x")
    assert "is a file" in refused(str(tmp_path / "file"), False, "sweep")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert "not empty" in refused(str(tmp_path / "busy"), False, "sweep")
    assert out_folder(str(tmp_path / "busy"), True, "sweep") == (tmp_path / "busy", None)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text('{"gains": [1.0]}')
    assert "already holds an atlas; pass --resume" in refused(str(tmp_path / "old"), False, "atlas")
    assert out_folder(str(tmp_path / "old"), True, "atlas") == (tmp_path / "old", {"gains": [1.0]})
    (tmp_path / "old" / "config.json").write_text("{")
    assert "unreadable" in refused(str(tmp_path / "old"), True, "atlas")
    assert out_folder(str(tmp_path / "new"), False, "sweep") == (tmp_path / "new", None)
    assert "does not exist" in refused(str(tmp_path / "missing"), True, "sweep")
