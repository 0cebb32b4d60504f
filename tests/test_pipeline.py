"""The application layer's train -> trajectories -> fit pipeline."""

import warnings
from typing import Any

import numpy as np
import pytest

import repalign_jax as rj

DATA = rj.two_point(dx2=1.0, dy2=0.5)
SPEC = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=4)
EPOCHS = 120  # every training here: one compiled fit (121 epochs) serves all the tests


def test_train_and_fit_is_the_three_steps():
    cfg = rj.TrainConfig(epochs=EPOCHS)
    out = rj.train_and_fit(
        DATA.x, DATA.targets, SPEC, cfg, gains=np.array([0.8, 1.0]), seeds=np.array([0, 1]), lrs=0.05
    )
    assert isinstance(out, rj.TrainedAndFitted)
    res = rj.train_networks(
        DATA.x, DATA.targets, SPEC, cfg, gains=np.array([0.8, 1.0]), seeds=np.array([0, 1]), lrs=0.05
    )
    np.testing.assert_array_equal(out.result.h, res.h)
    # A training's records feed the fit: pairs of runs with their loss curve and distances.
    traj = rj.to_pair_trajectory(res, DATA.x, DATA.targets)
    assert traj.loss is not None
    assert traj.h.shape == traj.loss.shape == (2, 1, EPOCHS + 1)
    np.testing.assert_allclose(traj.dx2, [1.0], rtol=1e-6)
    fit = rj.fit_effective_rates(traj)
    assert fit.eta_enc.shape == (2, 1) and np.all(np.isfinite(fit.fit_loss))
    np.testing.assert_allclose(out.fit.eta_dec, fit.eta_dec, rtol=1e-6)
    assert out.trajectory.h.shape == (2, 1, EPOCHS + 1)


def test_train_and_fit_passes_every_training_keyword_on():
    """What `train_networks` takes, `train_and_fit` takes: snapshots out, a training continued from
    one (the result of one call straight through), and an unknown keyword refused as there."""
    cfg = rj.TrainConfig(epochs=EPOCHS, progress_every=30)
    kw: dict[str, Any] = dict(gains=np.array([0.8, 1.0]), seeds=np.array([0, 1]), lrs=0.05, compact=False)
    snapshots = []
    whole = rj.train_and_fit(DATA.x, DATA.targets, SPEC, cfg, checkpoint=snapshots.append, checkpoint_every=0.0, **kw)
    assert snapshots and 0 < int(snapshots[0]["epoch"]) < EPOCHS
    again = rj.train_and_fit(DATA.x, DATA.targets, SPEC, cfg, resume=snapshots[0], **kw)
    np.testing.assert_array_equal(again.result.h, whole.result.h)
    np.testing.assert_array_equal(again.fit.eta_enc, whole.fit.eta_enc)
    with pytest.raises(TypeError, match="no_such_option"):
        rj.train_and_fit(DATA.x, DATA.targets, SPEC, cfg, no_such_option=1, **kw)


def test_train_and_fit_silences_only_fit_warnings():
    cfg = rj.TrainConfig(epochs=EPOCHS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rj.train_and_fit(DATA.x, DATA.targets, SPEC, cfg, gains=1.0, seeds=0, lrs=1e6)  # diverges
        warnings.warn("another warning", RuntimeWarning, stacklevel=1)
    assert bool(out.result.diverged[0]) and not bool(out.fit.success[0, 0])
    assert [w.category for w in caught] == [RuntimeWarning]


def test_run_grid_is_setting_major():
    gains, seeds, lrs = rj.run_grid([0.9, 1.1], [0.01, 0.002], [3, 4, 5])
    assert gains.tolist() == [0.9, 0.9, 0.9, 1.1, 1.1, 1.1]
    assert seeds.tolist() == [3, 4, 5, 3, 4, 5]
    assert lrs.tolist() == [0.01, 0.01, 0.01, 0.002, 0.002, 0.002]
