"""The package's networks and PyTorch's, side by side from the same initial weights, in float64.

    python benchmarks/torch_side_by_side.py [--out reproduction/torch_side_by_side.json]
                                            [--seeds 3] [--part2-seeds 1] [--part all] [--quick]

Two anomalies of the package's networks, checked against PyTorch (the paper's
framework): each seed builds the authors' `MLP` in PyTorch (`torch.manual_seed`,
Xavier-normal weights, zero biases, float64), converts its weights with
`params_from_torch`, and trains the PyTorch model with `torch.optim.SGD` and the
package's `train_networks` from those same weights on the same two-point arrays
(`two_point`, the float32 values cast to float64), full batch, loss `0.5 * MSE`.
Both record the loss and `h, y, w` (docs/theory.md section 3) at the tracked hidden
layer (`depth // 2`, after its nonlinearity) before every step.

1. Gain 1.3 (Table 1's "high initial weights": leaky ReLU, 20 x 500, lr 0.00075)
   on dx2 = 1, dy2 = 0.5 for 600 epochs: the package's h falls by 30-40% over the
   first ~500 epochs. Is that fall PyTorch's too? Reported per seed: h at every
   100th epoch in each framework, the relative fall h(E) / h(0) - 1, the smallest
   h and its epoch, and the largest |difference| of each record between the two
   frameworks relative to the PyTorch record's range. The whole per-epoch records
   are kept in the JSON.
2. The default network (leaky ReLU, gain 1, 20 x 500) on dy2 = 1 and ||dx|| in
   0.5, 1, 1.5, trained as the authors' final-distance grid does: lr 0.002, each
   run stops at its first epoch whose loss (recorded before that epoch's step) is
   below 1e-4 (no step there), budget 40000 epochs (`TrainConfig(stop_loss=...)`
   in the package, the same rule written out in PyTorch). The package's final h
   grows only as about ||dx||^0.26 where the theory predicts about ||dx||^1: is
   PyTorch's the same? Reported per seed and ||dx||: final h and stop epoch in each
   framework and their relative difference, and the log-log slope of final h
   against ||dx|| in each framework.

Wall times include the package's compilation. PyTorch runs on one thread (the
script is meant to share a small CPU); `--quick` (width 32, depth 4, 100 epochs,
budget 3000) runs in seconds, for the test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import time

import jax
import numpy as np

import repalign_jax as rj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402  (benchmarks/_machine.py)

DEFAULT_OUT = pathlib.Path("reproduction") / "torch_side_by_side.json"
KEYS = ("loss", "h", "y", "w")
CHECKPOINT_EVERY = 100  # part 1: h reported at every 100th epoch


# --------------------------------------------------------------------------------------
# The authors' PyTorch model (as in tests/test_torch_parity.py) and a training loop
# --------------------------------------------------------------------------------------


def _torch_mlp(width: int, depth: int, gain: float):
    """The authors' `MLP` (`source/models.py`): leaky ReLU after every layer but the last."""
    import torch

    F = torch.nn.functional

    class MLP(torch.nn.ModuleList):
        def __init__(self, d_in, d_out, width, depth, gain, act):
            super().__init__()
            self.act = act
            for n in range(depth + 1):
                self.append(torch.nn.Linear(d_in if n == 0 else width, d_out if n == depth else width))
            for mod in self:
                assert isinstance(mod, torch.nn.Linear)
                torch.nn.init.xavier_normal_(mod.weight, gain=gain)
                torch.nn.init.zeros_(mod.bias)

        def forward(self, x):
            a, acts = x, []
            for n, layer in enumerate(self):
                a = layer(a)
                if n != len(self) - 1 and self.act is not None:
                    a = self.act(a)
                acts.append(a)
            return acts.pop(), acts

    return MLP(1, 1, width, depth, gain, F.leaky_relu).double()


