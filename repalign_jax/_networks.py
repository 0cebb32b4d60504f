"""The paper's networks in Flax NNX (docs/experiments.md, "Networks").

`NetworkSpec` describes an architecture (hashable: a static `jit` argument);
`Network` is the Flax NNX module; `init_state` and `apply` are the pure functions
the training engine uses inside `jit`/`vmap` (the module's `graphdef` is split
off once per spec, the parameters travel as an `nnx.State` pytree).

All variants: layers of equal width, a bias on every layer, Xavier-normal weights
with a gain (`std = gain * sqrt(2 / (fan_in + fan_out))`, PyTorch's
`xavier_normal_`), zero biases, the nonlinearity after every hidden layer and
never after the output. Matmuls and convolutions run at the spec's precision,
full float32 (`"highest"`) by default: never TF32.

Dense layers take their weight gradient from `dense_dot_general`: for a batch of
at most `OUTER_GRAD_MAX_POINTS` points (the two-point and XOR tasks) it is
written as a sum of outer products, an elementwise expression that XLA fuses
into the optimiser's update, so the gradient of a weight matrix is never written
to memory, and is made to depend on the backward product that reads the weight so
that the update can be done in place (one step moves each weight four times:
read forward, read backward, read and written by the update; not eight). The
backward product with the weight is a multiply-reduce for such batches too: on
the CPU, XLA's own reduction loop beats its batched matmul kernel with two rows
(backward + update of a `(4, 500, 500)` stack of weights 1.4x faster on this
project's 2-core CPU; `benchmarks/cpu_kernels.py`). The forward product stays a
matmul (a reduction over the weight's leading axis is much slower).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array


def leaky_relu(x, negative_slope=0.01):
    """PyTorch's `leaky_relu`: `x` for `x > 0`, else `negative_slope * x`; derivative `negative_slope` at 0.

    (`jax.nn.leaky_relu` takes the derivative 1 at 0. The two-point task puts a
    point at input 0 with zero biases, so every pre-activation of that point is
    exactly 0 at the first step: the convention moves the whole trajectory.)
    """
    return jnp.where(x > 0, x, negative_slope * x)


def relu(x):
    """PyTorch's `relu`: derivative 0 at 0 (as `jax.nn.relu`)."""
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def elu(x):
    """PyTorch's `elu` (alpha 1): `x` for `x > 0`, else `exp(x) - 1`; derivative 1 at 0 from both sides."""
    # (`jnp.minimum(x, 0)` inside would give the derivative 1/2 at 0: JAX splits ties.)
    return jnp.where(x > 0, x, jnp.expm1(jnp.where(x > 0, jnp.zeros_like(x), x)))


def silu(x):
    """PyTorch's `silu` (swish): `x * sigmoid(x)`; smooth."""
    return x * jax.nn.sigmoid(x)


def identity(x):
    """No nonlinearity (the paper's "none")."""
    return x


#: The nonlinearities of the zoo, each with PyTorch's value *and derivative* at its
#: kinks (the authors' networks are PyTorch's `torch.nn.functional` ones):
#: leaky ReLU (slope 0.01) has derivative 0.01 at exactly 0, ReLU 0, ELU 1; tanh,
#: swish and linear are smooth. `tests/test_torch_parity.py` trains every one of
#: them against PyTorch from the same weights in float64.
ACTIVATIONS = types.MappingProxyType(
    {
        "leaky_relu": leaky_relu,
        "relu": relu,
        "elu": elu,
        "tanh": jnp.tanh,
        "swish": silu,
        "linear": identity,
    }
)  # read-only: the traced activation index is a name's position in it
#: The order of `ACTIVATIONS`: `activation_index(name)` is a name's position, the
#: traced index a `"per_run"` network takes (`apply(..., activation=index)`).
ACTIVATION_NAMES = tuple(ACTIVATIONS)
#: `NetworkSpec(activation=PER_RUN)`: the nonlinearity is not part of the architecture
#: but a traced argument of `apply`, so that every activation of one shape shares one
#: compiled executable (and one vectorised batch).
PER_RUN = "per_run"
ARCHS = ("mlp", "resnet", "cnn")


