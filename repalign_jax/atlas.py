"""The universality atlas: where does the effective theory stop explaining a network?

    python -m repalign_jax.atlas [--quick] [--out DIR]

trains, on the two-point task, every network of a grid of widths, depths, gains,
nonlinearities and architectures (one compiled, vectorised batch per network
shape: every activation, gain and seed of a shape trains together), each with
its own learning rate set from its initial sharpness (`--lr auto`: c / lambda_max
of the loss Hessian at initialisation, by power iteration on Hessian-vector
products), until its loss is below --stop-loss (--epochs is a budget), and fits
the effective theory to every run: from the start, and again from the end of the
early transient (--fit-from). Writes to --out:

  atlas.csv        one row per run: settings, lr, lambda_max, convergence, fitted
                   rates, R^2 of h, y, w and the loss, plateau, h_inf, regime index
                   (A_high / h_inf: 0 rich, 1 lazy), and the fit after the transient
  atlas.md         the boundary in words and numbers: where the theory stops
                   explaining the runs (repalign_jax.explains: min(R^2 h, y, w) >= 0.9),
                   each curve's R^2 beside it, and how that moves with width, depth, gain
  *.png            heatmaps of the fit quality and the regime (depth x width per
                   activation and gain; gain x depth at a fixed width), rates
  config.json      the full configuration, versions and devices
  cells/           one finished network shape each (what --resume continues from)

Examples:

  python -m repalign_jax.atlas --quick --out runs/atlas-quick        # 2.4 min on a 2-core CPU, 1 with the compile cache warm
  python -m repalign_jax.atlas --out runs/atlas                      # the default grid (see ATLAS.md)
  python -m repalign_jax.atlas --widths 64,256 --depths 2:8:2 --gains 0.8:1.4 --activations tanh,relu
  python -m repalign_jax.atlas --out runs/atlas --resume             # after Ctrl-C

The default grid (widths 16, 64, 256 x depths 1, 2, 4, 8, 16 x gains 0.5, 1, 1.5 x
6 activations x mlp and resnet (from depth 3), 1 seed: 432 runs of up to 3000
epochs) took 17 minutes on a 2-core CPU from a cold compile cache (ATLAS.md). On a GPU
the runs of a shape train as one batch and are fitted as one batch, so more seeds and gains
cost little per shape: the default shapes with 5 seeds and 7 gains (5040 runs) should take
minutes there. That is an expectation, not a measurement: no GPU was lent to this project
(`--seeds 5 --gains 0.5:2:0.25` is that grid; atlas.md records its wall time).

Several processes or hosts: `jax.distributed` auto-detects SLURM and Open MPI
(run one process per task); elsewhere pass --coordinator HOST:PORT
--num-processes N --process-id I to each. The network shapes are divided among
the processes, each trains its share on its own devices and writes its cells;
process 0 gathers atlas.csv and the figures. --out must be a folder every process
can reach. The atlas is the same bit for bit whatever the number of processes,
given the same number of devices per process: in float32 a run's numbers depend,
at the 1e-6 level, on how many runs share its device (XLA rounds a reduction by
its shape), and near a threshold (--stop-loss) that can move a stop epoch by one.
One process on a 2-core CPU splits it into 2 devices; to compare it with 2
processes of one device each, run it with
XLA_FLAGS=--xla_force_host_platform_device_count=1 (tests/test_atlas.py does).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from . import (
    ACTIVATION_NAMES,
    AUTO_LR_C,
    GridMismatch,
    GroupDone,
    Progress,
    RunStore,
    __version__,
    enable_compile_cache,
    run_groups,
    todo,
    use_host_cores,
)
from ._cli import (
    ArgParser,
    Interruptible,
    UsageError,
    add_compile_cache_flag,
    describe_machine,
    out_folder,
    parse_range,
)
from .atlasmap import (
    COLUMNS,
    AtlasConfig,
    atlas_groups,
    atlas_markdown,
    cell_name,
    rows_of,
    write_figures,
)
from .results import atomic_write_json, atomic_write_text, write_csv

DEFAULTS = dict(
    widths="16,64,256",
    depths="1,2,4,8,16",
    gains="0.5:1.5:0.5",
    activations="leaky_relu,relu,tanh,elu,swish,linear",
    archs="mlp,resnet",
    seeds="1",
    epochs=3000,
)
QUICK = dict(
    widths="16,64",
    depths="1,3",
    gains="0.75,1.25",
    activations="leaky_relu,relu,tanh,elu,swish,linear",
    archs="mlp,resnet",
    seeds="1",
    epochs=1000,
)


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="python -m repalign_jax.atlas", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--widths", default=None, help=f"comma list or START:STOP[:STEP] (default {DEFAULTS['widths']})")
    p.add_argument("--depths", default=None, help=f"hidden layers (default {DEFAULTS['depths']})")
    p.add_argument("--gains", default=None, help=f"START:STOP[:STEP] or a comma list (default {DEFAULTS['gains']})")
    p.add_argument("--activations", default=None, help=f"comma list (default {DEFAULTS['activations']})")
    p.add_argument("--archs", default=None, help="mlp, resnet or both (default mlp,resnet)")
    p.add_argument("--seeds", default=None, help="runs per setting (a count) or a comma list of seeds (default 1)")
    p.add_argument("--epochs", type=int, default=None, help=f"epoch budget per run (default {DEFAULTS['epochs']})")
    p.add_argument("--stop-loss", type=float, default=1e-5, help="a run stops once its loss is below (default 1e-5)")
    p.add_argument(
        "--lr", default="auto", help="'auto' (c / lambda_max at initialisation, the default) or a learning rate"
    )
    p.add_argument("--lr-c", type=float, default=None, help="c of --lr auto (default repalign_jax.AUTO_LR_C = 0.1)")
    p.add_argument(
        "--fit-from",
        default="auto",
        help="second fit from this epoch, 'auto' (3 x the fitted tau, the default) or 'none'",
    )
    p.add_argument("--dx2", type=float, default=1.0, help="squared input distance (default 1)")
    p.add_argument("--dy2", type=float, default=0.5, help="squared target distance (default 0.5)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small grid (72 runs: 2.4 minutes on a 2-core CPU, 1 with a warm compile cache)",
    )
    p.add_argument("--out", default=None, help="output folder (default: a new time-stamped folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the atlas in --out, skipping finished cells")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--quiet", action="store_true", help="no progress and no table")
    add_compile_cache_flag(p)
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (several processes without SLURM/MPI)")
    p.add_argument("--num-processes", type=int, default=None, help="number of processes (with --coordinator)")
    p.add_argument("--process-id", type=int, default=None, help="this process's index (with --coordinator)")
    return p


def make_config(args) -> AtlasConfig:
    base = QUICK if args.quick else DEFAULTS

    def pick(name):
        v = getattr(args, name)
        return base[name] if v is None else v

    widths = parse_range(str(pick("widths")), "widths", integer=True, default_step=1)
    depths = parse_range(str(pick("depths")), "depths", integer=True, default_step=1)
    gains = parse_range(str(pick("gains")), "gains")
    acts = [a.strip() for a in str(pick("activations")).split(",") if a.strip()]
    bad = [a for a in acts if a not in ACTIVATION_NAMES]
    if bad or not acts or len(set(acts)) != len(acts):
        raise UsageError(
            f"--activations: unknown or repeated {', '.join(bad) or acts}; choose from {', '.join(ACTIVATION_NAMES)}"
        )
    archs = [a.strip() for a in str(pick("archs")).split(",") if a.strip()]
    if not archs or any(a not in ("mlp", "resnet") for a in archs) or len(set(archs)) != len(archs):
        raise UsageError(f"--archs: choose from mlp, resnet, got {pick('archs')!r}")
    seeds_text = str(pick("seeds"))
    try:
        seeds = [int(s) for s in seeds_text.split(",")] if "," in seeds_text else list(range(int(seeds_text)))
    except ValueError:
        raise UsageError(f"--seeds: cannot read {seeds_text!r}; use a count or a comma list") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: need at least one distinct non-negative seed, got {seeds_text!r}")
    epochs = pick("epochs")
    if not isinstance(epochs, int) or epochs < 2:
        raise UsageError(f"--epochs must be an integer of at least 2, got {epochs}")
    if not (np.isfinite(args.stop_loss) and args.stop_loss > 0):
        raise UsageError(f"--stop-loss must be positive, got {args.stop_loss}")
    lr: str | float = "auto"
    if args.lr != "auto":
        try:
            lr = float(args.lr)
        except ValueError:
            raise UsageError(f"--lr: 'auto' or a positive number, got {args.lr!r}") from None
        if not (np.isfinite(lr) and lr > 0):
            raise UsageError(f"--lr must be positive, got {args.lr}")
    lr_c = AUTO_LR_C if args.lr_c is None else args.lr_c
    if not (np.isfinite(lr_c) and 0 < lr_c < 2):
        raise UsageError(f"--lr-c must be in (0, 2) (gradient descent diverges beyond 2 / lambda_max), got {lr_c}")
    fit_from: str | int | None
    if args.fit_from in ("none", "None"):
        fit_from = None
    elif args.fit_from == "auto":
        fit_from = "auto"
    else:
        try:
            fit_from = int(args.fit_from)
        except ValueError:
            raise UsageError(f"--fit-from: an epoch, 'auto' or 'none', got {args.fit_from!r}") from None
        if not 0 <= fit_from <= epochs - 2:
            raise UsageError(f"--fit-from {fit_from} must be an epoch in 0..{epochs - 2}")
    if not (np.isfinite(args.dx2) and args.dx2 > 0) or not (np.isfinite(args.dy2) and args.dy2 >= 0):
        raise UsageError("--dx2 must be positive and --dy2 non-negative")
    cfg = AtlasConfig(
        widths=widths,
        depths=depths,
        gains=gains,
        activations=acts,
        archs=archs,
        seeds=seeds,
        epochs=epochs,
        stop_loss=args.stop_loss,
        lr=lr,
        lr_c=lr_c,
        dx2=args.dx2,
        dy2=args.dy2,
        fit_from=fit_from,
    )
    if not cfg.cells():
        raise UsageError("the grid is empty (a resnet needs depth >= 3)")
    return cfg


def prepare_out(args, cfg: AtlasConfig) -> pathlib.Path:
    """Check `--out` against `--resume` (nothing is overwritten without it); returns it.

    With several processes every process checks before any writes (`start_out`
    after a barrier): a process that checked after process 0 had written
    config.json would take the new atlas for an old one.
    """
    if args.out is None and args.num_processes not in (None, 1):
        raise UsageError("several processes need an --out folder they all reach")
    out, _ = out_folder(args.out, args.resume, "atlas")
    open_store(out, cfg, create=False)
    return out


def open_store(out: pathlib.Path, cfg: AtlasConfig, create: bool = True) -> RunStore:
    """The atlas's `RunStore` (`OUT/cells`, one group per network shape); `UsageError` for another atlas's."""
    try:
        return RunStore(out / "cells", cfg.signature(), create=create)
    except GridMismatch as e:
        raise UsageError(
            f"--out {out} holds a different atlas (differs in {', '.join(e.keys)}); nothing was overwritten"
        ) from None


def start_out(out: pathlib.Path, cfg: AtlasConfig) -> None:
    """Create `out` and write its config.json unless it has one (`--resume`); process 0 only."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists():
        meta = dataclasses.asdict(cfg) | {
            "package_version": __version__,
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "processes": jax.process_count(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        atomic_write_json(out / "config.json", meta)


def init_distributed(args) -> tuple[int, int]:
    """`(process index, process count)`, after `jax.distributed.initialize` where asked for or detected."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise UsageError("--coordinator, --num-processes and --process-id go together")
        if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
            raise UsageError(f"--process-id must be in 0..{args.num_processes - 1}")
        if args.num_processes == 1:
            return 0, 1

        jax.distributed.initialize(
            coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
        )
        return jax.process_index(), jax.process_count()
    cluster = int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    if cluster:
        jax.distributed.initialize()  # auto-detects SLURM and Open MPI
        return jax.process_index(), jax.process_count()
    return 0, 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        cfg = make_config(args)
        if args.coordinator is None and args.num_processes is None:
            use_host_cores()  # one JAX device per core on a CPU: before JAX starts
        if not args.no_compile_cache:
            enable_compile_cache()
        rank, size = init_distributed(args)
        out = prepare_out(args, cfg)
    except UsageError as e:
        print(f"atlas: error: {e}", file=sys.stderr)
        return 2

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if size > 1:
        multihost_utils.sync_global_devices("atlas: out checked")  # every process checked before any writes
    if rank == 0:
        start_out(out, cfg)
        open_store(out, cfg)  # its signature, before the other processes open it
    if size > 1:
        multihost_utils.sync_global_devices("atlas: out prepared")
        out.mkdir(parents=True, exist_ok=True)
    store = open_store(out, cfg)
    cells = cfg.cells()
    mine = cells[rank::size]
    runs_per_cell = len(cfg.activations) * len(cfg.gains) * len(cfg.seeds)
    say(
        f"atlas: {len(cells)} network shapes x {runs_per_cell} runs (activations x gains x seeds), "
        f"budget {cfg.epochs} epochs, lr {cfg.lr}; results in {out}"
        + (f"; process {rank} of {size} takes {len(mine)} shapes" if size > 1 else "")
    )

    def report(d: GroupDone):
        head = f"  [{d.index + 1}/{d.total}] {d.group.name}:"
        if d.reused:
            say(f"{head} done earlier")
            return
        n = len(d.columns["r2_h"])
        say(
            f"{head} {d.seconds:.1f} s; converged {int(d.columns['converged'].sum())}/{n}, "
            f"diverged {int(d.columns['diverged'].sum())}, explained {int(np.sum(d.columns['explains']))}/{n}"
        )

    t0 = time.perf_counter()
    with Interruptible() as run:
        groups = atlas_groups(cfg, mine, devices=jax.local_devices())
        left = todo(store, groups)
        meter = Progress(cfg.epochs, len(left), label="atlas") if left and not args.quiet else None
        try:  # one bar over the shapes left, each a chunk of it
            run_groups(store, groups, meter=meter, report=report)
        finally:
            if meter is not None:
                meter.close()
    if run.interrupted:
        return run.resume_hint("atlas", "finished shapes", out, where=store.folder)
    if size > 1:
        multihost_utils.sync_global_devices("atlas: cells done")
        if rank != 0:
            return 0
    arrays = store.table([cell_name(c) for c in cells], COLUMNS)
    wall = time.perf_counter() - t0
    write_csv(out / "atlas.csv", rows_of(arrays), COLUMNS)
    figures = [] if args.no_plots else write_figures(out, arrays, cfg)
    meta = {
        "command": "python -m repalign_jax.atlas " + " ".join(argv),
        "machine": describe_machine() + (f", {size} processes" if size > 1 else ""),
        "wall_seconds": wall,
    }
    md = atlas_markdown(arrays, cfg, meta)
    if figures:
        md += "\n## Figures\n\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n"
    atomic_write_text(out / "atlas.md", md)
    atomic_write_json(out / "run.json", meta | {"figures": figures, "finished": datetime.datetime.now().isoformat()})
    say(
        f"atlas: {len(arrays['gain'])} runs in {wall:.0f} s; wrote {out}/atlas.csv, atlas.md"
        + (", figures" if figures else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
