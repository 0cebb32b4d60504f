"""The vectorised training engine: every gain, seed and learning rate as one compiled batch.

`train_networks` trains R networks of one `NetworkSpec` on one dataset with
plain gradient descent (or Adam) on `0.5 * mean squared error`, one step per
epoch (or shuffled mini-batches), and records at every epoch, *before* that
epoch's step (index 0 is the initial state) and once after the last:

- the training loss on the whole dataset;
- `h, y, w` (docs/theory.md section 3) of every tracked pair of points at the tracked
  hidden layer, or at every hidden layer.

The compiled core is a `lax.scan` over epochs whose body is `vmap`-ped over the
runs; gains, seeds and learning rates are traced arrays, so a new grid never
recompiles. Runs whose loss turns non-finite are flagged, frozen, and their
later records are NaN; the rest of the batch is unaffected. When the batch does
not fit in memory it is trained in chunks of equal shape (one compilation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike

from . import _snapshot
from ._chunks import Chunk, plan_chunks
from ._networks import NetworkSpec, activation_indices, apply, init_state
from ._progress import Progress, report_computed
from ._sharding import replicate, round_up, run_mesh, shard_runs, shares_host_memory
from ._theory import LOSS_SCALES as LOSSES
from ._trajectory import measure_hyw


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
    """

    loss: Array
    h: Array
    y: Array
    w: Array
    diverged: Array
    diverged_epoch: Array
    stop_epoch: Array | None = None
    hidden_initial: Array | None = None
    hidden_final: Array | None = None
    output_initial: Array | None = None
    output_final: Array | None = None
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


