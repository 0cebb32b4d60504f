"""benchmarks/torch_side_by_side.py: in its --quick mode both frameworks train the same trajectories.

The script trains the authors' PyTorch `MLP` and the package's network from the
same initial weights in float64 (gain 1.3 for a fixed number of epochs; gain 1
on three two-point tasks until the loss is below 1e-4). Its numbers mean
something only if the two sides are the same computation: here `h` (and `y`, `w`,
the loss) must agree to 1e-8 of their range, the stop epochs must be equal, and
the JSON must hold what the report reads. Skipped when PyTorch is not installed.
"""

import importlib.util
import json
import pathlib

import jax
import pytest

pytest.importorskip("torch")

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "torch_side_by_side.py"


def _module():
    spec = importlib.util.spec_from_file_location("torch_side_by_side", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_agrees_with_pytorch(tmp_path, capsys):
    import torch

    out = tmp_path / "side_by_side.json"
    x64, dtype = bool(jax.config.read("jax_enable_x64")), torch.get_default_dtype()
    assert _module().main(["--quick", "--seeds", "2", "--out", str(out)]) == 0
    # The script switches float64 on for itself and leaves the process as it found it.
    assert bool(jax.config.read("jax_enable_x64")) == x64 and torch.get_default_dtype() == dtype
    assert "### Part 1" in capsys.readouterr().out
    result = json.loads(out.read_text())

    assert {"machine", "part1", "part2", "wall_s", "quick", "dtype"} <= set(result)
    assert result["quick"] is True and result["dtype"] == "float64"
    assert {"platform", "cpu_count", "torch", "jax"} <= set(result["machine"])

    p1 = result["part1"]
    assert {"settings", "marks", "runs", "wall_s"} <= set(p1)
    assert p1["settings"]["gain"] == 1.3 and p1["settings"]["epochs"] == 100
    assert [r["seed"] for r in p1["runs"]] == [0, 1]
    for run in p1["runs"]:
        for name in ("torch", "jax"):
            assert {"h_at", "rel_fall", "h_min", "h_min_epoch"} <= set(run[name])
            assert set(run[name]["h_at"]) == {"0", "100"}
            assert len(run["records"][name]["h"]) == 101
        for key, err in run["max_abs_diff_over_range"].items():
            assert err < 1e-8, f"part 1 seed {run['seed']}: {key} deviates by {err:.2e} of its range"
        torch_h = run["records"]["torch"]["h"]
        assert max(torch_h) - min(torch_h) > 1e-3 * max(torch_h), "h does not move: the comparison is vacuous"

    p2 = result["part2"]
    assert {"settings", "runs", "slopes", "slope_of_seed_mean", "wall_s"} <= set(p2)
    assert [r["dx"] for r in p2["runs"]] == [0.5, 1.0, 1.5]
    assert any(r["torch"]["stop_epoch"] < p2["settings"]["budget"] for r in p2["runs"]), "no run met the stop rule"
    for run in p2["runs"]:
        assert run["torch"]["stop_epoch"] == run["jax"]["stop_epoch"]
        assert run["h_max_abs_diff_over_range"] < 1e-8
        assert abs(run["h_final_rel_diff"]) < 1e-8
    assert abs(p2["slopes"][0]["torch"] - p2["slopes"][0]["jax"]) < 1e-6

    # the Markdown section that `reproduce report --include` appends: the findings, then the tables
    md = out.with_suffix(".md").read_text()
    assert md.startswith("## PyTorch side by side") and "- Part 1: " in md and "- Part 2: " in md
    assert "### Part 1" in md and "### Part 2" in md
    out.with_suffix(".md").unlink()
    assert _module().main(["--render", str(out)]) == 0  # re-rendered from the JSON, no training
    assert out.with_suffix(".md").read_text() == md


def test_findings_read_the_saved_numbers():
    run = {"max_abs_diff_over_range": {"h": 1e-15, "y": 2e-15}, "torch": {"rel_fall_to_min": -0.3, "h_min_epoch": 300}}
    runs2 = [{"h_final_rel_diff": 1e-15, "stop_epoch_diff": 0}, {"h_final_rel_diff": -3e-15, "stop_epoch_diff": 2}]
    result = {"part1": {"runs": [run]}, "part2": {"runs": runs2, "slope_of_seed_mean": {"torch": 0.37, "jax": 0.37}}}
    one, two = _module().findings(result)
    assert "by 30% to 30%" in one and "epochs 300-300" in one and "2.0e-15" in one
    assert "3.0e-15" in two and "not all identical" in two and "||dx||^0.37" in two
