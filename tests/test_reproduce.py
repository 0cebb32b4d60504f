"""`python -m repalign_jax.reproduce`: every experiment in --quick mode.

Each experiment must write its JSON, figures and tables with finite numbers and
every number its claims' tests read (`repalign_jax.paper`, which gives a quick
run no verdict); the tests that hold even at quick sizes are run on the quick
numbers (rich XOR merges the equal-output pairs, feature collapse lowers the
irrelevant-feature variance at low gain). The experiments take from seconds to
a couple of minutes each on 2 cores, so they are marked slow (CI runs them).
"""

import json
import math

import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax import paper as V
from repalign_jax import reproduce
from repalign_jax.paper._common import Context
from repalign_jax.paper.xor import pair_ratios

CACHE: dict = {}  # the default network's rates, fitted once for the whole module


def _run(name, tmp_path_factory, profile="code"):
    out = tmp_path_factory.mktemp(name)
    ctx = Context(out=out, quick=True, seeds=1, progress=False, say=lambda *a: None, cache=CACHE, profile=profile)
    numbers = reproduce.run_experiment(name, ctx)
    assert (out / f"{name}.json").exists()
    assert json.loads((out / f"{name}.json").read_text())["quick"] is True
    assert list(out.glob("*.png")), "no figure written"
    assert "claims" not in numbers  # verdicts come from the claims' tests, not the experiment
    # the tests it was produced under, for the report's pre-registration mark
    assert numbers["claim_digests"] == {c.key: c.digest for c in V.CLAIMS if c.source == name}
    assert numbers["package_version"] and "commit" in numbers
    evaluations = V.evaluate(name, numbers)
    assert evaluations and all(
        e.verdict in (V.Verdict.NOT_RUN, V.Verdict.NOT_TESTABLE, V.Verdict.CANNOT_FAIL) for e in evaluations
    )
    # at full size the tests read these numbers: none may be missing from the quick run's
    full = V.evaluate(name, {**numbers, "quick": False})
    assert not [e for e in full if e.verdict is V.Verdict.NOT_RUN], [e.cause for e in full]
    return numbers, out


def test_a_result_records_the_digests_its_run_started_under(tmp_path, monkeypatch):
    """A test edited while its experiment trains (hours on a CPU) must not be recorded as the one the
    result was produced under: the digests are taken as the run starts, with the commit."""
    from repalign_jax.paper import _claim

    before = {c.key: c.digest for c in V.CLAIMS if c.source == "depth"}

    class Edited:
        @staticmethod
        def run(ctx):
            monkeypatch.setitem(_claim.THRESHOLDS, "EXPLAINED_R2", 0.5)  # every digest changes
            return {}

    monkeypatch.setattr("repalign_jax.paper.reproduce.module", lambda name: Edited)
    ctx = Context(out=tmp_path, quick=True, seeds=1, progress=False, say=lambda *a: None)
    numbers = reproduce.run_experiment("depth", ctx)
    assert numbers["claim_digests"] == before
    assert before != {c.key: c.digest for c in V.CLAIMS if c.source == "depth"}  # the edit did change them


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


def _verdict(numbers, key):
    """`key`'s verdict on quick numbers read as if they were full size."""
    (e,) = V.evaluate_claim(key, {**numbers, "quick": False})
    return e.verdict


