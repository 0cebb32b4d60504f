"""`repalign_jax._paper`: the paper's settings as data, in the profiles "code" and "paper".

The expected values are transcribed from /work/shared/EXPERIMENTS.md (Table 1, Table 2 and
its last section, "What the authors' code ran", which overrides the printed tables), not
copied from the module.
"""

import copy
import dataclasses

import numpy as np
import pytest

import repalign_jax as rj
from repalign_jax import paper as _paper
from repalign_jax.paper import EXPERIMENTS

# Table 1 of EXPERIMENTS.md: name, nonlinearity, init gain, learning rate, hidden layers.
TABLE1 = [
    ("default", "leaky_relu", 1.0, 0.005, 20),
    ("convolution", "leaky_relu", 0.95, 0.002, 10),
    ("skip connections", "leaky_relu", 0.1, 0.01, 20),
    ("shallow", "leaky_relu", 0.35, 0.01, 2),
    ("narrow (50 units)", "leaky_relu", 1.05, 0.005, 20),
    ("dropout", "leaky_relu", 1.0, 0.005, 10),
    ("linear", "linear", 0.85, 0.00125, 20),
    ("ReLU", "relu", 1.0, 0.005, 20),
    ("ELU", "elu", 0.95, 0.00045, 20),
    ("tanh", "tanh", 0.85, 0.00125, 20),
    ("swish", "swish", 1.7, 0.0025, 20),
    ("low initial weights", "leaky_relu", 0.9, 0.015, 20),
    ("intermediate initial weights", "leaky_relu", 1.1, 0.0025, 20),
    ("high initial weights", "leaky_relu", 1.3, 0.00075, 20),
    ("very high initial weights", "leaky_relu", 1.4, 0.00025, 20),
]


def test_profiles_and_the_default_profile_is_the_authors_code():
    assert _paper.PROFILES == ("code", "paper")
    for name in EXPERIMENTS:
        assert _paper.settings(name) == _paper.settings(name, "code"), name


@pytest.mark.parametrize("profile", ["printed", "Code", "", "tables"])
def test_unknown_profile_is_a_value_error_naming_the_choices(profile):
    with pytest.raises(ValueError, match=r"unknown settings profile .*; choose from code, paper"):
        _paper.settings("xor", profile)
    with pytest.raises(ValueError, match="unknown settings profile"):
        _paper.table1(profile)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_both_profiles_with_the_same_keys(name):
    """A key in one profile only would break the experiment run in the other profile."""
    code, paper = _paper.settings(name, "code"), _paper.settings(name, "paper")
    assert isinstance(code, dict) and isinstance(paper, dict)
    assert set(code) == set(paper), name


@pytest.mark.parametrize("name", ["adam", "random_features"])
def test_experiments_without_an_entry_get_an_empty_dict(name):
    """Documented: the authors' code is silent or the same in both profiles."""
    assert _paper.settings(name, "code") == {} == _paper.settings(name, "paper")
    assert not _paper.differs(name)


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("profile", _paper.PROFILES)
def test_settings_are_fresh_copies(name, profile):
    first = _paper.settings(name, profile)
    expected = copy.deepcopy(first)
    first["added"] = 1
    for key in list(first):
        if isinstance(first[key], dict):
            first[key]["added"] = 1
        first[key] = "changed"
    assert _paper.settings(name, profile) == expected


def test_the_shared_gain_series_is_copied_per_profile():
    """Both profiles of "gains" come from one dict: changing one result changes neither profile."""
    code = _paper.settings("gains", "code")
    code["gains"] = (5.0,)
    code["epochs"] = 1
    assert _paper.settings("gains", "paper")["gains"][0] == 0.9
    assert _paper.settings("gains", "code")["epochs"] == 6000


