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
import math
import pathlib
import signal
import sys
import time

import numpy as np

from ._paper import paper_lr
from ._sharding import use_host_cores

#: The paper's learning rates per gain (docs/experiments.md, Table 1 and the authors' code).

SUMMARY_COLUMNS = (
    "gain",
    "seed",
    "lr",
    "eta_enc",
    "eta_dec",
    "tau",
    "fit_loss",
    "fit_ok",
    "explains",
    "r2_h",
    "r2_y",
    "r2_w",
    "r2_loss",
    "h0",
    "y0",
    "w0",
    "h_final",
    "y_final",
    "w_final",
    "h_inf_theory",
    "plateau_epochs",
    "final_loss",
    "diverged",
    "diverged_epoch",
)
# Settings that change the results: a resumed sweep must match them all.
RESULT_KEYS = (
    "gains",
    "seeds",
    "lrs",
    "epochs",
    "width",
    "depth",
    "hidden_layer",
    "activation",
    "arch",
    "optimizer",
    "dx2",
    "dy2",
    "chunk_size",
)


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_gains(text: str) -> list[float]:
    """`START:STOP[:STEP]` (inclusive, default step 0.1) or a comma list."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 0.1
            if step <= 0:
                raise UsageError(f"--gains: STEP must be positive, got {step:g}")
            if stop < start:
                raise UsageError(f"--gains: STOP ({stop:g}) is below START ({start:g})")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            gains = [round(start + k * step, 10) for k in range(n)]
        else:
            gains = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--gains: cannot read {text!r}; use START:STOP[:STEP] or a comma list") from None
    if not gains:
        raise UsageError("--gains: the range is empty")
    if any(not np.isfinite(g) or g <= 0 for g in gains):
        raise UsageError(f"--gains: gains must be positive, got {gains}")
    return gains


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
    p = _Parser(
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
    p.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call (default: what fits in memory)")
    return p


@dataclasses.dataclass
class SweepConfig:
    gains: list
    seeds: list
    lrs: list
    epochs: int
    width: int
    depth: int
    hidden_layer: int
    activation: str
    arch: str
    optimizer: str
    dx2: float
    dy2: float
    chunk_size: int
    lr_source: str

    def runs(self):
        """`(gain, seed, lr)` arrays of all runs, gain-major."""
        g = np.repeat(np.array(self.gains, float), len(self.seeds))
        s = np.tile(np.array(self.seeds, np.int64), len(self.gains))
        lr = np.repeat(np.array(self.lrs, float), len(self.seeds))
        return g, s, lr

    def spec(self):
        from . import NetworkSpec

        arch = "mlp" if self.arch == "dropout" else self.arch
        return NetworkSpec(
            d_in=1,
            d_out=1,
            width=self.width,
            depth=self.depth,
            activation=self.activation,
            arch=arch,
            dropout=0.1 if self.arch == "dropout" else 0.0,
        )

    def train_config(self):
        from . import TrainConfig

        return TrainConfig(epochs=self.epochs, optimizer=self.optimizer, track_layer=self.hidden_layer)


def make_config(args) -> SweepConfig:
    from ._networks import ACTIVATIONS

    gains = parse_gains(args.gains)
    seeds = parse_seeds(args.seeds)
    for name in ("epochs", "width", "depth"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.activation not in ACTIVATIONS:
        raise UsageError(f"--activation: unknown {args.activation!r}; choose from {', '.join(ACTIVATIONS)}")
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
        from ._sharding import run_mesh
        from ._train import fitting_runs

        cfg.chunk_size = int(min(n_runs, fitting_runs(spec, cfg.train_config(), 2, 1, run_mesh())))
    return cfg


def _signature(d: dict) -> dict:
    return {k: d.get(k) for k in RESULT_KEYS}


def prepare_out(args, cfg: SweepConfig) -> pathlib.Path:
    """Check `--out` against `--resume`; nothing is overwritten without it."""
    from ._results import atomic_write_json

    if args.out is None:
        if args.resume:
            raise UsageError("--resume needs the --out folder of the sweep to continue")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = pathlib.Path("runs") / f"sweep-{stamp}"
    else:
        out = pathlib.Path(args.out)
    cfg_path = out / "config.json"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if cfg_path.exists():
        import json

        try:
            old = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            raise UsageError(f"{cfg_path} is unreadable; choose another --out") from None
        if not args.resume:
            raise UsageError(f"--out {out} already holds a sweep; pass --resume to continue it or choose another --out")
        mine = _signature(dataclasses.asdict(cfg))
        if args.chunk_size is None:  # a resumed sweep keeps its chunking
            cfg.chunk_size = old.get("chunk_size", cfg.chunk_size)
            mine["chunk_size"] = cfg.chunk_size
        if _signature(old) != mine:
            diff = [k for k in RESULT_KEYS if _signature(old)[k] != mine[k]]
            raise UsageError(
                f"--out {out} holds a different sweep (differs in {', '.join(diff)}); nothing was overwritten"
            )
    elif out.exists() and any(out.iterdir()) and not args.resume:
        raise UsageError(f"--out {out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    import jax

    from . import __version__

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
    return out


# --------------------------------------------------------------------------------------
# Per-chunk work and the analysis of finished runs (pure functions of arrays)
# --------------------------------------------------------------------------------------


def train_and_fit_chunk(cfg: SweepConfig, gains, seeds, lrs, progress) -> dict[str, np.ndarray]:
    """Train one chunk of runs and fit the theory to each: arrays with a leading run axis."""
    import repalign_jax as rj

    data = rj.two_point(dx2=cfg.dx2, dy2=cfg.dy2)
    res, _, fit = rj.train_and_fit(
        data.x,
        data.targets,
        cfg.spec(),
        cfg.train_config(),
        gains=gains,
        seeds=seeds,
        lrs=lrs,
        chunk_size=len(gains),
        progress=progress,
    )  # diverged runs are reported as such (the fit's warnings are silenced)
    out = {
        "gain": np.asarray(gains),
        "seed": np.asarray(seeds),
        "lr": np.asarray(lrs),
        "loss": res.loss,
        "h": res.h[..., 0],
        "y": res.y[..., 0],
        "w": res.w[..., 0],
        "diverged": res.diverged,
        "diverged_epoch": res.diverged_epoch,
    }
    for k in (
        "eta_enc",
        "eta_dec",
        "tau",
        "m0",
        "fit_loss",
        "success",
        "explains",
        "r2_h",
        "r2_y",
        "r2_w",
        "r2_loss",
        "h0",
        "y0",
        "w0",
    ):
        out["fit_" + k] = np.asarray(getattr(fit, k))[:, 0]
    return out


def plateau_epochs(y, w, dy2) -> np.ndarray:
    """First epoch at which `(dy2 - y + 2 w) / 8` is below half its initial value (NaN: never)."""
    with np.errstate(invalid="ignore", over="ignore"):  # diverged runs hold inf and NaN
        rep = (dy2 - np.asarray(y) + 2 * np.asarray(w)) / 8
        below = rep <= 0.5 * rep[:, :1]
    first = np.argmax(below, axis=1).astype(float)
    first[~below.any(axis=1)] = np.nan
    return first


def theory_curves(arrays, cfg: SweepConfig):
    """The fitted theory's `h, y, w` and loss for every run (NaN where the fit failed).

    Solved in float64: the loss is `dy2 - y + 2 w` near convergence, a difference of
    nearly equal numbers that float32 solver noise would dominate.
    """
    import jax

    with jax.enable_x64(True):
        return _theory_curves64(arrays, cfg)


def _theory_curves64(arrays, cfg: SweepConfig):
    import repalign_jax as rj

    arrays = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v for k, v in arrays.items()}

    ts = np.arange(arrays["h"].shape[1], dtype=float)
    rates = rj.EffectiveRates(arrays["fit_eta_enc"], arrays["fit_eta_dec"])
    ok = arrays["fit_success"]
    safe = lambda v, fill: np.where(ok, v, fill)  # noqa: E731
    h, y, w = rj.solve_effective(
        safe(arrays["fit_h0"], 1.0),
        safe(arrays["fit_y0"], 0.0),
        safe(arrays["fit_w0"], 0.0),
        dx2=cfg.dx2,
        dy2=cfg.dy2,
        ts=ts,
        rates=rj.EffectiveRates(safe(rates.eta_enc, 1e-3), safe(rates.eta_dec, 1e-3)),
    )
    loss = rj.theory_loss(ts, y, w, dy2=cfg.dy2, m0=safe(arrays["fit_m0"], 0.0), tau=safe(arrays["fit_tau"], 1.0))
    nan = ~ok[:, None]
    return tuple(np.where(nan, np.nan, np.asarray(v)) for v in (h, y, w, loss))


def summary_rows(arrays, cfg: SweepConfig) -> list[dict]:
    import repalign_jax as rj

    plateau = plateau_epochs(arrays["y"], arrays["w"], cfg.dy2)
    h_inf = np.asarray(
        rj.final_distance(
            arrays["h"][:, 0],
            arrays["y"][:, 0],
            dx2=cfg.dx2,
            dy2=cfg.dy2,
            rates=rj.EffectiveRates(arrays["fit_eta_enc"], arrays["fit_eta_dec"]),
        )
    )
    rows = []
    for i in range(len(arrays["gain"])):
        row = {"gain": float(arrays["gain"][i]), "seed": int(arrays["seed"][i]), "lr": float(arrays["lr"][i])}
        for k in ("eta_enc", "eta_dec", "tau", "fit_loss", "r2_h", "r2_y", "r2_w", "r2_loss"):
            row[k] = float(arrays["fit_" + k][i])
        row["fit_ok"] = bool(arrays["fit_success"][i])
        # explains: the fit succeeded with R^2 >= 0.9 for h and y (FitResult.explains)
        row["explains"] = bool(arrays["fit_explains"][i]) if "fit_explains" in arrays else False
        for k in ("h", "y", "w"):
            row[k + "0"] = float(arrays[k][i, 0])
            row[k + "_final"] = float(arrays[k][i, -1])
        row["h_inf_theory"] = float(h_inf[i])
        row["plateau_epochs"] = None if np.isnan(plateau[i]) else int(plateau[i])
        row["final_loss"] = float(arrays["loss"][i, -1])
        row["diverged"] = bool(arrays["diverged"][i])
        row["diverged_epoch"] = int(arrays["diverged_epoch"][i]) if arrays["diverged"][i] else None
        rows.append(row)
    return rows


def gain_table(rows: list[dict]) -> list[dict]:
    """One line per gain: means over its converged, fitted runs."""
    table = []
    for g in sorted({r["gain"] for r in rows}):
        rs = [r for r in rows if r["gain"] == g]
        good = [r for r in rs if r["fit_ok"] and not r["diverged"]]

        def mean(k):
            v = [r[k] for r in good if r[k] is not None and np.isfinite(r[k])]
            return float(np.mean(v)) if v else float("nan")

        table.append(
            {
                "gain": g,
                "lr": rs[0]["lr"],
                "runs": len(rs),
                "fitted": len(good),
                "explained": sum(r["explains"] for r in rs),
                "diverged": sum(r["diverged"] for r in rs),
                "eta_enc": mean("eta_enc"),
                "eta_dec": mean("eta_dec"),
                "tau": mean("tau"),
                "r2_h": mean("r2_h"),
                "r2_y": mean("r2_y"),
                "r2_w": mean("r2_w"),
                "plateau_epochs": mean("plateau_epochs"),
            }
        )
    return table


TABLE_FORMATS = {
    "gain": ".3g",
    "lr": ".3g",
    "eta_enc": ".3e",
    "eta_dec": ".3e",
    "tau": ".1f",
    "r2_h": ".4f",
    "r2_y": ".4f",
    "r2_w": ".4f",
    "plateau_epochs": ".0f",
}


def write_outputs(out: pathlib.Path, arrays, cfg: SweepConfig, plots: bool) -> list[dict]:
    from . import plots as figures
    from ._results import atomic_save_npz, atomic_write_text, markdown_table, write_csv

    rows = summary_rows(arrays, cfg)
    write_csv(out / "summary.csv", rows, SUMMARY_COLUMNS)
    h_th, y_th, w_th, loss_th = theory_curves(arrays, cfg)
    atomic_save_npz(
        out / "trajectories.npz",
        {
            "gain": arrays["gain"],
            "seed": arrays["seed"],
            "lr": arrays["lr"],
            "epoch": np.arange(arrays["h"].shape[1]),
            "h": arrays["h"],
            "y": arrays["y"],
            "w": arrays["w"],
            "loss": arrays["loss"],
            "h_theory": h_th,
            "y_theory": y_th,
            "w_theory": w_th,
            "loss_theory": loss_th,
        },
    )
    table = gain_table(rows)
    cols = [
        "gain",
        "lr",
        "runs",
        "fitted",
        "explained",
        "diverged",
        "eta_enc",
        "eta_dec",
        "tau",
        "r2_h",
        "r2_y",
        "r2_w",
        "plateau_epochs",
    ]
    atomic_write_text(out / "table.md", markdown_table(table, cols, TABLE_FORMATS) + "\n")
    if plots:
        ts = np.arange(arrays["h"].shape[1])
        first = np.array([np.flatnonzero(arrays["gain"] == g)[0] for g in sorted(set(arrays["gain"].tolist()))])
        labels = [f"gain {arrays['gain'][i]:.3g}" for i in first]
        figures.plot_hyw(
            out / "hyw.png",
            ts,
            tuple(arrays[k][first] for k in "hyw"),
            (h_th[first], y_th[first], w_th[first]),
            labels,
            title="network vs theory (first seed per gain)",
        )
        plateau = plateau_epochs(arrays["y"], arrays["w"], cfg.dy2)
        figures.plot_loss(out / "loss.png", ts, arrays["loss"][first], loss_th[first], labels, plateau[first])
        figures.plot_vs_gain(
            out / "vs_gain.png",
            arrays["gain"],
            plateau,
            arrays["fit_eta_enc"],
            arrays["fit_eta_dec"],
            arrays["fit_tau"],
        )
        figures.plot_predicted_vs_measured(
            out / "final_h.png", [r["h_inf_theory"] for r in rows], arrays["h"][:, -1], colour=arrays["gain"]
        )
    return table


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        use_host_cores()  # one JAX device per core on a CPU: before JAX starts (see its docstring)
        cfg = make_config(args)
        out = prepare_out(args, cfg)
    except UsageError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2

    from ._chunks import plan_chunks
    from ._results import ChunkStore
    from ._train import Progress

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    gains, seeds, lrs = cfg.runs()
    n_runs, chunk = len(gains), cfg.chunk_size
    plan = plan_chunks(n_runs, chunk)
    n_chunks = len(plan)
    store = ChunkStore(out / "chunks")
    done = store.done() & set(range(n_chunks))
    say(
        f"sweep: {len(cfg.gains)} gains x {len(cfg.seeds)} seeds = {n_runs} runs of {cfg.epochs} epochs, "
        f"{n_chunks} chunk(s) of {chunk}; results in {out}"
    )
    say("learning rates (" + cfg.lr_source + "): " + ", ".join(f"{g:g}: {lr:.3g}" for g, lr in zip(cfg.gains, cfg.lrs)))
    if done:
        say(f"resuming: {len(done)} of {n_chunks} chunk(s) already done")
    progress = None if args.quiet else Progress(cfg.epochs, n_chunks - len(done), label="sweep")
    old_handler = signal.signal(signal.SIGTERM, _sigterm)
    t0 = time.perf_counter()
    new = 0
    try:
        for c in range(n_chunks):
            if c in done:
                continue
            if progress is not None:
                progress.chunk = new
            idx, real = plan[c]  # equal shapes: a short last chunk is padded, not recompiled
            arrays = train_and_fit_chunk(cfg, gains[idx], seeds[idx], lrs[idx], progress or False)
            store.save(c, {k: np.asarray(v)[:real] for k, v in arrays.items()})
            new += 1
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        saved = len(store.done() & set(range(n_chunks)))
        print(
            f"sweep: interrupted; {saved} of {n_chunks} chunk(s) are saved in {out}; "
            f"continue with: python -m repalign_jax.sweep ... --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    if progress is not None:
        progress.close()

    arrays = store.load_all(range(n_chunks))
    table = write_outputs(out, arrays, cfg, plots=not args.no_plots)
    from ._results import markdown_table

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
