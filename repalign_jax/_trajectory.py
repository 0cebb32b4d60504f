"""What training hands to fitting: `h, y, w` measured on a network, as a `PairTrajectory`.

`measure_hyw` computes the three tracked quantities of docs/theory.md section 3 from
activations; `PairTrajectory` holds measured trajectories for
`fit_effective_rates`; `to_pair_trajectory` turns a `TrainResult` into one. The
training engine imports this module, never the fitting module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._theory import LOSS_SCALES

if TYPE_CHECKING:
    from ._train import TrainResult


def measure_hyw(
    hidden_1: ArrayLike,
    hidden_2: ArrayLike,
    output_1: ArrayLike,
    output_2: ArrayLike,
    target_1: ArrayLike,
    target_2: ArrayLike,
) -> tuple[Array, Array, Array]:
    """`h, y, w` of a pair of points from a network's activations.

    By the definitions of docs/theory.md section 3, with differences always point 2
    minus point 1 and taken *before* squaring (the quantities are differences of
    nearly equal numbers):

        h = ||f(x2) - f(x1)||^2,  y = ||yh2 - yh1||^2,  w = y - dy . (yh2 - yh1)

    **Arguments:** hidden activations `(..., P)`, network outputs `(..., D)` and
    targets `(..., D)` (broadcast against the outputs) of the two points. Leading
    dimensions (epochs, runs, ...) pass through, so a whole trajectory is
    measured at once.

    **Returns:** `(h, y, w)`, each of the broadcast leading shape.
    """
    dh = jnp.asarray(hidden_2) - jnp.asarray(hidden_1)
    dyh = jnp.asarray(output_2) - jnp.asarray(output_1)
    dy = jnp.asarray(target_2) - jnp.asarray(target_1)
    h = jnp.sum(dh * dh, axis=-1)
    y = jnp.sum(dyh * dyh, axis=-1)
    w = y - jnp.sum(dy * dyh, axis=-1)
    return h, y, w


def _floating(v, name: str) -> Array:
    v = jnp.asarray(v)
    if jnp.issubdtype(v.dtype, jnp.complexfloating) or not jnp.issubdtype(v.dtype, jnp.number) and v.dtype != bool:
        raise ValueError(f"PairTrajectory: {name} must be real numbers, got dtype {v.dtype}")
    return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.result_type(float))


class PairTrajectory(eqx.Module):
    """Measured trajectories of `h, y, w` (and optionally the loss) of point pairs.

    Arrays may carry any leading batch shape `B` (runs, pairs, layers...).

    **Fields:**

    - `ts`: `(T,)` or `B + (T,)`, strictly increasing times in epochs.
    - `h`, `y`, `w`: `B + (T,)`, measured by `measure_hyw`.
    - `dx2`, `dy2`: broadcastable to `B`: squared input and target distances.
    - `loss`: `B + (T,)` training loss, or `None` (then `tau` is not fitted).
    - `m0`: broadcastable to `B`: `||y_bar - yh_bar||^2` at `ts[0]`, or `None` to
      fit it together with `tau`.
    """

    ts: Array
    h: Array
    y: Array
    w: Array
    dx2: Array
    dy2: Array
    loss: Array | None = None
    m0: Array | None = None

    def __init__(self, ts, h, y, w, dx2, dy2, loss=None, m0=None):
        # Integer (or boolean) input is cast to the default float dtype: the fit needs floats.
        self.ts = _floating(ts, "ts")
        self.h, self.y, self.w = _floating(h, "h"), _floating(y, "y"), _floating(w, "w")
        self.dx2, self.dy2 = _floating(dx2, "dx2"), _floating(dy2, "dy2")
        self.loss = None if loss is None else _floating(loss, "loss")
        self.m0 = None if m0 is None else _floating(m0, "m0")

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.h.shape[:-1]


def to_pair_trajectory(
    result: TrainResult, x: ArrayLike, targets: ArrayLike, pairs: Sequence[tuple[int, int]] | ArrayLike = ((0, 1),)
) -> PairTrajectory:
    """The recorded `h, y, w` as a `PairTrajectory` for `fit_effective_rates`.

    Batch axes are `(R, n_pairs)` (and `L` with `all_layers`); time is the epoch.
    `x`, `targets` are those given to `train_networks` (shared or per run). The
    loss curve is attached only when the dataset is one pair of points (the
    theory's loss, docs/theory.md section 4, is that of two points), in the theory's
    scale: multiplied by the output dimension to undo the mean over output
    elements, and halved for a run trained on `loss="mse"`.
    """
    x, targets = np.asarray(x, np.float64), np.asarray(targets, np.float64)
    pairs = np.asarray(pairs).reshape(-1, 2)
    dx2 = ((x[..., pairs[:, 1], :] - x[..., pairs[:, 0], :]) ** 2).sum(-1)  # ([R,] n_pairs)
    dy2 = ((targets[..., pairs[:, 1], :] - targets[..., pairs[:, 0], :]) ** 2).sum(-1)
    h, y, w = (np.moveaxis(np.asarray(v), 1, -1) for v in (result.h, result.y, result.w))
    extra = h.ndim - 3  # 1 with all_layers: (R, n_pairs, L, T)
    shape = dx2.shape + (1,) * extra
    loss = None
    if x.shape[-2] == 2 and len(pairs) == 1:
        loss = np.asarray(result.loss)[:, None] * targets.shape[-1] * (0.5 / LOSS_SCALES[result.loss_kind])
        loss = loss.reshape(loss.shape[:2] + (1,) * extra + loss.shape[-1:])
        loss = np.broadcast_to(loss, h.shape)
    dt = h.dtype
    return PairTrajectory(
        np.arange(h.shape[-1], dtype=dt),
        h,
        y,
        w,
        dx2=dx2.reshape(shape).astype(dt),
        dy2=dy2.reshape(shape).astype(dt),
        loss=loss,
    )