def _initial_carry(spec, config, data: _Data, runs: _Runs, states, opt_states) -> _Carry:
    R = runs.lrs.shape[0]
    carry = _Carry(states, opt_states, jnp.ones(R, bool), jnp.full(R, -1, jnp.int32))
    if config.stop_loss is None:
        return carry
    shapes = _epoch_shapes(spec, config, data, runs, states, opt_states)
    last0 = jax.tree_util.tree_map(lambda v: jnp.zeros(v.shape, v.dtype), shapes[2:])
    return carry._replace(
        halt_epoch=jnp.int32(config.epochs),
        last=last0,
        frozen=jnp.zeros(R, bool),
        run_stop=jnp.full(R, config.epochs, jnp.int32),
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


def _start(x, targets, pairs, gains, seeds, lrs, acts, params=None, *, spec: NetworkSpec, config: TrainConfig):
    """A chunk's initial carry, per-run inputs and (with `keep_hidden`) initial evaluation."""
    data = _Data(x, targets, pairs)
    states, opt_states, runs = _init(spec, config, gains, seeds, lrs, acts, params)
    initial = None
    if config.keep_hidden:
        evaluate = jax.vmap(
            lambda s, x, t, a: _evaluate(spec, config, s, x, t, a), in_axes=(0, data.axis, data.axis, 0)
        )
        initial = evaluate(states, data.x, data.targets, runs.acts)
    return _initial_carry(spec, config, data, runs, states, opt_states), runs, initial


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


def _train_chunk(
    x,
    targets,
    pairs,
    gains,
    seeds,
    lrs,
    acts,
    params=None,
    report=None,
    save=None,
    snap=None,
    *,
    spec,
    config,
    compact=False,
    mesh=None,
) -> TrainResult:
    """Train `R` runs (`gains`, `seeds`, `lrs`, `acts` of shape `(R,)`) of one chunk.

    The epoch loop runs as compiled segments of `segment_length(config)` epochs (one
    executable, called again and again; no host callback inside, so the executables
    can live in JAX's persistent compilation cache); `report(epoch)` is called on the
    host once each has been computed (not merely queued). With `stop_loss` the loop is
    `_stopping_loop` (runs that stopped may leave the batch with `compact`; once every
    run has stopped no segment is run).
    `x`, `targets` are shared `(N, d)` or per run `(R, N, d)`; `params` is `None`
    (fresh Xavier weights from `gains`, `seeds`) or a batch of parameter states.
    `save(state)` is offered the chunk's state (a function building its snapshot
    arrays, `_snapshot`) after each segment but the last; `snap` is a snapshot to
    continue from (its `"epoch"` epochs are not run again).
    """
    kw = dict(spec=spec, config=config)
    carry, runs, initial = _start_jit(x, targets, pairs, gains, seeds, lrs, acts, params, **kw)
    if config.stop_loss is not None:
        carry, loss_series, rec_series = _stopping_loop(
            carry, x, targets, pairs, runs, report, compact, mesh, save, snap, **kw
        )
        return _finish_jit(carry, x, targets, pairs, runs, loss_series, rec_series, initial, **kw)
    E, S = config.epochs, segment_length(config)
    losses, recs, start = [], [], 0
    if snap is not None:
        start = int(snap["epoch"])
        carry = _snapshot.restore_tree(carry, snap, "carry", functools.partial(shard_runs, mesh))
        saved = [jnp.asarray(v) for v in _snapshot.series(snap)]
        losses.append(saved[0])
        recs.append(tuple(saved[1:]))
    for epoch0 in range(start, E, S):
        carry, (loss, rec) = _segment_jit(carry, x, targets, pairs, runs, np.int32(epoch0), **kw)
        losses.append(loss)
        recs.append(rec)
        if report is not None and len(losses) > 1:
            report_computed(report, losses[-2], epoch0)
        if save is not None and epoch0 + S < E:
            save(functools.partial(_plain_state, epoch0 + S, carry, losses, recs))
    if report is not None:
        report_computed(report, losses[-1], E)
    loss_series = jnp.concatenate(losses)[:E]
    rec_series = tuple(jnp.concatenate(parts)[:E] for parts in zip(*recs))
    return _finish_jit(carry, x, targets, pairs, runs, loss_series, rec_series, initial, **kw)


def _plain_state(reached: int, carry: _Carry, losses, recs) -> dict:
    """The snapshot arrays of a chunk without `stop_loss` after `reached` epochs."""
    series = [np.concatenate([np.asarray(v) for v in losses])]
    series += [np.concatenate([np.asarray(r[k]) for r in recs]) for k in range(len(recs[0]))]
    return {
        "epoch": np.asarray(reached),
        **_snapshot.tree_arrays("carry", carry),
        **{f"series.{k}": v[:reached] for k, v in enumerate(series)},
    }


def _take(tree, idx, mesh=None):
    """Runs `idx` of a pytree whose leaves all have the leading run axis (split over `mesh`)."""
    return jax.tree_util.tree_map(lambda v: shard_runs(mesh, v[idx]), tree)


def _stopping_loop(
    carry: _Carry,
    x,
    targets,
    pairs,
    runs: _Runs,
    report,
    compact=False,
    mesh=None,
    save=None,
    snap=None,
    *,
    spec,
    config,
):
    """The epoch loop with `stop_loss`, its records gathered on the host segment by segment.

    Once every run has stopped, the remaining segments are not run: their records
    repeat the last ones, as the compiled loop would record them. With `compact`:
    a run that has stopped steps nothing more and repeats its last records, so
    computing it is wasted work. After each segment, once at most half of the runs
    still in the batch are training, the stopped ones leave it: their state is set
    aside, their remaining records are their last records (what the compiled loop
    would record), and the next segments run on the smaller batch (one compilation
    per batch size, at most `log2(R)` of them; over a mesh, stopped runs pad the batch
    to a multiple of its devices and stay in it). Runs that diverged leave it too, with
    NaN records (as the compiled loop masks them); only their `keep_hidden` final
    activations, from non-finite weights either way, may differ. Runs are independent
    under `vmap`, so the records are those of the full batch (to float tolerance).
    `save` and `snap` as in `_train_chunk`.
    Returns the full final carry and the `(E, R, ...)` loss and record series.
    """
    kw = dict(spec=spec, config=config)
    E, S = config.epochs, segment_length(config)
    R = runs.lrs.shape[0]
    per_run = x.ndim == 3
    active = np.arange(R)
    parked: list[tuple[np.ndarray, Any]] = []  # (chunk positions, their carry without halt_epoch)
    bufs = None  # host (E, R, ...) series: loss, then the records
    xa, ta, ra = x, targets, runs
    start = 0

    def fill(idx, part):  # remaining records of runs that left the batch: their last ones (NaN if diverged)
        assert bufs is not None
        alive = np.asarray(part.alive)
        last = jax.tree_util.tree_map(
            lambda v: np.where(alive.reshape((-1,) + (1,) * (v.ndim - 1)), np.asarray(v), np.nan), part.last
        )
        for b, v in zip(bufs, (last[0],) + tuple(last[1])):
            b[start:, idx] = v[None]

    def state():  # the snapshot arrays after `start` epochs
        assert bufs is not None
        out = {"epoch": np.asarray(start), "active": active, **_snapshot.tree_arrays("carry", carry)}
        out.update({f"series.{k}": b[:start] for k, b in enumerate(bufs)})
        for j, (idx, part) in enumerate(parked):
            out.update({f"parked.{j}.idx": idx, **_snapshot.tree_arrays(f"parked.{j}.carry", part)})
        return out

    if snap is not None:  # continue after the snapshot's epochs, on the runs it left in the batch
        start, active = int(snap["epoch"]), np.asarray(snap["active"])
        saved = _snapshot.series(snap)
        bufs = [np.empty((E, R) + v.shape[2:], v.dtype) for v in saved]
        for b, v in zip(bufs, saved):
            b[:start] = v
        free = carry._replace(halt_epoch=None)
        while f"parked.{len(parked)}.idx" in snap:
            j = len(parked)
            parked.append(
                (np.asarray(snap[f"parked.{j}.idx"]), _snapshot.restore_tree(free, snap, f"parked.{j}.carry"))
            )
            fill(parked[-1][0], parked[-1][1])
        carry = _snapshot.restore_tree(
            carry, snap, "carry", lambda v: shard_runs(mesh, v) if v.ndim else jnp.asarray(v)
        )
        if len(active) < R:
            ra = _take(runs, active, mesh)
            if per_run:
                xa, ta = shard_runs(mesh, x[active]), shard_runs(mesh, targets[active])

    for epoch0 in range(start, E, S):
        carry, (loss, rec) = _segment_jit(carry, xa, ta, pairs, ra, np.int32(epoch0), **kw)
        start = min(epoch0 + S, E)
        series = [np.asarray(loss)] + [np.asarray(r) for r in rec]
        if bufs is None:
            bufs = [np.empty((E, R) + v.shape[2:], v.dtype) for v in series]
        for b, v in zip(bufs, series):
            b[epoch0:start, active] = v[: start - epoch0]
        if report is not None:
            report(start)
        if start == E:
            break
        assert carry.halt_epoch is not None
        if int(carry.halt_epoch) < E:  # every run has stopped
            fill(active, carry)
            if report is not None:
                report(E)
            break
        done = np.asarray(carry.frozen) | ~np.asarray(carry.alive)  # stopped, or diverged (NaN records from then on)
        n_keep = round_up(int(np.count_nonzero(~done)), mesh)
        if compact and 0 < n_keep <= len(active) // 2:
            order = np.argsort(done, kind="stable")  # the runs still training first, then padding
            keep, gone = np.sort(order[:n_keep]), np.sort(order[n_keep:])
            parked.append((active[gone], _take(carry._replace(halt_epoch=None), gone)))
            fill(*parked[-1])
            halt = carry.halt_epoch
            carry = _take(carry._replace(halt_epoch=None), keep, mesh)._replace(halt_epoch=halt)
            ra = _take(ra, keep, mesh)
            if per_run:
                xa, ta = shard_runs(mesh, xa[keep]), shard_runs(mesh, ta[keep])
            active = active[keep]
        if save is not None:
            save(state)
    assert bufs is not None
    if parked:
        parked.append((active, carry._replace(halt_epoch=None)))
        order = np.argsort(np.concatenate([i for i, _ in parked]))
        halt = carry.halt_epoch
        carry = jax.tree_util.tree_map(lambda *v: shard_runs(mesh, jnp.concatenate(v)[order]), *[t for _, t in parked])
        carry = carry._replace(halt_epoch=halt)
    return carry, jnp.asarray(bufs[0]), tuple(jnp.asarray(b) for b in bufs[1:])


# --------------------------------------------------------------------------------------
# Host-side entry point: validation, chunking, progress
# --------------------------------------------------------------------------------------


def _param_count(spec: NetworkSpec) -> int:
    shapes = jax.eval_shape(lambda: init_state(spec, 1.0, jax.random.key(0)))
    return sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(shapes))


