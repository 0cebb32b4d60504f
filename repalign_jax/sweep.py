"""The gain sweep: train the paper's two-point network at every gain and fit the theory.

    python -m repalign_jax.sweep --gains 0.9:1.4

trains the paper's default two-point network (20 hidden layers of 500 leaky-ReLU
units, dx2 = 1, dy2 = 0.5, hidden layer 10, 6000 epochs) at every gain of the
range and every seed, as one compiled, vectorised batch (chunked only when
memory requires, sharded over devices when JAX sees several; on a CPU one device
per core, see `repalign_jax.use_host_cores`), fits the effective
theory to every run, and writes to --out:

  config.json         the full configuration, versions and devices
  summary.csv         one row per run: fitted rates, R^2, plateau, final and predicted h
  trajectories.npz    h, y, w and loss per run and epoch (and the fitted theory's curves)
  *.png               network against theory (h, y, w; loss), plateau and rates
                      against gain, final h measured against predicted
  chunks/             finished chunks (what --resume continues from)

Examples:

  python -m repalign_jax.sweep --gains 0.9:1.4 --seeds 3
  python -m repalign_jax.sweep --gains 0.9,1.1,1.3 --epochs 2000 --out runs/quick
  python -m repalign_jax.sweep --gains 0.9:1.4 --out runs/big --resume   # after Ctrl-C
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import pathlib
import sys
import time

import jax
import numpy as np

from . import (
    ACTIVATION_NAMES,
    GridMismatch,
    Progress,
    RunStore,
    __version__,
    enable_compile_cache,
    paper_lr,
    run_groups,
    runs_in_memory,
    todo,
    use_host_cores,
)
from ._cli import (
    ArgParser,
    Interruptible,
    UsageError,
    add_compile_cache_flag,
    out_folder,
    parse_range,
)
from .gainsweep import (  # noqa: F401 - the sweep's pieces, importable from here as before
    RESULT_KEYS,
    SUMMARY_COLUMNS,
    TABLE_FORMATS,
    SweepConfig,
    gain_table,
    plateau_epochs,
    summary_rows,
    sweep_groups,
    theory_curves,
    train_and_fit_chunk,
    write_outputs,
)
from .results import atomic_write_json, markdown_table

#: The paper's learning rates per gain (docs/experiments.md, Table 1 and the authors' code).


def parse_gains(text: str) -> list[float]:
    """`START:STOP[:STEP]` (inclusive, default step 0.1) or a comma list."""
    return parse_range(text, "gains")


def parse_seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(p) for p in text.split(",") if p.strip()]
        else:
            n = int(text)
            if n < 1:
                raise UsageError(f"--seeds: need at least one run per gain, got {n}")
            seeds = list(range(n))
    except ValueError:
        raise UsageError(f"--seeds: cannot read {text!r}; use a count or a comma list") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: need distinct non-negative seeds, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="python -m repalign_jax.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--gains", default="0.9:1.4", help="START:STOP[:STEP] inclusive (step 0.1) or a comma list (default 0.9:1.4)"
    )
    p.add_argument("--seeds", default="1", help="runs per gain (a count) or a comma list of seeds (default 1)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate for all runs (default: the paper's per-gain rates, log-linearly interpolated)",
    )
    p.add_argument("--epochs", type=int, default=6000, help="epochs (default 6000)")
    p.add_argument("--width", type=int, default=500, help="units per hidden layer (default 500)")
    p.add_argument("--depth", type=int, default=20, help="hidden layers (default 20)")
    p.add_argument("--hidden-layer", type=int, default=None, help="tracked hidden layer (default depth // 2)")
    p.add_argument("--activation", default="leaky_relu", help="leaky_relu, relu, elu, tanh, swish or linear")
    p.add_argument(
        "--arch", default="mlp", choices=("mlp", "resnet", "cnn", "dropout"), help="architecture (default mlp)"
    )
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="optimizer (default sgd)")
    p.add_argument("--dx2", type=float, default=1.0, help="squared input distance (default 1)")
    p.add_argument("--dy2", type=float, default=0.5, help="squared target distance (default 0.5)")
    p.add_argument("--out", default=None, help="output folder (default: a new time-stamped folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out, skipping finished chunks")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    add_compile_cache_flag(p)
    p.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call (default: what fits in memory)")
    return p


def make_config(args) -> SweepConfig:
    gains = parse_gains(args.gains)
    seeds = parse_seeds(args.seeds)
    for name in ("epochs", "width", "depth"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.activation not in ACTIVATION_NAMES:
        raise UsageError(f"--activation: unknown {args.activation!r}; choose from {', '.join(ACTIVATION_NAMES)}")
    n_hidden = args.depth + 2 if args.arch == "cnn" else args.depth  # NetworkSpec.n_hidden
    hidden = n_hidden // 2 if args.hidden_layer is None else args.hidden_layer
    if not 0 <= hidden < n_hidden:
        raise UsageError(f"--hidden-layer {hidden} is outside the network's hidden layers 0..{n_hidden - 1}")
    if not (np.isfinite(args.dx2) and args.dx2 > 0) or not (np.isfinite(args.dy2) and args.dy2 >= 0):
        raise UsageError("--dx2 must be positive and --dy2 non-negative")
    if args.lr is not None:
        if not (np.isfinite(args.lr) and args.lr > 0):
            raise UsageError(f"--lr must be positive, got {args.lr}")
        lrs, source = [args.lr] * len(gains), "--lr"
    else:
        lrs, source = [paper_lr(g) for g in gains], "the paper's gain series, log-linear in gain"
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError("--chunk-size must be positive")
    cfg = SweepConfig(
        gains=gains,
        seeds=seeds,
        lrs=lrs,
        epochs=args.epochs,
        width=args.width,
        depth=args.depth,
        hidden_layer=hidden,
        activation=args.activation,
        arch=args.arch,
        optimizer=args.optimizer,
        dx2=args.dx2,
        dy2=args.dy2,
        chunk_size=0,
        lr_source=source,
    )
    try:
        spec = cfg.spec()
    except ValueError as e:
        raise UsageError(str(e)) from None
    n_runs = len(gains) * len(seeds)
    if args.chunk_size is not None:
        cfg.chunk_size = min(args.chunk_size, n_runs)
    else:
        cfg.chunk_size = min(n_runs, runs_in_memory(spec, cfg.train_config(), 2, 1))
    return cfg


def prepare_out(args, cfg: SweepConfig) -> tuple[pathlib.Path, RunStore]:
    """Check `--out` against `--resume` (nothing is overwritten without it); the folder and its store."""
    out, old = out_folder(args.out, args.resume, "sweep")
    if old is not None and args.chunk_size is None:  # a resumed sweep keeps its chunking
        cfg.chunk_size = old.get("chunk_size", cfg.chunk_size)
    try:
        store = RunStore(out / "chunks", cfg.signature())
    except GridMismatch as e:
        raise UsageError(
            f"--out {out} holds a different sweep (differs in {', '.join(e.keys)}); nothing was overwritten"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    meta = dataclasses.asdict(cfg) | {
        "package_version": __version__,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "network": dataclasses.asdict(cfg.spec()),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if not cfg_path.exists():
        atomic_write_json(cfg_path, meta)
    return out, store


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        use_host_cores()  # one JAX device per core on a CPU: before JAX starts (see its docstring)
        if not args.no_compile_cache:
            enable_compile_cache()
        cfg = make_config(args)
        out, store = prepare_out(args, cfg)
    except UsageError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    groups = sweep_groups(cfg)
    n_runs, chunk, n_chunks = sum(g.runs for g in groups), cfg.chunk_size, len(groups)
    left = todo(store, groups)
    say(
        f"sweep: {len(cfg.gains)} gains x {len(cfg.seeds)} seeds = {n_runs} runs of {cfg.epochs} epochs, "
        f"{n_chunks} chunk(s) of {chunk}; results in {out}"
    )
    say("learning rates (" + cfg.lr_source + "): " + ", ".join(f"{g:g}: {lr:.3g}" for g, lr in zip(cfg.gains, cfg.lrs)))
    if len(left) < n_chunks:
        say(f"resuming: {n_chunks - len(left)} of {n_chunks} chunk(s) already done")
    progress = None if args.quiet or not left else Progress(cfg.epochs, len(left), label="sweep")
    t0 = time.perf_counter()
    arrays = {}
    with Interruptible() as run:
        arrays = run_groups(store, groups, meter=progress)
    if progress is not None:
        progress.close()
    if run.interrupted:
        return run.resume_hint("sweep", f"{n_chunks - len(todo(store, groups))} of {n_chunks} chunk(s)", out)

    table = write_outputs(out, arrays, cfg, plots=not args.no_plots)

    say(f"trained and fitted in {time.perf_counter() - t0:.1f} s")
    say(
        markdown_table(
            table,
            ["gain", "lr", "eta_enc", "eta_dec", "tau", "r2_h", "r2_y", "r2_w", "plateau_epochs", "diverged"],
            TABLE_FORMATS,
        )
    )
    n_div = int(arrays["diverged"].sum())
    if n_div:
        say(f"{n_div} run(s) diverged (non-finite loss): see the diverged column of summary.csv")
    say(f"wrote {out}/summary.csv, trajectories.npz, table.md" + ("" if args.no_plots else " and figures"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
