"""The GPU measurement suite of issue #15, in two commands of at most 8 minutes each on one H100.

    PYTHONPATH=$PWD python3 benchmarks/gpu_suite.py --part 1   --out runs/gpu_suite   # training throughput + fitting
    PYTHONPATH=$PWD python3 benchmarks/gpu_suite.py --part 2   --out runs/gpu_suite   # precision + Table-1 study
    PYTHONPATH=$PWD python3 benchmarks/gpu_suite.py --part all --out /tmp/s --smoke   # same code paths, tiny, ~2 min on a CPU

Part 1 (budgeted 360 s, plus start-up):
  train_throughput  (issue item 1) the paper's default network (20 x 500, leaky ReLU, two points) at full
                    float32 precision: `train_networks` vmapped over G = 1, 16, 64, 256 runs; the memory
                    roofline from a bandwidth measured in the same run; a loop of jitted single runs; PyTorch
                    eager and hand-batched (`baddbmm`, TF32 off); then the largest G the package's memory-based
                    chunk sizing chooses (`chunk_size=None`; out-of-memory fallback to 0.85 G); peak memory per
                    run. The functions are `benchmarks/train_throughput.py`'s.
  fit               (item 3) `fit_effective_rates` with default options (the whole batch on an accelerator) on
                    1,000 and 10,000 synthetic 6000-epoch trajectories (`solve_effective` with random rates over
                    the paper's range, on the device): ms per trajectory, success rate, rate errors.
  headroom          (item 1, optional) one G above the package's choice, where the measured peak memory per
                    run says it would fit: does it? Last, so that a crash on running out of memory loses nothing.
Part 2 (budgeted 360 s, plus start-up; the Table-1 study, last, cannot be cut short):
  precision         (item 4) the default network for 600 epochs, 4 seeds, at the package's precision
                    ("highest") and at JAX's default (TF32 on an NVIDIA GPU), each against the same runs in
                    float64 (a subprocess with x64): the largest deviation of y as a fraction of its range.
  universality      (item 2) `python -m repalign_jax.reproduce universality --seeds 50` in this process, its wall
                    time split into compiling (jax.monitoring compile events), training (`train_networks`) and
                    fitting (`fit_effective_rates`), each timed by a wrapper installed for the run only.

The split (1+3 / 4+2 rather than 1+4 / 2+3) balances the two commands: the Table-1 study is the longest and
least predictable item, so it gets the short precision check as its only companion, and it runs last so that
everything before it is already on disk if the command's time limit cuts it off.

Everything goes under `--out`: `env.json` / `env.txt` (device, driver, nvidia-smi, versions of jax, jaxlib,
flax, torch...), `partN.json` (rewritten after every measurement), `partN.log` (everything printed),
figures (`throughput.png`, `fit.png`, `precision.png`, `reproduce/universality/universality.png`), and at
the end of every part `summary.json` + `summary.md` (Markdown tables for `benchmarks/README.md`) over every
part found in the folder. Every section, and every measurement inside a section, catches its own failure,
logs it and moves on. `--budget-s` (default 360 s per part, so that both parts and the machine's start-up fit in
a 15-minute device session) makes the optional pieces (repeats, the
headroom probe, the 10,000-trajectory fit) step aside when time runs short; `--sections` reruns single
sections into the same folder (the others' results are kept).
"""

from __future__ import annotations

import os

# Before JAX starts: allocate GPU memory as needed (PyTorch shares the device; peak statistics mean something).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

PARTS = {"1": ("train_throughput", "fit", "headroom"), "2": ("precision", "universality")}
SECTIONS = tuple(s for p in PARTS.values() for s in p)


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    width: int  # network of the throughput and precision sections
    depth: int
    epochs: int  # throughput: epochs per timed call
    groups: tuple[int, ...]  # throughput: G of the vmapped calls (and of hand-batched PyTorch)
    max_g_cap: int  # throughput: upper bound on the memory-based largest G
    repeats: int  # timed repeats after a warm-up call (minimum reported)
    loop_runs: int  # runs of the loop of jitted single runs
    eager_runs: int  # runs of the PyTorch eager loop
    bw_mb: int  # array size of the bandwidth measurement
    fit_sizes: tuple[int, ...]  # trajectories per fit
    fit_epochs: int  # epochs of the synthetic trajectories
    uni_args: tuple[str, ...]  # reproduce universality arguments
    uni_rows: tuple[str, ...] | None  # Table-1 rows (None: all 15)
    prec_epochs: int
    prec_seeds: int
    reserve_fit_s: float  # part 1: seconds of the budget kept for the fit section


FULL = Sizes(
    width=500,
    depth=20,
    epochs=300,
    groups=(1, 16, 64, 256),
    max_g_cap=4096,
    repeats=2,
    loop_runs=8,
    eager_runs=4,
    bw_mb=1024,
    fit_sizes=(1000, 10000),
    fit_epochs=6000,
    uni_args=("--seeds", "50"),
    uni_rows=None,
    prec_epochs=600,
    prec_seeds=4,
    reserve_fit_s=150,
)
SMOKE = Sizes(
    width=32,
    depth=4,
    epochs=20,
    groups=(1, 2),
    max_g_cap=3,
    repeats=1,
    loop_runs=2,
    eager_runs=2,
    bw_mb=16,
    fit_sizes=(10, 20),
    fit_epochs=6000,
    uni_args=("--quick", "--seeds", "1"),
    uni_rows=("default", "low initial weights", "shallow"),
    prec_epochs=30,
    prec_seeds=2,
    reserve_fit_s=0,
)
LR, GAIN = 0.005, 1.0
TARGETS = {
    "roofline_fraction": 0.75,
    "vs_torch_batched": 2.0,
    "vs_torch_eager": 100.0,
    "universality_s": 180.0,
    "fit_10k_s": 10.0,
}


# --------------------------------------------------------------------------------------
# Small utilities: JSON, logging, time budget, compile events
# --------------------------------------------------------------------------------------


def clean(obj):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_json(path: pathlib.Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(obj), indent=1) + "\n")
    os.replace(tmp, path)


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


@contextlib.contextmanager
def logging_to(path: pathlib.Path):
    """Everything printed (stdout and stderr) also goes to `path` (appended)."""
    with open(path, "a", buffering=1) as f:
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(old[0], f), Tee(old[1], f)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old


def say(*a):
    print(*a, flush=True)


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self, reserve: float = 0.0) -> float:
        return self.budget - reserve - self.elapsed()


class CompileLog:
    """Wall-clock spans of JAX's compile events (trace, lowering, backend compile), from jax.monitoring."""

    def __init__(self):
        self.spans: list[tuple[str, float, float, str]] = []
        self.mode = None

    @staticmethod
    def _wanted(event: str) -> bool:
        return "compile" in event and "compilation_cache" not in event

    def install(self):
        import jax.monitoring as mon

        if hasattr(mon, "register_event_time_span_listener"):
            mon.register_event_time_span_listener(self._span)
            self.mode = "time spans of /jax/core/compile/* events"
        else:
            mon.register_event_duration_secs_listener(self._duration)
            self.mode = "durations of /jax/core/compile/* events (end = time of the report)"

    def _span(self, event, start_time, end_time, **kw):
        if self._wanted(event):
            self.spans.append((event, float(start_time), float(end_time), str(kw.get("fun_name", ""))))

    def _duration(self, event, duration_secs, **kw):
        if self._wanted(event):
            end = time.time()
            self.spans.append((event, end - float(duration_secs), end, str(kw.get("fun_name", ""))))

    def covered(self, intervals, backend_only=False) -> float:
        """Seconds of compiling (union of spans, nested ones counted once) inside the (t0, t1) intervals."""
        sp = sorted((s, e) for ev, s, e, _ in self.spans if not backend_only or "backend_compile" in ev)
        merged: list[list[float]] = []
        for s, e in sp:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        total = 0.0
        for a, b in intervals:
            for s, e in merged:
                total += max(0.0, min(b, e) - max(a, s))
        return total

    def by_function(self, t0, t1, top=12):
        out: dict[str, list] = {}
        for ev, s, e, fn in self.spans:
            if "backend_compile" in ev and s >= t0 and e <= t1:
                v = out.setdefault(fn, [0, 0.0])
                v[0] += 1
                v[1] += e - s
        ranked = sorted(out.items(), key=lambda kv: -kv[1][1])[:top]
        return [{"function": k, "compiles": n, "backend_compile_s": s} for k, (n, s) in ranked]


