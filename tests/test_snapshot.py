"""`train_networks(checkpoint=..., resume=...)`: a training interrupted after any snapshot and
continued from it gives the uninterrupted result bit for bit (float64), in every loop: plain,
`stop_loss` with and without compaction, per-run data, several chunks, several devices."""

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax.results import atomic_save_npz, load_npz

SPEC = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3)
# Stop epochs spread from ~100 to never (3000) and one run that diverges: the batch shrinks
# twice under compaction and keeps a diverged run's NaN records.
LRS = np.array([0.3, 0.1, 0.03, 0.01, 0.005, 0.003, 0.002, 50.0])
GAINS = np.array([0.5, 0.8, 1.0, 1.2, 1.4, 0.9, 1.1, 0.6])
FIELDS = ("loss", "h", "y", "w", "diverged", "diverged_epoch", "stop_epoch", "hidden_initial", "hidden_final")


class Interrupted(Exception):
    pass


def _data(per_run: bool):
    d = rj.two_point(dx2=1.0, dy2=0.5)
    if not per_run:
        return d.x, d.targets
    return np.stack([d.x * (1 + 0.1 * i) for i in range(len(LRS))]), np.stack([d.targets] * len(LRS))


def _assert_same(a, b):
    for f in FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        assert (va is None) == (vb is None), f
        if va is not None:
            assert va.shape == vb.shape and np.array_equal(va, vb, equal_nan=True), f


def _snapshots(x, t, config, **kw):
    """Every snapshot of one training (taken after every segment and chunk), and its result."""
    snaps = []
    res = rj.train_networks(x, t, SPEC, config, checkpoint=snaps.append, checkpoint_every=0, **kw)
    return snaps, res


