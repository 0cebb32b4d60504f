"""The compiled core of the training engine: configuration, result, and the jitted pieces.

`TrainConfig` and `TrainResult`, the per-run step and epoch (`vmap`-ped over the
runs, `lax.scan` over epochs), divergence masking and stopping, and the three
jitted programs the host driver calls: `_start_jit` (initial carry),
`_segment_jit` (a segment of epochs) and `_finish_jit` (the result). Pure
functions of arrays: nothing here touches the host.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from .._networks import NetworkSpec, apply, init_state
from .._theory import LOSS_SCALES as LOSSES
from .._trajectory import measure_hyw


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the networks are trained and what is recorded (hashable: static under `jit`).

    **Fields:**

    - `epochs`: number of epochs `E`; records have `E + 1` entries.
    - `optimizer`: `"sgd"` (plain gradient descent, the paper) or `"adam"` (appendix C.3).
    - `batch_size`: `None` for full batch (one step per epoch), or the mini-batch
      size (shuffled every epoch, the last batch may be smaller, as PyTorch's
      `DataLoader`).
    - `track_layer`: hidden layer whose `h, y, w` are recorded (default
      `depth // 2`, counting hidden layers from 0 after their nonlinearity).
    - `all_layers`: record `h, y, w` at every hidden layer instead (depth analysis).
    - `keep_hidden`: also return the tracked layer's activations and the outputs
      of the whole dataset at the start and the end of training.
    - `progress_every`: epochs between progress reports: the epoch loop runs as
      compiled segments of this many epochs, with the reports on the host between
      them (`None`: `segment_length`, about 25 reports per training). No host
      callback is compiled in, so the executables can be kept in JAX's
      persistent compilation cache.
    - `loss`: `"half_mse"` (`0.5 * mean squared error`, the paper's and the
      default) or `"mse"` (PyTorch's `nn.MSELoss()`, twice the gradient; the
      authors' XOR notebook). The mean runs over points and output dimensions.
      Recorded losses are in this scale; `to_pair_trajectory` converts them to the
      theory's (`half_mse`, docs of `theory_loss`).
    - `stop_loss`: train "until the loss is below" this (the paper's Figure 5, the
      authors' `conv_thresh`): a run whose loss, recorded before an epoch's step,
      is below it stops there without that step; its later records (the final
      one included) repeat that record. Once every live run of a compiled chunk
      has stopped, the chunk steps no more and no further compiled segment runs
      (the records are filled in on the host). `epochs` is then the budget. `None` (default): every epoch trains.
    """

    epochs: int
    optimizer: str = "sgd"
    batch_size: int | None = None
    track_layer: int | None = None
    all_layers: bool = False
    keep_hidden: bool = False
    progress_every: int | None = None
    stop_loss: float | None = None
    loss: str = "half_mse"

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.progress_every is not None and self.progress_every < 1:
            raise ValueError("progress_every must be a positive integer or None")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.stop_loss is not None and not (isinstance(self.stop_loss, (int, float)) and self.stop_loss > 0):
            raise ValueError(f"stop_loss must be a positive number or None, got {self.stop_loss!r}")

    def layer(self, spec: NetworkSpec) -> int:
        layer = spec.n_hidden // 2 if self.track_layer is None else self.track_layer
        if not 0 <= layer < spec.n_hidden:
            raise ValueError(f"track_layer {layer} is outside the network's hidden layers 0..{spec.n_hidden - 1}")
        return layer


#: A recorded array: a JAX array inside the compiled core, a NumPy array once returned.
Records: TypeAlias = Array | np.ndarray