COMPILES = CompileLog()


class Part:
    """One part's results: `partN.json`, rewritten after every measurement."""

    def __init__(self, out: pathlib.Path, number: str, smoke: bool, budget: float, meta: dict):
        self.path = out / f"part{number}.json"
        self.data = {"part": number, "smoke": smoke, "budget_s": budget, "sections": {}}
        if self.path.exists():  # a rerun of some sections keeps the others
            try:
                old = json.loads(self.path.read_text())
                if old.get("smoke") == smoke:
                    self.data["sections"] = old.get("sections", {})
            except (OSError, ValueError):
                pass
        self.data.update(started=now(), machine=meta.get("summary"), env=meta)
        self.save()

    def section(self, name: str) -> dict:
        sec = {"status": "running", "started": now(), "errors": []}
        self.data["sections"][name] = sec
        self.save()
        return sec

    def save(self):
        write_json(self.path, self.data)


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def short_error(err: BaseException) -> str:
    s = f"{type(err).__name__}: {err}"
    return s if len(s) < 600 else s[:600] + " ..."


def attempt(sec: dict, part: Part, what: str, fn, *a, **k):
    """Run one measurement; a failure is logged into the section (and returns None), the rest goes on."""
    try:
        return fn(*a, **k)
    except Exception as err:  # noqa: BLE001 - one failure must not lose the rest
        tb = traceback.format_exc()
        say(f"    FAILED {what}: {short_error(err)}")
        say(tb)
        sec["errors"].append({"what": what, "error": short_error(err), "traceback": tb[-4000:]})
        part.save()
        return None


def skip(sec: dict, part: Part, what: str, why: str):
    say(f"    skipped {what}: {why}")
    sec.setdefault("skipped", []).append({"what": what, "why": why})
    part.save()


# --------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------


