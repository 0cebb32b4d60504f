"""Dataset-level structure: predicted distance matrices, comparisons, MDS.

docs/theory.md sections 6 and 10, applied to every pair of points of a dataset, and
the small linear-algebra tools the structure experiments need. Pure functions of
arrays (NumPy in, NumPy out: these run once per figure, not inside training).
"""

from __future__ import annotations

import numpy as np

from ._data import pairwise_distances
from ._rates import EffectiveRates
from ._theory import final_distance_matrix


def predicted_final_distances(x, targets, hidden0, outputs0, rates: EffectiveRates):
    """Pairwise final distances (section 6) of a dataset from its initial network state.

    **Arguments:** inputs `(N, d_in)`, targets `(N, d_out)`, initial hidden
    activations `(N, P)` and initial outputs `(N, d_out)`; the fitted rates.

    **Returns:** `PairwiseDistances(distance, squared)`, each `(N, N)`.
    """
    d = [pairwise_distances(np.asarray(a, np.float64)) for a in (x, targets, hidden0, outputs0)]
    pred = final_distance_matrix(*d, rates=EffectiveRates(float(rates.eta_enc), float(rates.eta_dec)))
    return type(pred)(np.asarray(pred.distance), np.asarray(pred.squared))  # pyright: ignore[reportArgumentType]


def exponential_weighting(dist_x, dist_y):
    """The paper's many-point heuristic (docs/theory.md section 10, appendix B.4, Eq. 50).

    With `A = D_x * D_y` (elementwise) and `E = exp(-A)`, the predicted matrix is
    `E @ A @ E`, compared with the network's squared hidden distances.
    """
    a = np.asarray(dist_x, np.float64) * np.asarray(dist_y, np.float64)
    e = np.exp(-a)
    return e @ a @ e


def pearson_offdiagonal(a, b, mask=None) -> float:
    """Pearson correlation of two `(N, N)` matrices over the pairs `i < j` (and `mask`)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.triu(np.ones(a.shape, bool), k=1)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    x, y = a[keep], b[keep]
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def classical_mds(dist, dims: int = 3):
    """Classical (Torgerson) MDS: coordinates `(N, dims)` whose distances approximate `dist`.

    Double-centres the squared distances and keeps the top eigenvectors scaled
    by the square roots of their (non-negative) eigenvalues; with `dims > N` the
    coordinates beyond the `N`-th are 0.
    """
    d2 = np.asarray(dist, np.float64) ** 2
    n = d2.shape[0]
    j = np.eye(n) - np.ones((n, n)) / n
    b = -0.5 * j @ d2 @ j
    vals, vecs = np.linalg.eigh(b)
    order = np.argsort(vals)[::-1][:dims]
    coords = vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))
    return np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