def test_unknown_experiment_exit_code_2(capsys):
    assert reproduce.main(["figure99"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment" in err and len(err.strip().splitlines()) == 1
    assert reproduce.main(["xor", "--seeds", "0"]) == 2
    assert reproduce.main(["xor", "--mnist", "/nonexistent/folder"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["final_distance", "--set", "foo=1"], "not a numeric setting"),
        (["final_distance", "--set", "lr_factor=abc"], "expected a number"),
        (["final_distance", "--set", "grid=2.5"], "expected an integer"),
        (["final_distance", "--set", "epochs=0"], "must be positive"),
        (["final_distance", "--set", "lr"], "KEY=VALUE"),
        (["xor", "--set", "lr=1"], "applies to one of"),
        (["all", "--set", "lr=1"], "applies to one of"),
        (["final_distance", "--networks", "default,bogus"], "unknown bogus"),
        (["xor", "--networks", "all"], "applies to universality and final_distance"),
        (["universality", "--networks", "nonet"], "unknown nonet"),
        (["xor", "--settings", "printed"], "invalid choice"),
    ],
)
def test_set_bad_input_exit_code_2_before_any_work(args, message, tmp_path, capsys):
    assert reproduce.main(args + ["--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.json"))  # nothing ran


def test_set_overrides_settings_with_their_types(tmp_path):
    from repalign_jax.paper import final_distance

    ctx = Context(out=tmp_path, quick=False, overrides={"n_trials": "10", "lr_factor": "1", "epochs": "20000"})
    s = final_distance.settings(ctx)
    assert (s["n_trials"], s["lr_factor"], s["epochs"]) == (10, 1.0, 20000)
    assert isinstance(s["n_trials"], int) and isinstance(s["lr_factor"], float)
    code = final_distance.settings(Context(out=tmp_path, quick=False))
    assert {k: v for k, v in s.items() if k not in ("n_trials", "lr_factor", "epochs")} == {
        k: v for k, v in code.items() if k not in ("n_trials", "lr_factor", "epochs")
    }


def test_settings_profiles_are_data_in_one_place():
    """The authors' code (docs/experiments.md, last section) against the printed tables, where they differ."""
    from repalign_jax import paper as _paper

    code, paper = _paper.settings("final_distance", "code"), _paper.settings("final_distance", "paper")
    assert (code["lr_factor"] * 0.005, code["epochs"], code["trial_loss_max"], code["run_loss_max"]) == pytest.approx(
        (0.002, 40000, 1e-2, 1e-3)
    )
    # appendix B.1 as printed: "the same hyperparameter settings" (Table 1's lr and 6000 epochs)
    assert (paper["lr_factor"], paper["epochs"], paper["stop_loss"], paper["run_loss_max"]) == (1.0, 6000, None, 1e-3)
    assert code["seeds_per_point"] == paper["seeds_per_point"] == 10
    xor = _paper.settings("xor", "code")
    assert (xor["activation"], xor["loss"]) == ("relu", "mse")
    assert [n[1:4] for n in xor["nets"]][0] == (0.85, 0.015, 3000) and xor["nets"][3][3] == 2000
    assert _paper.settings("feature_collapse", "code")["activation"] == "leaky_relu"
    assert _paper.settings("feature_collapse", "paper")["activation"] == "tanh"
    rows = {r.name: r for r in _paper.table1("code")}
    assert rows["dropout"].track_layer == 2 and rows["convolution"].track_layer == 5
    assert _paper.differs("xor") and _paper.differs("depth") and not _paper.differs("gains")
    settings = _paper.settings("xor")
    settings["loss"] = "changed"  # a fresh copy each time
    assert _paper.settings("xor")["loss"] == "mse"
    with pytest.raises(ValueError, match="profile"):
        _paper.settings("xor", "printed")


@pytest.mark.slow
def test_gains_quick_saves_the_loss_shape_of_every_run(tmp_path_factory):
    numbers, out = _run("gains", tmp_path_factory)
    assert (out / "summary.csv").exists() and (out / "loss.png").exists()
    assert all(math.isfinite(r["rep_t_half"]) and math.isfinite(r["rep_t_tenth"]) for r in numbers["per_run"])


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["code", "paper"])
def test_xor_quick_rich_merges(profile, tmp_path_factory):
    numbers, _ = _run("xor", tmp_path_factory, profile)
    # the quick stand-in (6 x 100, gain 0.4) merges its equal-target pairs on average (one pair to about 0.06,
    # the other to about 0.33, from 1.5): the property this test checked under the 2026-12-05 rule (mean of the
    # two pairs < 0.3); the claim's rule now asks both pairs below 0.3, which the paper's network, not this
    # stand-in, is judged by
    rich = next(r for r in numbers["table"] if r["network"] == "rich")
    ratios = np.array([pair_ratios(m) for m in rich["measured_per_seed"]])
    assert ratios.mean() < 0.3 and ratios.min() < 0.1, ratios
    assert _verdict(numbers, "xor.rich_merge") in (V.Verdict.REPRODUCED, V.Verdict.NETWORK_DIFFERS)
    assert (numbers["activation"], numbers["loss"]) == {"code": ("relu", "mse"), "paper": ("leaky_relu", "half_mse")}[
        profile
    ]


@pytest.mark.slow
def test_feature_collapse_quick(tmp_path_factory):
    numbers, _ = _run("feature_collapse", tmp_path_factory)
    assert _verdict(numbers, "feature_collapse.rich_collapse") is V.Verdict.REPRODUCED


@pytest.mark.slow
@pytest.mark.parametrize("name", ["universality", "final_distance", "digits", "depth", "adam", "random_features"])
def test_quick_experiment_runs(name, tmp_path_factory):
    numbers, _ = _run(name, tmp_path_factory)
    values = list(_finite_numbers(numbers))
    assert values and sum(math.isfinite(v) for v in values) >= 0.8 * len(values)


