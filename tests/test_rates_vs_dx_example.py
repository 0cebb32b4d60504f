"""examples/rates_vs_dx.py: fits at each ||dx||, saves as it goes, refuses bad input in one line."""

import importlib.util
import json
import math
import pathlib

import pytest

PATH = pathlib.Path(__file__).parent.parent / "examples" / "rates_vs_dx.py"


def _module():
    spec = importlib.util.spec_from_file_location("rates_vs_dx", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rates_at_each_dx(tmp_path, capsys):
    out = tmp_path / "rates.json"
    args = ["--networks", "shallow", "--seeds", "2", "--epochs", "1500", "--dx", "0.75,1", "--out", str(out)]
    assert _module().main(args) == 0
    numbers = json.loads(out.read_text())["shallow"]
    assert [r["dx"] for r in numbers] == [0.75, 1.0]
    at_1 = numbers[1]
    assert at_1["explained"] == 2  # the shallow network learns in 1500 epochs at ||dx|| = 1
    assert at_1["ratio_mean"] == pytest.approx(at_1["eta_enc"] / at_1["eta_dec"], rel=0.2)
    assert all(math.isfinite(v) and v > 0 for v in (at_1["eta_enc"], at_1["eta_dec"]))
    assert "shallow" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--networks", "nope"], ["--dx", "a"], ["--seeds", "0"]])
def test_bad_input_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as e:
        _module().main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rates_vs_dx: error:") and len(err.strip().splitlines()) == 1
