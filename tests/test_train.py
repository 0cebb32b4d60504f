"""The vectorised training engine: records, batching, divergence, precision, chunking."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compilations

import repalign_jax as rj
from repalign_jax import _train

DATA = rj.two_point(dx2=1.0, dy2=0.5)
SMALL = rj.NetworkSpec(d_in=1, d_out=1, width=32, depth=4)
SEGMENT = "jit(_segment)"  # the compiled epoch-loop segment, as JAX's compilation events name it


def _train_small(epochs=30, spec=SMALL, **kw):
    kw.setdefault("gains", 1.0)
    kw.setdefault("seeds", 0)
    kw.setdefault("lrs", 0.05)
    config = kw.pop("config", rj.TrainConfig(epochs=epochs))
    return rj.train_networks(DATA.x, DATA.targets, spec, config, **kw)


def test_records_start_at_the_initial_state():
    res = _train_small(seeds=[3, 4])
    assert res.loss.shape == (2, 31) and res.h.shape == (2, 31, 1)

    @jax.jit  # one program, not one per operation
    def initial(seed):
        state = rj.init_state(SMALL, 1.0, jax.random.fold_in(jax.random.key(seed), 0))
        out, hidden = rj.apply(SMALL, state, jnp.asarray(DATA.x))
        return out, rj.measure_hyw(hidden[2][0], hidden[2][1], out[0], out[1], DATA.targets[0], DATA.targets[1])

    for r, seed in enumerate([3, 4]):
        out, (h, y, w) = initial(seed)
        np.testing.assert_allclose(res.h[r, 0, 0], h, rtol=1e-6)
        np.testing.assert_allclose(res.y[r, 0, 0], y, rtol=1e-5)
        np.testing.assert_allclose(res.w[r, 0, 0], w, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(res.loss[r, 0], 0.5 * np.mean((np.asarray(out) - DATA.targets) ** 2), rtol=1e-6)


def test_one_sgd_step_is_plain_gradient_descent():
    lr = 0.05
    res = _train_small(lrs=lr)  # the record after the first step

    def loss(s):
        out, _ = rj.apply(SMALL, s, jnp.asarray(DATA.x))
        return 0.5 * jnp.mean((out - DATA.targets) ** 2)

    @jax.jit  # one program, not one per operation
    def stepped_loss(key):
        state = rj.init_state(SMALL, 1.0, key)
        grads = jax.grad(loss)(state)
        return loss(jax.tree_util.tree_map(lambda p, g: p - lr * g, state, grads))

    np.testing.assert_allclose(res.loss[0, 1], stepped_loss(jax.random.fold_in(jax.random.key(0), 0)), rtol=1e-6)


def test_loss_decreases_and_outputs_fit():
    res = _train_small(epochs=400, lrs=0.05)
    assert res.loss[0, -1] < 1e-3 * res.loss[0, 0]
    np.testing.assert_allclose(res.y[0, -1, 0], 0.5, rtol=0.02)  # the outputs' distance fits dy2
    assert not res.diverged[0]


def test_batch_equals_alone_and_any_chunking():
    seeds, gains, lrs = np.array([0, 1, 2]), np.array([0.8, 1.0, 1.2]), np.array([0.02, 0.05, 0.03])
    batch = _train_small(seeds=seeds, gains=gains, lrs=lrs)
    chunked = _train_small(seeds=seeds, gains=gains, lrs=lrs, chunk_size=2)
    for k in range(3):
        alone = _train_small(seeds=seeds[k], gains=gains[k], lrs=lrs[k])
        # y and w are differences of nearly equal numbers: a few float32 roundings more.
        for field, rtol in (("loss", 1e-5), ("h", 1e-5), ("y", 5e-5), ("w", 5e-5)):
            np.testing.assert_allclose(getattr(batch, field)[k], getattr(alone, field)[0], rtol=rtol, atol=1e-9)
            np.testing.assert_allclose(getattr(chunked, field)[k], getattr(alone, field)[0], rtol=rtol, atol=1e-9)


def test_divergence_is_flagged_and_contained():
    lrs = np.array([0.05, 50.0, 0.05])
    res = _train_small(seeds=[0, 1, 2], lrs=lrs)
    np.testing.assert_array_equal(res.diverged, [False, True, False])
    e = res.diverged_epoch[1]
    assert 0 < e < 30
    assert np.all(np.isnan(res.h[1, e + 1 :])) and np.all(np.isnan(res.loss[1, e + 1 :]))
    assert np.all(np.isfinite(res.h[1, :e]))
    assert res.diverged_epoch[0] == -1
    alone = _train_small(seeds=2, lrs=0.05)
    np.testing.assert_allclose(res.h[2], alone.h[0], rtol=1e-5)


def test_stop_loss_stops_each_run_at_its_first_epoch_below():
    seeds, lrs = [0, 1], [0.05, 0.03]
    full = _train_small(epochs=400, seeds=seeds, lrs=lrs)
    slow = int(np.argmax(full.loss[:, 200]))  # both runs are below tol from about epoch 200 on,
    tol = float(np.sqrt(full.loss[slow, 200] * full.loss[slow, 201]))  # not on a float's edge
    config = rj.TrainConfig(epochs=400, stop_loss=tol)
    res = _train_small(seeds=seeds, lrs=lrs, config=config)
    assert res.stop_epoch is not None
    for r in range(2):
        first = int(np.argmax(full.loss[r] < tol))  # this run's first epoch whose record is below tol
        assert 0 < first < 400
        assert res.stop_epoch[r] == first
        # Identical to the full training up to the stop; the records then repeat that one, the final too.
        np.testing.assert_allclose(res.loss[r, : first + 1], full.loss[r, : first + 1], rtol=1e-5)
        np.testing.assert_allclose(res.h[r, : first + 1], full.h[r, : first + 1], rtol=1e-5)
        np.testing.assert_array_equal(res.loss[r, first:], np.repeat(res.loss[r, first], 401 - first))
        np.testing.assert_array_equal(res.h[r, first:], np.repeat(res.h[r, first : first + 1], 401 - first, 0))
    assert res.stop_epoch[0] != res.stop_epoch[1]  # the runs stopped on their own
    # A tolerance never reached trains every epoch, as without one.
    never = _train_small(seeds=seeds, lrs=lrs, config=rj.TrainConfig(epochs=400, stop_loss=1e-30))
    np.testing.assert_array_equal(never.stop_epoch, [400, 400])
    np.testing.assert_allclose(never.loss, full.loss, rtol=1e-6)
    assert full.stop_epoch is None
    with pytest.raises(ValueError, match="stop_loss"):
        rj.TrainConfig(epochs=3, stop_loss=0.0)


def test_compaction_drops_stopped_runs_and_keeps_every_record(x64):
    """With stop_loss, runs that stopped leave the batch (smaller compiled segments), and every
    record, stop epoch and final value is the one of the batch that keeps them (float64: to 1e-10)."""
    lrs = np.array([0.08, 0.05, 0.03, 0.02, 0.012, 0.008, 50.0])  # the last diverges
    tasks = [rj.two_point(dx2=d, dy2=0.5) for d in (1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0)]
    x, t = np.stack([d.x for d in tasks]), np.stack([d.targets for d in tasks])
    config = rj.TrainConfig(epochs=1500, stop_loss=2e-3, progress_every=50, keep_hidden=True)

    def run(compact):
        segments: list[int] = []  # one progress report per compiled segment computed
        with count_compilations() as compiled:
            res = rj.train_networks(
                x, t, SMALL, config, gains=1.0, seeds=np.arange(7), lrs=lrs, compact=compact, progress=segments.append
            )
        return res, segments, compiled.count(SEGMENT)

    kept, kept_segments, kept_compiled = run(False)
    dropped, dropped_segments, dropped_compiled = run(None)  # the default: on a CPU, compact
    assert kept_compiled == 1  # one batch (of 7) throughout
    # The batch shrank: one new segment executable per smaller batch size, at most log2(7) of them
    # (the batch of 7 was compiled by the first call).
    assert 1 <= dropped_compiled <= 2
    assert len(dropped_segments) <= len(kept_segments)
    assert kept.stop_epoch is not None and dropped.stop_epoch is not None
    assert kept.diverged.tolist() == [False] * 6 + [True] and 0 < kept.diverged_epoch[6] < 1000
    stops = kept.stop_epoch[:6]
    assert len(set(stops.tolist())) > 2 and stops.max() < 1500  # the runs stop at different epochs
    np.testing.assert_array_equal(dropped.stop_epoch, kept.stop_epoch)
    np.testing.assert_array_equal(dropped.diverged_epoch, kept.diverged_epoch)
    for field in ("loss", "h", "y", "w"):  # NaN where the diverged run's are
        np.testing.assert_allclose(getattr(dropped, field), getattr(kept, field), rtol=1e-10, atol=1e-14)
    for field in ("hidden_final", "output_final"):  # a diverged run's come from non-finite weights
        np.testing.assert_allclose(getattr(dropped, field)[:6], getattr(kept, field)[:6], rtol=1e-10, atol=1e-14)


def test_second_call_does_not_recompile(compiles):
    _train_small(seeds=[0, 1], gains=[1.0, 1.1], lrs=[0.01, 0.02], epochs=31)
    assert compiles  # the first call compiled (the counter can fail)
    compiles.clear()
    res = _train_small(seeds=[5, 6], gains=[0.7, 1.3], lrs=[0.03, 0.04], progress=lambda e: None, epochs=31)
    assert compiles == []
    assert np.all(np.isfinite(res.h))


def test_two_trainings_report_to_their_own_progress():
    """Progress is passed in, not global: two trainings at once report to their own callables."""
    import threading

    a, b = [], []
    runs = [
        threading.Thread(
            target=_train_small, kwargs=dict(progress=a.append, config=rj.TrainConfig(epochs=30, progress_every=10))
        ),
        threading.Thread(
            target=_train_small, kwargs=dict(progress=b.append, config=rj.TrainConfig(epochs=20, progress_every=5))
        ),
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=300)
    assert a == [10, 20, 30] and b == [5, 10, 15, 20]


def test_progress_reports_epochs():
    seen = []
    _train_small(progress=seen.append, config=rj.TrainConfig(epochs=30, progress_every=10))
    assert seen == [10, 20, 30]


def test_progress_reports_computed_epochs_not_queued_ones():
    """JAX dispatches asynchronously: a report must wait until its segment has been computed,
    so the last report comes once the whole training is (no array JAX holds is still pending;
    reporting at dispatch left the last segment's 20 outputs pending)."""
    pending = []  # at each report: the live JAX arrays not yet computed

    def report(epoch):
        pending.append((epoch, sum(not a.is_ready() for a in jax.live_arrays())))

    spec = rj.NetworkSpec(d_in=1, d_out=1, width=256, depth=6)  # segments slow enough to be queued
    config = rj.TrainConfig(epochs=600, progress_every=200)
    _train_small(spec=spec, config=config, seeds=[0, 1, 2, 3], progress=report)
    assert [e for e, _ in pending] == [200, 400, 600]
    assert pending[-1] == (600, 0), pending


# The epoch-loop segment `train_networks` compiles for two runs of each of these networks,
# as XLA dumps it (what the training spends its time in): (width, precision, optimizer).
HLO_DEPTH = 4
HLO_CASES = [(32, "highest", "sgd"), (32, "default", "sgd"), (48, "highest", "sgd"), (48, "highest", "adam")]
DUMP = """
import numpy as np
import repalign_jax as rj
d = rj.two_point(dx2=1.0, dy2=0.5)
for width, precision, optimizer in CASES:
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=width, depth=DEPTH, precision=precision)
    config = rj.TrainConfig(epochs=4, optimizer=optimizer, progress_every=2)
    rj.train_networks(d.x, d.targets, spec, config, gains=1.0, seeds=np.arange(2), lrs=0.01)
"""


@pytest.fixture(scope="module")
def segment_hlo(tmp_path_factory):
    """`{case: (HLO before, after optimisation)}` of the segment each case compiles (XLA's
    `--xla_dump_to`, in a subprocess: the flag is read when JAX starts; no compilation cache,
    which would skip the compilation)."""
    out = tmp_path_factory.mktemp("hlo")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_COMPILATION_CACHE="false")
    env["XLA_FLAGS"] = f"--xla_dump_to={out} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=jit__segment"
    env.pop("JAX_NUM_CPU_DEVICES", None)
    code = f"CASES, DEPTH = {HLO_CASES!r}, {HLO_DEPTH}\n{DUMP}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stages = [
        sorted(out.glob(f"module_*.jit__segment.{s}.txt")) for s in ("before_optimizations", "*after_optimizations")
    ]
    assert len(stages[0]) == len(stages[1]) == len(HLO_CASES), stages  # one compilation per case, in order
    return {c: (b.read_text(), a.read_text()) for c, b, a in zip(HLO_CASES, *stages)}


