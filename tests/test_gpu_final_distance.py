"""benchmarks/gpu_final_distance.sh in its --smoke mode: the networks are saved as they finish, the folder
is packed even when the deadline cuts the run short, and a second call reuses what the first saved."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_final_distance.sh"


def _run(out, deadline):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), str(deadline), "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_gpu_final_distance_smoke_saves_packs_and_resumes(tmp_path):
    out = tmp_path / "fd"
    first = _run(out, 600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = out / "final_distance"
    pieces = sorted(p.name for p in folder.glob("*.network.json"))
    assert pieces == ["final_distance_default.network.json", "final_distance_shallow.network.json"]
    numbers = json.loads((folder / "final_distance.json").read_text())
    assert list(numbers["networks"]) == ["default", "shallow"]
    assert numbers["quick"] is True and numbers["network_wall_seconds"] > 0
    with tarfile.open(f"{out}.tar.gz") as tar:
        names = tar.getnames()
    assert "fd/final_distance/final_distance_default.network.json" in names and "fd/log.txt" in names

    (folder / "grid-final_distance_x").mkdir()
    (folder / "grid-final_distance_x" / "grid.snapshot.npz").write_bytes(b"a grid's snapshot")  # ~500 MB on a real run
    second = _run(out, 600)  # everything saved: reused, nothing trained
    assert second.returncode == 0, second.stdout[-3000:]
    assert second.stdout.count("/grid: reusing the saved runs") == 2
    with tarfile.open(f"{out}.tar.gz") as tar:  # snapshots stay out of the archive the device returns
        names = tar.getnames()
    assert "fd/log.txt" in names and not [n for n in names if n.endswith(".snapshot.npz")]
    assert "fd/final_distance/grid-final_distance_default/grid.npz" in names  # the grid's runs travel

    # The deadline stops the run: still packed, exit status says so. At 1 s it falls before any network can
    # finish (JAX's import alone takes longer); at 3 s a warm compilation cache once let the first one finish.
    cut = _run(tmp_path / "cut", 1)
    assert cut.returncode != 0
    assert pathlib.Path(f"{tmp_path / 'cut'}.tar.gz").exists()
    assert not list((tmp_path / "cut" / "final_distance").glob("*.network.json"))
