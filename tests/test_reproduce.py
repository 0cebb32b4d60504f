"""`python -m repalign_jax.reproduce`: every experiment in --quick mode.

Each experiment must write its JSON, figures and tables with finite numbers and
every number its claims' tests read (`repalign_jax.verdicts`, which gives a quick
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
from repalign_jax import reproduce
from repalign_jax import verdicts as V
from repalign_jax.experiments._common import Context

CACHE: dict = {}  # the default network's rates, fitted once for the whole module


def _run(name, tmp_path_factory, profile="code"):
    out = tmp_path_factory.mktemp(name)
    ctx = Context(out=out, quick=True, seeds=1, progress=False, say=lambda *a: None, cache=CACHE, profile=profile)
    numbers = reproduce.run_experiment(name, ctx)
    assert (out / f"{name}.json").exists()
    assert json.loads((out / f"{name}.json").read_text())["quick"] is True
    assert list(out.glob("*.png")), "no figure written"
    assert "claims" not in numbers  # verdicts come from repalign_jax.verdicts, not the experiment
    evaluations = V.evaluate(name, numbers)
    assert evaluations and all(
        e.verdict in (V.Verdict.NOT_RUN, V.Verdict.NOT_TESTABLE, V.Verdict.CANNOT_FAIL) for e in evaluations
    )
    # at full size the tests read these numbers: none may be missing from the quick run's
    full = V.evaluate(name, {**numbers, "quick": False})
    assert not [e for e in full if e.verdict is V.Verdict.NOT_RUN], [e.cause for e in full]
    return numbers, out


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
        (["xor", "--resume"], "--resume applies to final_distance"),
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
    from repalign_jax.experiments import final_distance

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
    from repalign_jax import _paper

    code, paper = _paper.settings("final_distance", "code"), _paper.settings("final_distance", "paper")
    assert (code["lr_factor"] * 0.005, code["epochs"], code["trial_loss_max"], code["run_loss_max"]) == pytest.approx(
        (0.002, 40000, 1e-2, 1e-3)
    )
    # appendix B.1 as printed: "the same hyperparameter settings" (Table 1's lr and 6000 epochs)
    assert (paper["lr_factor"], paper["epochs"], paper["stop_loss"], paper["run_loss_max"]) == (1.0, 6000, None, 1e-3)
    assert code["seeds_per_point"] == paper["seeds_per_point"] == 3
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
    assert all(math.isfinite(r["rep_t_half"]) for r in numbers["per_run"])


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["code", "paper"])
def test_xor_quick_rich_merges(profile, tmp_path_factory):
    numbers, _ = _run("xor", tmp_path_factory, profile)
    assert _verdict(numbers, "xor.rich_merge") is V.Verdict.REPRODUCED
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


def _fake_network_numbers(per_run: dict, kept: int, pearson=1.0, slope=1.0, trials=50) -> dict:
    """What `final_distance.run_network` returns, for stubs (the verdict reads `per_run`)."""
    return {
        "runs": len(per_run["dx"]),
        "converged": int(sum(per_run["converged"])),
        "kept": kept,
        "per_run": per_run,
        "fit": {"pearson": pearson, "slope": slope, "intercept": 0.0},
        "settings": {"run_loss_max": 1e-3},
        "rate_trials": trials,
        "rate_trials_kept": kept,
        "rate_ratio": 0.05,
    }


def test_final_distance_saves_each_network_and_resumes(tmp_path, monkeypatch):
    """An interrupted `--networks` run keeps its finished networks; `--resume` reuses them (and the
    fitted rates) when their settings match, and recomputes them when they do not."""
    import repalign_jax as rj
    from repalign_jax.experiments import final_distance

    calls = []

    def fake_rates(ctx, row, n_trials, epochs, loss_max):
        calls.append(("rates", row.name))
        return rj.EffectiveRates(1e-3, 2e-2, 50.0), n_trials

    def fake_network(ctx, row, s, stem, key=None):
        calls.append(("network", row.name))
        if row.name == "shallow" and fail["shallow"]:
            raise KeyboardInterrupt
        rates, kept = final_distance.network_rates(ctx, row, s, stem)
        dx, dy = [0.5, 1.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]
        per_run = {
            "dx": dx,
            "dy": dy,
            "h0": [0.01] * 4,
            "measured": [a**0.5 for a in dx],
            "predicted": dx,
            "converged": [True] * 4,
        }
        return {**_fake_network_numbers(per_run, kept), "converged": 3}

    monkeypatch.setattr(final_distance, "averaged_rates", fake_rates)
    monkeypatch.setattr(final_distance, "run_network", fake_network)
    fail = {"shallow": True}

    def ctx(resume, **overrides):
        return Context(
            out=tmp_path,
            quick=True,
            seeds=2,
            say=lambda *a: None,
            networks="default,shallow",
            resume=resume,
            overrides=overrides,
            machine="test machine",
        )

    with pytest.raises(KeyboardInterrupt):
        final_distance.run(ctx(resume=False))
    assert calls == [("network", "default"), ("rates", "default"), ("network", "shallow")]
    saved = json.loads((tmp_path / "final_distance_default.network.json").read_text())
    assert saved["machine"] == "test machine" and saved["wall_seconds"] >= 0 and saved["key"]["quick"] is True
    assert (tmp_path / "final_distance_default.rates.json").exists()

    calls.clear()
    fail["shallow"] = False
    numbers = final_distance.run(ctx(resume=True))
    assert calls == [("network", "shallow"), ("rates", "shallow")]  # default reused whole
    assert list(numbers["networks"]) == ["default", "shallow"]
    # each network keeps its own wall time and machine (the reused default's is the first run's)
    assert numbers["networks"]["default"]["wall_seconds"] == saved["wall_seconds"]
    assert numbers["networks"]["default"]["h_dx_exponent"] == pytest.approx({"measured": 0.5, "predicted": 1.0})
    assert {n["machine"] for n in numbers["networks"].values()} == {"test machine"}
    assert [e.network for e in V.evaluate("final_distance", numbers)] == ["default", "shallow"]
    assert numbers["kept_fraction"] == pytest.approx(6 / 8) and numbers["machines"] == ["test machine"]

    calls.clear()
    final_distance.run(ctx(resume=True, grid="4"))  # other grid: networks recomputed, the rates reused
    assert calls == [("network", "default"), ("network", "shallow")]

    calls.clear()
    final_distance.run(ctx(resume=True, n_trials="3"))  # other trials: both pieces recomputed
    assert calls == [("network", "default"), ("rates", "default"), ("network", "shallow"), ("rates", "shallow")]

    calls.clear()
    final_distance.run(ctx(resume=False))  # without --resume nothing is reused
    assert calls == [("network", "default"), ("rates", "default"), ("network", "shallow"), ("rates", "shallow")]


def test_dx_exponent_recovers_a_power_law():
    """`verdicts.dx_exponent` on values c(dy) ||dx||^p is p; discarded and non-positive runs
    and ||dy|| = 0 (the merge points) are left out, a ||dy|| with one ||dx|| cannot give a slope."""
    import numpy as np

    from repalign_jax.verdicts import dx_exponent

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


def test_final_distance_grid_continues_from_its_snapshot(tmp_path, monkeypatch):
    """An interrupted grid keeps its snapshot file; with `--resume` the grid continues from it and
    gives the uninterrupted runs exactly; a snapshot saved with other settings is not used."""
    from repalign_jax.experiments import final_distance

    row = rj.Table1Row("small", "leaky_relu", gain=1.0, lr=0.05, depth=3, width=16)
    dxs, dys, seeds = np.array([0.5, 1.0]), np.array([0.0, 0.5, 1.0]), np.arange(1)
    args = (row, dxs, dys, seeds, 0.02, 2000, 1e-4, 1e-3)
    say = []

    def ctx(resume):
        return Context(out=tmp_path, quick=True, say=say.append, progress=False, resume=resume)

    whole = final_distance.train_grid(ctx(False), *args)
    path, key = tmp_path / "g.grid.npz", {"settings": 1}
    monkeypatch.setattr(final_distance, "GRID_SNAPSHOT_EVERY", 0.0)
    saves = []
    real_save = final_distance.atomic_save_npz

    def save_then_stop(p, arrays, **kw):
        real_save(p, arrays, **kw)
        saves.append(int(arrays["epoch"]))
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(final_distance, "atomic_save_npz", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        final_distance.train_grid(ctx(False), *args, checkpoint=(path, key))
    assert path.exists()
    monkeypatch.setattr(final_distance, "atomic_save_npz", real_save)

    say.clear()
    again = final_distance.train_grid(ctx(True), *args, checkpoint=(path, key))
    assert any(f"continuing the grid after epoch {saves[-1]}" in s for s in say)
    for f in ("h0", "y0", "h_final", "h_at_tol", "epoch_at_tol", "final_loss", "converged"):
        assert np.array_equal(getattr(whole, f), getattr(again, f), equal_nan=True), f

    say.clear()
    final_distance.train_grid(ctx(True), *args, checkpoint=(path, {"settings": 2}))
    assert any("saved with other settings" in s for s in say)
