"""The GPU measurement suite (benchmarks/gpu_suite.py) runs end to end in its --smoke mode.

The suite is meant for a GPU machine, where there is little time to debug it; the
smoke mode runs every section's code path with tiny sizes, here on the CPU, in a
subprocess (the suite sets up JAX itself) into a temporary folder.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.slow
def test_gpu_suite_smoke(tmp_path):
    out = tmp_path / "suite"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--part", "all", "--out", str(out), "--smoke"]
    if not HAS_TORCH:
        cmd.append("--no-torch")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # A section that failed is listed at the end of the suite's output: show it, not a missing file.
    assert "Failures:" not in proc.stdout, proc.stdout[proc.stdout.index("Failures:") :]

    for name in (
        "env.json",
        "env.txt",
        "part1.json",
        "part2.json",
        "part1.log",
        "part2.log",
        "summary.json",
        "summary.md",
        "throughput.png",
        "fit.png",
        "precision.png",
        "precision_float64.npz",
        "reproduce/universality/universality.json",
        "reproduce/universality/universality.png",
    ):
        assert (out / name).is_file(), name

    env_json = json.loads((out / "env.json").read_text())
    for key in ("devices", "backend", "versions", "driver", "summary"):
        assert key in env_json
    assert {"jax", "jaxlib", "flax", "torch"} <= set(env_json["versions"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is True
    assert summary["status"] == {
        "train_throughput": "ok",
        "fit": "ok",
        "headroom": "ok",
        "precision": "ok",
        "universality": "ok",
    }
    sections = {k: v for part in summary["parts"].values() for k, v in part["sections"].items()}
    for sec in sections.values():
        assert sec["errors"] == [] and sec["wall_s"] > 0

    tp = sections["train_throughput"]
    methods = {r["method"] for r in tp["rows"]}
    assert {"jax vmap", "jax loop of jitted single runs", "jax vmap (largest G)"} <= methods
    if HAS_TORCH:
        assert {"torch eager loop", "torch hand-batched (baddbmm)"} <= methods
        assert tp["ratios"]["vmap_over_torch_eager"] > 0 and tp["ratios"]["vmap_over_best_torch_batched"] > 0
    for r in tp["rows"]:
        assert r["model_steps_per_s"] > 0 and r["roofline_fraction"] > 0
    assert tp["roofline_steps_per_s"] > 0 and tp["bandwidth_Bps"] > 0
    assert tp["largest_g"]["fitted"] >= 1 and tp["largest_g"]["package_chunk"] >= 1
    headroom = sections["headroom"]
    if env_json["backend"] == "cpu":  # on a GPU the smoke sizes leave no room above the largest G: skipped
        assert headroom["probe"]["fits"] is True
    else:
        assert headroom.get("probe") or headroom.get("skipped")

    fit = sections["fit"]
    assert [r["n"] for r in fit["runs"]] == [10, 20]
    for r in fit["runs"]:
        assert r["ms_per_trajectory"] > 0 and 0 <= r["success_rate"] <= 1 and r["success"] >= 0.9 * r["n"]

    prec = sections["precision"]
    assert set(prec["variants"]) == {"highest", "default"}
    assert prec["float64"]["dtype"] == "float64"
    for v in prec["variants"].values():
        assert 0 <= v["max_dev_y"] < (1e-2 if env_json["backend"] == "cpu" else 1.0)  # CPU: both are full float32

    uni = sections["universality"]
    split = uni["split"]
    assert split["total_s"] > 0 and split["compile_s"] > 0 and split["training_s"] >= 0 and split["fitting_s"] >= 0
    assert (
        abs(split["compile_s"] + split["training_s"] + split["fitting_s"] + split["other_s"] - split["total_s"]) < 1e-6
    )
    assert uni["train_calls"] and uni["fit_calls"] and uni["return_code"] == 0
    assert uni["result"]["rows"] == 3

    assert set(summary["headline"]) >= {"train", "universality", "fit", "precision"}
    md = (out / "summary.md").read_text()
    for title in ("Training throughput", "Table-1 study", "Fitting", "Precision"):
        assert title in md
