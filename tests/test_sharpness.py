"""The initial sharpness (power iteration on Hessian-vector products) and `auto_lr`."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import repalign_jax as rj

DATA = rj.two_point(dx2=1.0, dy2=0.5)


def _dense_lambda_max(spec, gain, seed, activation):
    """The largest eigenvalue of the full Hessian (`jax.hessian` on the flattened parameters)."""
    state = rj.init_state(spec, gain, jax.random.fold_in(jax.random.key(seed), 0))
    hess = _dense_hessian(spec, state, rj.ACTIVATION_NAMES.index(activation))
    return float(np.linalg.eigvalsh(np.asarray(hess, np.float64))[-1])


@functools.partial(jax.jit, static_argnums=0)
def _dense_hessian(spec, state, act):
    """The Hessian of the loss in the flattened parameters (the activation index traced: one
    compilation for every nonlinearity)."""
    flat, unravel = jax.flatten_util.ravel_pytree(state)

    def loss(v):
        out, _ = rj.apply(spec, unravel(v), jnp.asarray(DATA.x), None, act, plain_dots=True)  # hessian: forward mode
        return 0.5 * jnp.mean((out - DATA.targets) ** 2)

    return jax.hessian(loss)(flat)


def test_plain_dots_give_the_same_network_and_allow_forward_mode(x64):
    """`apply(..., plain_dots=True)`: the same outputs and gradients as the custom-VJP layers, and
    forward-mode autodiff, which the custom VJP refuses."""
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=6, depth=3)
    state = rj.init_state(spec, 1.0, jax.random.key(0))
    x = jnp.asarray(DATA.x)

    def loss(s, plain):
        return jnp.sum(rj.apply(spec, s, x, plain_dots=plain)[0] ** 2)

    # Compiled (one program each, not one per operation): as training calls them.
    out = jax.jit(lambda s, plain: rj.apply(spec, s, x, plain_dots=plain)[0], static_argnums=1)
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    np.testing.assert_array_equal(out(state, True), out(state, False))
    for a, b in zip(jax.tree.leaves(grad(state, True)), jax.tree.leaves(grad(state, False))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    tangent = jax.tree.map(jnp.ones_like, state)
    jvp = jax.jit(lambda s, t, plain: jax.jvp(lambda s: jax.grad(loss)(s, plain), (s,), (t,)), static_argnums=2)
    jvp(state, tangent, True)  # forward over reverse: fine
    with pytest.raises(TypeError, match="custom_vjp"):
        jvp(state, tangent, False)


def test_lambda_max_matches_the_dense_hessian(x64):
    """Three gains (seeds 0, 1, 2) for each of three nonlinearities, as one batch of runs."""
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=5, depth=2)
    names = ["tanh", "leaky_relu", "elu"]
    acts, gains, seeds = np.repeat(names, 3), np.tile([0.6, 1.0, 1.8], 3), np.tile([0, 1, 2], 3)
    lam = rj.initial_sharpness(DATA.x, DATA.targets, spec, gains=gains, seeds=seeds, activations=list(acts), iters=200)
    for a, g, s, got in zip(acts, gains, seeds, lam):
        want = _dense_lambda_max(spec, g, s, a)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{a}, gain {g}")


def test_lambda_max_is_the_largest_not_the_largest_magnitude(x64):
    """A quadratic with eigenvalues 1 and -5: power iteration alone finds -5; the shift finds 1."""
    lam = rj.lambda_max_of(lambda p: 0.5 * (p["a"] ** 2 - 5 * p["b"] ** 2), {"a": 1.0, "b": 2.0}, jax.random.key(0))
    np.testing.assert_allclose(lam, 1.0, rtol=1e-8)


def test_sharpness_vmap_equals_a_loop_and_traced_activations():
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3)
    acts = ["tanh", "relu", "swish"]
    batch = rj.initial_sharpness(
        DATA.x, DATA.targets, spec, gains=np.array([0.8, 1.0, 1.3]), seeds=np.array([4, 5, 6]), activations=acts
    )
    for k, (g, s, a) in enumerate(zip([0.8, 1.0, 1.3], [4, 5, 6], acts)):
        one = rj.initial_sharpness(DATA.x, DATA.targets, spec, gains=g, seeds=s, activations=a)
        np.testing.assert_allclose(batch[k], one[0], rtol=1e-4)
    # the nonlinearity named by the network's spec is the same network
    swish = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3, activation="swish")
    np.testing.assert_allclose(
        rj.initial_sharpness(DATA.x, DATA.targets, swish, gains=1.3, seeds=6), batch[2:], rtol=1e-4
    )


def test_auto_lr():
    np.testing.assert_allclose(rj.auto_lr(np.array([2.0, 10.0])), [0.05, 0.01])
    assert rj.AUTO_LR_C == 0.1
    np.testing.assert_allclose(rj.auto_lr(np.array([2.0]), c=1.0, lambda_floor=4.0), [0.25])
    with pytest.raises(ValueError, match="positive"):
        rj.auto_lr(np.array([0.0]))