def run_cmd(cmd, timeout=30) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment(out: pathlib.Path) -> dict:
    """Device, driver and versions; written to env.json and env.txt."""
    import importlib.metadata as md

    import jax
    from _machine import describe

    env: dict = {
        "time": now(),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "summary": describe(),
        "backend": jax.default_backend(),
    }
    devs = jax.devices()
    env["devices"] = [f"{d.platform}:{d.id} {d.device_kind}" for d in devs]
    try:
        stats = devs[0].memory_stats()
    except Exception:  # noqa: BLE001
        stats = None
    env["device0_memory_stats"] = dict(stats) if stats else None
    versions = {}
    for name in (
        "jax",
        "jaxlib",
        "flax",
        "diffrax",
        "equinox",
        "optax",
        "optimistix",
        "numpy",
        "scipy",
        "torch",
        "scikit-learn",
        "matplotlib",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if (
            name.startswith("jax-cuda")
            or name.startswith("jax_cuda")
            or name
            in (
                "nvidia-cublas-cu12",
                "nvidia-cudnn-cu12",
                "nvidia-cuda-runtime-cu12",
                "nvidia-cublas",
                "nvidia-cudnn-cu13",
                "nvidia-cuda-runtime",
            )
        ):
            versions[name] = dist.version
    env["versions"] = versions
    # PyTorch in a subprocess: part 2 never loads it, and a clash of CUDA libraries cannot take this process down.
    probe = run_cmd(
        [
            sys.executable,
            "-c",
            "import json, torch; c = torch.cuda.is_available(); print(json.dumps("
            "{'version': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': c, "
            "'cudnn': torch.backends.cudnn.version() if c else None, "
            "'device': torch.cuda.get_device_name(0) if c else None}))",
        ],
        timeout=120,
    )
    try:
        env["torch"] = json.loads(probe.splitlines()[-1]) if probe else {"error": "not importable"}
    except (ValueError, IndexError):
        env["torch"] = {"error": (probe or "")[-300:]}
    query = run_cmd(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,"
            "power.limit,pstate,temperature.gpu,utilization.gpu,memory.used",
            "--format=csv,noheader",
        ]
    )
    env["nvidia_smi_query"] = query
    env["gpu_name"] = env["driver"] = None
    if query:
        first = [v.strip() for v in query.splitlines()[0].split(",")]
        env["gpu_name"], env["driver"] = first[0], first[1] if len(first) > 1 else None
    full = run_cmd(["nvidia-smi"])
    env["nvidia_smi_present"] = full is not None
    env["git"] = run_cmd(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = run_cmd(["git", "-C", str(ROOT), "status", "--porcelain"])
    env["git_dirty_files"] = None if dirty is None else len([x for x in dirty.splitlines() if x.strip()])
    env["env_vars"] = {k: v for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_", "CUDA_", "TF_"))}
    try:
        info = jax.print_environment_info(return_string=True)
    except Exception as err:  # noqa: BLE001
        info = f"jax.print_environment_info failed: {err}"
    text = (
        f"{env['summary']}\n\n{info}\n\n$ nvidia-smi\n{full or '(not present)'}\n\nversions: {json.dumps(versions)}\n"
    )
    (out / "env.txt").write_text(text)
    write_json(out / "env.json", env)
    return env


def gpu_peak():
    from train_throughput import jax_peak_bytes

    return jax_peak_bytes()


def device_stats() -> dict | None:
    import jax

    try:
        s = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001
        return None
    return dict(s) if s else None


# --------------------------------------------------------------------------------------
# 1. Training throughput
# --------------------------------------------------------------------------------------


def section_train_throughput(sz: Sizes, part: Part, clock: Clock, out: pathlib.Path, use_torch: bool):
    import jax
    import numpy as np
    import train_throughput as tt

    import repalign_jax as rj
    from repalign_jax import _train

    sec = part.section("train_throughput")
    on_gpu = jax.default_backend() != "cpu"
    # The PyTorch baselines read the network's shape from the benchmark module (the smoke test narrows it).
    tt.WIDTH, tt.DEPTH, tt.TRACK = sz.width, sz.depth, sz.depth // 2
    ds = rj.two_point()
    x, t = ds.x, ds.targets
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=sz.width, depth=sz.depth)
    config = rj.TrainConfig(epochs=sz.epochs, track_layer=sz.depth // 2)
    n_params = _train._param_count(spec)
    step_bytes = 4 * 4 * n_params
    per_run_est = _train.bytes_per_run(spec, config, 2, 1)
    reserve = sz.reserve_fit_s
    sec.update(
        network=f"MLP width {sz.width} depth {sz.depth}, leaky ReLU, gain {GAIN}, SGD lr {LR}, two points",
        precision=f"float32, Precision.{spec.precision.upper()} (PyTorch: TF32 off)",
        epochs=sz.epochs,
        repeats=sz.repeats,
        parameters=n_params,
        step_bytes=step_bytes,
        bytes_per_run_estimate=per_run_est,
        available_memory=_train.available_memory(),
        rows=[],
    )
    rows = sec["rows"]
    say(f"[1] training throughput: {sec['network']}, {sz.epochs} epochs per call, min of {sz.repeats} after a warm-up")

    # The bandwidth is measured after the vmapped groups: its array would otherwise set the GPU's
    # peak memory (a statistic since start-up) that the small G's memory per run is read from.
    def bandwidth():
        bw = tt.measure_bandwidth(sz.bw_mb * 1_000_000, sz.repeats)
        sec.update(bandwidth_Bps=bw, bandwidth_array_mb=sz.bw_mb, roofline_steps_per_s=bw / step_bytes)
        for r in rows:
            r["roofline_fraction"] = r["model_steps_per_s"] * step_bytes / bw
        say(
            f"    bandwidth {bw / 1e9:.1f} GB/s (in-place v + 1 over {sz.bw_mb} MB) -> roofline "
            f"{bw / step_bytes:.1f} model-steps/s ({step_bytes / 1e6:.1f} MB per model-step); "
            + ", ".join(f"G={r['G']} {100 * r['roofline_fraction']:.1f}%" for r in rows)
        )
        part.save()

    def add_row(**row):
        roof = sec.get("roofline_steps_per_s")
        row["roofline_fraction"] = row["model_steps_per_s"] / roof if roof else None
        rows.append(row)
        part.save()
        return row

    def memory(G):
        if on_gpu:
            peak = gpu_peak()
            return {
                "peak_bytes": peak,
                "peak_per_run_bytes": peak / G if peak else None,
                "bytes_in_use": (device_stats() or {}).get("bytes_in_use"),
            }
        rss = tt.max_rss_bytes()
        return {"max_rss_bytes": rss, "max_rss_per_run_bytes": rss / G, "estimate_per_run_bytes": per_run_est}

    def call(G, chunk):
        return rj.train_networks(x, t, spec, config, gains=GAIN, seeds=np.arange(G), lrs=LR, chunk_size=chunk)

    def jax_vmap(G, label, first_chunk):
        """Warm-up call (with `first_chunk`, None: the package's memory-based choice), then timed calls."""
        chosen = min(G, _train.fitting_runs(spec, config, 2, 1)) if first_chunk is None else first_chunk
        t0 = time.time()
        call(G, first_chunk)
        first = time.time() - t0
        if chosen != G:  # train_networks split the batch: compile the shape that is timed
            call(G, G)
        traces = _train._segment_jit._cache_size()  # compiled executables so far
        sec_, res = tt.best_time(lambda: call(G, G), sz.repeats)
        rate = G * sz.epochs / sec_
        row = add_row(
            method=label,
            G=G,
            seconds=sec_,
            model_steps_per_s=rate,
            first_call_s=first,
            first_chunk=chosen,
            compile_s=COMPILES.covered([(t0, t0 + first)]),
            retraced=_train._segment_jit._cache_size() != traces,
            final_loss_median=float(np.nanmedian(res.loss[:, -1])),
            **memory(G),
        )
        frac = row["roofline_fraction"]
        say(
            f"    {label} G={G:5d}: {sec_:8.3f} s -> {rate:10.1f} model-steps/s"
            + (f" ({100 * frac:.1f}% of roofline)" if frac else "")
            + f"; first call {first:.1f} s (compiling {row['compile_s']:.1f} s); memory {fmt_mem(row)}"
        )
        return row

    say("    [1a] train_networks, G runs in one vmapped call")
    for G in sz.groups:
        if G * per_run_est > _train.available_memory():
            skip(sec, part, f"vmap G={G}", "estimated memory above available_memory()")
            continue
        attempt(sec, part, f"vmap G={G}", jax_vmap, G, "jax vmap", G)
    attempt(sec, part, "bandwidth", bandwidth)

    n_loop = max(1, sz.loop_runs)

    def loop():
        single = lambda s: rj.train_networks(x, t, spec, config, gains=GAIN, seeds=[s], lrs=LR, chunk_size=1)  # noqa: E731
        single(0)
        sec_, losses = tt.best_time(lambda: [single(s).loss[0, -1] for s in range(n_loop)], sz.repeats)
        rate = n_loop * sz.epochs / sec_
        add_row(
            method="jax loop of jitted single runs",
            G=1,
            runs=n_loop,
            seconds=sec_,
            seconds_per_run=sec_ / n_loop,
            model_steps_per_s=rate,
            final_loss_median=float(np.nanmedian(losses)),
        )
        say(f"    [1b] loop of jitted single runs, {n_loop} runs: {sec_:.3f} s -> {rate:.1f} model-steps/s")

    attempt(sec, part, "jax loop", loop)

    # PyTorch ------------------------------------------------------------------------------
    torch = None
    if not use_torch:
        skip(sec, part, "pytorch", "--no-torch")
    else:
        try:
            import torch  # noqa: PLC0415
        except ImportError as err:
            skip(sec, part, "pytorch", f"not importable ({err})")
            torch = None
        if torch is not None and on_gpu and not torch.cuda.is_available():
            skip(sec, part, "pytorch", f"torch {torch.__version__} has no CUDA while JAX runs on a GPU")
            torch = None
    if torch is not None:
        device = torch.device("cuda" if on_gpu else "cpu")
        if on_gpu:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            torch.set_num_threads(os.cpu_count() or 1)
        torch.set_float32_matmul_precision("highest")
        sync = torch.cuda.synchronize if on_gpu else (lambda: None)
        tx, tt_ = torch.as_tensor(x, device=device), torch.as_tensor(t, device=device)
        tdy = (tt_[1] - tt_[0]).contiguous()
        sec["torch"] = {"version": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}
        say(f"    [1c] PyTorch {torch.__version__} on {device}, float32, TF32 off")

        def eager():
            tt.torch_eager_run(torch, tx, tt_, tdy, min(sz.epochs, 5), 0, device)
            sync()
            n = max(1, sz.eager_runs)

            def runs():
                r = [tt.torch_eager_run(torch, tx, tt_, tdy, sz.epochs, s, device)[-1, 0].item() for s in range(n)]
                sync()
                return r

            sec_, losses = tt.best_time(runs, sz.repeats)
            rate = n * sz.epochs / sec_
            add_row(
                method="torch eager loop",
                G=1,
                runs=n,
                seconds=sec_,
                seconds_per_run=sec_ / n,
                model_steps_per_s=rate,
                final_loss_median=float(np.median(losses)),
            )
            say(f"        eager loop, {n} runs: {sec_:.3f} s -> {rate:.1f} model-steps/s")

        if clock.left(reserve) > 30:
            attempt(sec, part, "torch eager", eager)
        else:
            skip(sec, part, "torch eager", f"time budget ({clock.left(reserve):.0f} s left)")

        def batched(G):
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            tt.torch_batched_run(torch, tx, tt_, tdy, min(sz.epochs, 5), G, 0, device)
            sync()

            def one():
                r = tt.torch_batched_run(torch, tx, tt_, tdy, sz.epochs, G, 0, device)
                sync()
                return r

            sec_, rec = tt.best_time(one, sz.repeats)
            rate = G * sz.epochs / sec_
            mem = {"torch_peak_per_run_bytes": torch.cuda.max_memory_allocated() / G} if on_gpu else {}
            add_row(
                method="torch hand-batched (baddbmm)",
                G=G,
                seconds=sec_,
                model_steps_per_s=rate,
                final_loss_median=float(np.nanmedian(rec[:, -1, 0].numpy())),
                **mem,
            )
            say(f"        hand-batched G={G:5d}: {sec_:.3f} s -> {rate:.1f} model-steps/s")

        for G in sz.groups:
            jax_row = next((r for r in rows if r["method"] == "jax vmap" and r["G"] == G), None)
            est = 3 * 2.5 * (G * sz.epochs / jax_row["model_steps_per_s"]) if jax_row else 10.0  # torch ~2x slower
            if clock.left(reserve) < est + 20:
                skip(sec, part, f"torch batched G={G}", f"time budget ({clock.left(reserve):.0f} s left)")
                continue
            attempt(sec, part, f"torch batched G={G}", batched, G)
        if on_gpu:
            torch.cuda.empty_cache()  # give the memory back before the largest JAX batch

    # The largest G: the package's memory-based choice, with out-of-memory fallback ---------------
    def largest():
        fr = _train.fitting_runs(spec, config, 2, 1)
        G = min(fr, sz.max_g_cap)
        info = sec["largest_g"] = {
            "package_chunk": fr,
            "cap": sz.max_g_cap,
            "available_memory": _train.available_memory(),
            "bytes_per_run_estimate": per_run_est,
            "oom": [],
        }
        say(
            f"    [1d] largest G: the package's chunk sizing allows {fr} runs "
            f"({info['available_memory'] / 1e9:.1f} GB / {per_run_est / 1e6:.1f} MB); trying G={G}"
        )
        if G <= max(sz.groups, default=0):
            info["note"] = "no larger than the groups already measured"
        first_chunk = None  # the first try goes through train_networks' own chunk sizing
        best = max((r["model_steps_per_s"] for r in rows if r["method"] == "jax vmap"), default=None)
        for _ in range(5):
            need = 20 + (2 + sz.repeats) * G * sz.epochs / best if best else 30
            if clock.left(reserve) < need:
                skip(
                    sec, part, f"largest G={G}", f"time budget (~{need:.0f} s needed, {clock.left(reserve):.0f} s left)"
                )
                return
            try:
                row = jax_vmap(G, "jax vmap (largest G)", first_chunk)
            except Exception as err:  # noqa: BLE001
                if not tt.is_oom(err):
                    raise
                info["oom"].append({"G": G, "error": short_error(err)})
                say(f"        G={G}: out of memory; trying {int(G * 0.85)}")
                G = max(1, int(G * 0.85))
                first_chunk = G
                continue
            info.update(fitted=G, chosen_by_package=first_chunk is None)
            if row.get("peak_per_run_bytes") and (device_stats() or {}).get("bytes_limit"):
                info["max_g_from_peak"] = int(device_stats()["bytes_limit"] // row["peak_per_run_bytes"])
            part.save()
            return

    attempt(sec, part, "largest G", largest)

    # Ratios --------------------------------------------------------------------------------
    vm = {r["G"]: r["model_steps_per_s"] for r in rows if r["method"].startswith("jax vmap")}
    tb = {r["G"]: r["model_steps_per_s"] for r in rows if r["method"].startswith("torch hand")}
    eag = next((r["model_steps_per_s"] for r in rows if r["method"] == "torch eager loop"), None)
    lp = next((r["model_steps_per_s"] for r in rows if r["method"].startswith("jax loop")), None)
    if vm:
        gb = max(vm, key=vm.get)
        big = [g for g in vm if g >= 256] if not part.data["smoke"] else list(vm)
        roof = sec.get("roofline_steps_per_s")
        ratios = {
            "best_vmap_G": gb,
            "best_vmap_steps_per_s": vm[gb],
            "best_vmap_roofline_fraction": vm[gb] / roof if roof else None,
            "best_G_ge_256_roofline_fraction": max(vm[g] for g in big) / roof if roof and big else None,
            "vmap_over_torch_eager": vm[gb] / eag if eag else None,
            "vmap_over_best_torch_batched": vm[gb] / max(tb.values()) if tb else None,
            "vmap_over_torch_batched_same_G": {g: vm[g] / tb[g] for g in tb if g in vm},
            "vmap_over_jax_loop": vm[gb] / lp if lp else None,
        }
        sec["ratios"] = ratios
        say(f"    ratios: {json.dumps(clean(ratios))}")
    if not on_gpu:
        sec["process_max_rss_bytes"] = tt.max_rss_bytes()
    attempt(sec, part, "figure", plot_throughput, sec, out / "throughput.png")
    return sec


def section_headroom(sz: Sizes, part: Part, clock: Clock, out: pathlib.Path):
    """One more G, above the largest measured, where the measured peak memory per run says it fits.

    Last in part 1 (after the fit): it is optional, and a run that crashes on running out of
    memory must not take the other measurements with it.
    """
    import jax
    import numpy as np
    import train_throughput as tt

    import repalign_jax as rj

    sec = part.section("headroom")
    on_gpu = jax.default_backend() != "cpu"
    tp = part.data["sections"].get("train_throughput") or {}
    info = tp.get("largest_g") or {}
    G0 = info.get("fitted")
    if not G0:
        return skip(sec, part, "headroom probe", "no largest G measured") or sec
    if on_gpu:
        target = info.get("max_g_from_peak")
        if not target:
            return skip(sec, part, "headroom probe", "no peak-memory statistics") or sec
        G = min(int(0.9 * target), sz.max_g_cap)
    else:
        G = G0 + 1  # no memory statistics on a CPU: one run more exercises the path (the smoke test)
    if G < 1.2 * G0:
        return skip(sec, part, "headroom probe", f"peak memory allows at most ~{G} runs, not >= 1.2 x {G0}") or sec
    rate = next(
        (r["model_steps_per_s"] for r in tp.get("rows", []) if r["method"].startswith("jax vmap (largest")), None
    )
    need = 30 + 2 * G * sz.epochs / rate if rate else 60
    if clock.left() < need:
        return (
            skip(sec, part, f"headroom probe G={G}", f"time budget (~{need:.0f} s, {clock.left():.0f} s left)") or sec
        )
    say(f"[1e] headroom probe: G={G} (the package's memory-based chunk was {info.get('package_chunk')}; {G0} ran)")
    ds = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=sz.width, depth=sz.depth)
    config = rj.TrainConfig(epochs=sz.epochs, track_layer=sz.depth // 2)

    def call():
        return rj.train_networks(ds.x, ds.targets, spec, config, gains=GAIN, seeds=np.arange(G), lrs=LR, chunk_size=G)

    probe = sec["probe"] = {"G": G, "package_chunk": info.get("package_chunk"), "largest_measured": G0}
    t0 = time.time()
    try:
        call()
        first = time.time() - t0
        t1 = time.perf_counter()
        res = call()
        secs = time.perf_counter() - t1
    except Exception as err:  # noqa: BLE001
        if not tt.is_oom(err):
            raise
        probe.update(fits=False, error=short_error(err))
        say(f"    G={G}: out of memory")
        part.save()
        return sec
    rate = G * sz.epochs / secs
    roof = tp.get("roofline_steps_per_s")
    probe.update(
        fits=True,
        seconds=secs,
        model_steps_per_s=rate,
        roofline_fraction=rate / roof if roof else None,
        first_call_s=first,
        final_loss_median=float(np.nanmedian(res.loss[:, -1])),
    )
    if on_gpu:
        peak = gpu_peak()
        probe.update(peak_bytes=peak, peak_per_run_bytes=peak / G if peak else None)
    else:
        probe.update(max_rss_bytes=tt.max_rss_bytes(), estimate_per_run_bytes=tp.get("bytes_per_run_estimate"))
    say(f"    G={G}: fits; {secs:.3f} s -> {rate:.1f} model-steps/s; memory {fmt_mem(probe)}")
    part.save()
    return sec


def fmt_mem(row) -> str:
    if row.get("peak_per_run_bytes"):
        return f"{row['peak_per_run_bytes'] / 1e6:.1f} MB per run (GPU peak {row['peak_bytes'] / 1e9:.2f} GB)"
    if row.get("max_rss_bytes"):
        return f"process max RSS {row['max_rss_bytes'] / 1e9:.2f} GB (estimate {row['estimate_per_run_bytes'] / 1e6:.1f} MB/run)"
    return "n/a"


def plot_throughput(sec, path):
    from repalign_jax.plots import pyplot as _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = sec["rows"]
    for label, prefix, mk in (("JAX vmap", "jax vmap", "o-"), ("PyTorch hand-batched", "torch hand", "s--")):
        pts = sorted((r["G"], r["model_steps_per_s"]) for r in rows if r["method"].startswith(prefix))
        if pts:
            ax.plot(*zip(*pts), mk, label=label)
    for label, prefix, color in (
        ("JAX loop of jitted runs", "jax loop", "C2"),
        ("PyTorch eager loop", "torch eager", "C3"),
    ):
        v = next((r["model_steps_per_s"] for r in rows if r["method"].startswith(prefix)), None)
        if v:
            ax.axhline(v, color=color, ls=":", label=label)
    if sec.get("roofline_steps_per_s"):
        ax.axhline(sec["roofline_steps_per_s"], color="k", lw=1, label="memory roofline")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("G (runs per call)")
    ax.set_ylabel("model-steps / s")
    ax.set_title(sec.get("network", ""), fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# 3. Fitting
# --------------------------------------------------------------------------------------


def synthetic_initial(n: int, seed: int):
    """Rates over the paper's range and valid initial states, as `fit_throughput.make_batch` draws them."""
    import numpy as np
    from fit_throughput import DY2

    rng = np.random.default_rng(seed)
    ee, ed = [], []
    while len(ee) < n:
        a = 10 ** rng.uniform(-4, -1, 2 * n)
        b = a * 10 ** rng.uniform(-1, 2, 2 * n)
        keep = (b >= 1e-4) & (b <= 1e-1)
        ee.extend(a[keep])
        ed.extend(b[keep])
    ee, ed = np.array(ee[:n]), np.array(ed[:n])
    h0 = rng.uniform(0.1, 2, n)
    y0 = 10 ** rng.uniform(-9, -2, n)
    w0 = y0 - np.sqrt(DY2 * y0) * rng.uniform(-1, 1, n)
    return ee, ed, h0, y0, w0


def section_fit(sz: Sizes, part: Part, clock: Clock, out: pathlib.Path):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fit_throughput import DX2, DY2, rel_err

    import repalign_jax as rj

    sec = part.section("fit")
    on_gpu = jax.default_backend() != "cpu"
    n_max = max(sz.fit_sizes)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    sec.update(
        epochs=sz.fit_epochs,
        sizes=list(sz.fit_sizes),
        dtype=str(np.dtype(dtype)),
        runs=[],
        options="FitOptions() (default: whole batch on an accelerator, chunks of 1 on a CPU)",
    )
    say(
        f"[3] fit_effective_rates on synthetic {sz.fit_epochs}-epoch trajectories ({sec['dtype']}), sizes {sz.fit_sizes}"
    )

    # Trajectories: solve_effective on the device, 3% spare for solves that fail.
    extra = max(4, int(0.03 * n_max))
    ee, ed, h0, y0, w0 = synthetic_initial(n_max + extra, seed=15)
    ts = np.arange(sz.fit_epochs + 1.0)
    t0 = time.time()
    h, y, w = rj.solve_effective(
        jnp.asarray(h0, dtype),
        jnp.asarray(y0, dtype),
        jnp.asarray(w0, dtype),
        dx2=DX2,
        dy2=DY2,
        rates=rj.EffectiveRates(jnp.asarray(ee, dtype), jnp.asarray(ed, dtype)),
        ts=jnp.asarray(ts, dtype),
    )
    h, y, w = jax.block_until_ready((h, y, w))
    gen = time.time() - t0
    good = np.asarray(jnp.all(jnp.isfinite(h) & jnp.isfinite(y) & jnp.isfinite(w), axis=-1) & jnp.all(h > 0, axis=-1))
    idx = np.flatnonzero(good)[:n_max]
    sec["generation"] = {
        "trajectories": int(len(ee)),
        "failed_solves": int((~good).sum()),
        "seconds": gen,
        "compile_s": COMPILES.covered([(t0, t0 + gen)]),
        "how": "rj.solve_effective, vmapped, default SolverOptions, rates eta in [1e-4, 1e-1], "
        "eta_dec/eta_enc in [0.1, 100], h0 in [0.1, 2], y0 in [1e-9, 1e-2]",
    }
    say(f"    generated {len(ee)} trajectories in {gen:.1f} s ({(~good).sum()} failed solves dropped)")
    part.save()
    h, y, w = h[idx], y[idx], w[idx]
    ee, ed = ee[idx], ed[idx]

    def fit_once(n, label):
        traj = rj.PairTrajectory(jnp.asarray(ts, dtype), h[:n], y[:n], w[:n], DX2, DY2)
        t0 = time.time()
        fit = jax.block_until_ready(rj.fit_effective_rates(traj))
        return fit, time.time() - t0, COMPILES.covered([(t0, time.time())])

    prev = None  # (n, run seconds, compile seconds) of the last size
    plot = {}
    for n in sz.fit_sizes:
        if n > len(idx):
            skip(sec, part, f"fit {n}", f"only {len(idx)} trajectories")
            continue
        if prev:
            n0, run0, comp0 = prev
            need = 1.3 * comp0 + 15 + run0 * n / n0
            if clock.left() < need:
                skip(sec, part, f"fit {n}", f"time budget (~{need:.0f} s predicted, {clock.left():.0f} s left)")
                continue

        def measure(n=n):
            row = {"n": n, "chunk": rj.FitOptions().resolved_chunk_size(n)}
            sec["runs"].append(row)
            fit, first, comp = fit_once(n, "first")
            row.update(first_call_s=first, first_call_compile_s=comp)
            say(f"    n={n}: first call {first:.2f} s (compiling {comp:.2f} s), chunks of {row['chunk']}")
            part.save()
            run_est = max(first - comp, 1e-9)
            if clock.left() > 2 * run_est + 10:
                fit, warm, comp2 = fit_once(n, "warm")
                row.update(
                    warm_call_s=warm,
                    warm_call_compile_s=comp2,
                    ms_per_trajectory=1e3 * warm / n,
                    timing="second call, same shapes",
                )
            else:
                row.update(
                    ms_per_trajectory=1e3 * run_est / n,
                    timing="first call minus its compile time (no time left for a second call)",
                )
            ok = np.asarray(fit.success)
            e_enc = np.abs(np.asarray(fit.eta_enc) / ee[:n] - 1)
            e_dec = np.abs(np.asarray(fit.eta_dec) / ed[:n] - 1)
            accurate = ok & (e_enc < 1e-2) & (e_dec < 1e-2)
            row.update(
                success=int(ok.sum()),
                success_rate=float(ok.mean()),
                accurate_1pct=int(accurate.sum()),
                num_steps_median=float(np.median(np.asarray(fit.num_steps))),
                num_steps_max=int(np.max(np.asarray(fit.num_steps))),
                rel_err_eta_enc=rel_err(np.asarray(fit.eta_enc)[ok], ee[:n][ok]) if ok.any() else None,
                rel_err_eta_dec=rel_err(np.asarray(fit.eta_dec)[ok], ed[:n][ok]) if ok.any() else None,
                trajectories_per_s=1e3 / row["ms_per_trajectory"],
            )
            if on_gpu:
                row["gpu_peak_bytes"] = gpu_peak()
            say(
                f"    n={n}: {row['ms_per_trajectory']:.3f} ms per trajectory ({row['timing']}); success "
                f"{ok.sum()}/{n}; within 1% of the true rates {accurate.sum()}/{n}; eta_enc {row['rel_err_eta_enc']}; "
                f"eta_dec {row['rel_err_eta_dec']}"
            )
            part.save()
            if n == max(sz.fit_sizes):
                plot["data"] = (np.asarray(fit.eta_enc), np.asarray(fit.eta_dec), ee[:n], ed[:n], ok)
            return row

        row = attempt(sec, part, f"fit {n}", measure)
        if row:
            prev = (n, max(row["first_call_s"] - row["first_call_compile_s"], 1e-3), row["first_call_compile_s"])
    if plot:
        attempt(sec, part, "figure", plot_fit, plot["data"], out / "fit.png")
    part.save()
    return sec


def plot_fit(data, path):
    import numpy as np

    from repalign_jax.plots import pyplot as _plt

    fe, fd, ee, ed, ok = data
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    sel = np.flatnonzero(ok)[:3000]
    for ax, f, t, name in ((axes[0], fe, ee, "eta_enc"), (axes[1], fd, ed, "eta_dec")):
        ax.loglog(t[sel], f[sel], ".", ms=2)
        lo, hi = t.min(), t.max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.7)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"fitted {name}")
    fig.suptitle(f"fit_effective_rates on {len(ee)} synthetic trajectories ({ok.sum()} succeeded)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# 4. Precision
# --------------------------------------------------------------------------------------


def train_records(sz: Sizes, precision: str, path: pathlib.Path | None = None):
    """The precision section's runs: `sz.prec_seeds` seeds of the default network, `sz.prec_epochs` epochs."""
    import jax
    import numpy as np

    import repalign_jax as rj

    ds = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=sz.width, depth=sz.depth, precision=precision)
    config = rj.TrainConfig(epochs=sz.prec_epochs, track_layer=sz.depth // 2)
    t0 = time.time()
    res = rj.train_networks(
        ds.x, ds.targets, spec, config, gains=GAIN, seeds=np.arange(sz.prec_seeds), lrs=LR, chunk_size=sz.prec_seeds
    )
    rec = {
        "h": res.h[..., 0],
        "y": res.y[..., 0],
        "w": res.w[..., 0],
        "loss": res.loss,
        "diverged": res.diverged,
        "seconds": time.time() - t0,
        "dtype": str(res.y.dtype),
        "backend": jax.default_backend(),
        "precision": precision,
    }
    if path is not None:
        np.savez(path, **rec)
    return rec


def deviation(a, ref):
    """Largest |a - ref| over epochs as a fraction of ref's range, per seed, and its epoch.

    A run that is finite in float64 but not in float32 (diverged) counts as an infinite deviation.
    """
    import numpy as np

    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    fin = np.isfinite(ref)
    rng = np.where(fin, ref, -np.inf).max(-1) - np.where(fin, ref, np.inf).min(-1)
    diff = np.where(fin, np.abs(a - ref), 0.0)
    diff = np.where(fin & ~np.isfinite(a), np.inf, diff)
    dev = diff.max(-1) / np.where(rng > 0, rng, np.nan)
    return dev, diff.argmax(-1)


def section_precision(sz: Sizes, part: Part, clock: Clock, out: pathlib.Path, args):
    import jax
    import numpy as np

    sec = part.section("precision")
    sec.update(
        network=f"MLP width {sz.width} depth {sz.depth}, leaky ReLU, gain {GAIN}, SGD lr {LR}",
        epochs=sz.prec_epochs,
        seeds=sz.prec_seeds,
        variants={},
    )
    say(
        f"[4] precision: {sec['network']}, {sz.prec_epochs} epochs, {sz.prec_seeds} seeds; float32 at 'highest' and "
        f"'default' against float64 (x64 subprocess)"
    )
    recs = {}
    for prec in ("highest", "default"):
        r = attempt(sec, part, f"float32 {prec}", train_records, sz, prec)
        if r is not None:
            recs[prec] = r
            say(
                f"    float32 precision={prec}: {r['seconds']:.1f} s (with compiling), diverged {int(np.sum(r['diverged']))}"
            )

    def x64():
        npz = out / "precision_float64.npz"
        cmd = [
            sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--precision-worker",
            str(npz),
            "--width",
            str(sz.width),
            "--depth",
            str(sz.depth),
            "--epochs",
            str(sz.prec_epochs),
            "--seeds",
            str(sz.prec_seeds),
        ]
        env = dict(
            os.environ,
            JAX_ENABLE_X64="1",
            PYTHONPATH=os.pathsep.join(
                [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ),
        )
        t0 = time.time()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            timeout=max(60, clock.left()) if part.data["smoke"] is False else 900,
        )
        say("    --- float64 subprocess output ---\n" + (proc.stdout + proc.stderr).strip()[-6000:] + "\n    ---")
        if proc.returncode != 0:
            raise RuntimeError(f"float64 subprocess exited with {proc.returncode}")
        sec["float64_subprocess_s"] = time.time() - t0
        with np.load(npz) as f:
            return {k: f[k] for k in f.files}

    ref = attempt(sec, part, "float64 subprocess", x64)
    if ref is not None:
        sec["float64"] = {
            "dtype": str(ref["dtype"]),
            "backend": str(ref["backend"]),
            "seconds": float(ref["seconds"]),
            "diverged": int(np.sum(ref["diverged"])),
        }
        for prec, r in recs.items():
            v = {}
            for q in ("y", "h", "w", "loss"):
                dev, at = deviation(r[q], ref[q])
                v[f"max_dev_{q}"] = float(np.max(dev)) if np.isfinite(dev).all() else None
                v[f"seeds_not_comparable_{q}"] = int((~np.isfinite(dev)).sum())  # diverged in float32 only, or flat
                v[f"dev_{q}_per_seed"] = dev
                v[f"dev_{q}_epoch_per_seed"] = at
            sec["variants"][prec] = v
            say(
                f"    float32 '{prec}' vs float64: largest deviation of y = {pct_g(v['max_dev_y'])} of its range "
                f"(h {pct_g(v['max_dev_h'])}, w {pct_g(v['max_dev_w'])}, loss {pct_g(v['max_dev_loss'])})"
            )
        part.save()
        attempt(sec, part, "figure", plot_precision, recs, ref, out / "precision.png")
    sec["jax_default_matmul_precision"] = str(getattr(jax.config, "jax_default_matmul_precision", None))
    part.save()
    return sec


def plot_precision(recs, ref, path):
    import numpy as np

    from repalign_jax.plots import pyplot as _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    ts = np.arange(ref["y"].shape[-1])
    axes[0].plot(ts, ref["y"][0], "k-", lw=1.6, label="float64")
    for i, (prec, r) in enumerate(recs.items()):
        axes[0].plot(ts, r["y"][0], ls="--", color=f"C{i}", label=f"float32 {prec}")
        rng = np.nanmax(ref["y"], -1) - np.nanmin(ref["y"], -1)
        for s in range(r["y"].shape[0]):
            axes[1].semilogy(
                ts,
                np.abs(r["y"][s] - ref["y"][s]) / rng[s],
                color=f"C{i}",
                lw=0.8,
                label=f"float32 {prec}" if s == 0 else None,
            )
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("y (seed 0)")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("|y - y_float64| / range of y_float64")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def precision_worker(args) -> int:
    """The float64 runs (a subprocess with x64 enabled)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    sz = dataclasses.replace(FULL, width=args.width, depth=args.depth, prec_epochs=args.epochs, prec_seeds=args.seeds)
    rec = train_records(sz, "highest", pathlib.Path(args.precision_worker))
    print(
        f"float64 worker: {rec['dtype']} on {rec['backend']}, {rec['seconds']:.1f} s (with compiling), diverged "
        f"{int(rec['diverged'].sum())}",
        flush=True,
    )
    return 0 if rec["dtype"] == "float64" else 1


# --------------------------------------------------------------------------------------
# 2. The Table-1 study
# --------------------------------------------------------------------------------------


def section_universality(sz: Sizes, part: Part, clock: Clock, out: pathlib.Path, args):
    import jax
    import numpy as np

    import repalign_jax as rj
    from repalign_jax import _pipeline, _train, reproduce
    from repalign_jax.paper import evaluate

    sec = part.section("universality")
    root = out / "reproduce"
    uni_args = list(sz.uni_args)
    if args.uni_seeds:
        uni_args[uni_args.index("--seeds") + 1] = str(args.uni_seeds)
    argv = ["universality", "--out", str(root), "--quiet", *uni_args]
    if sz.uni_rows:  # the smoke run: only some Table-1 rows
        argv += ["--networks", ",".join(sz.uni_rows)]
    sec.update(command="python -m repalign_jax.reproduce " + " ".join(argv), train_calls=[], fit_calls=[])
    say(f"[2] Table-1 study: {sec['command']}" + (f" (rows {', '.join(sz.uni_rows)})" if sz.uni_rows else ""))

    orig_train, orig_fit = rj.train_networks, rj.fit_effective_rates

    def train_wrapper(x, targets, spec, config, **kw):
        R = int(np.broadcast(np.asarray(kw.get("gains")), np.asarray(kw.get("seeds")), np.asarray(kw.get("lrs"))).size)
        n_pairs = np.asarray(kw.get("pairs", ((0, 1),))).reshape(-1, 2).shape[0]
        chunk = kw.get("chunk_size") or _train.fitting_runs(spec, config, np.shape(x)[0], n_pairs)
        chunk = min(chunk, R)
        t0 = time.time()
        res = orig_train(x, targets, spec, config, **kw)
        t1 = time.time()
        sec["train_calls"].append(
            {
                "network": f"{spec.arch} {spec.activation} {spec.depth}x{spec.width}"
                + (f" dropout {spec.dropout}" if spec.dropout else ""),
                "runs": R,
                "chunk": chunk,
                "chunks": -(-R // chunk),
                "epochs": config.epochs,
                "seconds": t1 - t0,
                "compile_s": COMPILES.covered([(t0, t1)]),
                "diverged": int(np.sum(res.diverged)),
                "t0": t0,
                "t1": t1,
            }
        )
        part.save()
        return res

    def fit_wrapper(traj, options=rj.FitOptions(), **kw):
        t0 = time.time()
        fit = jax.block_until_ready(orig_fit(traj, options, **kw))
        t1 = time.time()
        B = int(np.prod(traj.batch_shape))
        sec["fit_calls"].append(
            {
                "trajectories": B,
                "chunk": options.resolved_chunk_size(B),
                "seconds": t1 - t0,
                "compile_s": COMPILES.covered([(t0, t1)]),
                "success": int(np.sum(np.asarray(fit.success))),
                "t0": t0,
                "t1": t1,
            }
        )
        part.save()
        return fit

    # The experiments train and fit through `rj.train_and_fit` (repalign_jax._pipeline), which calls
    # these two by its own module's names: time them there and in the package namespace.
    rj.train_networks, rj.fit_effective_rates = train_wrapper, fit_wrapper
    _pipeline.train_networks, _pipeline.fit_effective_rates = train_wrapper, fit_wrapper
    jpath = root / "universality" / "universality.json"
    jpath.unlink(missing_ok=True)  # a result left by an earlier run must not pass for this one's
    t0 = time.time()
    rc, failure = None, None
    try:
        rc = reproduce.main(argv)
    except Exception as err:  # noqa: BLE001 - keep the time split of what ran, then fail the section
        failure = err
    finally:
        t1 = time.time()
        rj.train_networks, rj.fit_effective_rates = orig_train, orig_fit
        _pipeline.train_networks, _pipeline.fit_effective_rates = orig_train, orig_fit
    tr = [(c["t0"], c["t1"]) for c in sec["train_calls"]]
    fi = [(c["t0"], c["t1"]) for c in sec["fit_calls"]]
    train_s = sum(b - a for a, b in tr)
    fit_s = sum(b - a for a, b in fi)
    comp_all = COMPILES.covered([(t0, t1)])
    comp_train, comp_fit = COMPILES.covered(tr), COMPILES.covered(fi)
    split = {
        "total_s": t1 - t0,
        "compile_s": comp_all,
        "backend_compile_s": COMPILES.covered([(t0, t1)], True),
        "training_s": train_s - comp_train,
        "fitting_s": fit_s - comp_fit,
        "other_s": (t1 - t0) - train_s - fit_s - (comp_all - comp_train - comp_fit),
        "compile_in_training_s": comp_train,
        "compile_in_fitting_s": comp_fit,
        "compile_elsewhere_s": comp_all - comp_train - comp_fit,
    }
    sec.update(
        return_code=rc, split=split, compile_by_function=COMPILES.by_function(t0, t1), compile_measure=COMPILES.mode
    )
    for c in sec["train_calls"] + sec["fit_calls"]:
        c.pop("t0", None)
        c.pop("t1", None)
    say(
        "    wall {total_s:.1f} s = compiling {compile_s:.1f} + training {training_s:.1f} + fitting {fitting_s:.1f} + "
        "other (tables, figure) {other_s:.1f}".format(**split)
    )
    if jpath.exists():
        numbers = json.loads(jpath.read_text())
        table = numbers.get("table", [])
        sec["result"] = {
            "epochs": numbers.get("epochs"),
            "rows": len(table),
            "settings_profile": numbers.get("settings_profile"),
            "seeds_fitted": sum(r.get("fitted", 0) for r in table),
            "seeds": sum(r.get("seeds", 0) for r in table),
            "diverged": sum(r.get("diverged", 0) for r in table),
            "verdicts": [
                {"network": e.network, "verdict": e.verdict.label, "number": e.number}
                for e in evaluate("universality", numbers)
            ],
            "wall_seconds": numbers.get("wall_seconds"),
            "table": table,
        }
        say(
            f"    {sec['result']['seeds_fitted']}/{sec['result']['seeds']} runs fitted; verdicts: "
            + "; ".join(f"{v['network']}: {v['verdict']}" for v in sec["result"]["verdicts"])
        )
    if failure is not None:
        raise failure
    if rc != 0:
        raise RuntimeError(f"reproduce universality returned {rc}")
    part.save()
    return sec


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


def pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def pct_g(v):
    return "-" if v is None else f"{100 * v:.2g}%"


def num(v, f=".1f"):
    return "-" if v is None else format(v, f)


def summarise(out: pathlib.Path) -> str:
    """summary.json and summary.md over every partN.json in `out`."""
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    parts = {}
    for p in sorted(out.glob("part*.json")):
        try:
            parts[p.stem] = json.loads(p.read_text())
        except ValueError:
            continue
    secs = {k: v for part in parts.values() for k, v in part.get("sections", {}).items()}
    smoke = any(p.get("smoke") for p in parts.values())
    ver = env.get("versions", {})
    lines = [
        f"### GPU suite ({'SMOKE RUN, not a measurement' if smoke else 'measured'}) {env.get('time', '')}",
        "",
        f"Device: {', '.join(sorted(set(env.get('devices', []))))}; driver {env.get('driver') or 'n/a'}; "
        f"{env.get('summary', '')}; jax {ver.get('jax')}, jaxlib {ver.get('jaxlib')}, flax {ver.get('flax')}, "
        f"torch {ver.get('torch')}"
        + (f" (CUDA {env.get('torch', {}).get('cuda')})" if env.get("torch", {}).get("cuda") else "")
        + f"; commit {(env.get('git') or 'n/a')[:10]}.",
        "",
    ]
    headline: dict = {}
    status = {k: v.get("status") for k, v in secs.items()}
    lines.append(
        "Sections: "
        + ", ".join(
            f"{k} {v}" + (f" ({len(secs[k].get('errors', []))} errors)" if secs[k].get("errors") else "")
            for k, v in status.items()
        )
    )
    lines.append("")

    tp = secs.get("train_throughput")
    if tp:
        lines += [
            f"**Training throughput** ({tp.get('network')}; {tp.get('precision')}; {tp.get('epochs')} epochs per "
            f"call, min of {tp.get('repeats')}):",
            "",
            "| method | G | model-steps / s | fraction of roofline | peak memory per run |",
            "|---|---|---|---|---|",
        ]
        for r in tp.get("rows", []):
            mem = r.get("peak_per_run_bytes") or r.get("torch_peak_per_run_bytes")
            mem = f"{mem / 1e6:.1f} MB" if mem else "-"
            g = r["G"] if "runs" not in r else f"- ({r['runs']} runs)"
            lines.append(
                f"| {r['method']} | {g} | {r['model_steps_per_s']:,.0f} | {pct(r.get('roofline_fraction'))} | {mem} |"
            )
        hp = (secs.get("headroom") or {}).get("probe")
        if hp:
            lines.append(
                f"| jax vmap (headroom probe) | {hp['G']} | "
                + (
                    f"{hp['model_steps_per_s']:,.0f} | {pct(hp.get('roofline_fraction'))} | "
                    if hp.get("fits")
                    else "out of memory | - | "
                )
                + (f"{hp['peak_per_run_bytes'] / 1e6:.1f} MB |" if hp.get("peak_per_run_bytes") else "- |")
            )
        lines.append("")
        if tp.get("bandwidth_Bps"):
            lines.append(
                f"Roofline: {tp['step_bytes'] / 1e6:.1f} MB per model-step at {tp['bandwidth_Bps'] / 1e9:.0f} GB/s "
                f"(in-place v + 1 over {tp['bandwidth_array_mb']} MB) = {tp['roofline_steps_per_s']:,.0f} model-steps/s."
            )
        lg = tp.get("largest_g")
        if lg:
            lines.append(
                f"Largest G: the package's memory-based chunk sizing chose {lg.get('package_chunk')} runs "
                f"({lg.get('available_memory', 0) / 1e9:.1f} GB available / {lg.get('bytes_per_run_estimate', 0) / 1e6:.1f} MB "
                f"estimated per run); "
                + (f"ran G = {lg['fitted']}" if lg.get("fitted") else "no largest G ran (see below)")
                + (
                    f" after out-of-memory at {[o['G'] for o in lg['oom']]}"
                    if lg.get("oom")
                    else " without running out of memory"
                    if lg.get("fitted")
                    else ""
                )
                + (
                    f"; the measured peak per run says about {lg['max_g_from_peak']} would fit"
                    if lg.get("max_g_from_peak")
                    else ""
                )
                + "."
            )
        ra = tp.get("ratios") or {}
        if ra:
            lines.append(
                f"Ratios: best vmap (G = {ra.get('best_vmap_G')}) / PyTorch eager loop {num(ra.get('vmap_over_torch_eager'))}x "
                f"(target >= 100x); / best hand-batched PyTorch {num(ra.get('vmap_over_best_torch_batched'), '.2f')}x "
                f"(target >= 2x); / loop of jitted runs {num(ra.get('vmap_over_jax_loop'))}x; best G >= 256 at "
                f"{pct(ra.get('best_G_ge_256_roofline_fraction'))} of the roofline (target >= 75%)."
            )
            headline["train"] = {
                "best_steps_per_s": ra.get("best_vmap_steps_per_s"),
                "best_G": ra.get("best_vmap_G"),
                "roofline_fraction_G_ge_256": ra.get("best_G_ge_256_roofline_fraction"),
                "vs_torch_eager": ra.get("vmap_over_torch_eager"),
                "vs_torch_batched": ra.get("vmap_over_best_torch_batched"),
                "targets_met": {
                    "roofline_75pct": None
                    if ra.get("best_G_ge_256_roofline_fraction") is None
                    else ra["best_G_ge_256_roofline_fraction"] >= TARGETS["roofline_fraction"],
                    "2x_torch_batched": None
                    if ra.get("vmap_over_best_torch_batched") is None
                    else ra["vmap_over_best_torch_batched"] >= TARGETS["vs_torch_batched"],
                    "100x_torch_eager": None
                    if ra.get("vmap_over_torch_eager") is None
                    else ra["vmap_over_torch_eager"] >= TARGETS["vs_torch_eager"],
                },
            }
        lines.append("")

    uv = secs.get("universality")
    if uv and uv.get("split"):
        s = uv["split"]
        res = uv.get("result", {})
        lines += [
            f"**Table-1 study** (`{uv.get('command')}`; {res.get('rows')} networks, {res.get('epochs')} epochs, "
            f"settings profile {res.get('settings_profile') or 'n/a'}; "
            f"{res.get('seeds_fitted')}/{res.get('seeds')} runs fitted, {res.get('diverged')} diverged):",
            "",
            "| wall time | compiling | training | fitting | other (tables, figure) |",
            "|---|---|---|---|---|",
            f"| {s['total_s']:.1f} s | {s['compile_s']:.1f} s (training {s['compile_in_training_s']:.1f}, fitting "
            f"{s['compile_in_fitting_s']:.1f}, other {s['compile_elsewhere_s']:.1f}) | {s['training_s']:.1f} s | "
            f"{s['fitting_s']:.1f} s | {s['other_s']:.1f} s |",
            "",
        ]
        chunks = ", ".join(
            f"{c['network']}: {c['runs']} runs in {c['chunks']} chunk(s) of {c['chunk']}"
            for c in uv.get("train_calls", [])
        )
        if chunks:
            lines += [f"Training calls: {chunks}.", ""]
        for v in res.get("verdicts") or []:
            lines += [f"Verdict: {v['network']}: {v['verdict']} ({v['number']}).", ""]
        headline["universality"] = {
            "total_s": s["total_s"],
            "compile_s": s["compile_s"],
            "training_s": s["training_s"],
            "fitting_s": s["fitting_s"],
            "target_met": None if smoke else s["total_s"] < TARGETS["universality_s"],
        }

    ft = secs.get("fit")
    if ft and ft.get("runs"):
        lines += [
            f"**Fitting** (`fit_effective_rates`, {ft.get('options')}; synthetic {ft.get('epochs')}-epoch "
            f"trajectories, {ft.get('dtype')}):",
            "",
            "| trajectories | chunk | first call (compiling) | timed call | ms / trajectory | success | within 1% | "
            "rel. error eta_enc | rel. error eta_dec |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ft["runs"]:
            if "ms_per_trajectory" not in r:
                lines.append(
                    f"| {r['n']:,} | {r.get('chunk')} | {num(r.get('first_call_s'))} s | failed | - | - | - | - | - |"
                )
                continue
            lines.append(
                f"| {r['n']:,} | {r['chunk']} | {r['first_call_s']:.1f} s ({r['first_call_compile_s']:.1f} s) | "
                f"{num(r.get('warm_call_s'), '.2f')} s | {r['ms_per_trajectory']:.3f} | {r['success']}/{r['n']} | "
                f"{r['accurate_1pct']}/{r['n']} | {r.get('rel_err_eta_enc')} | {r.get('rel_err_eta_dec')} |"
            )
        lines.append("")
        big = max((r for r in ft["runs"] if "ms_per_trajectory" in r), key=lambda r: r["n"], default=None)
        if big:
            t_big = big.get("warm_call_s") or big["ms_per_trajectory"] * big["n"] / 1e3
            headline["fit"] = {
                "n": big["n"],
                "seconds": t_big,
                "ms_per_trajectory": big["ms_per_trajectory"],
                "success_rate": big["success_rate"],
                "target_met": t_big < TARGETS["fit_10k_s"] if big["n"] >= 10000 else None,
            }

    pr = secs.get("precision")
    if pr and pr.get("variants"):
        lines += [
            f"**Precision** ({pr.get('network')}, {pr.get('epochs')} epochs, {pr.get('seeds')} seeds; against "
            f"the same runs in float64):",
            "",
            "| float32 precision | largest deviation of y / range of y | h | w | loss |",
            "|---|---|---|---|---|",
        ]
        for k, v in pr["variants"].items():
            name = {
                "highest": "`highest` (package default, full float32)",
                "default": "`default` (JAX's: TF32 on NVIDIA)",
            }.get(k, k)
            nc = v.get("seeds_not_comparable_y") or 0
            lines.append(
                f"| {name} | {pct_g(v.get('max_dev_y'))}"
                + (f" ({nc} seed(s) not finite in float32)" if nc else "")
                + f" | {pct_g(v.get('max_dev_h'))} | "
                f"{pct_g(v.get('max_dev_w'))} | {pct_g(v.get('max_dev_loss'))} |"
            )
        lines.append("")
        headline["precision"] = {k: v.get("max_dev_y") for k, v in pr["variants"].items()}

    errors = [(k, e) for k, v in secs.items() for e in v.get("errors", [])]
    if errors:
        lines += ["Failures:", ""] + [f"- {k} / {e['what']}: {e['error'][:300]}" for k, e in errors] + [""]
    skipped = [(k, s) for k, v in secs.items() for s in v.get("skipped", [])]
    if skipped:
        lines += ["Skipped:", ""] + [f"- {k} / {s['what']}: {s['why']}" for k, s in skipped] + [""]
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    write_json(
        out / "summary.json",
        {"smoke": smoke, "env": env, "headline": headline, "targets": TARGETS, "status": status, "parts": parts},
    )
    return md


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def run_part(number: str, args, sz: Sizes, out: pathlib.Path, env: dict, only) -> None:
    part = Part(out, number, args.smoke, args.budget_s, env)
    clock = Clock(args.budget_s)
    say(f"=== part {number} ({'smoke' if args.smoke else 'full'}; budget {args.budget_s:.0f} s) {now()} ===")
    for name in PARTS[number]:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            if name == "train_throughput":
                sec = section_train_throughput(sz, part, clock, out, not args.no_torch)
            elif name == "fit":
                sec = section_fit(sz, part, clock, out)
            elif name == "headroom":
                sec = section_headroom(sz, part, clock, out)
            elif name == "precision":
                sec = section_precision(sz, part, clock, out, args)
            else:
                sec = section_universality(sz, part, clock, out, args)
            sec["status"] = "ok" if not sec.get("errors") else "partial"
        except Exception as err:  # noqa: BLE001 - the next section still runs
            tb = traceback.format_exc()
            say(f"[{name}] FAILED: {short_error(err)}\n{tb}")
            sec = part.data["sections"].setdefault(name, {"errors": []})
            sec.setdefault("errors", []).append({"what": "section", "error": short_error(err), "traceback": tb[-4000:]})
            sec["status"] = "failed"
        sec["wall_s"] = time.perf_counter() - t0
        sec["finished"] = now()
        part.save()
        say(f"[{name}] {sec['status']} in {sec['wall_s']:.1f} s (part so far {clock.elapsed():.0f} s)")
    part.data.update(finished=now(), wall_s=clock.elapsed())
    part.save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("1", "2", "all"), default="all")
    p.add_argument(
        "--out", default="runs/gpu_suite", help="folder for every figure, JSON and log (default runs/gpu_suite)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, same code paths: a couple of minutes on a CPU")
    p.add_argument("--sections", default=None, help=f"comma-separated subset of {', '.join(SECTIONS)} (reruns)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds per part before optional pieces are skipped (default 360; smoke: no limit)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    p.add_argument(
        "--uni-seeds",
        type=int,
        default=None,
        help="seeds per network of the Table-1 study (default 50; smoke 1): only for a rerun that must be shorter",
    )
    p.add_argument("--force", action="store_true", help="run the full sizes even without a GPU (hours on a CPU)")
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="only rewrite summary.json and summary.md from the partN.json files in --out (e.g. after "
        "copying the two parts' folders, run on different machines, into one)",
    )
    p.add_argument("--precision-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision_worker:
        return precision_worker(args)

    only = None
    if args.sections:
        only = {s.strip() for s in args.sections.split(",") if s.strip()}
        bad = only - set(SECTIONS)
        if bad:
            p.error(f"unknown sections {sorted(bad)}; choose from {', '.join(SECTIONS)}")
    if args.budget_s is None:
        args.budget_s = 3600.0 if args.smoke else 360.0
    sz = SMOKE if args.smoke else FULL
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        print(summarise(out))
        return 0
    numbers = ("1", "2") if args.part == "all" else (args.part,)

    t_start = time.perf_counter()
    with logging_to(out / f"part{numbers[0]}.log"):
        COMPILES.install()
        import jax

        env = environment(out)
        say(f"machine: {env['summary']}")
        say(f"driver: {env.get('driver') or 'n/a (no nvidia-smi)'}; versions: {json.dumps(env['versions'])}")
        say(f"output: {out.resolve()}; compile time from {COMPILES.mode}")
        if jax.default_backend() == "cpu" and not args.smoke and not args.force:
            say(
                "ERROR: JAX sees no GPU (backend cpu). The full suite is sized for an H100; use --smoke on a CPU, "
                "or --force. Devices: " + ", ".join(env["devices"])
            )
            summarise(out)
            return 3
    for i, number in enumerate(numbers):
        with logging_to(out / f"part{number}.log"):
            run_part(number, args, sz, out, env, only)
            md = summarise(out)
            if i == len(numbers) - 1:
                say("\n" + md)
                say(f"total {time.perf_counter() - t_start:.1f} s; results in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
