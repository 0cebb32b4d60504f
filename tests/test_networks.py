"""The Flax NNX network zoo: initialisation statistics, forward pass, variants."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repalign_jax import NetworkSpec, apply, init_state, xavier_normal
from repalign_jax._networks import ACTIVATIONS


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.4])
def test_xavier_normal_statistics(gain):
    spec = NetworkSpec(d_in=3, d_out=2, width=400, depth=3)
    state = init_state(spec, gain, jax.random.key(0))
    layers = state["layers"]
    for k in range(spec.depth + 1):
        kernel = np.asarray(layers[k]["kernel"][...])
        fan_in, fan_out = kernel.shape
        want = gain * np.sqrt(2.0 / (fan_in + fan_out))
        assert abs(kernel.mean()) < 4 * want / np.sqrt(kernel.size)
        n = kernel.size
        assert abs(kernel.std() / want - 1) < 5 / np.sqrt(n) + 0.01
        np.testing.assert_array_equal(np.asarray(layers[k]["bias"][...]), 0.0)


def test_xavier_conv_fans():
    init = xavier_normal(2.0)
    w = np.asarray(init(jax.random.key(1), (11, 20, 20)))
    np.testing.assert_allclose(w.std(), 2.0 * np.sqrt(2.0 / (11 * 20 + 11 * 20)), rtol=0.05)


def test_forward_shapes_and_hidden_layers():
    for arch in ("mlp", "resnet", "cnn"):
        spec = NetworkSpec(d_in=2, d_out=3, width=40, depth=4, arch=arch, kernel=5, channels=6)
        state = init_state(spec, 1.0, jax.random.key(0))
        out, hidden = jax.jit(apply, static_argnums=0)(spec, state, jnp.ones((7, 2)))  # one compilation, not per op
        assert out.shape == (7, 3)
        assert tuple(h.shape[1] for h in hidden) == spec.hidden_sizes()
        assert all(h.shape[0] == 7 for h in hidden)


def test_mlp_forward_is_the_layer_chain():
    spec = NetworkSpec(d_in=2, d_out=1, width=8, depth=3, activation="tanh")
    state = init_state(spec, 1.0, jax.random.key(2))
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    out, hidden = apply(spec, state, jnp.asarray(x))
    z = x
    for k in range(3):
        z = np.tanh(z @ np.asarray(state["layers"][k]["kernel"][...]) + np.asarray(state["layers"][k]["bias"][...]))
        np.testing.assert_allclose(hidden[k], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, z @ np.asarray(state["layers"][3]["kernel"][...]), rtol=1e-5, atol=1e-6)


def test_resnet_adds_activation_two_layers_back():
    spec = NetworkSpec(d_in=1, d_out=1, width=6, depth=4, arch="resnet", activation="relu")
    state = init_state(spec, 1.0, jax.random.key(3))
    x = np.array([[0.3], [-0.7]], np.float32)
    _, hidden = apply(spec, state, jnp.asarray(x))
    kern = [np.asarray(state["layers"][k]["kernel"][...]) for k in range(4)]
    h = [np.maximum(x @ kern[0], 0)]
    h.append(np.maximum(h[0] @ kern[1], 0))
    h.append(np.maximum(h[1] @ kern[2], 0) + h[0])
    h.append(np.maximum(h[2] @ kern[3], 0) + h[1])
    for got, want in zip(hidden, h):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dropout_only_with_a_key():
    """The authors' `Dropout` network: dropout before every linear map, the 1-d input included."""
    spec = NetworkSpec(d_in=1, d_out=1, width=3, depth=2, dropout=0.1, activation="linear")
    state = init_state(spec, 1.0, jax.random.key(0))
    x = jnp.ones((4000, 1))
    _, h_eval = apply(spec, state, x)
    _, h_eval2 = apply(spec, state, x)
    np.testing.assert_array_equal(h_eval[0], h_eval2[0])
    _, h_train = apply(spec, state, x, jax.random.key(5))
    first = np.asarray(h_train[0])
    dropped = np.all(first == 0, axis=1)  # the input unit was dropped: zero biases give a zero layer
    assert 0.08 < dropped.mean() < 0.12
    np.testing.assert_allclose(first[~dropped], np.asarray(h_eval[0])[~dropped] / 0.9, rtol=1e-5)