def _dot_lines(text):
    lines = [ln for ln in text.splitlines() if " dot(" in ln]
    assert lines
    return lines


# The HLO tests read XLA's dump of what `train_networks` compiled: XLA reads `--xla_dump_to` when
# it starts, so the trainings run in a process of their own (slow set).
@pytest.mark.slow
def test_full_float32_precision_reaches_the_compiled_step(segment_hlo):
    lines = _dot_lines(segment_hlo[32, "highest", "sgd"][0])
    assert all("operand_precision={highest,highest}" in ln for ln in lines), lines[:3]
    assert not any("highest" in ln for ln in _dot_lines(segment_hlo[32, "default", "sgd"][0]))


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_weights_are_updated_in_place(segment_hlo, optimizer):
    """The compiled epoch loop neither copies a weight matrix nor writes its gradient with a matmul.

    Both used to cost two extra passes over the weights per step (the update could
    not be ordered after the backward matmul; the gradient was a matmul output).
    """
    text = segment_hlo[48, "highest", optimizer][1]
    body, weight = [], "f32[2,48,48]"
    inside = False
    for ln in text.splitlines():
        if ln and not ln.startswith(" "):
            inside = not ln.startswith("ENTRY")  # every computation but the entry (loop bodies, fusions)
        elif inside:
            body.append(ln)
    # Instructions producing a weight-shaped array: "%name = f32[2,48,48]{...} op(...)".
    made = [ln.split(" = ", 1)[1] for ln in body if " = " in ln and ln.split(" = ", 1)[1].startswith(weight)]
    assert any(" fusion(" in ln for ln in made)  # the in-place update
    assert not [ln for ln in made if " copy(" in ln], [ln for ln in made if " copy(" in ln][:2]
    assert not [ln for ln in made if " dot(" in ln], [ln for ln in made if " dot(" in ln][:2]


