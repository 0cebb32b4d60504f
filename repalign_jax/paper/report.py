"""REPRODUCTION.md from saved results: every verdict re-evaluated, nothing retrained.

`write_report(roots)` reads the `NAME/NAME.json` files that `python -m
repalign_jax.reproduce` saved under each root (a profile's output folder),
evaluates every claim of `repalign_jax.paper` (`registry.CLAIMS`, each with its test), and
returns Markdown: one summary table per profile (one row per claim, no cell over
40 words), then one section per experiment with its settings, command, machine,
wall time, every claim's quote, test and numbers, and its figures.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

from ._claim import Claim, Evaluation, Verdict
from .registry import CLAIMS, EXPERIMENTS, evaluate_claim

#: At most this many words in a summary-table cell.
MAX_CELL_WORDS = 40


def load(root: pathlib.Path) -> dict[str, dict]:
    """`{experiment: numbers}` for every `root/NAME/NAME.json` (unreadable files are skipped)."""
    out = {}
    for name in EXPERIMENTS:
        path = root / name / f"{name}.json"
        if path.is_file():
            try:
                out[name] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return out


def _cell(text: str) -> str:
    words = str(text).replace("|", "\\|").replace("\n", " ").split()
    if len(words) > MAX_CELL_WORDS:
        words = words[: MAX_CELL_WORDS - 1] + ["..."]
    return " ".join(words)


def aggregate(key: str, evals: list[Evaluation]) -> Evaluation:
    """One evaluation of a claim evaluated per network: reproduced when every network the claim speaks
    of is; else the first of network-differs, fit-failed, run-failed, undecided, not-run that occurs;
    the number counts the networks the claim speaks of (networks `OUTSIDE` it are left out)."""
    if len(evals) == 1:
        return evals[0]
    evals = [e for e in evals if e.verdict is not Verdict.OUTSIDE]
    order = (Verdict.NETWORK_DIFFERS, Verdict.FIT_FAILED, Verdict.RUN_FAILED, Verdict.UNDECIDED, Verdict.NOT_RUN)
    verdict = next((v for v in order if any(e.verdict is v for e in evals)), Verdict.REPRODUCED)
    good = sum(e.verdict is Verdict.REPRODUCED for e in evals)
    bad = [e for e in evals if e.verdict is not Verdict.REPRODUCED]

    def short(v: Verdict) -> str:
        label = v.label.replace("not reproduced ", "")
        return label if label.startswith("(") else f"({label})"

    names = ", ".join(f"{e.network} {short(e.verdict)}" for e in bad[:4])
    more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
    weakest = [e.cause.split("weakest curve ")[1].split(" ")[0] for e in bad if "weakest curve " in e.cause]
    common = max(set(weakest), key=weakest.count) if weakest else None
    why = f"; weakest curve {common} in {weakest.count(common)} of {len(bad)}" if common else ""
    return Evaluation(
        key, verdict, f"{good} of {len(evals)} networks reproduced", (names + more + why) or "every network", {}
    )


#: The mark of a verdict read from numbers produced before its claim's test was what it is now.
LATER_TEST = "‡"


def registration(c: Claim, numbers: dict | None) -> str:
    """Whether `numbers` were produced under `c`'s test as it is now: `""` when their `claim_digests`
    hold `c.digest`; else a phrase saying why not (no digests recorded, the claim added later, its
    test changed since). A verdict with such a phrase reads old numbers under a later test."""
    if numbers is None:
        return ""
    saved = numbers.get("claim_digests")
    if not isinstance(saved, dict):
        return "the result predates the claims' digests (its test was fixed after the result existed)"
    if c.key not in saved:
        return "the claim was added after the result was produced"
    if saved[c.key] != c.digest:
        return f"the test changed after the result was produced (digest {saved[c.key]}, now {c.digest})"
    return ""


def _describe(numbers: dict) -> str:
    """The settings line of a saved experiment: profile, quick, overrides, networks."""
    parts = [f"`{numbers.get('settings_profile', 'code')}` profile"]
    if numbers.get("quick"):
        parts.append("--quick")
    if numbers.get("overrides"):
        parts.append("reduced: " + ", ".join(f"{k}={v}" for k, v in numbers["overrides"].items()))
    if numbers.get("networks_arg"):
        parts.append(f"networks: {numbers['networks_arg']}")
    return "; ".join(parts)


def command(name: str, numbers: dict) -> str:
    """The `reproduce` command that made `numbers`."""
    cmd = f"python -m repalign_jax.reproduce {name}"
    if numbers.get("settings_profile", "code") == "paper":
        cmd += " --settings paper"
    if numbers.get("quick"):
        cmd += " --quick"
    cmd += "".join(f" --set {k}={v}" for k, v in (numbers.get("overrides") or {}).items())
    if numbers.get("networks_arg"):
        cmd += f" --networks '{numbers['networks_arg']}'"
    return cmd


def summary_table(loaded: Sequence[tuple[str, dict]]) -> list[str]:
    """The summary table: one row per claim from the first folder's results, followed by a row
    for each other folder (another profile) that saved the claim's experiment. `loaded` is
    `[(label, {experiment: numbers})]`. Claims that cannot fail are left to the sections."""
    lines = [
        "| figure | claim | verdict | key number [interval] | cause |",
        "|---|---|---|---|---|",
    ]
    for c in CLAIMS:
        if not c.can_fail:
            continue
        source = c.source
        for i, (label, saved) in enumerate(loaded):
            if i and source not in saved:
                continue
            e = aggregate(c.key, evaluate_claim(c.key, saved.get(source)))
            figure = c.figure if not i else f"{c.figure}, {label}"
            mark = f" {LATER_TEST}" if registration(c, saved.get(source)) else ""
            cells = (figure, c.short, f"**{e.verdict.label}**{mark}", e.number, e.cause or "-")
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return lines


def _by_gain_table(details: dict) -> list[str]:
    """The `*_by_gain` numbers of an evaluation as one table, a row per gain."""
    cols = {k[: -len("_by_gain")]: v for k, v in details.items() if k.endswith("_by_gain") and isinstance(v, dict)}
    if not cols:
        return []
    gains = sorted({g for v in cols.values() for g in v})
    lines = ["| gain | " + " | ".join(k.replace("_", " ") for k in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for g in gains:
        lines.append(f"| {g:g} | " + " | ".join(f"{cols[k].get(g, float('nan')):.4g}" for k in cols) + " |")
    return lines + [""]


#: What a profile's settings take from where, said beside them (experiment, profile).
NOTES = {
    ("final_distance", "paper"): (
        "Table 1's learning rate and epochs for the rates and the grid, as appendix B.1 says (\"the same "
        'hyperparameter settings were used"); the discard rule is ours: the paper says only "Trials which '
        'did not converge were discarded", and a grid run whose final loss is above `run_loss_max` '
        "(1e-3, the threshold of the authors' code) is discarded."
    ),
    ("final_distance", "code"): (
        "the authors' code (`rich_structure.ipynb`): rates from trials at Table 1's settings (a trial whose "
        "final loss is above `trial_loss_max` discarded), the grid at `lr_factor` x 2/5 of Table 1's rate, "
        "stopped at `stop_loss`, a run above `run_loss_max` discarded; a fresh initialisation per grid point "
        "and replicate."
    ),
}


def _settings_line(name: str, numbers: dict) -> list[str]:
    """The saved `settings` of an experiment as one line, and what they follow."""
    settings = numbers.get("settings")
    if not isinstance(settings, dict):
        return []
    text = ", ".join(f"{k} {v}" for k, v in settings.items() if not isinstance(v, (dict, list)) or len(str(v)) < 60)
    note = NOTES.get((name, numbers.get("settings_profile", "code")))
    return [f"- Training: {text}." + (f" These follow {note}" if note else "")]


def _details_line(details: dict) -> list[str]:
    """The baselines an evaluation compared the theory with, where it has them."""
    base = details.get("baselines")
    if not isinstance(base, dict):
        return []
    runs = f"; {details['kept']} of {details['runs']} runs kept" if "kept" in details and "runs" in details else ""
    return [
        "Baselines on the same runs (median |log2|, each constant fitted): "
        + ", ".join(f"{k} {v:.2f}" for k, v in base.items())
        + runs
        + ".",
        "",
    ]


def _figures(root: pathlib.Path, name: str, relative_to: pathlib.Path) -> list[str]:
    folder = root / name
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return [f"![{p.stem}]({os.path.relpath(p, relative_to)})" for p in pngs]


def _section(name: str, roots: list[tuple[str, pathlib.Path, dict]], relative_to: pathlib.Path) -> list[str]:
    out = [f"## {name}", ""]
    for label, root, saved in roots:
        numbers = saved.get(name)
        if numbers is None:
            continue
        wall = numbers.get("wall_seconds", float("nan"))
        out += [
            f"### {label}",
            "",
            f"- Settings: {_describe(numbers)}.",
            f"- Command: `{command(name, numbers)} --out {root}`.",
            f"- Wall time: {wall:.0f} s; machine: {numbers.get('machine') or ', '.join(numbers.get('machines') or []) or 'see the header'}.",
            *_settings_line(name, numbers),
            "",
        ]
        for c in (x for x in CLAIMS if x.source == name):
            evals = evaluate_claim(c.key, numbers)
            out += [f"**{c.short}** ({c.figure}; `{c.key}`): {aggregate(c.key, evals).verdict.label}.", ""]
            out += [f"> {c.quote}", "", f"Test (fixed {c.fixed}; digest `{c.digest}`): {c.test}.", ""]
            late = registration(c, numbers)
            if late:
                out += [f"{LATER_TEST} Not pre-registered: {late}.", ""]
            if len(evals) > 1 or evals[0].network:
                out += ["| network | verdict | number [interval] | cause |", "|---|---|---|---|"]
                out += [
                    f"| {_cell(e.network or '-')} | {e.verdict.label} | {_cell(e.number)} | {_cell(e.cause)} |"
                    for e in evals
                ]
                out.append("")
                if len(evals) == 1:
                    out += _details_line(evals[0].details)
            else:
                cause = f"; {evals[0].cause}" if evals[0].cause else ""
                out += [f"Measured: {evals[0].number}{cause}.", ""]
                out += _by_gain_table(evals[0].details)
        figs = _figures(root, name, relative_to)
        if figs:
            out += figs + [""]
    return out


def _provenance(saved: Sequence[dict]) -> str:
    """A line naming the machines the saved results ran on and the dates they finished."""
    numbers = [n for folder in saved for n in folder.values()]
    machines = sorted({m for n in numbers for m in ([n["machine"]] if n.get("machine") else n.get("machines") or [])})
    finished = sorted(n["finished"] for n in numbers if n.get("finished"))
    parts = []
    if machines:
        parts.append("Ran on " + "; ".join(machines))
    if finished:
        parts.append(
            f"finished {finished[0][:10]}"
            + (f" to {finished[-1][:10]}" if finished[-1][:10] != finished[0][:10] else "")
        )
    return (", ".join(parts) + ".") if parts else ""


def write_report(
    roots: Sequence[tuple[str, pathlib.Path]],
    header: str = "",
    relative_to: pathlib.Path | None = None,
    appendices: Sequence[str] = (),
) -> str:
    """REPRODUCTION.md over `roots`, `[(label, folder)]` (the first is the main profile): one summary
    table, then a section per experiment, then `appendices` (Markdown texts, for example the
    PyTorch side-by-side measurements). Figure links are relative to `relative_to` (default: the
    current folder)."""
    relative_to = pathlib.Path(relative_to or ".")
    loaded = [(label, pathlib.Path(root), load(pathlib.Path(root))) for label, root in roots]
    out = ["# Reproduction report", ""]
    header = header or _provenance([saved for _, _, saved in loaded])
    if header:
        out += [header.strip(), ""]
    out += [
        "Every verdict below is computed by the claims' tests (`repalign_jax.paper`) from the saved results "
        "(`python -m repalign_jax.reproduce report` re-evaluates them without training). The claims, "
        "their quotes, tests and digests are `python -m repalign_jax.reproduce claims`; tests changed after "
        "results existed, and the verdicts before this report's tests, are in `docs/claims-changelog.md`. "
        "Verdicts: *reproduced*; *not reproduced (network differs)*: the theory's failure; *not reproduced "
        "(fit failed)*: the seeds that miss are failed fits; *not reproduced (run failed)*: the network did "
        "not train; *not testable here*; *undecided* (an interval crosses the threshold); *not run* (no saved "
        "result that the test can read); *outside the claim* (a network the sentence does not speak of, "
        "listed, never counted); *cannot fail* (listed, never counted).",
        "",
        "Intervals: a per-seed number is a median with its order-statistic interval, whose coverage is at "
        "least 95% (from 6 seeds on); with fewer seeds no interval reaches 95%, and the number says *all n "
        "seeds in [min, max]* (75% coverage for 3 seeds). Statistics over several seeds at once (a rank "
        "correlation over layers, a score over grid points) carry a 95% percentile bootstrap interval.",
        "",
        f"Pre-registration: every saved result records the digests of the claims it was produced under "
        f"(`claim_digests`). {LATER_TEST} marks a verdict read from a result produced before its claim's test "
        f"was what it is now, or with no digests at all: the results saved before 2026-12-07 hold none, and "
        f"their tests (fixed 2026-12-05 and 2026-12-07) were written after those results existed.",
        "",
    ]
    out += ["## Summary", ""]
    if len(loaded) > 1:
        out += [
            f"Rows name {loaded[0][0]}; a row naming another folder follows where that folder holds the same "
            "experiment.",
            "",
        ]
    out += summary_table([(label, saved) for label, _, saved in loaded])
    out.append("")
    for name in EXPERIMENTS:
        if any(name in saved for _, _, saved in loaded):
            out += _section(name, loaded, relative_to)
    for text in appendices:
        out += [text.strip(), ""]
    return "\n".join(out).rstrip() + "\n"