class TrainResult(eqx.Module):
    """What `train_networks` recorded, with a leading run axis `R`.

    **Fields:**

    - `loss`: `(R, E + 1)` training loss (`0.5 * MSE`, or `MSE` with
      `TrainConfig(loss="mse")`; mean over points and output dims).
    - `loss_kind`: which of the two (`"half_mse"` or `"mse"`; static).
    - `h`, `y`, `w`: `(R, E + 1, n_pairs)`, or `(R, E + 1, n_pairs, L)` with
      `all_layers`.
    - `diverged`: `(R,)` the loss became non-finite; `diverged_epoch`: `(R,)`
      the first such epoch (-1 when never). From there on records are NaN.
    - `stop_epoch`: `(R,)` with `TrainConfig.stop_loss`, the number of steps the
      run took before it stopped (the first epoch whose loss is below
      `stop_loss`; `epochs` when it never was); else `None`.
    - `hidden_initial`, `hidden_final`: `(R, N, units)` tracked-layer activations
      of the whole dataset (with `keep_hidden`, else `None`).
    - `output_initial`, `output_final`: `(R, N, d_out)` outputs likewise.

    Inside the compiled core the fields are JAX arrays; `train_networks` returns
    them as NumPy arrays on the host (`Records` is either).
    """

    loss: Records
    h: Records
    y: Records
    w: Records
    diverged: Records
    diverged_epoch: Records
    stop_epoch: Records | None = None
    hidden_initial: Records | None = None
    hidden_final: Records | None = None
    output_initial: Records | None = None
    output_final: Records | None = None
    loss_kind: str = eqx.field(static=True, default="half_mse")


# --------------------------------------------------------------------------------------
# The compiled core
# --------------------------------------------------------------------------------------


def _optimizer(config: TrainConfig, lr) -> optax.GradientTransformation:
    return optax.sgd(lr) if config.optimizer == "sgd" else optax.adam(lr)


def _records(spec, config, pairs, targets, out, hidden):
    """`h, y, w` `(n_pairs[, L])` of one run from its outputs and hidden activations."""
    i, j = pairs[:, 0], pairs[:, 1]
    layers = hidden if config.all_layers else (hidden[config.layer(spec)],)
    hyw = [measure_hyw(hl[i], hl[j], out[i], out[j], targets[i], targets[j]) for hl in layers]
    stacked = [jnp.stack(v, -1) for v in zip(*hyw)]  # each (n_pairs, n_layers)
    if not config.all_layers:
        stacked = [v[..., 0] for v in stacked]
    return tuple(stacked)


def _mse(out, targets, weight=None, scale=0.5):
    err = (out - targets) ** 2
    if weight is None:
        return scale * jnp.mean(err)
    return scale * jnp.sum(weight[:, None] * err) / (jnp.sum(weight) * out.shape[-1])


class _Data(NamedTuple):
    """What the runs of a chunk train on: shared `(N, d)` or per-run `(R, N, d)` data, the tracked pairs."""

    x: Array
    targets: Array
    pairs: Array

    @property
    def axis(self) -> int | None:
        """The run axis of `x` and `targets` under `vmap` (`None`: shared by every run)."""
        return 0 if self.x.ndim == 3 else None


class _Runs(NamedTuple):
    """Per-run inputs of a chunk, each with leading axis `R` (`acts`: index into `ACTIVATION_NAMES`)."""

    lrs: Array
    acts: Array
    drop_keys: Array
    shuffle_keys: Array


class _Carry(NamedTuple):
    """The state of the epoch loop (`lax.scan` carry); the last four only with `stop_loss`."""

    states: Any
    opt_states: Any
    alive: Array  # (R,) no non-finite loss yet
    diverged_epoch: Array  # (R,) first non-finite epoch, -1 if none
    halt_epoch: Array | None = None  # epoch the whole chunk stopped stepping (`epochs`: not yet)
    last: Any = None  # the last epoch's (loss, records), repeated once the chunk has halted
    frozen: Array | None = None  # (R,) the run has stopped (its loss went below stop_loss)
    run_stop: Array | None = None  # (R,) the epoch it stopped (`epochs`: never)


def _init(spec: NetworkSpec, config: TrainConfig, gains, seeds, lrs, acts, params):
    """Parameters, optimiser states and the per-run random streams of a chunk."""
    keys = jax.vmap(jax.random.key)(seeds)
    init_keys, drop_keys, shuffle_keys = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(3))
    states = jax.vmap(lambda g, k: init_state(spec, g, k))(gains, init_keys) if params is None else params
    opt_states = jax.vmap(lambda s, lr: _optimizer(config, lr).init(s))(states, lrs)
    return states, opt_states, _Runs(lrs, acts, drop_keys, shuffle_keys)


def _evaluate(spec: NetworkSpec, config: TrainConfig, state, x, targets, act):
    """`(loss, outputs, hidden activations)` of one run on the whole dataset (no dropout)."""
    out, hidden = apply(spec, state, x, None, act)
    return _mse(out, targets, scale=LOSSES[config.loss]), out, hidden


