"""The learning rate of the paper's default network at each initial-weight gain.

The authors' gain series (Figure 3; their settings file's learning rates halved,
which their notebooks undo): Table 1's default-network rows plus the code's gains
1.2 and 1.6. `paper_lr` interpolates it; the sweep uses it as its default
learning rates, and `repalign_jax.paper.gains` runs the series itself.
"""

from __future__ import annotations

import numpy as np

#: The gains of the series and the learning rate the authors trained each with.
GAIN_SERIES_GAINS = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6)
GAIN_SERIES_LRS = (0.015, 0.005, 0.0025, 0.00125, 0.00075, 0.00025, 1.5e-6)


def paper_lr(gain: float) -> float:
    """The learning rate of the default network at `gain`: the authors' gain series
    (`GAIN_SERIES_GAINS`, `GAIN_SERIES_LRS`), log-linear in the gain between its entries and
    extrapolated with the slope of the nearest end segment."""
    g = np.asarray(GAIN_SERIES_GAINS, float)
    lg = np.log(np.asarray(GAIN_SERIES_LRS, float))
    k = int(np.clip(np.searchsorted(g, gain) - 1, 0, len(g) - 2))
    slope = (lg[k + 1] - lg[k]) / (g[k + 1] - g[k])
    return float(np.exp(lg[k] + slope * (gain - g[k])))
