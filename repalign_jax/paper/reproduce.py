"""Reproduce the paper's experiments, one command each.

    python -m repalign_jax.reproduce NAME [--settings code|paper] [--out DIR] [--quick] [--seeds N] [--mnist DIR]
                                     [--networks all|NAME,...] [--set KEY=VALUE ...] [--resume]
    python -m repalign_jax.reproduce report [DIR ...] [--write FILE] [--include FILE ...]
    python -m repalign_jax.reproduce claims

NAME is one of the experiments below, a comma-separated list of them, or `all`. Each writes its figures (PNG),
tables (CSV, Markdown) and numbers (NAME.json) to DIR/NAME/, and prints the
verdicts of its claims. `--quick` shrinks epochs, widths and trial
counts so that every experiment finishes in minutes on a 2-core CPU (tests,
demos). `--settings code` (the default) runs what the authors' code ran, the
settings that made the paper's figures; `--settings paper` the tables printed
in the paper's appendix (both profiles are data in each experiment's module, `repalign_jax/paper/NAME.py`).
`--networks` chooses Table-1 rows (`all`, or comma-separated names such as
`default,shallow`) of an experiment that declares `NETWORKS` (its default):
universality (all) and final_distance (`default`, a CPU's budget; `all` is the
authors' loop over every row). `--set` replaces one numeric setting of a single
experiment whose module has `settings(ctx)` (final_distance: n_trials,
fit_epochs, grid, lr, epochs, seeds_per_point), for a smaller budget; the JSON
and the report say so. Every experiment saves its trainings as they finish
(`repalign_jax.RunStore`, one folder per study under DIR/NAME/); `--resume`
reuses what an interrupted run (or a run on another machine, into the same DIR)
saved, and refuses (exit 2) a folder saved with other settings.

    python -m repalign_jax.reproduce report [DIR ...] [--write FILE] [--include FILE ...]

re-evaluates every claim's verdict from the results saved in the DIRs (default
`--out`; the first is the main profile, e.g. `reproduction/code
reproduction/paper`) and prints the report (or writes it to FILE): one summary
table, a row per figure's claim (other folders' rows follow the first's), then a
section per experiment, then each `--include`d Markdown file. `claims` prints the
registry of the paper's claims: quote, measure, test, why it is fair, date fixed.

Experiments:
  universality      Figure 2, C.1/11: every network of Table 1 against the theory
  gains             Figure 3: the rich-to-lazy series, plateau against gain (to gain 1.6)
  final_distance    Figure 5: final h measured against h_inf over a 5 x 5 grid of ||dx||, ||dy||
  xor               Figure 6: predicted and measured final distances on XOR
  feature_collapse  Figures 7, 8, 12: Gaussian blobs, rich networks collapse irrelevant features
  digits            Figures 4, 9: digits through training; exponential-weighting prediction
  depth             Figure 10: rates fitted at every hidden layer of the default network
  adam              Figures 13-16: the fits under Adam; final-structure predictions
  random_features   appendix A.6: distribution of h_inf over initialisations at each gain
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence

import jax

import repalign_jax as rj
from repalign_jax import GridMismatch, enable_compile_cache, use_host_cores
from repalign_jax._cli import ArgParser, Interruptible, UsageError, add_compile_cache_flag, describe_machine

from ._claim import Verdict
from ._common import Context, table1_rows
from .registry import CLAIMS, EXPERIMENTS, evaluate, format_registry, module
from .report import write_report


def build_parser():
    p = ArgParser(
        prog="python -m repalign_jax.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="an experiment name (or a comma-separated list), 'all', 'report' or 'claims'")
    p.add_argument(
        "dirs", nargs="*", metavar="DIR", help="report: output folders to tabulate together (default: --out)"
    )
    p.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    p.add_argument("--write", default=None, metavar="FILE", help="report: write the report to FILE")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="FILE",
        help="report: append a Markdown file as a section (repeatable), e.g. reproduction/torch_side_by_side.md",
    )
    p.add_argument("--quick", action="store_true", help="small and fast: minutes on a 2-core CPU")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds (trials) per network (default 10: a median's 95%% order-statistic interval needs 6; quick 2)",
    )
    p.add_argument("--mnist", default=None, help="folder with MNIST IDX files (default: scikit-learn's digits)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compile_cache_flag(p)
    p.add_argument(
        "--settings",
        default="code",
        choices=("code", "paper"),
        help="code: what the authors' code ran (default); paper: the printed tables",
    )
    p.add_argument(
        "--networks",
        default=None,
        help="Table-1 rows: 'all' or comma-separated names; universality (default all) and "
        "final_distance (default: the default network)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the trainings (and fitted rates) an earlier run saved in DIR with the same settings",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="replace a numeric setting of the experiment (repeatable), e.g. --set n_trials=10",
    )
    return p


def run_experiment(name: str, ctx) -> dict:
    """Run one experiment with its context; returns its numbers (also written to NAME.json)."""
    module_ = module(name)
    commit = source_commit()  # the source the run starts from (edits made while it runs do not count)
    # the tests these numbers are produced under, taken as the run starts (a digest reads its test's
    # source from disk: taken at the end, it would read edits made while the run trained)
    digests = {c.key: c.digest for c in CLAIMS if c.source == name}
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    numbers = module_.run(ctx)
    numbers["wall_seconds"] = time.perf_counter() - t0
    numbers["quick"] = ctx.quick
    numbers["settings_profile"] = ctx.profile
    numbers.setdefault("machine", ctx.machine)
    numbers["started"] = started
    numbers["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    numbers["claim_digests"] = digests  # the report marks a verdict whose claim changed since
    numbers["package_version"] = rj.__version__
    numbers["commit"] = commit
    if ctx.networks is not None:
        numbers["networks_arg"] = ctx.networks
    ctx.write_json(f"{name}.json", numbers)
    return numbers


def source_commit() -> str | None:
    """The git commit of the package's source tree (`+dirty` with uncommitted changes), or `None` where
    it is not a git checkout or git is not there."""
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def report(
    roots: pathlib.Path | Sequence[pathlib.Path],
    machine: str | None = None,
    relative_to: pathlib.Path | None = None,
    appendices: Sequence[str] = (),
) -> str:
    """REPRODUCTION.md over the output folders `roots` (`repalign_jax.reproduction_report`): every
    verdict re-evaluated from the saved results; `machine` goes into the header (default: the
    machines the results name); figure links are relative to the folder `relative_to` (default:
    the current one); `appendices` (Markdown texts) follow the experiments."""
    roots = [pathlib.Path(roots)] if isinstance(roots, (str, pathlib.Path)) else [pathlib.Path(r) for r in roots]
    labelled = [(_label(r), r) for r in roots]
    header = f"Machine: {machine}." if machine else ""
    return write_report(labelled, header=header, relative_to=relative_to, appendices=appendices)


def _label(root: pathlib.Path) -> str:
    """A folder's label: the profile its saved results name (`code settings` unless they all say `paper`)."""
    profiles = set()
    for path in root.glob("*/*.json"):
        if path.stem != path.parent.name:
            continue  # a side file (final_distance's .network / .rates), not an experiment's results
        try:
            profiles.add(json.loads(path.read_text()).get("settings_profile", "code"))
        except (OSError, ValueError, AttributeError):
            continue
    kind = "printed settings" if profiles and "code" not in profiles else "code settings"
    return f"{kind} ({root})"