@pytest.mark.parametrize("profile", _paper.PROFILES)
def test_table1_matches_the_printed_table(profile):
    rows = _paper.table1(profile)
    assert all(isinstance(r, _paper.Table1Row) for r in rows)
    assert [(r.name, r.activation, r.gain, r.lr, r.depth) for r in rows] == TABLE1
    by_name = {r.name: r for r in rows}
    assert by_name["narrow (50 units)"].width == 50
    assert {r.width for r in rows if r.name != "narrow (50 units)"} == {500}
    assert by_name["convolution"].arch == "cnn" and by_name["skip connections"].arch == "resnet"
    assert {r.arch for n, r in by_name.items() if n not in ("convolution", "skip connections")} == {"mlp"}
    assert by_name["dropout"].dropout == 0.1
    assert {r.dropout for n, r in by_name.items() if n != "dropout"} == {0.0}
    assert _paper.settings("universality", profile)["epochs"] == 6000


def test_table1_profiles_differ_only_in_the_tracked_layers():
    """Code: the authors' 'hidden_layer 5' is conv 5 of the CNN and hidden layer 2 of the dropout
    net; printed: 'the hidden layer halfway through the network' for every row."""
    code, paper = _paper.table1("code"), _paper.table1("paper")
    assert all(r.track_layer is None for r in paper)
    assert {r.name: r.track_layer for r in code if r.track_layer is not None} == {"convolution": 5, "dropout": 2}
    for c, p in zip(code, paper):
        assert dataclasses.replace(c, track_layer=None) == p
    assert _paper.differs("universality")
    assert _paper.table1() == code


def test_table1_rows_are_immutable():
    row = _paper.table1()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.gain = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("profile", _paper.PROFILES)
def test_every_row_builds_its_network_and_tracks_one_of_its_layers(profile):
    for row in _paper.table1(profile):
        spec = row.spec()
        assert isinstance(spec, rj.NetworkSpec)
        assert (spec.d_in, spec.d_out) == (1, 1)  # the two-point task
        assert (spec.width, spec.depth, spec.activation, spec.arch, spec.dropout) == (
            row.width,
            row.depth,
            row.activation,
            row.arch,
            row.dropout,
        )
        assert row.activation in rj.ACTIVATION_NAMES
        if row.track_layer is not None:
            assert 0 <= row.track_layer < spec.n_hidden, row.name
    wide = _paper.table1()[0].spec(d_in=3, d_out=2)
    assert (wide.d_in, wide.d_out) == (3, 2)


def test_gain_series_holds_table1s_default_networks_and_the_codes_extra_gains():
    st = _paper.settings("gains")
    series = dict(zip(st["gains"], st["lrs"]))
    assert len(series) == len(st["gains"]) == len(st["lrs"])
    default_arch = [
        r
        for r in _paper.table1()
        if (r.activation, r.arch, r.width, r.depth, r.dropout) == ("leaky_relu", "mlp", 500, 20, 0.0)
    ]
    assert {r.gain for r in default_arch} == {0.9, 1.0, 1.1, 1.3, 1.4}
    for r in default_arch:
        assert series[r.gain] == r.lr, r.name
    assert series[1.2] == 0.00125 and series[1.6] == 1.5e-6  # the code's extra gains
    assert np.all(np.diff(st["gains"]) > 0) and np.all(np.diff(st["lrs"]) < 0)
    assert (st["epochs"], st["width"], st["depth"]) == (6000, 500, 20)
    assert st["track_layer"] == st["depth"] // 2  # the hidden layer halfway through
    assert not _paper.differs("gains")


def test_paper_lr_extrapolates_below_the_series_with_the_first_segment():
    # log-linear through (0.9, 0.015) and (1.0, 0.005): one more step of 0.1 down multiplies by 3
    assert rj.paper_lr(0.8) == pytest.approx(0.045)
    assert rj.paper_lr(0.85) == pytest.approx(0.015 * 3**0.5)
    gains = np.linspace(0.5, 1.8, 27)
    lrs = np.array([rj.paper_lr(g) for g in gains])
    assert np.all(lrs > 0) and np.all(np.diff(lrs) < 0)