def test_activations():
    x = jnp.array([-2.0, 0.5])
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"](x), [-0.02, 0.5], rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["relu"](x), [0.0, 0.5])
    np.testing.assert_allclose(ACTIVATIONS["elu"](x), [np.expm1(-2.0), 0.5], rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["swish"](x), x / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["linear"](x), x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(activation="sigmoidish"), "unknown activation"),
        (dict(arch="transformer"), "unknown architecture"),
        (dict(depth=0), "depth"),
        (dict(dropout=1.0), "dropout"),
        (dict(precision="tf32"), "precision"),
        (dict(arch="cnn", width=30, depth=5), "too small"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(d_in=1, d_out=1, **kwargs)


def test_float64_parameters_with_x64(x64):
    spec = NetworkSpec(d_in=1, d_out=1, width=4, depth=2)
    state = init_state(spec, 1.0, jax.random.key(0))
    assert state["layers"][0]["kernel"][...].dtype == jnp.float64


@pytest.mark.parametrize("n_points", [2, 8, 12])  # outer-product weight gradients up to 8 points, a matmul above
def test_dense_gradient_equals_plain_autodiff(n_points):
    spec = NetworkSpec(d_in=3, d_out=2, width=16, depth=3, activation="tanh")
    state = init_state(spec, 1.0, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (n_points, 3))
    t = jax.random.normal(jax.random.key(3), (n_points, 2))
    kernels = [state["layers"][i]["kernel"][...] for i in range(spec.depth + 1)]
    biases = [state["layers"][i]["bias"][...] for i in range(spec.depth + 1)]

    def reference(ks, bs):  # the same network with jnp.dot and JAX's own derivative
        return 0.5 * jnp.mean((reference_out(x, ks, bs, spec.depth) - t) ** 2)

    # (jitted: one compilation each, where eager autodiff compiles every operation)
    grads = jax.jit(jax.grad(lambda s: 0.5 * jnp.mean((apply(spec, s, x)[0] - t) ** 2)))(state)
    ref_k, ref_b = jax.jit(jax.grad(reference, argnums=(0, 1)))(kernels, biases)
    for i in range(spec.depth + 1):
        np.testing.assert_allclose(grads["layers"][i]["kernel"][...], ref_k[i], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(grads["layers"][i]["bias"][...], ref_b[i], rtol=1e-5, atol=1e-7)
    # Gradients with respect to the inputs pass through as well.
    gx = jax.jit(jax.grad(lambda v: apply(spec, state, v)[0].sum()))(x)
    ref_gx = jax.jit(jax.grad(lambda v: reference_out(v, kernels, biases, spec.depth).sum()))(x)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-5, atol=1e-7)


def reference_out(x, kernels, biases, depth):
    """A tanh MLP written with `jnp.dot`."""
    z = x
    for i, (k, b) in enumerate(zip(kernels, biases)):
        z = jnp.dot(z, k, precision="highest") + b
        if i < depth:
            z = jnp.tanh(z)
    return z


def test_conv_as_matmul_equals_lax_convolution_values_gradients_and_under_vmap():
    from repalign_jax._networks import conv_general_dilated

    dn = jax.lax.conv_dimension_numbers((2, 30, 4), (5, 4, 3), ("NWC", "WIO", "NWC"))
    kw: dict[str, Any] = dict(dimension_numbers=dn, precision=jax.lax.Precision.HIGHEST)
    x = jax.random.normal(jax.random.key(0), (2, 30, 4))
    w = jax.random.normal(jax.random.key(1), (6, 5, 4, 3))  # 6 runs' kernels

    def loss(conv, w, x):
        return jnp.sum(jnp.sin(conv(x, w, (1,), "VALID", **kw)))

    ours = functools.partial(loss, conv_general_dilated)
    ref = functools.partial(loss, jax.lax.conv_general_dilated)
    y = conv_general_dilated(x, w[0], (1,), "VALID", **kw)
    assert y.shape == (2, 26, 3)
    np.testing.assert_allclose(y, jax.lax.conv_general_dilated(x, w[0], (1,), "VALID", **kw), rtol=1e-5, atol=1e-5)
    grads = jax.vmap(jax.grad(ours, argnums=(0, 1)), in_axes=(0, None))(w, x)
    want = jax.vmap(jax.grad(ref, argnums=(0, 1)), in_axes=(0, None))(w, x)
    for g, r in zip(grads, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    # Not a plain 1-d convolution (stride 2): left to jax.lax.
    np.testing.assert_allclose(
        conv_general_dilated(x, w[0], (2,), "VALID", **kw),
        jax.lax.conv_general_dilated(x, w[0], (2,), "VALID", **kw),
        rtol=1e-6,
    )


def test_convolutional_network_runs_no_xla_convolution():
    """The zoo's CNN takes the matmul path (XLA's CPU convolution is 8-9x slower here)."""
    spec = NetworkSpec(d_in=1, d_out=1, width=40, depth=3, arch="cnn", kernel=5, channels=4)
    state = init_state(spec, 1.0, jax.random.key(0))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda s: apply(spec, s, jnp.ones((2, 1)))[0].sum()))(state))
    assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr
