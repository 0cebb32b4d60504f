"""Training throughput: vmapped ensemble vs a loop of jitted runs vs PyTorch, against the memory roofline.

    python benchmarks/train_throughput.py [--epochs 200] [--groups 1,4,16,64,256] [--max-g 750]
                                          [--repeats 3] [--loop-runs 16] [--no-torch] [--cpu-devices N]

    # this 2-core CPU, about 4-5 minutes (G=256 would not fit in its RAM):
    python benchmarks/train_throughput.py --epochs 60 --groups 1,4,16,64 --repeats 3 --loop-runs 4

The paper's default network (`NetworkSpec(d_in=1, d_out=1, width=500, depth=20)`:
21 dense layers, leaky ReLU, Xavier-normal gain 1.0, zero biases) is trained on
the two-point task (`repalign_jax.two_point()`) with full-batch SGD, lr 0.005,
recording every epoch the loss and `h, y, w` of the pair at hidden layer 10.
One *model-step* is one such step of one network, records included. Measured in
one run, on whatever `jax.default_backend()` is (CPU or GPU):

1. `train_networks` on G runs at once (`chunk_size=G`: one vmapped `lax.scan`),
   for each G of `--groups` (and, on a GPU, the largest G up to `--max-g` that
   fits); the second of two calls of the same shapes is timed (no compilation).
   On a CPU the runs are split over one JAX device per core
   (`repalign_jax.use_host_cores`, as the command-line tools do; `--cpu-devices 1`
   for a single device).
2. a Python loop calling the same jitted `train_networks` on one run at a time,
   over min(max G, `--loop-runs`) runs: its throughput does not depend on G.
3. PyTorch, when importable: (a) the authors' eager loop (`nn.Sequential` of 21
   `nn.Linear` + `LeakyReLU(0.01)`, `torch.optim.SGD`, a forward hook on hidden
   layer 10) over the same number of runs; (b) a hand-batched ensemble of G runs
   (weights stacked `(G, in, out)`, `torch.baddbmm` per layer, one backward per
   step, a fused manual SGD update) at each G. Records stay on the device and
   are copied to the host once at the end of each run (no per-step sync).
4. the roofline: one model-step must move 4 x the parameter bytes (weights read
   by the forward, again by the backward, read and written by the update),
   divided by the memory bandwidth of a large array copy measured here.
5. peak memory per run: the GPU allocator's peak / G, or on CPU the estimate
   `repalign_jax._train.bytes_per_run` next to the process's max RSS.

Model-steps per second = G * epochs / seconds (min of `--repeats`); every timed
call includes the runs' initialisation. All in float32 at full precision:
Precision.HIGHEST in JAX, TF32 off in PyTorch. G whose estimated memory exceeds
`available_memory()` are skipped with a note. Run on an idle machine: PyTorch's
OpenMP threads slow down by orders of magnitude when other processes share the
cores (a warning is printed when the load average says so).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

# Without this JAX grabs 75% of the GPU at start-up and PyTorch would share the rest.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe  # noqa: E402

import repalign_jax as rj  # noqa: E402
from repalign_jax import _train  # noqa: E402

LR, GAIN, WIDTH, DEPTH, TRACK = 0.005, 1.0, 500, 20, 10
MB = 1e6


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def best_time(fn, repeats):
    """Min wall time of `repeats` calls of `fn` (which must be synchronous) and its last result."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def jax_peak_bytes():
    """Peak bytes in use on the first JAX device since start-up, or None where unknown."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        return None
    return stats.get("peak_bytes_in_use") if stats else None


def is_oom(err):
    s = str(err)
    return "RESOURCE_EXHAUSTED" in s or "out of memory" in s.lower() or "Out of memory" in s


def measure_bandwidth(nbytes, repeats):
    """Bytes read + written per second by a jitted pass `v + 1` over a large float32 array.

    The input is donated, so the pass runs in place like the training's parameter
    update: a fresh output buffer would add the operating system's first-touch
    page faults on CPU (several times slower than memory), which are not bandwidth.
    """
    n = nbytes // 4
    box = {"a": jax.block_until_ready(jnp.ones(n, jnp.float32))}
    f = jax.jit(lambda v: v + 1.0, donate_argnums=0)

    def once():
        box["a"] = jax.block_until_ready(f(box["a"]))

    once()
    t, _ = best_time(once, max(repeats, 10))
    del box["a"]
    return 2 * 4 * n / t


# --------------------------------------------------------------------------------------
# PyTorch baselines
# --------------------------------------------------------------------------------------


def torch_eager_run(torch, x, t, dy, epochs, seed, device):
    """One run as the paper's authors trained it; returns the records `(epochs + 1, 4)` on the host."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(seed)
    dims = [x.shape[1]] + [WIDTH] * DEPTH + [t.shape[1]]
    layers = []
    for i in range(DEPTH + 1):
        lin = nn.Linear(dims[i], dims[i + 1])
        nn.init.xavier_normal_(lin.weight, gain=GAIN)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < DEPTH:
            layers.append(nn.LeakyReLU(0.01))
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    store = {}
    model[2 * TRACK + 1].register_forward_hook(lambda m, i, o: store.__setitem__("h", o))
    rec = torch.empty(epochs + 1, 4, device=device)

    def record(e, loss, out):
        hid = store["h"].detach()
        dh, dyh = hid[1] - hid[0], out.detach()[1] - out.detach()[0]
        yy = dyh @ dyh
        rec[e] = torch.stack([loss.detach(), dh @ dh, yy, yy - dy @ dyh])

    for e in range(epochs):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = 0.5 * F.mse_loss(out, t)
        loss.backward()
        opt.step()
        record(e, loss, out)
    with torch.no_grad():
        out = model(x)
        record(epochs, 0.5 * F.mse_loss(out, t), out)
    return rec.cpu()


def torch_batched_run(torch, x, t, dy, epochs, G, seed, device):
    """G runs with stacked weights, one backward per step; returns records `(G, epochs + 1, 4)` on the host."""
    gen = torch.Generator(device=device).manual_seed(seed)
    dims = [x.shape[1]] + [WIDTH] * DEPTH + [t.shape[1]]
    Ws, bs = [], []
    for i in range(DEPTH + 1):
        std = GAIN * math.sqrt(2.0 / (dims[i] + dims[i + 1]))
        Ws.append((torch.randn(G, dims[i], dims[i + 1], device=device, generator=gen) * std).requires_grad_())
        bs.append(torch.zeros(G, 1, dims[i + 1], device=device, requires_grad=True))
    params = Ws + bs
    xg, tg = x.expand(G, *x.shape), t.expand(G, *t.shape)
    rec = torch.empty(G, epochs + 1, 4, device=device)

    def forward():
        z, hid = xg, None
        for i in range(DEPTH + 1):
            z = torch.baddbmm(bs[i], z, Ws[i])
            if i < DEPTH:
                z = torch.nn.functional.leaky_relu(z, 0.01)
            if i == TRACK:
                hid = z
        loss = 0.5 * ((z - tg) ** 2).mean(dim=(1, 2))  # (G,) each run's 0.5 * MSE
        return loss, z, hid

    def record(e, loss, out, hid):
        dh, dyh = hid[:, 1] - hid[:, 0], out[:, 1] - out[:, 0]
        yy = (dyh * dyh).sum(-1)
        rec[:, e] = torch.stack([loss, (dh * dh).sum(-1), yy, yy - dyh @ dy], -1)

    for e in range(epochs):
        loss, out, hid = forward()
        loss.sum().backward()  # runs are independent: the sum's gradient is each run's own
        with torch.no_grad():
            grads = [p.grad for p in params]
            if hasattr(torch, "_foreach_add_"):
                torch._foreach_add_(params, grads, alpha=-LR)
            else:
                for p, g in zip(params, grads):
                    p.add_(g, alpha=-LR)
            for p in params:
                p.grad = None
            record(e, loss, out, hid)
    with torch.no_grad():
        loss, out, hid = forward()
        record(epochs, loss, out, hid)
    return rec.cpu()


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 200 on CPU, 500 on GPU)")
    p.add_argument("--groups", default="1,4,16,64,256", help="comma-separated ensemble sizes G")
    p.add_argument(
        "--max-g",
        type=int,
        default=None,
        help="also try the largest G up to this that fits (default 750 on GPU, none on CPU; 0: none)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, the minimum is reported")
    p.add_argument("--loop-runs", type=int, default=16, help="runs timed by the loops: min(max G, this)")
    p.add_argument("--bw-mb", type=int, default=256, help="array size of the bandwidth measurement, MB")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    p.add_argument("--torch-threads", type=int, default=None, help="PyTorch CPU threads (default: all cores)")
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="JAX CPU devices the runs are split over (default: one per core, rj.use_host_cores; "
        "1: a single device). No effect on a GPU",
    )
    args = p.parse_args(argv)
    rj.use_host_cores(args.cpu_devices)  # no split for None on one core, nor for 1

    backend = jax.default_backend()
    on_gpu = backend != "cpu"
    epochs = args.epochs or (500 if on_gpu else 200)
    groups = sorted({int(g) for g in args.groups.split(",") if g.strip()})
    max_g = args.max_g if args.max_g is not None else (750 if on_gpu else 0)
    repeats = max(1, args.repeats)

    ds = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=WIDTH, depth=DEPTH)
    config = rj.TrainConfig(epochs=epochs, track_layer=TRACK)
    n_params = _train._param_count(spec)
    param_bytes = 4 * n_params
    step_bytes = 4 * param_bytes
    per_run_est = _train.bytes_per_run(spec, config, ds.x.shape[0], 1)
    mem_limit = _train.available_memory()

    print("machine:", describe())
    print(
        f"task: two-point, MLP width {WIDTH} depth {DEPTH} ({DEPTH + 1} dense layers, {n_params:,} parameters = "
        f"{param_bytes / MB:.1f} MB float32), leaky ReLU, gain {GAIN}, full-batch SGD lr {LR}, "
        f"{epochs} epochs, loss + h,y,w of pair (0,1) at hidden layer {TRACK} recorded every epoch"
    )
    print(
        f"precision: float32, JAX matmuls at Precision.{spec.precision.upper()} (full float32, never TF32)"
        + ("; PyTorch TF32 off" if on_gpu else "")
    )
    if not on_gpu:
        print(f"JAX CPU devices: {len(jax.devices())} (a batch of G runs is split over min(G, devices) of them)")
    print(f"timing: min of {repeats} repeat(s) after a warm-up call of the same shapes (compilation excluded)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at start: {load:.2f} on {os.cpu_count()} cores; the timings assume an idle machine")
    if not on_gpu and load > 0.5:
        print(
            "WARNING: other processes are using the CPU. PyTorch's OpenMP threads spin-wait and can run 10-100x "
            "slower when they share cores; rerun on an idle machine (or compare with --torch-threads 1)"
        )
    print(
        f"memory estimate per run (bytes_per_run): {per_run_est / MB:.1f} MB; budget for a batch "
        f"(available_memory): {mem_limit / 1e9:.1f} GB"
    )
    print()

    x, t = ds.x, ds.targets
    rows = []  # (label, G, seconds, model-steps/s, peak per run str, median final loss)

    def jax_vmap(G):
        call = lambda: rj.train_networks(x, t, spec, config, gains=GAIN, seeds=np.arange(G), lrs=LR, chunk_size=G)  # noqa: E731
        call()
        sec, res = best_time(call, repeats)
        if on_gpu:
            peak = jax_peak_bytes()
            mem = f"{peak / G / MB:.1f} MB (GPU peak {peak / 1e9:.2f} GB / G)" if peak else "unavailable"
        else:
            rss = max_rss_bytes()
            mem = f"est {per_run_est / MB:.1f} MB; process max RSS {rss / 1e9:.2f} GB (/G {rss / G / MB:.1f} MB)"
        return sec, float(np.nanmedian(res.loss[:, -1])), mem

    # 1. vmap over G runs ----------------------------------------------------------
    print("[1] train_networks, G runs in one vmapped call (chunk_size=G)")
    vmap = {}
    for G in groups:
        if G * per_run_est > mem_limit:
            print(
                f"    G={G:4d}: skipped, estimated {G * per_run_est / 1e9:.1f} GB > {mem_limit / 1e9:.1f} GB available"
            )
            continue
        sec, fl, mem = jax_vmap(G)
        vmap[G] = G * epochs / sec
        rows.append(("jax vmap", G, sec, vmap[G], mem, fl))
        print(
            f"    G={G:4d}: {sec:8.3f} s -> {vmap[G]:9.1f} model-steps/s; final loss median {fl:.3g}; memory/run {mem}"
        )
    if not vmap:
        sys.exit("no G fits in memory")

    # 2. loop of jitted single runs ------------------------------------------------------
    n_loop = max(1, min(max(groups + ([max_g] if max_g else [])), args.loop_runs))
    print(
        f"[2] loop of jitted single runs (train_networks, one seed per call) over {n_loop} runs; "
        f"its throughput does not depend on G and stands for every G"
    )
    single = lambda s: rj.train_networks(x, t, spec, config, gains=GAIN, seeds=[s], lrs=LR, chunk_size=1)  # noqa: E731
    single(0)
    sec, losses = best_time(lambda: [single(s).loss[0, -1] for s in range(n_loop)], repeats)
    loop = n_loop * epochs / sec
    rows.append(("jax loop", 1, sec / n_loop, loop, "as G=1", float(np.nanmedian(losses))))
    print(f"    {sec:8.3f} s for {n_loop} runs -> {loop:9.1f} model-steps/s ({sec / n_loop:.3f} s per run)")

    # 3. PyTorch -----------------------------------------------------------------------
    eager, batched = None, {}
    torch = None
    if args.no_torch:
        print("[3] PyTorch: skipped (--no-torch)")
    else:
        try:
            import torch  # noqa: PLC0415
        except ImportError as err:
            print(f"[3] PyTorch: skipped, not importable ({err})")
            torch = None
        if torch is not None and on_gpu and not torch.cuda.is_available():
            print(f"[3] PyTorch {torch.__version__}: skipped, JAX runs on {backend} but this PyTorch has no CUDA")
            torch = None
    if torch is not None:
        device = torch.device("cuda" if on_gpu else "cpu")
        torch.set_num_threads(args.torch_threads or os.cpu_count())
        if on_gpu:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        sync = torch.cuda.synchronize if on_gpu else (lambda: None)
        tx = torch.as_tensor(x, device=device)
        tt = torch.as_tensor(t, device=device)
        tdy = (tt[1] - tt[0]).contiguous()
        print(
            f"[3] PyTorch {torch.__version__} on {device} ({torch.get_num_threads()} threads), float32, "
            f"TF32 {'off' if on_gpu else 'n/a'}"
        )

        torch_eager_run(torch, tx, tt, tdy, min(epochs, 5), 0, device)  # warm-up
        sync()

        def eager_loop():
            out = [torch_eager_run(torch, tx, tt, tdy, epochs, s, device)[-1, 0].item() for s in range(n_loop)]
            sync()
            return out

        sec, losses = best_time(eager_loop, repeats)
        eager = n_loop * epochs / sec
        rows.append(("torch eager loop", 1, sec / n_loop, eager, "-", float(np.median(losses))))
        print(
            f"    (a) eager loop (nn.Sequential + optim.SGD + hook) over {n_loop} runs: {sec:8.3f} s -> "
            f"{eager:9.1f} model-steps/s ({sec / n_loop:.3f} s per run)"
        )

        print("    (b) hand-batched ensemble (stacked weights, baddbmm, one backward, fused SGD)")
        for G in groups:
            if G * per_run_est > mem_limit:
                print(f"        G={G:4d}: skipped, estimated {G * per_run_est / 1e9:.1f} GB > {mem_limit / 1e9:.1f} GB")
                continue
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            torch_batched_run(torch, tx, tt, tdy, min(epochs, 5), G, 0, device)  # warm-up
            sync()

            def batched_call(G=G):
                out = torch_batched_run(torch, tx, tt, tdy, epochs, G, 0, device)
                sync()
                return out

            sec, rec = best_time(batched_call, repeats)
            batched[G] = G * epochs / sec
            mem = f"{torch.cuda.max_memory_allocated() / G / MB:.1f} MB (torch peak / G)" if on_gpu else "-"
            fl = float(np.nanmedian(rec[:, -1, 0].numpy()))
            rows.append(("torch batched", G, sec, batched[G], mem, fl))
            print(
                f"        G={G:4d}: {sec:8.3f} s -> {batched[G]:9.1f} model-steps/s; final loss median {fl:.3g}"
                + (f"; memory/run {mem}" if on_gpu else "")
            )
        if on_gpu:
            torch.cuda.empty_cache()  # give the memory back before the largest JAX batch

    # 1b. the largest G that fits (GPU) --------------------------------------------------------
    if max_g and max_g > max(groups):
        G = max_g
        print(
            f"[1b] train_networks, largest G up to {max_g} that fits (estimate allows {mem_limit // per_run_est} runs)"
        )
        for _ in range(6):
            try:
                sec, fl, mem = jax_vmap(G)
            except Exception as err:  # noqa: BLE001
                if not is_oom(err):
                    raise
                print(f"    G={G:4d}: out of memory, trying {int(G * 0.85)}")
                G = int(G * 0.85)
                continue
            vmap[G] = G * epochs / sec
            rows.append(("jax vmap (max G)", G, sec, vmap[G], mem, fl))
            print(
                f"    G={G:4d}: {sec:8.3f} s -> {vmap[G]:9.1f} model-steps/s; final loss median {fl:.3g}; "
                f"memory/run {mem}"
            )
            break

    # 4. roofline ------------------------------------------------------------------------
    bw = measure_bandwidth(args.bw_mb * 1_000_000, repeats)
    roof = bw / step_bytes
    print(
        f"[4] roofline: {step_bytes / MB:.1f} MB per model-step (4 x {param_bytes / MB:.1f} MB of parameters) / "
        f"{bw / 1e9:.1f} GB/s (jitted in-place v + 1 over {args.bw_mb} MB float32, read + write) = "
        f"{roof:.1f} model-steps/s"
    )
    if not on_gpu:
        print("    (on CPU a run's 19 MB of weights may partly stay in cache, so a line can pass 100%)")

    # Summary ---------------------------------------------------------------------------
    print()
    print(f"{'method':18s} {'G':>5s} {'seconds':>9s} {'steps/s':>10s} {'roofline':>9s} {'loss':>8s}  memory per run")
    for label, G, sec, rate, mem, fl in rows:
        print(f"{label:18s} {G:5d} {sec:9.3f} {rate:10.1f} {100 * rate / roof:8.1f}% {fl:8.3g}  {mem}")
    print("(loop rows: seconds per run; loss: median final training loss of the timed runs)")
    gbest = max(vmap, key=vmap.get)
    print()
    print(f"key ratios (throughput; best vmap at G={gbest}: {vmap[gbest]:.1f} model-steps/s):")
    if eager:
        print(f"  vmap (G={gbest}) / PyTorch eager loop        = {vmap[gbest] / eager:8.2f}x")
    for G in sorted(batched):
        if G in vmap:
            print(f"  vmap / PyTorch hand-batched at G={G:<4d}     = {vmap[G] / batched[G]:8.2f}x")
    if batched:
        gb = max(batched, key=batched.get)
        print(f"  vmap (G={gbest}) / best PyTorch hand-batched (G={gb}) = {vmap[gbest] / batched[gb]:.2f}x")
    print(f"  vmap (G={gbest}) / loop of jitted runs       = {vmap[gbest] / loop:8.2f}x")
    print(f"  vmap (G={gbest}) fraction of roofline        = {100 * vmap[gbest] / roof:7.1f}%")
    if not on_gpu:
        print(
            f"  process max RSS at the end: {max_rss_bytes() / 1e9:.2f} GB" + (" (includes PyTorch)" if torch else "")
        )


if __name__ == "__main__":
    main()