def bytes_per_run(spec: NetworkSpec, config: TrainConfig, n_points: int, n_pairs: int) -> int:
    """Rough device memory one run of the batch needs (parameters, optimiser, activations, records)."""
    itemsize = 8 if bool(getattr(jax.config, "jax_enable_x64")) else 4
    copies = 4 if config.optimizer == "sgd" else 6  # params, grads, update (+ Adam moments)
    batch = n_points if config.batch_size is None else min(n_points, config.batch_size)
    acts = 3 * max(batch, n_points) * sum(spec.hidden_sizes())
    layers = spec.n_hidden if config.all_layers else 1
    records = (config.epochs + 1) * (1 + 3 * n_pairs * layers)
    kept = 2 * n_points * (max(spec.hidden_sizes()) + spec.d_out) if config.keep_hidden else 0
    return itemsize * (copies * _param_count(spec) + acts + records + kept)


def available_memory() -> int:
    """Bytes the batch may use: 70% of the free memory of the first device, or half the host's RAM."""
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and "bytes_limit" in stats:
        return int(0.7 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    try:
        return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def fitting_runs(spec: NetworkSpec, config: TrainConfig, n_points: int, n_pairs: int, mesh=None) -> int:
    """How many runs fit in memory at once: `available_memory() // bytes_per_run`, on every
    device of the mesh when each has its own memory (GPUs), once when they share the host's."""
    per_device = available_memory() // max(bytes_per_run(spec, config, n_points, n_pairs), 1)
    devices = 1 if mesh is None or shares_host_memory(mesh) else mesh.size
    return max(1, per_device) * devices


def _as_runs(name, v, R, dtype):
    arr = np.broadcast_to(np.asarray(v, dtype), (R,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def train_networks(
    x: ArrayLike,
    targets: ArrayLike,
    spec: NetworkSpec,
    config: TrainConfig,
    *,
    gains: ArrayLike | None = None,
    seeds: ArrayLike = 0,
    lrs: ArrayLike,
    activations: str | Sequence[str] | None = None,
    pairs: Sequence[tuple[int, int]] | ArrayLike = ((0, 1),),
    initial_params=None,
    chunk_size: int | None = None,
    progress: bool | Callable[[int], None] = False,
    devices: Sequence | None = None,
    compact: bool | None = None,
    checkpoint: Callable[[dict[str, np.ndarray]], None] | None = None,
    checkpoint_every: float = 300.0,
    resume: Mapping[str, np.ndarray] | None = None,
) -> TrainResult:
    """Train a batch of networks of one architecture, one compiled call per chunk.

    **Arguments:**

    - `x`: inputs `(N, d_in)`, shared by every run, or `(R, N, d_in)`, one
      dataset per run (e.g. a grid of two-point tasks: one compilation for all);
      `targets`: `(N, d_out)` or `(R, N, d_out)` likewise.
    - `spec`: the `NetworkSpec`; `config`: the `TrainConfig`.
    - `gains`, `seeds`, `lrs`: per run, broadcast against each other to `(R,)`:
      Xavier gain (required unless `initial_params` are given), integer seed
      (initialisation, dropout and shuffling streams), learning rate per step.
    - `activations`: the nonlinearity of each run (a name of `ACTIVATIONS`, or one
      per run, broadcast like `gains`); `None`: `spec.activation` for every run.
      The nonlinearity is traced: every activation of one network shape trains in
      one vectorised batch from one compiled executable (`NetworkSpec.shape`).
    - `pairs`: `(n_pairs, 2)` indices of the tracked point pairs (point 2 minus point 1).
    - `initial_params`: start from these parameters instead of fresh Xavier
      weights (`gains` is then unused): a batch of parameter states with a
      leading run axis `R`, laid out as `init_state` makes them: an `nnx.State`
      (or nested dict) `{"layers": {k: {"kernel": ..., "bias": ...}}}` for layer
      `k = 0 .. n_layers - 1` in forward order. A dense kernel is `(in, out)`
      (PyTorch's `nn.Linear.weight` transposed), a convolution kernel
      `(kernel, in_channels, out_channels)` (PyTorch's `nn.Conv1d.weight`
      as `weight.transpose(2, 1, 0)`), biases `(out,)`. `params_from_torch`
      converts a PyTorch `state_dict` of the authors' models.
    - `chunk_size`: runs per compiled call; default, as many as fit in 70% of the
      device's free memory (see `bytes_per_run`).
    - `progress`: `True` for a progress bar on stderr, or a callable of the epoch
      reached in the current chunk, called as each compiled segment of
      `segment_length(config)` epochs has been computed (not when it is queued:
      JAX dispatches asynchronously); a `Progress` passed in is left open for
      the caller.
    - `devices`: devices to spread the runs over (default: all that JAX sees, at
      most one per run; on a CPU see `use_host_cores`); with more than one, each
      chunk is sharded along the run axis (`jax.sharding`, a mesh axis `"runs"`).
    - `compact`: with `TrainConfig.stop_loss`, drop the runs that have stopped (or
      diverged) from the batch between compiled segments, once at most half of it is
      still training (over several devices: rounded up to a multiple of them). The
      records are those of the full batch to float rounding (which a long run can
      amplify; in float64, to 1e-10); the time is that
      of the runs that still train (the authors' final-distance grid spends most of
      its epochs waiting for its slowest run), plus one compilation per new batch
      size. `None` (default): on a CPU, whose time per epoch grows with the batch;
      not on an accelerator, where a smaller batch saves little and a compilation
      takes seconds. `False` keeps every run in the batch to the end.
    - `checkpoint`: called on the host with a snapshot of the training so far (a
      flat `dict` of NumPy arrays, for `np.savez`) after a compiled segment or a
      chunk has been computed, at most every `checkpoint_every` seconds (a
      snapshot waits for the device and copies the state to the host), never
      after the last; the caller saves it (e.g. `results.atomic_save_npz`).
    - `resume`: such a snapshot (e.g. `results.load_npz` of the file): the
      training continues after its epochs and chunks, and the result equals that
      of the uninterrupted training bit for bit. It must come from a call with
      the same data, runs, network, configuration, chunking and devices, else
      `SnapshotMismatch` (a `ValueError`; train from the start then).

    **Returns:** a `TrainResult` of NumPy arrays with leading axis `R`. The same
    seed gives the same run alone, in any batch and in any chunking (to float
    tolerance).
    """
    x = np.asarray(x)
    targets = np.asarray(targets)
    dtype = np.float64 if bool(getattr(jax.config, "jax_enable_x64")) else np.float32
    per_run = x.ndim == 3
    if x.ndim not in (2, 3) or x.shape[-1] != spec.d_in:
        raise ValueError(f"x must have shape (N, {spec.d_in}) or (R, N, {spec.d_in}), got {x.shape}")
    if targets.shape != x.shape[:-1] + (spec.d_out,):
        raise ValueError(f"targets must have shape {x.shape[:-1] + (spec.d_out,)}, got {targets.shape}")
    n_points = x.shape[-2]
    pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
    if pairs.size == 0 or pairs.min() < 0 or pairs.max() >= n_points or np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError(f"pairs must be distinct point indices in [0, {n_points}), got {pairs.tolist()}")
    config.layer(spec)
    if gains is None:
        if initial_params is None:
            raise ValueError("gains are required unless initial_params are given")
        gains = 1.0
    acts = activation_indices(activations, spec)
    shapes = [np.shape(gains), np.shape(seeds), np.shape(lrs), np.shape(acts)] + ([x.shape[:1]] if per_run else [])
    leaves = None
    if initial_params is not None:
        leaves = _check_params(spec, initial_params, dtype)
        shapes.append(leaves[0].shape[:1])
    try:
        R = int(np.prod(np.broadcast_shapes(*shapes)))
    except ValueError:
        raise ValueError(f"the per-run arguments do not broadcast to one run axis: shapes {shapes}") from None
    if R < 1:
        raise ValueError("no runs: gains, seeds and lrs broadcast to an empty batch")
    if per_run and x.shape[0] != R:
        raise ValueError(f"x has data for {x.shape[0]} runs, the other arguments for {R}")
    if leaves is not None and leaves[0].shape[0] != R:
        raise ValueError(f"initial_params hold {leaves[0].shape[0]} runs, the other arguments {R}")
    gains = _as_runs("gains", gains, R, dtype)
    lrs = _as_runs("lrs", lrs, R, dtype)
    seeds = np.broadcast_to(np.asarray(seeds, np.int64), (R,)).astype(np.uint32)
    acts = np.broadcast_to(acts, (R,)).copy()
    if np.any(np.asarray(gains) <= 0):
        raise ValueError("gains must be positive")
    if np.any(np.asarray(lrs) <= 0):
        raise ValueError("learning rates must be positive")

    # At most one device per run: a device without a run of its own would train padding.
    used = list(jax.devices() if devices is None else devices)[:R]
    mesh = run_mesh(used)
    if compact is None:
        compact = used[0].platform == "cpu"
    if chunk_size is None:
        chunk_size = fitting_runs(spec, config, n_points, len(pairs), mesh)
    chunk = round_up(int(max(1, min(R, chunk_size))), mesh)  # padding (copies of the last run) fills every device
    chunks = plan_chunks(R, chunk) if chunk <= R else [Chunk(np.arange(chunk).clip(max=R - 1), R)]
    n_chunks = len(chunks)
    xs, ts = np.asarray(x, dtype), np.asarray(targets, dtype)
    saver, parts, first, snap = None, [], 0, None
    if checkpoint is not None or resume is not None:
        fp = _snapshot.fingerprint(
            repr(spec),
            repr(config),
            xs,
            ts,
            pairs,
            gains,
            seeds,
            lrs,
            acts,
            *([] if leaves is None else [np.asarray(v) for v in jax.tree_util.tree_leaves(leaves[1])]),
            chunk,
            [str(d) for d in used],
            bool(compact),
        )
        if checkpoint is not None:
            saver = _snapshot.Saver(checkpoint, checkpoint_every, fp)
        if resume is not None:
            first, parts, snap = _snapshot.unpack(resume, fp, TrainResult, config.loss)
            if "epoch" not in snap:
                snap = None
    reporter, own = None, False
    if progress is True:
        reporter, own = Progress(config.epochs, n_chunks), True
    elif callable(progress):
        reporter = progress

    place_data = shard_runs if per_run else replicate
    pj = replicate(mesh, pairs)
    if not per_run:
        xj, tj = replicate(mesh, xs), replicate(mesh, ts)
    core = spec.shape()  # one executable per shape: the nonlinearity is traced (`acts`)
    try:
        for c, (idx, _) in enumerate(chunks):
            if c < first:  # finished before the snapshot
                continue
            if isinstance(reporter, Progress) and own:
                reporter.chunk = c
            g, sd, lr, ac = (shard_runs(mesh, np.asarray(v)[idx]) for v in (gains, seeds, lrs, acts))
            if per_run:
                xj, tj = place_data(mesh, xs[idx]), place_data(mesh, ts[idx])
            params = None
            if leaves is not None:
                params = jax.tree_util.tree_map(lambda v, idx=idx: shard_runs(mesh, np.asarray(v)[idx]), leaves[1])
            out = _train_chunk(
                xj,
                tj,
                pj,
                g,
                sd,
                lr,
                ac,
                params,
                reporter,
                None if saver is None else functools.partial(saver.maybe, c, list(parts)),
                snap if c == first else None,
                spec=core,
                config=config,
                compact=bool(compact),
                mesh=mesh,
            )
            parts.append(jax.tree_util.tree_map(np.asarray, out))
            if saver is not None and c + 1 < n_chunks:
                saver.maybe(c + 1, parts)
    finally:
        if isinstance(reporter, Progress) and own:
            reporter.close()
    return jax.tree_util.tree_map(lambda *v: np.concatenate(v)[:R], *parts)


def _check_params(spec: NetworkSpec, params, dtype):
    """`(a leaf, the state)`: `params` as an `nnx.State` of `dtype` with `init_state`'s structure and
    a leading run axis; raises `ValueError` naming the first mismatch."""
    abstract = jax.eval_shape(lambda: init_state(spec, 1.0, jax.random.key(0)))
    want = jax.tree_util.tree_flatten_with_path(abstract)[0]
    want_paths = [_path_key(p) for p, _ in want]
    got = {_path_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    if set(got) != set(want_paths):
        missing = sorted(set(want_paths) - set(got))
        extra = sorted(set(got) - set(want_paths))
        raise ValueError(
            f"initial_params do not match the network's layout: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    leaves = []
    R = None
    for path, (_, leaf) in zip(want_paths, want):
        v = np.asarray(got[path], dtype)
        if v.shape[1:] != leaf.shape:
            raise ValueError(f"initial_params {path}: expected (R,) + {leaf.shape}, got {v.shape}")
        if R is None:
            R = v.shape[0]
        elif v.shape[0] != R:
            raise ValueError(f"initial_params {path}: {v.shape[0]} runs, the first parameter has {R}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"initial_params {path}: not finite")
        leaves.append(v)
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), leaves)
    return leaves[0], state


def _path_key(path) -> str:
    """`"layers/3/kernel"` from a pytree key path (attribute keys such as an `nnx.Param`'s value dropped)."""
    names = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            names.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            names.append(str(k.idx))
    return "/".join(names)