@pytest.mark.slow
def test_backward_reads_square_weights_with_a_reduction_not_a_matmul(segment_hlo):
    """For a few points the backward product `d @ w.T` is a multiply-reduce (XLA:CPU's
    batched matmul kernel is slower with two rows); the forward stays a matmul."""
    text = segment_hlo[48, "highest", "sgd"][1]
    dots = [ln for ln in text.splitlines() if " dot(" in ln and "= f32[2,2,48]" in ln]
    forward = [ln for ln in dots if "rhs_contracting_dims={1}" in ln]
    backward = [ln for ln in dots if "rhs_contracting_dims={2}" in ln]
    assert len(forward) >= HLO_DEPTH - 1  # one per square layer (the compiler may repeat the loop body)
    assert not backward, backward[:2]


def test_float32_run_matches_float64_run():
    res32 = _train_small()
    with jax.enable_x64(True):
        res64 = _train_small()
        assert res64.h.dtype == np.float64
    np.testing.assert_allclose(res32.h, res64.h, rtol=1e-4)
    np.testing.assert_allclose(res32.loss, res64.loss, rtol=1e-4)


def test_minibatches_adam_and_all_layers():
    blobs = rj.gaussian_blobs(n=6)
    spec = rj.NetworkSpec(d_in=blobs.x.shape[1], d_out=1, width=16, depth=4, activation="tanh")
    pairs = [(0, 1), (0, 40)]
    for opt in ("sgd", "adam"):
        config = rj.TrainConfig(epochs=20, batch_size=16, optimizer=opt, all_layers=True, keep_hidden=True)
        res = rj.train_networks(
            blobs.x,
            blobs.targets,
            spec,
            config,
            gains=1.0,
            seeds=np.array([0, 1]),
            lrs=0.01 if opt == "adam" else 0.02,
            pairs=pairs,
        )
        assert res.h.shape == (2, 21, 2, 4)
        assert res.loss[0, -1] < res.loss[0, 0]
        assert res.hidden_final is not None and res.output_initial is not None
        assert res.hidden_final.shape == (2, 72, 16) and res.output_initial.shape == (2, 72, 1)
        # The final hidden activations are those the last record was measured on.
        hf = res.hidden_final
        np.testing.assert_allclose(((hf[:, 1] - hf[:, 0]) ** 2).sum(-1), res.h[:, -1, 0, 2], rtol=1e-4)
    # The last layer's records are those of a training that records it alone (the records do not
    # depend on the optimiser: Adam's training, the last of the loop, stands for both).
    single = rj.train_networks(
        blobs.x,
        blobs.targets,
        spec,
        rj.TrainConfig(epochs=20, batch_size=16, optimizer="adam"),
        gains=1.0,
        seeds=np.array([0, 1]),
        lrs=0.01,
        pairs=pairs,
    )
    np.testing.assert_allclose(res.h[..., 2], single.h, rtol=1e-5)