def test_xor_profiles_follow_the_authors_notebook():
    code, paper = _paper.settings("xor", "code"), _paper.settings("xor", "paper")
    assert (code["activation"], code["loss"]) == ("relu", "mse")
    assert (paper["activation"], paper["loss"]) == ("leaky_relu", "half_mse")
    # name: (gain, lr, epochs, width, hidden layers)
    assert {n[0]: n[1:] for n in code["nets"]} == {
        "rich": (0.85, 0.015, 3000, 500, 20),
        "intermediate": (1.25, 0.002, 1000, 500, 20),
        "lazy": (2.0, 3e-9, 1000, 500, 20),
        "2 layers": (0.0015, 0.03, 2000, 500, 1),
    }
    assert {n[0]: n[1:] for n in paper["nets"]} == {
        "rich": (0.7, 0.015, 1000, 500, 20),
        "intermediate": (1.25, 0.002, 1000, 500, 20),
        "lazy": (2.0, 3e-9, 1000, 500, 20),
        "2 layers": (0.0015, 0.03, 40000, 500, 1),
    }
    assert _paper.differs("xor")


def test_feature_collapse_profiles_differ_only_in_the_nonlinearity():
    code, paper = _paper.settings("feature_collapse", "code"), _paper.settings("feature_collapse", "paper")
    assert code["activation"] == "leaky_relu" and paper["activation"] == "tanh"
    assert {k: v for k, v in code.items() if k != "activation"} == {k: v for k, v in paper.items() if k != "activation"}
    assert (code["width"], code["depth"], code["batch_size"], code["track_layer"]) == (100, 4, 64, 2)
    assert {n[0]: n[1:] for n in code["nets"]} == {
        "very low weights": (0.275, 0.05, 2000),
        "low weights": (0.5, 0.015, 1500),
        "high weights": (2.0, 0.0015, 750),
    }
    assert _paper.differs("feature_collapse")


def test_digits_profiles():
    code, paper = _paper.settings("digits", "code"), _paper.settings("digits", "paper")
    for st in (code, paper):  # shared by the printed table and the code
        assert (st["depth"], st["gain"], st["track_layer"]) == (4, 0.5, 2)
    assert (code["width"], code["lr"], code["epochs"], code["batch_size"]) == (200, 0.003, 200, 64)
    assert (code["standardise"], code["pair"]) == (True, "random")
    assert (code["structure_optimizer"], code["structure_lr"], code["structure_trials"]) == ("adam", 0.005, 10)
    assert (code["prediction_inputs"], code["prediction_points"]) == ("raw", 10000)
    assert (paper["width"], paper["lr"], paper["epochs"]) == (100, 0.002, 500)
    assert (paper["standardise"], paper["pair"]) == (False, "first")
    # as printed: one SGD network for both figures, the first 100 training digits
    assert (paper["structure_optimizer"], paper["structure_lr"], paper["structure_epochs"]) == (
        "sgd",
        paper["lr"],
        paper["epochs"],
    )
    assert paper["prediction_points"] == 100
    assert _paper.differs("digits")


def test_depth_profiles_keep_table1s_product_of_rate_and_epochs():
    code, paper = _paper.settings("depth", "code"), _paper.settings("depth", "paper")
    assert (code["lr"], code["epochs"]) == (0.01, 3000)
    default = _paper.table1()[0]
    assert (paper["lr"], paper["epochs"]) == (default.lr, 6000)
    assert code["lr"] * code["epochs"] == pytest.approx(paper["lr"] * paper["epochs"])
    assert _paper.differs("depth")


def test_final_distance_profiles():
    code, paper = _paper.settings("final_distance", "code"), _paper.settings("final_distance", "paper")
    for st in (code, paper):  # 50 trials for the rates, a 5 x 5 grid, runs above 1e-3 discarded
        assert (st["n_trials"], st["grid"], st["run_loss_max"]) == (50, 5, 1e-3)
        assert st["fit_epochs"] == _paper.settings("universality")["epochs"]
    assert code["lr_factor"] == pytest.approx(2 / 5)  # "twice Table 1's divided by 5"
    assert (code["epochs"], code["stop_loss"], code["trial_loss_max"]) == (40_000, 1e-4, 1e-2)
    # as printed: "the same hyperparameter settings were used", no discard rule for the rates
    assert (paper["lr_factor"], paper["epochs"], paper["stop_loss"]) == (1.0, 6000, None)
    assert paper["trial_loss_max"] == float("inf")
    assert _paper.differs("final_distance")