def _step(spec: NetworkSpec, config: TrainConfig, state, opt_state, lr, act, xb, tb, wb, dkey):
    """One optimiser step of one run on the batch `(xb, tb)` (`wb`: weights of padded points)."""

    def loss_fn(s):
        out, hidden = apply(spec, s, xb, dkey if spec.dropout > 0 else None, act)
        return _mse(out, tb, wb, LOSSES[config.loss]), (out, hidden)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state)
    updates, opt_state = _optimizer(config, lr).update(grads, opt_state, state)
    return optax.apply_updates(state, updates), opt_state, loss, aux


def _full_batch_epoch(spec, config, pairs, state, opt_state, lr, act, dkey, x, targets):
    """One run's epoch of one full-batch step: the records before the step, then the step."""
    new_state, new_opt, loss, (out, hidden) = _step(spec, config, state, opt_state, lr, act, x, targets, None, dkey)
    if spec.dropout > 0:  # records come from the deterministic network
        loss, out, hidden = _evaluate(spec, config, state, x, targets, act)
    return new_state, new_opt, loss, _records(spec, config, pairs, targets, out, hidden)


def _minibatch_epoch(spec, config, pairs, state, opt_state, lr, act, dkey, skey, x, targets):
    """One run's epoch of shuffled mini-batches (the last may be smaller, as PyTorch's `DataLoader`)."""
    n = x.shape[0]
    loss, out, hidden = _evaluate(spec, config, state, x, targets, act)
    bs = config.batch_size
    nb = math.ceil(n / bs)
    perm = jax.random.permutation(skey, n)
    perm = jnp.concatenate([perm, jnp.zeros(nb * bs - n, perm.dtype)]).reshape(nb, bs)
    weight = (jnp.arange(nb * bs) < n).astype(x.dtype).reshape(nb, bs)

    def mb(carry, inp):
        s, o = carry
        idx, wb, b = inp
        s, o, _, _ = _step(spec, config, s, o, lr, act, x[idx], targets[idx], wb, jax.random.fold_in(dkey, b))
        return (s, o), None

    (state, opt_state), _ = jax.lax.scan(mb, (state, opt_state), (perm, weight, jnp.arange(nb)))
    return state, opt_state, loss, _records(spec, config, pairs, targets, out, hidden)


def _train_epoch(spec, config, data: _Data, runs: _Runs, states, opt_states, epoch):
    """Every run's epoch (vmapped): new states, `(R,)` losses and `(R, ...)` records before the step."""
    n = data.x.shape[-2]
    full_batch = config.batch_size is None or config.batch_size >= n

    def one(state, opt_state, lr, act, dkey, skey, x, targets):
        dkey = jax.random.fold_in(dkey, epoch)
        if full_batch:
            return _full_batch_epoch(spec, config, data.pairs, state, opt_state, lr, act, dkey, x, targets)
        skey = jax.random.fold_in(skey, epoch)
        return _minibatch_epoch(spec, config, data.pairs, state, opt_state, lr, act, dkey, skey, x, targets)

    ax = data.axis
    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, ax, ax))(
        states, opt_states, runs.lrs, runs.acts, runs.drop_keys, runs.shuffle_keys, data.x, data.targets
    )