def _print_verdicts(name: str, numbers: dict, say) -> None:
    for e in evaluate(name, numbers):
        mark = "yes" if e.verdict is Verdict.REPRODUCED else e.verdict.label
        who = f" [{e.network}]" if e.network else ""
        say(f"  [{mark}] {e.key}{who}: {e.number}" + (f"; {e.cause}" if e.cause else ""))


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.name == "claims":
            print(format_registry(), end="")
            return 0
        if args.name == "report":  # reads JSON only: no JAX set-up
            return _report_command(args)
        names, seeds, overrides, modules = _plan(args)
    except UsageError as e:
        print(f"reproduce: error: {e}", file=sys.stderr)
        return 2

    root = pathlib.Path(args.out)
    cache: dict = {}
    machine = describe_machine()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    failed = []
    for name in names:
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        ctx = Context(
            out=out,
            quick=args.quick,
            seeds=seeds,
            mnist=args.mnist,
            progress=not args.quiet,
            say=say,
            cache=cache,
            overrides=overrides,
            profile=args.settings,
            networks=args.networks,
            resume=args.resume,
            machine=machine,
        )
        try:  # bad --set keys or values and bad --networks stop here, before anything is computed
            mod = modules[name]
            if overrides:
                mod.settings(ctx)
            if hasattr(mod, "NETWORKS"):
                table1_rows(ctx, default=mod.NETWORKS)
        except ValueError as e:
            print(f"reproduce: error: {e}", file=sys.stderr)
            return 2
        say(
            f"== {name} ({args.settings} settings{', quick' if args.quick else ''}"
            f"{', overrides ' + str(overrides) if overrides else ''}; {jax.default_backend()}) =="
        )
        numbers = _run_one(name, ctx, root)
        if isinstance(numbers, int):  # an exit code: refused or interrupted
            return numbers
        _print_verdicts(name, numbers, say)
        say(f"  wrote {out} ({numbers['wall_seconds']:.0f} s)")

        if any(e.verdict in (Verdict.NETWORK_DIFFERS, Verdict.RUN_FAILED) for e in evaluate(name, numbers)):
            failed.append(name)
    summary = {
        "experiments": list(names),
        "quick": args.quick,
        "settings_profile": args.settings,
        "not_reproduced": failed,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (root / "REPRODUCTION.md").write_text(report(root, machine, relative_to=root))
    if failed:
        say(f"claims that did not hold in: {', '.join(failed)} (see each NAME.json)")
    return 0


def _report_command(args) -> int:
    """`reproduce report [DIR ...] [--write FILE] [--include FILE ...]` (`UsageError` on bad paths)."""
    dirs = [pathlib.Path(d) for d in (args.dirs or [args.out])]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise UsageError(f"report: no such folder: {', '.join(missing)}")
    extra = []
    for f in args.include:
        try:
            extra.append(pathlib.Path(f).read_text())
        except OSError as e:
            raise UsageError(f"report: cannot read --include {f}: {e.strerror or e}") from None
    text = report(dirs, relative_to=pathlib.Path(args.write).parent if args.write else None, appendices=extra)
    if args.write:
        pathlib.Path(args.write).write_text(text)
    else:
        print(text, end="")
    return 0


def _plan(args) -> tuple[tuple[str, ...], int, dict, dict]:
    """`(experiment names, seeds, --set overrides, every experiment's module)` of a run, its
    arguments checked (`UsageError`); JAX set up (host cores, compilation cache)."""
    if args.write or args.include:
        raise UsageError("--write and --include apply to report")
    use_host_cores()  # one JAX device per core on a CPU: before JAX starts (see its docstring)
    if not args.no_compile_cache:
        enable_compile_cache()
    if args.dirs:
        raise UsageError(f"unexpected arguments {' '.join(args.dirs)} (folders are for `report`)")
    names = EXPERIMENTS if args.name == "all" else tuple(n.strip() for n in args.name.split(","))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise UsageError(f"unknown experiment {unknown[0]!r}; choose from all, {', '.join(EXPERIMENTS)}")
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if args.mnist is not None and not pathlib.Path(args.mnist).is_dir():
        raise UsageError(f"--mnist {args.mnist} is not a folder")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    # what an experiment accepts is what its module declares: `settings(ctx)` for --set, NETWORKS for --networks
    modules = {n: module(n) for n in EXPERIMENTS}
    overridable = [n for n, m in modules.items() if hasattr(m, "settings")]
    if overrides and (len(names) != 1 or names[0] not in overridable):
        raise UsageError(f"--set applies to one of: {', '.join(overridable)}")
    with_rows = [n for n, m in modules.items() if hasattr(m, "NETWORKS")]
    if args.networks is not None and not set(names) & set(with_rows):
        raise UsageError(f"--networks applies to {' and '.join(with_rows)}")
    return names, seeds, overrides, modules


def _run_one(name: str, ctx: Context, root: pathlib.Path) -> dict | int:
    """Experiment `name`'s numbers, or the exit code that ends the command: 2 (`--resume`
    into a folder of other settings), 130 (interrupted; what finished is saved)."""
    with Interruptible() as run:  # Ctrl-C or SIGTERM
        try:
            numbers = run_experiment(name, ctx)
        except GridMismatch as e:  # --resume into a folder saved with other settings
            print(
                f"reproduce: error: {e}; rerun without --resume to recompute, or choose another --out",
                file=sys.stderr,
            )
            return 2
    if run.interrupted:
        print(
            f"reproduce: interrupted during {name}; what it finished is saved in {root}; "
            "continue it with the same command and --resume",
            file=sys.stderr,
        )
        return 130
    return numbers


if __name__ == "__main__":
    sys.exit(main())
