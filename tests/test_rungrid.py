"""The run-grid layer: `RunStore` (one signature per study), `run_groups` (resume), `run_columns`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

import repalign_jax as rj


def _group(name, value, calls, n=2):
    def compute(meter):
        calls.append((name, meter))
        return {"run": np.arange(n) + value, "x": np.full(n, float(value))}

    return rj.Group(name, compute, n)


def test_store_signature_is_written_and_compared(tmp_path):
    rj.RunStore(tmp_path / "s", {"gains": (1.0, 1.2), "epochs": np.int64(5)})
    saved = json.loads((tmp_path / "s" / "signature.json").read_text())
    assert saved == {"gains": [1.0, 1.2], "epochs": 5}  # plain JSON: tuples and NumPy scalars compare
    rj.RunStore(tmp_path / "s", {"gains": [1.0, 1.2], "epochs": 5})  # the same study: fine
    with pytest.raises(rj.GridMismatch, match=r"differs in epochs, width\)") as e:
        rj.RunStore(tmp_path / "s", {"gains": [1.0, 1.2], "epochs": 6, "width": 8})
    assert e.value.keys == ("epochs", "width")
    assert isinstance(e.value, ValueError)


def test_store_fresh_forgets_and_create_false_writes_nothing(tmp_path):
    store = rj.RunStore(tmp_path / "s", {"a": 1})
    store.save("g0", {"x": np.ones(2)})
    with pytest.raises(rj.GridMismatch):
        rj.RunStore(tmp_path / "s", {"a": 2}, create=False)
    assert json.loads((tmp_path / "s" / "signature.json").read_text()) == {"a": 1}
    assert rj.RunStore(tmp_path / "s", {"a": 1}, create=False).done() == {"g0"}
    rj.RunStore(tmp_path / "new", {"a": 1}, create=False)
    assert not (tmp_path / "new").exists()
    fresh = rj.RunStore(tmp_path / "s", {"a": 2}, fresh=True)
    assert fresh.done() == set()
    assert json.loads((tmp_path / "s" / "signature.json").read_text()) == {"a": 2}


def test_groups_without_a_signature_are_not_adopted(tmp_path):
    (tmp_path / "s").mkdir()
    np.savez(tmp_path / "s" / "g0.npz", x=np.ones(1))
    with pytest.raises(rj.GridMismatch, match="no signature.json"):
        rj.RunStore(tmp_path / "s", {"a": 1})


def test_run_groups_computes_in_order_and_joins_the_table(tmp_path):
    calls = []
    store = rj.RunStore(tmp_path, {"a": 1})
    groups = [_group("b", 10, calls), _group("a", 0, calls, n=3)]
    table = rj.run_groups(store, groups)
    assert [c[0] for c in calls] == ["b", "a"]
    np.testing.assert_array_equal(table["run"], [10, 11, 0, 1, 2])
    assert rj.run_groups(store, groups, columns=["x"]).keys() == {"x"}
    assert len(calls) == 2  # the second call computed nothing
    with pytest.raises(ValueError, match="names repeat: b"):
        rj.run_groups(store, [groups[0], groups[0]])


def test_an_interrupted_study_resumes_to_the_same_table(tmp_path):
    calls = []
    groups = [_group(f"g{k}", 10 * k, calls) for k in range(3)]
    straight = rj.run_groups(rj.RunStore(tmp_path / "straight", {"a": 1}), groups)

    def boom(meter):
        raise KeyboardInterrupt

    broken = rj.RunStore(tmp_path / "broken", {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        rj.run_groups(broken, [groups[0], rj.Group("g1", boom), groups[2]])
    assert broken.done() == {"g0"}  # what finished before the interrupt is kept
    assert [g.name for g in rj.todo(broken, groups)] == ["g1", "g2"]
    calls.clear()
    done = []
    resumed = rj.run_groups(broken, groups, report=done.append)
    assert [c[0] for c in calls] == ["g1", "g2"]
    assert [(d.index, d.total, d.group.name, d.reused) for d in done] == [
        (0, 3, "g0", True),
        (1, 3, "g1", False),
        (2, 3, "g2", False),
    ]
    assert done[0].seconds == broken.info("g0")["seconds"] >= 0.0 and done[1].seconds >= 0.0  # as recorded
    assert resumed.keys() == straight.keys()
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])


class _Meter:
    def __init__(self):
        self.chunks = []

    def start_chunk(self, k):
        self.chunks.append(k)


def test_the_meter_moves_over_the_groups_left(tmp_path):
    calls = []
    store = rj.RunStore(tmp_path, {"a": 1})
    groups = [_group(f"g{k}", k, calls) for k in range(3)]
    store.save("g1", groups[1].compute(None))
    calls.clear()
    meter = _Meter()
    rj.run_groups(store, groups, meter=meter)  # type: ignore[arg-type]  # a stand-in with start_chunk
    assert meter.chunks == [0, 1]  # chunk k of the groups still to compute
    assert [c[1] for c in calls] == [meter, meter]


def test_run_columns_take_every_per_run_field(x64):
    n, T, P = 3, 5, 2
    rng = np.random.default_rng(0)
    curve = lambda: rng.normal(size=(n, T, P))  # noqa: E731
    # NumPy arrays, as train_networks returns them (FitResult annotates jax Arrays: the dicts are Any).
    result_fields: dict[str, Any] = dict(
        loss=rng.normal(size=(n, T)),
        h=curve(),
        y=curve(),
        w=curve(),
        diverged=np.array([False, True, False]),
        diverged_epoch=np.array([-1, 3, -1]),
        stop_epoch=np.array([5, 3, 4]),
        hidden_initial=rng.normal(size=(n, 2, 4)),
    )
    result = rj.TrainResult(**result_fields)
    fit_fields: dict[str, Any] = {f.name: rng.normal(size=(n, P)) for f in dataclasses.fields(rj.FitResult)}
    fit = rj.FitResult(**fit_fields)
    cols = rj.run_columns(result, fit, pair=1)
    np.testing.assert_array_equal(cols["h"], result.h[:, :, 1])
    np.testing.assert_array_equal(cols["loss"], result.loss)
    np.testing.assert_array_equal(cols["stop_epoch"], [5, 3, 4])
    assert "hidden_initial" not in cols and "loss_kind" not in cols
    for name, v in fit_fields.items():
        np.testing.assert_array_equal(cols["fit_" + name], v[:, 1])
    short = rj.run_columns(result, None, curves=False)
    assert set(short) == {"diverged", "diverged_epoch", "stop_epoch", "final_loss"}
    np.testing.assert_array_equal(short["final_loss"], result.loss[:, -1])
    with_hidden = rj.run_columns(result, None, curves=False, activations=True)
    np.testing.assert_array_equal(with_hidden["hidden_initial"], result_fields["hidden_initial"])
    assert all(np.shape(v)[0] == n for v in cols.values())


def test_store_records_what_each_group_took(tmp_path):
    store = rj.RunStore(tmp_path, {"a": 1}, machine="box (2 cores)")
    rj.run_groups(store, [_group("g0", 0, [])])
    info = store.info("g0")
    assert info["machine"] == "box (2 cores)" and 0.0 <= info["seconds"] < 60
    assert np.isnan(store.info("missing")["seconds"]) and store.info("missing")["machine"] == ""


def test_a_groups_training_continues_from_its_snapshot_and_the_snapshot_goes(tmp_path):
    """`RunStore.train`: an interrupted training leaves `NAME.snapshot.npz` (not a finished group);
    the next call continues from it to the records of one call straight through, bit for bit."""
    data = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=3)
    config = rj.TrainConfig(epochs=40, progress_every=10)

    def train(stop_after=None, **snapshots):
        seen = []

        def progress(epoch):
            seen.append(epoch)
            if stop_after is not None and epoch >= stop_after:
                raise KeyboardInterrupt

        return rj.train_networks(
            data.x, data.targets, spec, config, gains=1.0, seeds=np.arange(2), lrs=0.05, progress=progress, **snapshots
        )

    straight = train()
    store = rj.RunStore(tmp_path, {"a": 1})
    told: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        store.train("g0", lambda **kw: train(stop_after=20, **kw), every=0.0, say=told.append)
    assert store.snapshot_path("g0").exists() and store.done() == set()  # a snapshot is no group
    again = rj.RunStore(tmp_path, {"a": 1})  # resumed (not fresh)
    resumed = again.train("g0", train, every=0.0, say=told.append)
    assert any("continuing after epoch" in t for t in told), told
    for f in ("loss", "h", "y", "w"):
        np.testing.assert_array_equal(np.asarray(getattr(resumed, f)), np.asarray(getattr(straight, f)))
    again.save("g0", rj.run_columns(resumed))
    assert not again.snapshot_path("g0").exists() and again.done() == {"g0"}
    # a broken snapshot: said, and the training starts again
    again.snapshot_path("g1").write_bytes(b"not a snapshot")
    told.clear()
    redone = again.train("g1", train, every=1e9, say=told.append)
    assert told == ["  g1.snapshot.npz: unreadable, training from the start"]
    np.testing.assert_array_equal(np.asarray(redone.loss), np.asarray(straight.loss))