def test_full_batch_size_equals_full_batch():
    a = _train_small(config=rj.TrainConfig(epochs=30, batch_size=2))
    b = _train_small()
    np.testing.assert_allclose(a.h, b.h, rtol=1e-5)


def test_dropout_records_are_deterministic_network():
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=64, depth=4, dropout=0.1)
    res = _train_small(epochs=30, spec=spec, seeds=[0, 1])
    assert np.all(np.isfinite(res.h))
    assert res.loss[0, -1] < res.loss[0, 0]
    assert not np.allclose(res.h[0], res.h[1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(gains=-1.0), "gains"),
        (dict(lrs=0.0), "learning rates"),
        (dict(pairs=[(0, 5)]), "pairs"),
        (dict(pairs=[(1, 1)]), "pairs"),
        (dict(config=rj.TrainConfig(epochs=5, track_layer=9)), "track_layer"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _train_small(**kw) if (kw := kwargs) else None


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        rj.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        rj.TrainConfig(epochs=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="x must have shape"):
        rj.train_networks(np.ones((2, 3)), DATA.targets, SMALL, rj.TrainConfig(epochs=1), gains=1.0, seeds=0, lrs=0.1)


def test_chunk_size_from_memory():
    per_run = _train.bytes_per_run(rj.NetworkSpec(d_in=1, d_out=1), rj.TrainConfig(epochs=6000), 2, 1)
    n_params = (1 * 500 + 500) + 19 * (500 * 500 + 500) + (500 + 1)
    assert _train._param_count(rj.NetworkSpec(d_in=1, d_out=1)) == n_params
    assert 4 * 4 * n_params <= per_run < 4 * 8 * n_params
    assert _train.available_memory() > 0


def test_per_run_data_equals_one_call_per_dataset():
    """A grid of two-point tasks as one batch (one compilation) trains as each task alone."""
    tasks = [rj.two_point(dx2=0.5, dy2=0.2), rj.two_point(dx2=2.0, dy2=1.0), rj.two_point(dx2=1.0, dy2=0.0)]
    x = np.stack([t.x for t in tasks])
    y = np.stack([t.targets for t in tasks])
    batch = rj.train_networks(x, y, SMALL, rj.TrainConfig(epochs=30), gains=1.0, seeds=np.array([0, 1, 2]), lrs=0.05)
    for r, task in enumerate(tasks):
        alone = rj.train_networks(task.x, task.targets, SMALL, rj.TrainConfig(epochs=30), gains=1.0, seeds=r, lrs=0.05)
        np.testing.assert_allclose(batch.loss[r], alone.loss[0], rtol=2e-5, atol=1e-9)
        np.testing.assert_allclose(batch.h[r], alone.h[0], rtol=2e-5, atol=1e-9)
    traj = rj.to_pair_trajectory(batch, x, y)
    np.testing.assert_allclose(np.asarray(traj.dx2)[:, 0], [0.5, 2.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(traj.dy2)[:, 0], [0.2, 1.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="run axis"):
        rj.train_networks(x, y, SMALL, rj.TrainConfig(epochs=3), gains=1.0, seeds=np.array([0, 1]), lrs=0.05)


def test_mse_loss_is_half_mse_at_twice_the_learning_rate():
    """PyTorch's `MSELoss` doubles the gradient: same trajectory as `0.5 * MSE` at twice the rate."""
    mse = _train_small(lrs=0.02, config=rj.TrainConfig(epochs=30, loss="mse"))
    half = _train_small(lrs=0.04)
    assert mse.loss_kind == "mse" and half.loss_kind == "half_mse"
    np.testing.assert_allclose(mse.h, half.h, rtol=1e-5)
    np.testing.assert_allclose(mse.loss, 2 * half.loss, rtol=1e-5)
    # The trajectory handed to the fit is in the theory's scale either way.
    mse_loss = rj.to_pair_trajectory(mse, DATA.x, DATA.targets).loss
    half_loss = rj.to_pair_trajectory(half, DATA.x, DATA.targets).loss
    assert mse_loss is not None and half_loss is not None
    np.testing.assert_allclose(mse_loss, half_loss, rtol=1e-5)
    ts, y, w = np.arange(5.0), np.full(5, 0.1), np.full(5, 0.01)
    np.testing.assert_allclose(
        rj.theory_loss(ts, y, w, dy2=0.5, m0=0.3, tau=10.0, loss="mse"),
        2 * rj.theory_loss(ts, y, w, dy2=0.5, m0=0.3, tau=10.0),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="loss"):
        rj.TrainConfig(epochs=3, loss="l1")


def test_initial_params_start_the_runs():
    """Given parameters train exactly as the same parameters made by the seed."""
    keys = [jax.random.fold_in(jax.random.key(s), 0) for s in (3, 4)]
    states = [rj.init_state(SMALL, g, k) for g, k in zip((0.9, 1.2), keys)]
    params = jax.tree.map(lambda *v: np.stack(v), *states)
    given = _train_small(lrs=0.05, seeds=[3, 4], gains=None, initial_params=params)
    fresh = _train_small(lrs=0.05, seeds=[3, 4], gains=[0.9, 1.2])
    np.testing.assert_allclose(given.h, fresh.h, rtol=1e-6)
    with pytest.raises(ValueError, match="gains are required"):
        _train_small(gains=None)
    bad = jax.tree.map(lambda v: np.asarray(v)[:, :, :1] if np.ndim(v) == 3 else v, params)
    with pytest.raises(ValueError, match="expected"):
        _train_small(initial_params=bad)


def test_chunk_planner_pads_to_one_shape():
    chunks = rj.plan_chunks(7, 3)
    assert [c.index.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]
    assert [c.real for c in chunks] == [3, 3, 1]
    ordered = rj.plan_chunks(4, 3, order=[2, 0, 3, 1])
    assert [c.index.tolist() for c in ordered] == [[2, 0, 3], [1, 1, 1]]
    assert rj.plan_chunks(2, 5)[0].index.tolist() == [0, 1]
    with pytest.raises(ValueError):
        rj.plan_chunks(0, 3)


def test_mixed_activations_train_as_each_would_alone():
    """The nonlinearity is traced: a batch of every activation gives each run's own training."""
    names = list(rj.ACTIVATION_NAMES)
    mixed = _train_small(seeds=np.arange(len(names)), activations=names, gains=0.9, lrs=0.05)
    for r, name in enumerate(names):
        spec = rj.NetworkSpec(d_in=1, d_out=1, width=32, depth=4, activation=name)
        alone = _train_small(spec=spec, seeds=r, gains=0.9, lrs=0.05)
        np.testing.assert_allclose(mixed.loss[r], alone.loss[0], rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(mixed.h[r], alone.h[0], rtol=2e-5, atol=1e-7)
    # and they differ between activations (the index reaches the network)
    assert len({round(float(v), 6) for v in mixed.loss[:, -1]}) == len(names)


def test_one_executable_per_network_shape():
    """Every activation of one shape shares the compiled programs (JAX's compilation events)."""
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=24, depth=3, activation="tanh")
    config = rj.TrainConfig(epochs=20)
    rj.train_networks(DATA.x, DATA.targets, spec, config, gains=np.array([1.0, 1.1]), seeds=0, lrs=0.05)
    with count_compilations() as compiled:
        for acts in (["relu", "elu"], "swish", ["linear", "leaky_relu"]):
            spec_a = rj.NetworkSpec(d_in=1, d_out=1, width=24, depth=3, activation="relu")
            rj.train_networks(
                DATA.x,
                DATA.targets,
                spec_a,
                config,
                gains=np.array([0.8, 1.2]),
                seeds=np.array([1, 2]),
                lrs=0.03,
                activations=acts,
            )
    assert compiled == []
    other = rj.NetworkSpec(d_in=1, d_out=1, width=24, depth=4)  # another shape: another executable
    with count_compilations() as compiled:
        rj.train_networks(DATA.x, DATA.targets, other, config, gains=np.array([1.0, 1.1]), seeds=0, lrs=0.05)
    assert compiled.count(SEGMENT) == 1


def test_activations_argument_is_checked():
    with pytest.raises(ValueError, match="unknown activation"):
        _train_small(activations="softplus")
    with pytest.raises(ValueError, match="per_run"):
        _train_small(spec=SMALL.shape())
    with pytest.raises(ValueError, match="broadcast"):
        _train_small(seeds=[0, 1, 2], activations=["tanh", "relu"])


def test_stopped_chunk_skips_the_remaining_segments():
    """Once every run is below stop_loss the host runs no more segments; the records repeat the last."""
    config = rj.TrainConfig(epochs=3000, stop_loss=1e-3, progress_every=100)
    seen = []
    res = _train_small(config=config, lrs=0.05, seeds=[0, 1], progress=seen.append)
    assert res.stop_epoch is not None
    assert np.all(res.stop_epoch < 3000)
    assert seen[-1] == 3000 and len(seen) < 30  # jumped to the end
    last = res.stop_epoch.max()
    np.testing.assert_array_equal(res.loss[:, last:], np.repeat(res.loss[:, last : last + 1], 3001 - last, axis=1))