def torch_train(model, x, t, lr, epochs, layer, stop_loss=None, progress_every=None, label=""):
    """Full-batch `torch.optim.SGD` on `0.5 * mse_loss`, records before every step and once after the last.

    The authors' loop (tests/test_torch_parity.py `torch_train`) records in a
    separate evaluation-mode forward pass; the `MLP` has no dropout, so the
    forward pass of the step gives the same numbers and is used for both. With
    `stop_loss`, an epoch whose loss is below it is recorded and training stops
    there without its step (the package's `TrainConfig.stop_loss`).

    **Returns:** the records `{"loss", "h", "y", "w"}` (arrays of `stop + 1`
    entries) and `stop`, the number of steps taken.
    """
    import torch

    F = torch.nn.functional
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    dy = t[1] - t[0]
    rec = {k: [] for k in KEYS}
    stop = epochs
    t0 = time.perf_counter()
    for epoch in range(epochs + 1):
        out, acts = model(xt)
        loss = 0.5 * F.mse_loss(torch.squeeze(out), torch.squeeze(tt))
        with torch.no_grad():
            dh = (acts[layer][1] - acts[layer][0]).numpy()
            dyh = (out[1] - out[0]).numpy()
        value = float(loss.detach())
        y = float(dyh @ dyh)
        rec["loss"].append(value)
        rec["h"].append(float(dh @ dh))
        rec["y"].append(y)
        rec["w"].append(y - float(dy @ dyh))
        if epoch == epochs:
            break
        if stop_loss is not None and value < stop_loss:
            stop = epoch
            break
        if progress_every and epoch and epoch % progress_every == 0:
            print(f"    torch {label} epoch {epoch}: loss {value:.3e}, {time.perf_counter() - t0:.0f} s", flush=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: np.array(v) for k, v in rec.items()}, stop


# --------------------------------------------------------------------------------------
# Both frameworks from one seed's weights
# --------------------------------------------------------------------------------------


def _side_by_side(seed, width, depth, gain, lr, epochs, dx2, dy2, stop_loss=None, label=""):
    """Train one seed's network in PyTorch and in the package; records, stop epochs and wall times."""
    import torch

    data = rj.two_point(dx2=dx2, dy2=dy2)
    x, t = np.asarray(data.x, np.float64), np.asarray(data.targets, np.float64)
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=width, depth=depth, activation="leaky_relu")
    layer = depth // 2
    torch.manual_seed(seed)
    model = _torch_mlp(width, depth, gain)
    params = rj.params_from_torch(spec, model.state_dict())  # a copy, before PyTorch trains in place
    stacked = jax.tree.map(lambda v: np.asarray(v)[None], params)
    every = max(epochs // 8, 1) if stop_loss is not None else None

    t0 = time.perf_counter()
    ref, torch_stop = torch_train(model, x, t, lr, epochs, layer, stop_loss, every, label)
    torch_s = time.perf_counter() - t0

    last = [0.0]

    def report(epoch):  # at most every 20 s: the compiled segments are short
        now = time.perf_counter() - t1
        if stop_loss is not None and now - last[0] >= 20.0:
            last[0] = now
            print(f"    jax {label} epoch {epoch}: {now:.0f} s", flush=True)

    config = rj.TrainConfig(epochs=epochs, track_layer=layer, stop_loss=stop_loss)
    t1 = time.perf_counter()
    res = rj.train_networks(x, t, spec, config, lrs=lr, initial_params=stacked, progress=report)
    jax_s = time.perf_counter() - t1
    assert np.asarray(res.h).dtype == np.float64, "float64 is off"
    got = {k: np.asarray(getattr(res, k)).reshape(epochs + 1) for k in KEYS}
    jax_stop = int(np.asarray(res.stop_epoch)[0]) if res.stop_epoch is not None else epochs
    return ref, torch_stop, torch_s, got, jax_stop, jax_s


def _rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got - want| over the PyTorch record's range (`inf` if that record does not move)."""
    scale = float(np.ptp(want))
    err = float(np.max(np.abs(got - want)))
    return err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


def _floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a).reshape(-1)]


# --------------------------------------------------------------------------------------
# Part 1: gain 1.3, 600 epochs
# --------------------------------------------------------------------------------------


