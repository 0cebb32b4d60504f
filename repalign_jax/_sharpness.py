"""The sharpness of the loss at initialisation, and learning rates set from it.

`initial_sharpness` finds `lambda_max`, the largest eigenvalue of the Hessian of
the training loss with respect to all parameters, at each run's initial weights
(the same weights `train_networks` starts from), by power iteration on
Hessian-vector products (`jax.jvp` of `jax.grad`: forward over reverse, never the
Hessian itself), jitted and vmapped over the runs. Gradient descent on a
quadratic diverges for `lr > 2 / lambda_max`; `auto_lr` takes a learning rate
well inside that range.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ._networks import NetworkSpec, activation_indices, apply, init_state
from ._theory import LOSS_SCALES

#: `auto_lr`'s constant: `lr = AUTO_LR_C / lambda_max`. Gradient descent diverges on
#: the quadratic model for `lr > 2 / lambda_max`; 0.1 is a twentieth of that: the
#: stiffest direction moves by at most 10% of its distance per step, so that the
#: discrete training stays close to the gradient flow the theory describes, with room
#: for the sharpness to grow during training. (At 0.5 every run of the atlas's test
#: grids was stable too, but the theory fitted the shallow networks worse: median
#: `min(R^2 h, R^2 y)` 0.87 against 0.92 at 0.1 for width 64, depth 1. The paper's
#: tuned rates for its default network are 0.005 to 0.02 over `lambda_max`.)
AUTO_LR_C = 0.1


def _tree_dot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _scale(tree, c):
    return jax.tree_util.tree_map(lambda v: v * c.astype(v.dtype), tree)


def lambda_max_of(loss_fn, params, key, iters: int = 64):
    """The largest eigenvalue of the Hessian of `loss_fn` at `params` (a pytree), by power iteration.

    A first `iters` steps find the eigenvalue of largest magnitude `mu`; when it is
    negative, `iters` more on `H - mu I` (whose spectrum is non-negative) find the
    largest. Both phases are one loop, so the Hessian-vector product is traced once
    (not four times: about 25% less compile time). Pure and traceable (vmap it over runs).
    """
    params = jax.tree_util.tree_map(jnp.asarray, params)
    grad = jax.grad(loss_fn)

    def hvp(v):
        return jax.jvp(grad, (params,), (v,))[1]

    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
    v = _scale(v, 1.0 / jnp.sqrt(_tree_dot(v, v)))
    zero = jnp.zeros((), leaves[0].dtype)
    tiny = jnp.finfo(zero.dtype).tiny

    def body(i, carry):
        # u has norm 1: <u, H u> is the Rayleigh quotient of H at the i-th iterate.
        u, mu, _ = carry
        hu = hvp(u)
        ray = jnp.asarray(_tree_dot(u, hu), zero.dtype)
        mu = jnp.where(i == iters, ray, mu)
        shift = jnp.where(i >= iters, jnp.minimum(mu, zero), zero)
        w = jax.tree_util.tree_map(lambda a, b: a - shift.astype(b.dtype) * b, hu, u)
        return _scale(w, 1.0 / jnp.maximum(jnp.sqrt(_tree_dot(w, w)), tiny)), mu, ray

    # Iterations 0 .. 2 iters: mu is the quotient after `iters` steps, `last` after 2 iters.
    _, mu, last = jax.lax.fori_loop(0, 2 * iters + 1, body, (v, zero, zero))
    return jnp.maximum(last, mu)


@functools.partial(jax.jit, static_argnames=("spec", "loss", "iters"))
def _sharpness_batch(x, targets, gains, seeds, acts, *, spec, loss, iters):
    return _sharpness_traced(x, targets, gains, seeds, acts, spec, loss, iters)


def _sharpness_traced(x, targets, gains, seeds, acts, spec, loss, iters):
    scale = LOSS_SCALES[loss]

    def one(gain, seed, act, xr, tr):
        key = jax.random.key(seed)
        state = init_state(spec, gain, jax.random.fold_in(key, 0))  # train_networks' initial weights

        def loss_fn(s):
            out, _ = apply(spec, s, xr, None, act, plain_dots=True)  # forward-mode autodiff: no custom VJP
            return scale * jnp.mean((out - tr) ** 2)

        return lambda_max_of(loss_fn, state, jax.random.fold_in(key, 3), iters)

    ax = 0 if x.ndim == 3 else None
    return jax.vmap(one, in_axes=(0, 0, 0, ax, ax))(gains, seeds, acts, x, targets)


def initial_sharpness(
    x: ArrayLike,
    targets: ArrayLike,
    spec: NetworkSpec,
    *,
    gains: ArrayLike,
    seeds: ArrayLike = 0,
    activations: str | Sequence[str] | None = None,
    loss: str = "half_mse",
    iters: int = 64,
) -> np.ndarray:
    """`lambda_max` of the loss Hessian at the initial weights of each run, `(R,)`.

    The runs are those `train_networks(x, targets, spec, ..., gains=, seeds=,
    activations=)` would train (the same initial weights: seed `s` and gain `g`
    give the same network); `loss` is `TrainConfig.loss`. One compiled, vmapped
    call per network shape (the nonlinearity is traced). Dropout is off.
    """
    acts = activation_indices(activations, spec)
    x, targets = np.asarray(x), np.asarray(targets)
    shapes = [np.shape(gains), np.shape(seeds), acts.shape] + ([x.shape[:1]] if x.ndim == 3 else [])
    R = int(np.prod(np.broadcast_shapes(*shapes)))
    dtype = np.float64 if bool(getattr(jax.config, "jax_enable_x64")) else np.float32
    gains = np.broadcast_to(np.asarray(gains, dtype), (R,))
    seeds = np.broadcast_to(np.asarray(seeds, np.int64), (R,)).astype(np.uint32)
    acts = np.broadcast_to(acts, (R,))
    if np.any(gains <= 0) or not np.all(np.isfinite(gains)):
        raise ValueError("gains must be positive and finite")
    if iters < 1:
        raise ValueError(f"iters must be positive, got {iters}")
    lam = _sharpness_batch(
        np.asarray(x, dtype), np.asarray(targets, dtype), gains, seeds, acts, spec=spec.shape(), loss=loss, iters=iters
    )
    return np.asarray(lam)


def auto_lr(lambda_max: ArrayLike, c: float = AUTO_LR_C, lambda_floor: ArrayLike = 0.0) -> np.ndarray:
    """`c / max(lambda_max, lambda_floor)`: a learning rate a factor `2 / c` inside gradient
    descent's edge of stability at the initial weights. `lambda_floor` bounds the rate for
    networks whose initial sharpness is tiny (small weights) and grows during training."""
    lam = np.maximum(np.asarray(lambda_max, float), np.asarray(lambda_floor, float))
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("auto_lr needs a positive, finite sharpness")
    return c / lam