def activation_index(name: str) -> int:
    """The position of `name` in `ACTIVATION_NAMES` (the traced index of a `"per_run"` network)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATION_NAMES.index(name)


def activation_indices(activations, spec: NetworkSpec):
    """Per-run activation names (a name, or an array of them; `None`: `spec.activation`) as
    `int32` indices into `ACTIVATION_NAMES`. Raises `ValueError` naming unknown ones."""
    if activations is None:
        if spec.activation not in ACTIVATIONS:
            raise ValueError("a NetworkSpec with activation='per_run' needs activations=")
        activations = spec.activation
    names = np.asarray(activations, dtype=object)
    unknown = sorted({str(n) for n in names.ravel()} - set(ACTIVATIONS))
    if unknown:
        raise ValueError(f"unknown activation(s) {', '.join(unknown)}; choose from {', '.join(ACTIVATIONS)}")
    return np.vectorize(activation_index, otypes=[np.int32])(names) if names.size else np.zeros(0, np.int32)


def _piecewise_linear(x, slope):
    """`x` for `x > 0`, else `slope * x`; derivative `slope` at 0 (PyTorch's ReLU, leaky ReLU, identity)."""
    return jnp.where(x > 0, x, slope * x)


#: A traced activation evaluates only these branches: ReLU, leaky ReLU and linear
#: are one piecewise-linear branch with a traced negative slope (0, 0.01, 1: the same
#: values and derivatives as their own functions, at 0 too), so a vectorised batch
#: of mixed activations (where `lax.switch` becomes a select over every branch)
#: computes four, not six.
_SLOPES = {"leaky_relu": 0.01, "relu": 0.0, "linear": 1.0}
_BRANCHES = ("piecewise_linear", "elu", "tanh", "swish")


def traced_activation(index, x):
    """`ACTIVATIONS[ACTIVATION_NAMES[index]](x)` for a traced integer `index` (PyTorch's kinks kept)."""
    names = ACTIVATION_NAMES
    branch_of = jnp.asarray([_BRANCHES.index(n) if n in _BRANCHES else 0 for n in names], jnp.int32)
    slope_of = jnp.asarray([_SLOPES.get(n, 0.0) for n in names], x.dtype)
    slope = slope_of[index]
    fns = [lambda z, s: _piecewise_linear(z, s)] + [lambda z, s, n=n: ACTIVATIONS[n](z) for n in _BRANCHES[1:]]
    return jax.lax.switch(branch_of[index], fns, x, slope)


PRECISIONS = {
    "highest": jax.lax.Precision.HIGHEST,
    "high": jax.lax.Precision.HIGH,
    "default": jax.lax.Precision.DEFAULT,
}


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """An architecture of the paper's zoo.

    **Fields:**

    - `d_in`, `d_out`: input and output dimensions.
    - `width`: units per hidden layer `P` (500 in the paper, 50 for "narrow").
    - `depth`: number of hidden layers `L` (there are `L + 1` weight layers).
    - `activation`: one of `ACTIVATIONS` (`"linear"` is the paper's "none"), or
      `"per_run"` (`PER_RUN`): the nonlinearity is then an argument of `apply`
      (`activation=`, a traced index into `ACTIVATION_NAMES`), which is how the
      training engine compiles one executable per network shape.
    - `arch`: `"mlp"`; `"resnet"` (each hidden layer from the third on also adds
      the activation from two layers back, the authors' `ResNet`); `"cnn"` (the
      authors' `CNN`: a linear map to `width`, then `depth + 1` unpadded 1-d
      convolutions of kernel `kernel`, from 1 to `channels` channels, `depth - 1`
      times `channels` to `channels`, then to 1 channel, the nonlinearity after
      each, then a linear read-out of the remaining `width - (depth + 1) * (kernel - 1)`
      units: `depth + 2` hidden layers, 12 for the paper's `depth = 10`).
    - `dropout`: dropout probability before *every* linear map, the input and the
      read-out included (the authors' `Dropout` network), in training only.
    - `precision`: matmul precision, `"highest"` (full float32, the default),
      `"high"` or `"default"` (TF32 on NVIDIA GPUs: not for this theory).
    """

    d_in: int
    d_out: int
    width: int = 500
    depth: int = 20
    activation: str = "leaky_relu"
    arch: str = "mlp"
    dropout: float = 0.0
    channels: int = 20
    kernel: int = 11
    precision: str = "highest"

    def __post_init__(self):
        for name in ("d_in", "d_out", "width", "depth", "channels", "kernel"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.activation not in ACTIVATIONS and self.activation != PER_RUN:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.arch == "cnn" and self.width - (self.depth + 1) * (self.kernel - 1) < 1:
            raise ValueError(
                f"cnn: width {self.width} is too small for {self.depth + 1} unpadded convolutions of kernel {self.kernel}"
            )

    def shape(self) -> NetworkSpec:
        """This architecture with a traced nonlinearity (`activation="per_run"`): the key of
        one compiled executable, shared by every activation of this shape."""
        return dataclasses.replace(self, activation=PER_RUN)

    @property
    def n_hidden(self) -> int:
        """Number of hidden activations (`depth`; `depth + 2` for the convolutional net)."""
        return self.depth + 2 if self.arch == "cnn" else self.depth

    def hidden_sizes(self) -> tuple[int, ...]:
        """Number of units of each hidden layer (flattened channels x length for the convolutional net)."""
        if self.arch != "cnn":
            return (self.width,) * self.depth
        sizes = [self.width]
        length = self.width
        for c in range(self.depth + 1):
            length -= self.kernel - 1
            sizes.append(length * (1 if c == self.depth else self.channels))
        return tuple(sizes)


def xavier_normal(gain):
    """Initializer with `std = gain * sqrt(2 / (fan_in + fan_out))` (PyTorch's convention).

    For a dense kernel `(in, out)` the fans are `in`, `out`; for a 1-d convolution
    kernel `(k, in, out)` they are `k * in` and `k * out`. `gain` may be traced.
    The standard normal draws are float32 for every parameter dtype.
    """

    def init(key, shape, dtype=jnp.float32):
        receptive = 1
        for s in shape[:-2]:
            receptive *= s
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        std = gain * jnp.sqrt(2.0 / (fan_in + fan_out))
        # Drawn in float32 whatever the parameter dtype, so that a float64 run starts
        # from the same weights as the float32 run of the same seed.
        return std.astype(dtype) * jax.random.normal(key, shape, jnp.float32).astype(dtype)

    return init


#: Largest batch whose dense weight gradients are sums of outer products (see the module docstring).
OUTER_GRAD_MAX_POINTS = 8


@functools.cache
def _dense(precision):
    """`a @ w` with a VJP whose weight gradient fuses into its consumer for small batches."""

    @jax.custom_vjp
    def dense(a, w):
        return jnp.dot(a, w, precision=precision)

    def fwd(a, w):
        return dense(a, w), (a, w)

    def bwd(res, d):
        a, w = res
        if a.shape[0] <= OUTER_GRAD_MAX_POINTS:  # exact float32 products on every backend (no TF32)
            # Row dot products as a multiply-reduce: XLA:CPU emits its own loop, faster
            # than its batched matmul kernel for a few rows (see the module docstring).
            da = jnp.sum(w[None, :, :] * d[:, None, :], axis=-1)
            dw = functools.reduce(operator.add, (a[n, :, None] * d[n, None, :] for n in range(a.shape[0])))
        else:
            da = jnp.dot(d, w.T, precision=precision)
            dw = jnp.dot(a.T, d, precision=precision)
        # A data dependence of the weight's gradient, hence of its update, on the backward
        # product that reads the weight: without it XLA cannot order that read before the
        # in-place update and copies every weight matrix every step (two more passes over
        # the weights). `0 * x` is not simplified away for floats; it only turns a
        # non-finite `da` (a diverged step) into a non-finite `dw`.
        return da, dw + 0 * da[(0,) * da.ndim]

    dense.defvjp(fwd, bwd)
    return dense


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`jax.lax.dot_general` for `nnx.Linear`, through `_dense` for plain `(N, in) @ (in, out)` products."""
    plain = lhs.ndim == 2 and rhs.ndim == 2 and dimension_numbers == (((1,), (0,)), ((), ()))
    if plain and preferred_element_type is None:
        return _dense(precision)(lhs, rhs)
    return jax.lax.dot_general(
        lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=preferred_element_type, **kwargs
    )


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, **kwargs):
    """`jax.lax.conv_general_dilated` for `nnx.Conv`, as one matmul for plain 1-d convolutions.

    A 1-d, unpadded, unit-stride, undilated, ungrouped convolution of `(N, length, in)`
    with a kernel `(k, in, out)` is written as the product of its `k` shifted
    slices, concatenated to `(N, length - k + 1, k * in)`, with the kernel reshaped
    to `(k * in, out)` ("im2col"): the same sum, in another order. For the paper's
    CNN, XLA's CPU convolution is 8.5-9.3x slower than this matmul, for one run and
    under `vmap` over runs (each run its own kernel: a grouped convolution)
    (`benchmarks/conv_throughput.py`). Anything else goes to `jax.lax`.
    """
    dn = kwargs.get("dimension_numbers")
    plain = (
        lhs.ndim == 3
        and rhs.ndim == 3
        and tuple(window_strides) == (1,)
        and padding == "VALID"
        and tuple(lhs_dilation or (1,)) == (1,)
        and tuple(rhs_dilation or (1,)) == (1,)
        and kwargs.get("feature_group_count", 1) == 1
        and kwargs.get("preferred_element_type") is None
        and kwargs.get("out_sharding") is None
        and dn == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NWC", "WIO", "NWC"))
    )
    if not plain:
        return jax.lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, **kwargs
        )
    k, c_in, c_out = rhs.shape
    length = lhs.shape[1] - k + 1
    patches = jnp.concatenate([lhs[:, j : j + length, :] for j in range(k)], axis=-1)
    return jnp.dot(patches, rhs.reshape(k * c_in, c_out), precision=kwargs.get("precision"))


def _param_dtype():
    return jnp.float64 if bool(getattr(jax.config, "jax_enable_x64")) else jnp.float32


class Network(nnx.Module):
    """One network of the paper's zoo (see `NetworkSpec`).

    `__call__(x, dropout_key=None, activation=None)` maps inputs `(N, d_in)` to
    `(output (N, d_out), hidden)` where `hidden` is a tuple of the `L` hidden
    activations after their nonlinearity, each flattened to `(N, units)`.
    Dropout is applied only when a `dropout_key` is given (training).
    `activation`: the (traced) index of the nonlinearity in `ACTIVATION_NAMES`,
    required when `spec.activation == "per_run"` and otherwise overriding it.
    """

    def __init__(self, spec: NetworkSpec, gain, *, rngs: nnx.Rngs, plain_dots: bool = False):
        self.spec = spec
        dtype = _param_dtype()
        kw = dict(
            param_dtype=dtype,
            dtype=dtype,
            precision=PRECISIONS[spec.precision],
            kernel_init=xavier_normal(gain),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )
        # `plain_dots`: plain `dot_general`s, no custom VJP: for forward-mode autodiff (`apply`)
        dense = dict(kw, dot_general=jax.lax.dot_general if plain_dots else dense_dot_general)
        layers = [nnx.Linear(spec.d_in, spec.width, **dense)]
        if spec.arch == "cnn":
            c = spec.channels
            chans = [(1, c)] + [(c, c)] * (spec.depth - 1) + [(c, 1)]
            conv = dict(kw, conv_general_dilated=conv_general_dilated)
            layers += [nnx.Conv(i, o, spec.kernel, padding="VALID", **conv) for i, o in chans]
            layers.append(nnx.Linear(spec.hidden_sizes()[-1], spec.d_out, **dense))
        else:
            layers += [nnx.Linear(spec.width, spec.width, **dense) for _ in range(spec.depth - 1)]
            layers.append(nnx.Linear(spec.width, spec.d_out, **dense))
        self.layers = nnx.List(layers)

    def __call__(
        self, x: Array, dropout_key: Array | None = None, activation: Array | int | None = None
    ) -> tuple[Array, tuple[Array, ...]]:
        spec = self.spec
        if activation is not None:
            act = functools.partial(traced_activation, activation)
        elif spec.activation == PER_RUN:
            raise ValueError("a NetworkSpec with activation='per_run' needs apply(..., activation=index)")
        else:
            act = ACTIVATIONS[spec.activation]
        n = x.shape[0]
        drop = dropout_key is not None and spec.dropout > 0

        def dropout(z, i):  # before linear map i (PyTorch's nn.Dropout: zero with p, scale by 1 / (1 - p))
            if not drop or dropout_key is None:
                return z
            keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, i), 1.0 - spec.dropout, z.shape)
            return jnp.where(keep, z / (1.0 - spec.dropout), 0.0)

        hidden: list[Array] = []
        z = x
        # Python-unrolled layers (faster than a scan over stacked layers; docs/design.md).
        for i, layer in enumerate(self.layers[:-1]):
            if spec.arch == "cnn" and i == 1:
                z = z[..., None]  # (N, width) -> (N, width, 1 channel)
            z = act(layer(dropout(z, i)))
            if spec.arch == "resnet" and i >= 2:
                z = z + hidden[i - 2]
            hidden.append(z)
        # Convolutions are (N, length, channels) in Flax: flattened channel-major, as PyTorch's (N, C, L).
        flat = tuple(h.reshape(n, -1) if h.ndim == 2 else jnp.swapaxes(h, 1, 2).reshape(n, -1) for h in hidden)
        out = self.layers[-1](dropout(flat[-1], len(self.layers) - 1))
        return out, flat


@functools.cache
def graphdef(spec: NetworkSpec, x64: bool | None = None, plain_dots: bool = False):
    """The static structure of `Network(spec, plain_dots=...)`, split off once per spec (no parameters made)."""
    del x64  # part of the cache key only: the parameter dtype follows jax_enable_x64
    abstract = nnx.eval_shape(lambda: Network(spec, 1.0, rngs=nnx.Rngs(0), plain_dots=plain_dots))
    return nnx.split(abstract)[0]


def init_state(spec: NetworkSpec, gain, key: Array) -> nnx.State:
    """Fresh parameters of `Network(spec, gain)` from `key` (pure; `gain`, `key` may be traced)."""
    return nnx.split(Network(spec, gain, rngs=nnx.Rngs(params=key)))[1]


def params_from_torch(spec: NetworkSpec, state_dict) -> nnx.State:
    """The parameters of a PyTorch network of the authors' zoo as an `init_state`-shaped `nnx.State`.

    `state_dict` maps names to tensors or arrays, as `module.state_dict()` of the
    authors' `MLP`, `ResNet`, `CNN` or `Dropout` (`torch.nn.ModuleList`s: names
    `"<index>.weight"`, `"<index>.bias"`; modules without parameters, such as
    `nn.Dropout`, are skipped). The n-th module with a weight becomes layer n:
    `nn.Linear.weight` `(out, in)` is transposed to the kernel `(in, out)`,
    `nn.Conv1d.weight` `(out, in, k)` to `(k, in, out)`. The dtype follows
    `jax_enable_x64`. Stack several with `jax.tree.map(lambda *v: np.stack(v), *states)`
    for `train_networks(initial_params=...)`.
    """

    def as_array(v):  # a copy: JAX may alias a NumPy buffer that PyTorch goes on updating in place
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else v
        return np.array(v, copy=True)

    modules: dict[int, dict[str, np.ndarray]] = {}
    for name, value in state_dict.items():
        index, _, kind = str(name).rpartition(".")
        if kind not in ("weight", "bias") or not index.isdigit():
            raise ValueError(f"params_from_torch: unexpected parameter name {name!r} (want '<index>.weight|bias')")
        modules.setdefault(int(index), {})[kind] = as_array(value)
    ordered = [modules[k] for k in sorted(modules)]
    abstract = jax.eval_shape(lambda: init_state(spec, 1.0, jax.random.key(0)))
    layers = abstract["layers"]
    if len(ordered) != len(layers):
        raise ValueError(f"params_from_torch: {len(ordered)} layers with weights, the network has {len(layers)}")
    dtype = _param_dtype()
    values = {}
    for k, mod in enumerate(ordered):
        w = mod["weight"]
        kernel = w.T if w.ndim == 2 else np.transpose(w, (2, 1, 0))
        bias = mod.get("bias", np.zeros(kernel.shape[-1]))
        for what, v in (("kernel", kernel), ("bias", bias)):
            want = layers[k][what].shape
            if v.shape != want:
                raise ValueError(f"params_from_torch: layer {k} {what} has shape {v.shape}, the network needs {want}")
            values[(k, what)] = jnp.asarray(v, dtype)

    def pick(path, _):
        keys = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        return values[(keys[1], keys[2])]

    return jax.tree_util.tree_map_with_path(pick, abstract)


def apply(
    spec: NetworkSpec,
    state: nnx.State,
    x: Array,
    dropout_key: Array | None = None,
    activation: Array | int | None = None,
    *,
    plain_dots: bool = False,
):
    """Pure forward pass: `(output, hidden)` of the network with parameters `state`.

    `activation`: a (traced) index into `ACTIVATION_NAMES`, required for a
    `"per_run"` spec (see `NetworkSpec.shape`); `None` uses `spec.activation`.
    `plain_dots`: the dense layers as plain `dot_general`s instead of their custom
    VJP (the same values): for forward-mode autodiff through the network
    (Hessian-vector products, `jax.jvp` of `jax.grad`), which a `custom_vjp` does not allow.
    """
    x64 = bool(getattr(jax.config, "jax_enable_x64"))
    model = nnx.merge(graphdef(spec, x64, plain_dots), state)
    return model(x, dropout_key, activation)