def _select(mask, new, old):
    """`new` where `mask` `(R,)`, else `old`, leaf by leaf of a pytree with leading axis `R`."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old
    )


def _mask_diverged(carry: _Carry, epoch, loss, rec):
    """Flag runs whose loss turned non-finite: `(alive, diverged_epoch, loss, records)`.

    The first non-finite epoch keeps its (non-finite) records; later ones are NaN.
    Diverged runs keep stepping (only their records are masked): freezing them would
    cost a select over every parameter, every epoch, for every run.
    """
    finite = jnp.isfinite(loss)
    div_epoch = jnp.where(carry.alive & ~finite, epoch, carry.diverged_epoch)
    was_alive = carry.alive
    loss = jnp.where(was_alive, loss, jnp.nan)
    rec = tuple(_select(was_alive, r, jnp.full_like(r, jnp.nan)) for r in rec)
    return was_alive & finite, div_epoch, loss, rec


def _stop_runs(config: TrainConfig, carry: _Carry, epoch, new_states, new_opts, loss):
    """The authors' rule (`TrainConfig.stop_loss`): a run whose loss, recorded before the step,
    is below `stop_loss` stops there without that step; its state, hence its records, stay."""
    assert carry.frozen is not None and carry.run_stop is not None and config.stop_loss is not None
    frozen = carry.frozen | (carry.alive & (loss < config.stop_loss))
    run_stop = jnp.where(frozen & (carry.run_stop == config.epochs), epoch, carry.run_stop)
    states = _select(~frozen, new_states, carry.states)
    opts = _select(~frozen, new_opts, carry.opt_states)
    return states, opts, frozen, run_stop


def _epoch_body(spec, config, data: _Data, runs: _Runs, carry: _Carry, epoch):
    """One epoch of the chunk: train, stop converged runs, mask diverged ones."""

    def train(_):
        return _train_epoch(spec, config, data, runs, carry.states, carry.opt_states, epoch)

    if config.stop_loss is None:
        new_states, new_opts, loss, rec = train(None)
    else:  # once every run has stopped, repeat the last records and step nothing
        assert carry.halt_epoch is not None and carry.last is not None
        new_states, new_opts, loss, rec = jax.lax.cond(
            carry.halt_epoch < config.epochs, lambda _: (carry.states, carry.opt_states) + carry.last, train, None
        )
        new_states, new_opts, frozen, run_stop = _stop_runs(config, carry, epoch, new_states, new_opts, loss)
    alive, div_epoch, loss, rec = _mask_diverged(carry, epoch, loss, rec)
    new = _Carry(new_states, new_opts, alive, div_epoch)
    if config.stop_loss is not None:
        assert carry.halt_epoch is not None
        done = jnp.all(~alive | frozen)
        halt = jnp.where((carry.halt_epoch == config.epochs) & done, epoch + 1, carry.halt_epoch)
        new = new._replace(halt_epoch=halt, last=(loss, rec), frozen=frozen, run_stop=run_stop)
    return new, (loss, rec)


def _epoch_shapes(spec, config, data: _Data, runs: _Runs, states, opt_states):
    return jax.eval_shape(lambda s, o: _train_epoch(spec, config, data, runs, s, o, jnp.int32(0)), states, opt_states)


def _initial_carry(spec, config, data: _Data, runs: _Runs, states, opt_states, epochs) -> _Carry:
    R = runs.lrs.shape[0]
    carry = _Carry(states, opt_states, jnp.ones(R, bool), jnp.full(R, -1, jnp.int32))
    if config.stop_loss is None:
        return carry
    shapes = _epoch_shapes(spec, config, data, runs, states, opt_states)
    last0 = jax.tree_util.tree_map(lambda v: jnp.zeros(v.shape, v.dtype), shapes[2:])
    return carry._replace(
        halt_epoch=jnp.asarray(epochs, jnp.int32),
        last=last0,
        frozen=jnp.zeros(R, bool),
        run_stop=jnp.full(R, epochs, jnp.int32),
    )


def _assemble(spec, config, data: _Data, runs: _Runs, carry: _Carry, losses, recs, initial) -> TrainResult:
    """The final records (after the last step) appended to the epoch series: a `TrainResult`."""
    ax = data.axis
    evaluate = jax.vmap(lambda s, x, t, a: _evaluate(spec, config, s, x, t, a), in_axes=(0, ax, ax, 0))
    loss_end, out_end, hidden_end = evaluate(carry.states, data.x, data.targets, runs.acts)
    rec_end = jax.vmap(lambda o, hdn, t: _records(spec, config, data.pairs, t, o, hdn), in_axes=(0, 0, ax))(
        out_end, hidden_end, data.targets
    )
    if config.stop_loss is not None:  # a stopped run's final records are its last ones (exactly)
        assert carry.frozen is not None and carry.last is not None
        loss_end = jnp.where(carry.frozen, carry.last[0], loss_end)
        rec_end = tuple(_select(carry.frozen, a, b) for a, b in zip(carry.last[1], rec_end))
    alive = carry.alive
    div_epoch = jnp.where(alive & ~jnp.isfinite(loss_end), config.epochs, carry.diverged_epoch)
    loss_end = jnp.where(alive, loss_end, jnp.nan)
    rec_end = tuple(_select(alive, r, jnp.full_like(r, jnp.nan)) for r in rec_end)

    def join(series, last):  # (E, R, ...) + (R, ...) -> (R, E + 1, ...)
        return jnp.concatenate([jnp.moveaxis(series, 0, 1), last[:, None]], axis=1)

    h, y, w = (join(s, e) for s, e in zip(recs, rec_end))
    layer = config.layer(spec)
    extra = {}
    if config.keep_hidden:
        extra = dict(
            hidden_initial=initial[2][layer],
            output_initial=initial[1],
            hidden_final=hidden_end[layer],
            output_final=out_end,
        )
    if config.stop_loss is not None:
        assert carry.run_stop is not None
        extra["stop_epoch"] = carry.run_stop
    return TrainResult(
        loss=join(losses, loss_end),
        h=h,
        y=y,
        w=w,
        diverged=div_epoch >= 0,
        diverged_epoch=div_epoch,
        loss_kind=config.loss,
        **extra,
    )


def segment_length(config: TrainConfig) -> int:
    """Epochs per compiled segment of the epoch loop (`TrainConfig.progress_every`, or about
    1/25 of the epochs and at least 50: a divisor of `epochs` when one lies within a factor
    two of that, so that no epoch of the last segment is padding). Each segment is one call
    of the compiled executable (a few milliseconds of dispatch on a CPU)."""
    E = config.epochs
    if config.progress_every is not None:
        return min(config.progress_every, E)
    target = max(min(E, 50), E // 25)
    for d in sorted(range(max(1, target // 2), 2 * target + 1), key=lambda d: abs(d - target)):
        if E % d == 0:
            return d
    return target


def start_config(config: TrainConfig) -> TrainConfig:
    """`config` as `_start` reads it: the epoch count (an argument of its own), the segment length
    and the value of `stop_loss` get fixed values, so that trainings differing only in those share
    the compiled start."""
    return dataclasses.replace(
        config, epochs=1, progress_every=None, stop_loss=None if config.stop_loss is None else 1.0
    )


def _start(x, targets, pairs, gains, seeds, lrs, acts, params, epochs, *, spec: NetworkSpec, config: TrainConfig):
    """A chunk's initial carry, per-run inputs and (with `keep_hidden`) initial evaluation, for a
    training of `epochs` (traced) epochs; `config` as `start_config` leaves it."""
    data = _Data(x, targets, pairs)
    states, opt_states, runs = _init(spec, config, gains, seeds, lrs, acts, params)
    initial = None
    if config.keep_hidden:
        evaluate = jax.vmap(
            lambda s, x, t, a: _evaluate(spec, config, s, x, t, a), in_axes=(0, data.axis, data.axis, 0)
        )
        initial = evaluate(states, data.x, data.targets, runs.acts)
    return _initial_carry(spec, config, data, runs, states, opt_states, epochs), runs, initial


def _segment(carry: _Carry, x, targets, pairs, runs: _Runs, epoch0, *, spec: NetworkSpec, config: TrainConfig):
    """`segment_length(config)` epochs from `epoch0` (a traced integer) as one `lax.scan`: the new
    carry and the `(S, R, ...)` losses and records. Epochs at or past `config.epochs` (padding of
    the last segment, compiled in only when the length does not divide the epochs) step nothing."""
    data = _Data(x, targets, pairs)
    S = segment_length(config)
    body = functools.partial(_epoch_body, spec, config, data, runs)
    if config.epochs % S:
        shapes = _epoch_shapes(spec, config, data, runs, carry.states, carry.opt_states)[2:]

        def padded(c, e):
            skip = (c, jax.tree_util.tree_map(lambda v: jnp.zeros(v.shape, v.dtype), shapes))
            return jax.lax.cond(e < config.epochs, body, lambda c, e: skip, c, e)

        return jax.lax.scan(padded, carry, epoch0 + jnp.arange(S, dtype=jnp.int32))
    return jax.lax.scan(body, carry, epoch0 + jnp.arange(S, dtype=jnp.int32))


def _finish(carry: _Carry, x, targets, pairs, runs: _Runs, losses, recs, initial, *, spec, config) -> TrainResult:
    """The `TrainResult` of a chunk from its final carry and `(E, R, ...)` series."""
    return _assemble(spec, config, _Data(x, targets, pairs), runs, carry, losses, recs, initial)


_start_jit = jax.jit(_start, static_argnames=("spec", "config"))
_segment_jit = jax.jit(_segment, static_argnames=("spec", "config"), donate_argnums=(0,))
_finish_jit = jax.jit(_finish, static_argnames=("spec", "config"))
