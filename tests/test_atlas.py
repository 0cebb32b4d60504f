"""`python -m repalign_jax.atlas`: end to end, resume, bad input, one executable per shape,
the persistent compilation cache, and two processes against one."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import count_compilations

from repalign_jax import atlas
from repalign_jax.atlasmap import COLUMNS

# One shape (the smallest that has a hidden layer to track beside the first), two activations and
# two gains: every code path of a cell, its figures and its resume. 120 epochs, as the sweep and
# pipeline tests: one compiled fit (121 epochs) serves them all.
TINY = [
    "--widths", "8", "--depths", "2", "--archs", "mlp", "--activations", "tanh,relu",
    "--gains", "0.9,1.3", "--epochs", "120", "--quiet",
]  # fmt: skip


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_grid_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "a"
    assert atlas.main(TINY + ["--out", str(out), "--no-compile-cache"]) == 0
    rows = _csv(out / "atlas.csv")
    assert len(rows) == 1 * 2 * 2  # shapes x activations x gains
    assert list(rows[0]) == list(COLUMNS)
    assert {r["activation"] for r in rows} == {"tanh", "relu"}
    for r in rows:
        assert r["diverged"] == "false"
        lam, lr = float(r["lambda_max"]), float(r["lr"])
        np.testing.assert_allclose(lr, 0.1 / lam, rtol=1e-6)  # --lr auto
        assert int(r["epochs_trained"]) <= 120
        assert r["fit_ok"] in ("true", "false")
    for name in ("atlas.md", "config.json", "fit_depth_width_mlp.png", "regime_gain_depth_mlp.png", "rates.png"):
        assert (out / name).exists(), name
    md = (out / "atlas.md").read_text()
    assert "Boundary" in md and "After the transient" in md
    # one definition of "explained" (rj.explains), each curve's R^2 beside it
    assert "explains a run when its fit succeeded and `min(R^2 h, R^2 y, R^2 w) >= 0.9`" in md
    assert "0.95" not in md and "(median R^2 h " in md
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["widths"] == [8] and cfg["depths"] == [2]

    # the same --out again: refused, nothing touched
    before = (out / "atlas.csv").read_bytes()
    assert atlas.main(TINY + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    # --resume: every cell is on disk, nothing is trained again, the same table
    (out / "atlas.csv").unlink()
    assert atlas.main(TINY + ["--out", str(out), "--resume", "--no-plots"]) == 0
    assert (out / "atlas.csv").read_bytes() == before
    # --resume with another grid: refused
    assert atlas.main(TINY[:-1] + ["--epochs", "99", "--quiet", "--out", str(out), "--resume"]) == 2


def test_the_fit_after_the_transient_fits_the_rates_alone():
    """After the transient the output mean has decayed and tau is not determined: the second fit
    leaves the loss out, so a failed tau fit cannot mark a fit of the rates (R^2 ~ 1) as failed
    (the atlas of 2026-11-26 showed 80 such fits as not explained). The tiny grid's shapes (4 runs,
    121 epochs, window 61), so the fit compiled for it above serves."""
    import repalign_jax as rj
    from repalign_jax.atlasmap import _fit_from

    ts = np.arange(121.0)
    rates = rj.EffectiveRates(np.array([0.02, 0.03, 0.02, 0.01]), np.array([0.04, 0.05, 0.08, 0.04]))
    h, y, w = (np.asarray(v)[:, None] for v in rj.solve_effective(1.0, 0.01, 0.0, dx2=1.0, dy2=0.5, rates=rates, ts=ts))
    flat_loss = np.full((4, 1, 121), 1e-7)  # no output-mean transient left to fit tau to
    traj = rj.PairTrajectory(ts, h, y, w, 1.0, 0.5, loss=flat_loss)
    fit = _fit_from(traj, np.full(4, 60), 61)
    assert np.all(np.asarray(fit.success)) and np.all(np.isnan(np.asarray(fit.tau)))
    assert min(np.min(np.asarray(getattr(fit, f"r2_{c}"))) for c in "hyw") > 0.999


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--widths", "8,x"], "--widths"),
        (["--depths", "0"], "--depths"),
        (["--gains", "1.4:0.9"], "--gains"),
        (["--activations", "softplus"], "--activations"),
        (["--archs", "cnn"], "--archs"),
        (["--lr", "fast"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--lr-c", "3"], "--lr-c"),
        (["--fit-from", "soon"], "--fit-from"),
        (["--epochs", "1"], "--epochs"),
        (["--archs", "resnet", "--depths", "1,2"], "empty"),
        (["--coordinator", "127.0.0.1:1"], "go together"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, match):
    out = tmp_path / "bad"
    assert atlas.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_run_cell_is_one_compiled_training_per_shape():
    """Every activation and gain of a shape trains in one batch: one compiled epoch-loop segment
    (JAX's compilation events name it `jit(_segment)`). A shape no other test trains; the epochs
    of TINY, so that the fit compiled there serves, and a loss no run reaches (a run that stops
    shrinks the batch, which compiles a smaller segment)."""
    from repalign_jax.atlasmap import AtlasConfig, run_cell

    cfg = AtlasConfig(
        widths=[8], depths=[3], gains=[0.8, 1.2], activations=["tanh", "relu", "swish"], archs=["mlp"],
        seeds=[0], epochs=120, stop_loss=1e-30, lr="auto", lr_c=0.5, dx2=1.0, dy2=0.5, fit_from=None,
    )  # fmt: skip
    with count_compilations() as compiled:
        a = run_cell(cfg, ("mlp", 8, 3))
    assert compiled.count("jit(_segment)") == 1
    assert len(a["gain"]) == 6 and list(a["activation"][:2]) == ["tanh", "tanh"]
    assert np.all(np.isnan(a["r2_h_after"]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", **extra)
    return env


#: The grid on which a 2-process atlas once differed from a 1-process one in 1 of 16 rows
#: (relu, gain 1.2, width 16: stop epoch 259 against 260, final loss 4% apart).
TWO_PROCESS_GRID = [
    "--widths", "8,16", "--depths", "2", "--archs", "mlp", "--gains", "0.8,1.2", "--activations", "tanh,relu",
    "--seeds", "2", "--epochs", "300", "--lr", "0.05", "--quiet",
]  # fmt: skip


@pytest.mark.slow  # two processes of its own (`jax.distributed`): ~2 minutes of JAX start-up and compilation
def test_two_processes_equal_one(tmp_path):
    """`jax.distributed` with 2 local CPU processes (coordinator on 127.0.0.1): the shapes are divided,
    process 0 gathers, and the atlas equals, bit for bit, a single-process run of the same grid with
    the same number of runs per device.

    Why the device layout must match: each process here has one CPU device and trains a shape's 8 runs
    on it, where one process that splits the 2 cores into 2 devices (`use_host_cores`) shards them 4 and
    4. XLA rounds a float32 reduction differently for a batch of 4 than for 8 (the same runs trained as
    a batch of 8 or of 4 on one device differ by ~1e-6 in h after 300 epochs), which is all the earlier
    1-of-16 difference was: the single-process atlas on one device equals the 2-process one exactly.
    """
    grid = TWO_PROCESS_GRID + ["--no-plots", "--no-compile-cache"]
    single = tmp_path / "one"
    one_device = _env(XLA_FLAGS="--xla_force_host_platform_device_count=1")  # one device, as each process below
    subprocess.run(
        [sys.executable, "-m", "repalign_jax.atlas", *grid, "--out", str(single)], check=True, env=one_device
    )
    multi = tmp_path / "two"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "repalign_jax.atlas",
                *grid,
                "--out",
                str(multi),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    a, b = _csv(single / "atlas.csv"), _csv(multi / "atlas.csv")
    assert len(a) == len(b) == 16
    differ = [(k, c, ra[c], rb[c]) for k, (ra, rb) in enumerate(zip(a, b)) for c in COLUMNS if ra[c] != rb[c]]
    assert not differ, differ[:5]
    assert json.loads((multi / "config.json").read_text())["processes"] == 2


COUNT = """
import collections, json, sys, jax
ev = collections.Counter()
jax.monitoring.register_event_listener(lambda n, **k: ev.update([n]))
from repalign_jax import atlas
rc = atlas.main(sys.argv[1:])
print(json.dumps({"rc": rc, "hits": ev["/jax/compilation_cache/cache_hits"],
                  "misses": ev["/jax/compilation_cache/cache_misses"],
                  "requests": ev["/jax/compilation_cache/compile_requests_use_cache"]}))
"""


@pytest.mark.slow  # a cold persistent cache needs fresh processes (two JAX start-ups)
def test_second_invocation_compiles_nothing(tmp_path):
    """The persistent compilation cache: a second run of the same shapes loads every executable."""
    env = _env(REPALIGN_JAX_CACHE=str(tmp_path / "cache"))
    stats = []
    grid = [
        "--widths",
        "8",
        "--depths",
        "1",
        "--archs",
        "mlp",
        "--activations",
        "tanh",
        "--gains",
        "1.0",
        "--epochs",
        "60",
    ]
    for k in range(2):
        argv = grid + ["--quiet", "--no-plots", "--out", str(tmp_path / f"run{k}")]
        done = subprocess.run([sys.executable, "-c", COUNT, *argv], env=env, capture_output=True, text=True, check=True)
        stats.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert stats[0]["rc"] == stats[1]["rc"] == 0
    assert stats[0]["requests"] > 0 and stats[0]["hits"] < stats[0]["requests"]  # the first run compiled
    assert stats[1]["requests"] > 0 and stats[1]["hits"] == stats[1]["requests"], stats  # the second loaded them all


@pytest.mark.slow
def test_quick_grid(tmp_path):
    """`--quick` end to end: every run stable under --lr auto, files, columns, figures."""
    out = tmp_path / "quick"
    assert atlas.main(["--quick", "--quiet", "--out", str(out), "--no-compile-cache"]) == 0
    rows = _csv(out / "atlas.csv")
    assert len(rows) == 72 and list(rows[0]) == list(COLUMNS)
    assert not [r for r in rows if r["diverged"] == "true"]
    assert sum(r["converged"] == "true" for r in rows) >= 0.9 * len(rows)
    for name in ("fit_depth_width_mlp.png", "fit_depth_width_resnet.png", "regime_depth_width_mlp.png"):
        assert (out / name).exists()
