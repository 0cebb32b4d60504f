"""The effective learning rates of the theory, as a pytree (docs/theory.md section 2-3)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


class EffectiveRates(eqx.Module):
    """Effective learning rates of the encoder, the decoder and the output mean.

    A pytree (an `equinox.Module`), so it can be passed through `jax.jit`,
    `jax.vmap` and `jax.grad`. Every field may carry the same leading batch shape.

    **Fields:**

    - `eta_enc`: the encoder's effective learning rate per epoch (the paper's
      `eta_h = 1 / tau_h`).
    - `eta_dec`: the decoder's effective learning rate per epoch (`eta_y`).
    - `tau`: the time constant of the output mean in epochs (`1 / eta_ybar`);
      NaN when unknown. Only the loss curve depends on it (docs/theory.md section 4).
    """

    eta_enc: Array
    eta_dec: Array
    tau: Array

    def __init__(self, eta_enc: ArrayLike, eta_dec: ArrayLike, tau: ArrayLike = jnp.nan):
        self.eta_enc = jnp.asarray(eta_enc)
        self.eta_dec = jnp.asarray(eta_dec)
        self.tau = jnp.asarray(tau)

    @property
    def ratio(self) -> Array:
        """`eta_enc / eta_dec`, the only combination the final structure depends on."""
        return self.eta_enc / self.eta_dec
