"""The initial sharpness (power iteration on Hessian-vector products) and `auto_lr`."""

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
    flat, unravel = jax.flatten_util.ravel_pytree(state)
    act = rj.ACTIVATION_NAMES.index(activation)

    def loss(v):
        out, _ = rj.apply(
            spec, unravel(v), jnp.asarray(DATA.x), None, act, plain_dots=True
        )  # jax.hessian: forward mode
        return 0.5 * jnp.mean((out - DATA.targets) ** 2)

    hess = jax.hessian(loss)(flat)
    return float(np.linalg.eigvalsh(np.asarray(hess, np.float64))[-1])


def test_plain_dots_give_the_same_network_and_allow_forward_mode(x64):
    """`apply(..., plain_dots=True)`: the same outputs and gradients as the custom-VJP layers, and
    forward-mode autodiff, which the custom VJP refuses."""
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=6, depth=3)
    state = rj.init_state(spec, 1.0, jax.random.key(0))
    x = jnp.asarray(DATA.x)

    def loss(s, plain):
        return jnp.sum(rj.apply(spec, s, x, plain_dots=plain)[0] ** 2)

    np.testing.assert_array_equal(rj.apply(spec, state, x, plain_dots=True)[0], rj.apply(spec, state, x)[0])
    for a, b in zip(jax.tree.leaves(jax.grad(loss)(state, True)), jax.tree.leaves(jax.grad(loss)(state, False))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    tangent = jax.tree.map(jnp.ones_like, state)
    jax.jvp(lambda s: jax.grad(loss)(s, True), (state,), (tangent,))  # forward over reverse: fine
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda s: jax.grad(loss)(s, False), (state,), (tangent,))


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu", "elu"])
def test_lambda_max_matches_the_dense_hessian(x64, activation):
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=5, depth=2, activation=activation)
    gains = np.array([0.6, 1.0, 1.8])
    lam = rj.initial_sharpness(DATA.x, DATA.targets, spec, gains=gains, seeds=np.array([0, 1, 2]), iters=200)
    for g, s, got in zip(gains, [0, 1, 2], lam):
        want = _dense_lambda_max(spec, g, s, activation)
        np.testing.assert_allclose(got, want, rtol=1e-6)


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
        one = rj.initial_sharpness(
            DATA.x, DATA.targets, rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3, activation=a), gains=g, seeds=s
        )
        np.testing.assert_allclose(batch[k], one[0], rtol=1e-4)


def test_auto_lr():
    np.testing.assert_allclose(rj.auto_lr(np.array([2.0, 10.0])), [0.05, 0.01])
    assert rj.AUTO_LR_C == 0.1
    np.testing.assert_allclose(rj.auto_lr(np.array([2.0]), c=1.0, lambda_floor=4.0), [0.25])
    with pytest.raises(ValueError, match="positive"):
        rj.auto_lr(np.array([0.0]))