def part1(settings: dict, seeds: int) -> dict:
    s = settings
    epochs = s["epochs"]
    marks = list(range(0, epochs + 1, CHECKPOINT_EVERY))
    if marks[-1] != epochs:
        marks.append(epochs)
    runs = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        label = f"part 1 seed {seed}"
        print(f"  {label}: {s['depth']} x {s['width']}, gain {s['gain']}, lr {s['lr']}, {epochs} epochs", flush=True)
        ref, _, torch_s, got, _, jax_s = _side_by_side(
            seed, s["width"], s["depth"], s["gain"], s["lr"], epochs, s["dx2"], s["dy2"], label=label
        )
        run = {"seed": seed, "torch_wall_s": torch_s, "jax_wall_s": jax_s}
        for name, rec in (("torch", ref), ("jax", got)):
            h = rec["h"]
            run[name] = {
                "h_at": {str(e): float(h[e]) for e in marks},
                "rel_fall": float(h[-1] / h[0] - 1.0),
                "h_min": float(h.min()),
                "h_min_epoch": int(h.argmin()),
                "rel_fall_to_min": float(h.min() / h[0] - 1.0),
            }
        run["max_abs_diff_over_range"] = {k: _rel_diff(got[k], ref[k]) for k in KEYS}
        run["records"] = {name: {k: _floats(rec[k]) for k in KEYS} for name, rec in (("torch", ref), ("jax", got))}
        print(
            f"    h(0) {ref['h'][0]:.6g}; fall torch {run['torch']['rel_fall']:+.4f}, "
            f"jax {run['jax']['rel_fall']:+.4f}; h diff / range {run['max_abs_diff_over_range']['h']:.2e}; "
            f"{torch_s:.1f} s torch, {jax_s:.1f} s jax",
            flush=True,
        )
        runs.append(run)
    return {"settings": s, "marks": marks, "runs": runs, "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------
# Part 2: final h against ||dx|| with the authors' stop rule
# --------------------------------------------------------------------------------------


def _slope(dx: list[float], h: list[float]) -> float:
    return float(np.polyfit(np.log(dx), np.log(h), 1)[0])


def part2(settings: dict, seeds: int) -> dict:
    s = settings
    runs = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        for dx in s["dx"]:
            label = f"part 2 seed {seed} ||dx|| {dx:g}"
            print(f"  {label}: budget {s['budget']}, stop at loss < {s['stop_loss']:g}", flush=True)
            ref, torch_stop, torch_s, got, jax_stop, jax_s = _side_by_side(
                seed,
                s["width"],
                s["depth"],
                s["gain"],
                s["lr"],
                s["budget"],
                dx * dx,
                s["dy2"],
                stop_loss=s["stop_loss"],
                label=label,
            )
            common = min(torch_stop, jax_stop) + 1
            h_torch, h_jax = float(ref["h"][-1]), float(got["h"][-1])
            run = {
                "seed": seed,
                "dx": dx,
                "torch": {"h_final": h_torch, "stop_epoch": torch_stop, "loss_final": float(ref["loss"][-1])},
                "jax": {"h_final": h_jax, "stop_epoch": jax_stop, "loss_final": float(got["loss"][-1])},
                "h_final_rel_diff": (h_jax - h_torch) / h_torch,
                "stop_epoch_diff": jax_stop - torch_stop,
                "h_max_abs_diff_over_range": _rel_diff(got["h"][:common], ref["h"][:common]),
                "h_0": float(ref["h"][0]),
                "h_every_500": {
                    "torch": _floats(ref["h"][::500]),
                    "jax": _floats(got["h"][: jax_stop + 1 : 500]),
                },
                "torch_wall_s": torch_s,
                "jax_wall_s": jax_s,
            }
            print(
                f"    final h torch {h_torch:.6g} (stop {torch_stop}), jax {h_jax:.6g} (stop {jax_stop}); "
                f"rel diff {run['h_final_rel_diff']:+.2e}; {torch_s:.1f} s torch, {jax_s:.1f} s jax",
                flush=True,
            )
            runs.append(run)
    slopes = []
    for seed in range(seeds):
        mine = [r for r in runs if r["seed"] == seed]
        dxs = [r["dx"] for r in mine]
        slopes.append(
            {
                "seed": seed,
                "torch": _slope(dxs, [r["torch"]["h_final"] for r in mine]),
                "jax": _slope(dxs, [r["jax"]["h_final"] for r in mine]),
            }
        )
    mean = {
        name: _slope(
            list(s["dx"]), [float(np.mean([r[name]["h_final"] for r in runs if r["dx"] == dx])) for dx in s["dx"]]
        )
        for name in ("torch", "jax")
    }
    return {
        "settings": s,
        "runs": runs,
        "slopes": slopes,
        "slope_of_seed_mean": mean,
        "wall_s": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def findings(result: dict) -> list[str]:
    """The measured answers to the script's two questions, one sentence each, from `result`."""
    out = []
    if "part1" in result:
        runs = result["part1"]["runs"]
        worst = max(max(r["max_abs_diff_over_range"].values()) for r in runs)
        falls = [r["torch"]["rel_fall_to_min"] for r in runs]
        epochs = [r["torch"]["h_min_epoch"] for r in runs]
        out.append(
            f"- Part 1: PyTorch's h falls too, by {-max(falls):.0%} to {-min(falls):.0%} to its minimum "
            f"at epochs {min(epochs)}-{max(epochs)} over {len(runs)} seeds; the two frameworks' records of "
            f"h, y, w and the loss differ by at most {worst:.1e} of their range: the early fall is the "
            "network's, not the package's."
        )
    if "part2" in result:
        p = result["part2"]
        worst = max(abs(r["h_final_rel_diff"]) for r in p["runs"])
        same_stop = all(r["stop_epoch_diff"] == 0 for r in p["runs"])
        m = p["slope_of_seed_mean"]
        out.append(
            f"- Part 2: final h differs between the frameworks by at most {worst:.1e} relative, the stop "
            f"epochs are {'identical' if same_stop else 'not all identical'}, and final h grows as "
            f"||dx||^{m['torch']:.2f} in PyTorch and ||dx||^{m['jax']:.2f} in the package: the weak "
            "growth with ||dx|| is PyTorch's too."
        )
    return out


def summary(result: dict) -> str:
    """The result as Markdown: the findings, then a table per part."""
    lines = [*findings(result), ""]
    if "part1" in result:
        p = result["part1"]
        marks = p["marks"]
        lines += [
            f"### Part 1: gain {p['settings']['gain']}, {p['settings']['depth']} x {p['settings']['width']}, "
            f"lr {p['settings']['lr']}, h at hidden layer {p['settings']['track_layer']}",
            "",
            "| seed | framework | " + " | ".join(f"h({e})" for e in marks) + " | h(E)/h(0)-1 | min h (epoch) "
            "| max abs diff / range (h, y, w, loss) |",
            "|---|---|" + "---|" * (len(marks) + 3),
        ]
        for run in p["runs"]:
            d = run["max_abs_diff_over_range"]
            for name in ("torch", "jax"):
                r = run[name]
                diff = f"{d['h']:.1e}, {d['y']:.1e}, {d['w']:.1e}, {d['loss']:.1e}" if name == "jax" else ""
                lines.append(
                    f"| {run['seed']} | {name} | "
                    + " | ".join(f"{r['h_at'][str(e)]:.6g}" for e in marks)
                    + f" | {r['rel_fall']:+.4f} | {r['h_min']:.6g} ({r['h_min_epoch']}) | {diff} |"
                )
        lines += ["", f"part 1 wall time: {p['wall_s']:.1f} s", ""]
    if "part2" in result:
        p = result["part2"]
        s = p["settings"]
        lines += [
            f"### Part 2: gain {s['gain']}, {s['depth']} x {s['width']}, lr {s['lr']}, dy2 {s['dy2']}, "
            f"stop at loss < {s['stop_loss']:g}, budget {s['budget']}",
            "",
            "| seed | dx | final h torch | final h jax | rel diff | stop torch | stop jax | h diff / range |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in p["runs"]:
            lines.append(
                f"| {run['seed']} | {run['dx']:g} | {run['torch']['h_final']:.6g} | {run['jax']['h_final']:.6g} "
                f"| {run['h_final_rel_diff']:+.1e} | {run['torch']['stop_epoch']} | {run['jax']['stop_epoch']} "
                f"| {run['h_max_abs_diff_over_range']:.1e} |"
            )
        lines.append("")
        for sl in p["slopes"]:
            lines.append(
                f"log-log slope of final h against ||dx||, seed {sl['seed']}: "
                f"torch {sl['torch']:.4f}, jax {sl['jax']:.4f}"
            )
        m = p["slope_of_seed_mean"]
        lines += [
            f"slope of the seed-mean final h: torch {m['torch']:.4f}, jax {m['jax']:.4f}",
            "",
            f"part 2 wall time: {p['wall_s']:.1f} s",
        ]
    return "\n".join(lines)


def write_markdown(result: dict, path: pathlib.Path) -> None:
    """`result` as a Markdown section (`reproduce report --include` puts it into REPRODUCTION.md)."""
    m = result.get("machine", {})
    head = [
        "## PyTorch side by side",
        "",
        f"{result.get('what', '')}. Command: `{result.get('command', '')}`"
        + (" (--quick sizes)" if result.get("quick") else "")
        + f"; machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, torch {m.get('torch', '?')}, "
        f"jax {m.get('jax', '?')} on {m.get('jax_backend', '?')}; total {result.get('wall_s', float('nan')):.0f} s.",
        "",
    ]
    path.write_text("\n".join(head) + "\n" + summary(result) + "\n")


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "repalign_jax": rj.__version__,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="the JSON to write")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (width 32, depth 4), for the test")
    ap.add_argument("--seeds", type=int, default=3, help="part 1 seeds (initialisations 0 .. N-1)")
    ap.add_argument("--part2-seeds", type=int, default=1, help="part 2 seeds")
    ap.add_argument("--part", choices=("1", "2", "all"), default="all")
    ap.add_argument(
        "--render",
        type=pathlib.Path,
        default=None,
        metavar="JSON",
        help="write the Markdown of a saved JSON; no training",
    )
    a = ap.parse_args(argv)
    if a.render is not None:
        try:
            result = json.loads(a.render.read_text())
        except (OSError, ValueError) as e:
            ap.error(f"--render: cannot read {a.render}: {e}")
        write_markdown(result, a.render.with_suffix(".md"))
        print(f"wrote {a.render.with_suffix('.md')}")
        return 0
    if a.seeds < 1 or a.part2_seeds < 1:
        ap.error("--seeds and --part2-seeds must be at least 1")

    import torch

    width, depth = (32, 4) if a.quick else (500, 20)
    s1 = {
        "row": "high initial weights",
        "width": width,
        "depth": depth,
        "track_layer": depth // 2,
        "activation": "leaky_relu",
        "gain": 1.3,
        "lr": 0.00075,
        "epochs": 100 if a.quick else 600,
        "dx2": 1.0,
        "dy2": 0.5,
        "loss": "0.5 * MSE",
        "optimizer": "full-batch SGD",
    }
    s2 = {
        "width": width,
        "depth": depth,
        "track_layer": depth // 2,
        "activation": "leaky_relu",
        "gain": 1.0,
        "lr": 0.002,
        "budget": 3000 if a.quick else 40000,
        "stop_loss": 1e-4,
        "dx": [0.5, 1.0, 1.5],
        "dy2": 1.0,
        "loss": "0.5 * MSE",
        "optimizer": "full-batch SGD",
    }
    old_x64 = bool(jax.config.read("jax_enable_x64"))
    old_dtype, old_threads = torch.get_default_dtype(), torch.get_num_threads()
    jax.config.update("jax_enable_x64", True)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        result: dict = {
            "what": "repalign_jax vs PyTorch from the same initial weights, float64 (benchmarks/torch_side_by_side.py)",
            "command": " ".join(
                ["python", "benchmarks/torch_side_by_side.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "quick": a.quick,
            "dtype": "float64",
            "data": "two_point(dx2, dy2) arrays (float32) cast to float64, the same in both frameworks",
            "machine": machine(),
        }
        t0 = time.perf_counter()
        if a.part in ("1", "all"):
            print(f"part 1: {a.seeds} seed(s)", flush=True)
            result["part1"] = part1(s1, a.seeds)
        if a.part in ("2", "all"):
            print(f"part 2: {a.part2_seeds} seed(s) x {len(s2['dx'])} ||dx||", flush=True)
            result["part2"] = part2(s2, a.part2_seeds)
        result["wall_s"] = time.perf_counter() - t0
    finally:
        jax.config.update("jax_enable_x64", old_x64)
        torch.set_default_dtype(old_dtype)
        torch.set_num_threads(old_threads)
    print()
    print(summary(result))
    print(f"\ntotal wall time: {result['wall_s']:.1f} s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, a.out.with_suffix(".md"))
    print(f"wrote {a.out} and {a.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
