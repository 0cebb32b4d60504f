"""Measuring `h, y, w` on a network (THEORY.md section 3)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def measure_hyw(
    hidden_1: ArrayLike,
    hidden_2: ArrayLike,
    output_1: ArrayLike,
    output_2: ArrayLike,
    target_1: ArrayLike,
    target_2: ArrayLike,
) -> tuple[Array, Array, Array]:
    """`h, y, w` of a pair of points from a network's activations.

    By the definitions of THEORY.md section 3, with differences always point 2
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
