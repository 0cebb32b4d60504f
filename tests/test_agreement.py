"""Slow: the theory explains the paper's default network (issue: agreement, measured).

Default network of docs/experiments.md Table 1: 20 hidden layers of 500 leaky-ReLU
units, gain 1.0, learning rate 0.005, 6000 epochs, dx2 = 1, dy2 = 0.5, hidden
layer 10; three seeds trained as one batch, then fitted (paper Eq. 49). The
authors' own fit of seed 0 reaches R^2 = 0.994 (h), 0.996 (y), 0.94 (w).
"""

import numpy as np
import pytest

import repalign_jax as rj


@pytest.mark.slow
def test_theory_explains_the_default_network():
    data = rj.two_point(dx2=1.0, dy2=0.5)
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=500, depth=20, activation="leaky_relu")
    result = rj.train_networks(
        data.x, data.targets, spec, rj.TrainConfig(epochs=6000), gains=1.0, seeds=np.array([0, 1, 2]), lrs=0.005
    )
    assert not np.any(result.diverged)
    fit = rj.fit_effective_rates(rj.to_pair_trajectory(result, data.x, data.targets))
    for s in range(3):
        print(
            f"seed {s}: eta_enc {float(fit.eta_enc[s, 0]):.3e} eta_dec {float(fit.eta_dec[s, 0]):.3e} "
            f"tau {float(fit.tau[s, 0]):.1f} R2 h {float(fit.r2_h[s, 0]):.4f} y {float(fit.r2_y[s, 0]):.4f} "
            f"w {float(fit.r2_w[s, 0]):.4f} loss {float(fit.r2_loss[s, 0]):.4f}"
        )
    assert np.all(fit.success)
    assert np.all(np.asarray(fit.r2_h) >= 0.98)
    assert np.all(np.asarray(fit.r2_y) >= 0.98)
    assert np.all(np.asarray(fit.r2_w) >= 0.9)
    assert np.all(np.asarray(fit.r2_loss) >= 0.9)
    # The paper's scale: the encoder learns much more slowly than the decoder.
    assert np.all((np.asarray(fit.eta_enc) > 1e-4) & (np.asarray(fit.eta_enc) < 1e-2))
    assert np.all(np.asarray(fit.eta_dec) > 10 * np.asarray(fit.eta_enc))