def test_final_distance_saves_each_network_and_resumes(tmp_path, monkeypatch):
    """An interrupted `--networks` run keeps its finished networks' grids (a study per network);
    `--resume` reuses them, with the wall time and machine of the run that trained them, and
    refuses a folder saved with other settings (`GridMismatch`); without it everything is retrained."""
    from repalign_jax.paper import final_distance

    calls: list[str] = []
    real_train = rj.train_networks

    def counted_train(x, *args, **kwargs):
        calls.append(f"grid of {len(x)} runs")
        if fail["shallow"] and len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(x, *args, **kwargs)

    def fake_rates(ctx, row, n_trials, epochs, loss_max):  # the rates are a study of their own
        return rj.EffectiveRates(1e-3, 2e-2, 50.0), n_trials

    monkeypatch.setattr(final_distance, "averaged_rates", fake_rates)
    monkeypatch.setattr(rj, "train_networks", counted_train)
    fail = {"shallow": True}

    def ctx(resume, **overrides):
        small = {"grid": "2", "epochs": "200", "seeds_per_point": "1", **overrides}
        return Context(
            out=tmp_path,
            quick=True,
            seeds=1,
            say=lambda *a: None,
            progress=False,
            networks="default,shallow",
            resume=resume,
            overrides=small,
            machine="test machine",
        )

    with pytest.raises(KeyboardInterrupt):
        final_distance.run(ctx(resume=False))
    assert calls == ["grid of 4 runs"] * 2
    assert (tmp_path / "grid-final_distance_default" / "grid.npz").exists()
    assert not (tmp_path / "grid-final_distance_shallow" / "grid.npz").exists()
    first = json.loads((tmp_path / "final_distance_default.network.json").read_text())
    assert first["machine"] == "test machine" and first["wall_seconds"] >= 0

    calls.clear()
    fail["shallow"] = False
    numbers = final_distance.run(ctx(resume=True))
    assert calls == ["grid of 4 runs"]  # the default network's grid reused, the shallow one's trained
    assert list(numbers["networks"]) == ["default", "shallow"]
    default = numbers["networks"]["default"]
    assert default["wall_seconds"] == first["wall_seconds"]
    np.testing.assert_equal(default["per_run"], first["per_run"])  # NaN where it was NaN
    assert {n["machine"] for n in numbers["networks"].values()} == {"test machine"}
    assert [e.network for e in V.evaluate("final_distance", numbers)] == ["default", "shallow"]
    assert numbers["machines"] == ["test machine"]

    calls.clear()
    with pytest.raises(rj.GridMismatch, match="epochs"):  # other settings into the same folder
        final_distance.run(ctx(resume=True, epochs="300"))
    assert calls == []

    final_distance.run(ctx(resume=False))  # without --resume nothing is reused
    assert calls == ["grid of 4 runs"] * 2


def test_resume_into_a_folder_of_other_settings_exits_2(tmp_path, monkeypatch, capsys):
    def other_study(name, ctx):
        raise rj.GridMismatch(ctx.out / "runs", ["epochs"])

    monkeypatch.setattr("repalign_jax.paper.reproduce.run_experiment", other_study)
    assert reproduce.main(["xor", "--resume", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs in epochs" in err and "rerun without --resume" in err


def test_dx_exponent_recovers_a_power_law():
    """`verdicts.dx_exponent` on values c(dy) ||dx||^p is p; discarded and non-positive runs
    and ||dy|| = 0 (the merge points) are left out, a ||dy|| with one ||dx|| cannot give a slope."""
    import numpy as np

    from repalign_jax.paper.stats import dx_exponent

    dx, dy = (g.ravel() for g in np.meshgrid(np.linspace(0.5, 1.5, 5), np.linspace(0.0, 1.0, 5), indexing="ij"))
    for p in (1.0, 0.3, -0.2):
        values = (1 + dy) * dx**p
        values[dy == 0] = 1e-9 * dx[dy == 0] ** 5  # a merge: would bias the slope if it were used
        keep = np.ones(dx.size, bool)
        keep[3] = False
        bad = values.copy()
        bad[~keep] = 1e3  # a discarded run's value must not count
        assert dx_exponent(dx, dy, bad, keep) == pytest.approx(p, abs=1e-12)
    assert np.isnan(dx_exponent([1.0, 1.0], [0.5, 1.0], [0.1, 0.2], [True, True]))


def test_grouped_study_trains_each_shape_once_and_gives_each_setting_its_runs(tmp_path):
    """`_common.grouped_study`: settings of one shape are one group (one `train` call), groups may
    differ in column shapes, every setting gets its own runs in the order given, and `--resume`
    reuses the saved groups without training."""
    from repalign_jax.paper._common import grouped_study

    settings = [("a", 3), ("b", 5), ("c", 3)]  # (name, width): a and c share a shape
    calls = []

    def train(group, progress):
        calls.append([name for name, _ in group])
        width = group[0][1]
        ids = np.repeat([ord(name) for name, _ in group], 2)  # setting-major, 2 runs each
        return {"id": ids, "hidden": np.ones((len(ids), width)) * ids[:, None], "progress": np.full(len(ids), progress)}

    def study(resume):
        ctx = Context(out=tmp_path, quick=True, say=lambda *a: None, progress=False, resume=resume)
        return grouped_study(ctx, "runs", {"study": "test"}, settings, lambda s: s[1], train, 2, 10)

    per_setting = study(resume=False)
    assert calls == [["a", "c"], ["b"]]
    assert [r["id"].tolist() for r in per_setting] == [[97, 97], [98, 98], [99, 99]]
    assert [r["hidden"].shape for r in per_setting] == [(2, 3), (2, 5), (2, 3)]
    assert not any(r["progress"].any() for r in per_setting)  # quiet: no meter
    calls.clear()
    again = study(resume=True)
    assert calls == [] and all(np.array_equal(a["hidden"], b["hidden"]) for a, b in zip(per_setting, again))