CASES = {
    "plain": (rj.TrainConfig(epochs=300, progress_every=100), dict(compact=False), False),
    "plain, chunks of 3": (rj.TrainConfig(epochs=300, progress_every=100), dict(chunk_size=3), False),
    "stop_loss": (rj.TrainConfig(epochs=3000, progress_every=500, stop_loss=1e-4), dict(compact=False), False),
    "stop_loss, compact": (rj.TrainConfig(epochs=3000, progress_every=500, stop_loss=1e-4), dict(compact=True), False),
    "stop_loss, compact, per-run data, keep_hidden": (
        rj.TrainConfig(epochs=3000, progress_every=500, stop_loss=1e-4, keep_hidden=True),
        dict(compact=True),
        True,
    ),
    "stop_loss, compact, chunks of 5": (
        rj.TrainConfig(epochs=3000, progress_every=500, stop_loss=1e-4),
        dict(compact=True, chunk_size=5),
        False,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_resuming_from_any_snapshot_gives_the_uninterrupted_training(x64, case):
    config, kw, per_run = CASES[case]
    x, t = _data(per_run)
    kw: dict[str, Any] = dict(gains=GAINS, seeds=np.arange(len(LRS)), lrs=LRS, **kw)
    whole = rj.train_networks(x, t, SPEC, config, **kw)
    snaps, res = _snapshots(x, t, config, **kw)
    _assert_same(whole, res)  # taking snapshots changes nothing
    assert len(snaps) >= 2
    if "compact" in case:  # some snapshot holds a batch that has shrunk
        assert any(len(s["active"]) < len(LRS) for s in snaps if "active" in s)
        assert any("parked.0.idx" in s for s in snaps)
    if "chunks" in case:  # some snapshot lies between chunks, some within the second
        assert any("epoch" not in s and int(s["chunk"]) > 0 for s in snaps)
        assert any("epoch" in s and int(s["chunk"]) > 0 for s in snaps)
    for snap in snaps:
        _assert_same(whole, rj.train_networks(x, t, SPEC, config, resume=snap, **kw))


def test_an_interrupted_training_resumes_from_its_saved_file(x64, tmp_path):
    """The round trip a caller makes: save every snapshot to a file, lose the process, load, continue."""
    config = rj.TrainConfig(epochs=3000, progress_every=500, stop_loss=1e-4)  # the "stop_loss" case's
    x, t = _data(False)
    kw: dict[str, Any] = dict(gains=GAINS, seeds=np.arange(len(LRS)), lrs=LRS)
    path = tmp_path / "grid.npz"
    saved = []

    def save(snap):
        atomic_save_npz(path, snap)
        saved.append(int(snap["epoch"]))
        if len(saved) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        rj.train_networks(x, t, SPEC, config, checkpoint=save, checkpoint_every=0, **kw)
    assert saved == [500, 1000, 1500]
    progress = []
    res = rj.train_networks(x, t, SPEC, config, resume=load_npz(path), progress=progress.append, **kw)
    _assert_same(rj.train_networks(x, t, SPEC, config, **kw), res)
    assert progress[0] == 2000  # the resumed training starts after the saved epochs


def test_snapshots_wait_for_checkpoint_every():
    x, t = _data(False)
    snaps = []
    config = rj.TrainConfig(epochs=300, progress_every=50)
    rj.train_networks(x, t, SPEC, config, gains=1.0, lrs=0.05, checkpoint=snaps.append, checkpoint_every=3600)
    assert snaps == []  # none due within an hour; and none after the last segment
    rj.train_networks(x, t, SPEC, config, gains=1.0, lrs=0.05, checkpoint=snaps.append, checkpoint_every=0)
    assert [int(s["epoch"]) for s in snaps] == [50, 100, 150, 200, 250]


def test_a_snapshot_of_another_training_is_refused():
    x, t = _data(False)
    config = rj.TrainConfig(epochs=300, progress_every=100)
    snaps = []
    rj.train_networks(x, t, SPEC, config, gains=1.0, lrs=0.05, checkpoint=snaps.append, checkpoint_every=0)
    with pytest.raises(rj.SnapshotMismatch, match="another training"):
        rj.train_networks(x, t, SPEC, config, gains=1.0, lrs=0.04, resume=snaps[0])
    with pytest.raises(rj.SnapshotMismatch, match="another training"):
        rj.train_networks(
            x, t, SPEC, rj.TrainConfig(epochs=400, progress_every=100), gains=1.0, lrs=0.05, resume=snaps[0]
        )
    with pytest.raises(ValueError, match="not a snapshot"):
        rj.train_networks(x, t, SPEC, config, gains=1.0, lrs=0.05, resume={"epoch": np.asarray(100)})


DEVICES = """
import json
import jax
import numpy as np
import repalign_jax as rj
rj.use_host_cores(2)
jax.config.update("jax_enable_x64", True)
d = rj.two_point(dx2=1.0, dy2=0.5)
spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3)
lrs = np.array([0.3, 0.1, 0.03, 0.01, 0.005, 0.003, 0.002])
x, t = np.stack([d.x] * 7), np.stack([d.targets] * 7)
config = rj.TrainConfig(epochs=3000, progress_every=200, stop_loss=1e-4)
kw = dict(gains=1.0, seeds=np.arange(7), lrs=lrs, compact=True)
whole = rj.train_networks(x, t, spec, config, **kw)
snaps = []
rj.train_networks(x, t, spec, config, checkpoint=snaps.append, checkpoint_every=0, **kw)
same = []
for s in snaps:
    r = rj.train_networks(x, t, spec, config, resume=s, **kw)
    same.append(all(np.array_equal(getattr(whole, f), getattr(r, f), equal_nan=True) for f in ("loss", "h", "stop_epoch")))
print(json.dumps({"devices": len(jax.devices()), "active": sorted({len(s["active"]) for s in snaps}), "same": same}))
"""


@pytest.mark.slow  # the CPU device count is fixed when JAX starts: a process of its own
def test_resuming_over_host_devices_gives_the_uninterrupted_training():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", DEVICES], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    assert min(got["active"]) < 7 and all(n % 2 == 0 for n in got["active"] if n < 7)  # shrunk, padded to 2
    assert got["same"] and all(got["same"])
