"""`reproduce report`: REPRODUCTION.md re-evaluated from saved JSON, nothing retrained."""

import json

from repalign_jax import paper as C
from repalign_jax import paper as V
from repalign_jax import reproduce
from repalign_jax.paper.report import MAX_CELL_WORDS, aggregate, write_report


def _save(root, name, numbers):
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"{name}.json").write_text(json.dumps(numbers))


def _xor_numbers(rich_merge: float) -> dict:
    def m(merge, other=1.0):
        d = [[other] * 4 for _ in range(4)]
        for i, j in ((0, 3), (3, 0), (1, 2), (2, 1)):
            d[i][j] = merge
        for i in range(4):
            d[i][i] = 0.0
        return d

    def row(name, meas, pred):
        return {
            "network": name,
            "measured_per_seed": [meas] * 3,
            "predicted_per_seed": [pred] * 3,
            "initial_per_seed": [m(1.41)] * 3,
            "final_loss_per_seed": [1e-6] * 3,
            "diverged_per_seed": [False] * 3,
        }

    return {
        "settings_profile": "code",
        "wall_seconds": 12.0,
        # a verdict saved by an older version must not be what the report shows
        "claims": [{"claim": "rich merges", "measured": "", "holds": True}],
        "table": [
            row("rich", m(rich_merge), m(0.02)),
            row("intermediate", m(0.5), m(0.5)),
            row("lazy", m(1.3), m(1.3)),
            row("2 layers", m(0.1), m(0.01)),
        ],
    }


def test_report_reevaluates_verdicts_from_saved_numbers(tmp_path, capsys):
    code, paper = tmp_path / "code", tmp_path / "paper"
    _save(code, "xor", _xor_numbers(rich_merge=0.9))  # the rich network did not merge
    (code / "xor" / "xor.png").write_bytes(b"png")
    _save(paper, "xor", {**_xor_numbers(rich_merge=0.05), "settings_profile": "paper", "machine": "box"})
    # a side file without a profile (final_distance's .network.json) does not make the folder "code"
    (paper / "xor" / "xor.network.json").write_text("{}")
    extra = tmp_path / "side.md"
    extra.write_text("## PyTorch side by side\n\nmeasured here\n")
    out = tmp_path / "REPRODUCTION.md"
    assert reproduce.main(["report", str(code), str(paper), "--write", str(out), "--include", str(extra)]) == 0
    text = out.read_text()
    assert "Ran on box" in text.split("## Summary")[0]  # provenance from the saved results
    assert text.rstrip().endswith("## PyTorch side by side\n\nmeasured here")  # appended after the sections
    summary, rest = text.split("## xor", 1)
    rows = [r for r in summary.splitlines() if "| at low gain the equal-target pairs merge |" in r]
    assert len(rows) == 2  # one per folder, the main folder's first
    assert rows[0].startswith("| Figure 6 (middle) |") and "printed settings" in rows[1]
    assert "**not reproduced (network differs)**" in rows[0]  # recomputed: the saved 'holds: True' is ignored
    assert "**reproduced**" in rows[1]
    # one table: a row per claim that can fail, and the other folder's rows of its experiment
    table = [r for r in summary.splitlines() if r.startswith("| ") and "---" not in r]
    counted = [c for c in C.CLAIMS if c.can_fail]
    assert len(table) == 1 + len(counted) + sum(V.source_of(c.key) == "xor" for c in counted)
    for r in table:
        cells = r.replace("\\|", "").strip("|").split("|")
        assert all(len(c.split()) <= MAX_CELL_WORDS for c in cells), r
    # the section quotes the paper, gives the command and embeds the figure, relative to the report
    assert C.claim("xor.rich_merge").quote in rest
    assert "python -m repalign_jax.reproduce xor --out" in rest and "--settings paper" in rest
    assert "![xor](code/xor/xor.png)" in rest
    # not run, and not testable here, where nothing was saved
    assert "| Figure 2 | the theory fits h, y and w of every architecture and nonlinearity | **not run** |" in summary
    assert "| Figure 4 | the theory follows a pair of MNIST digits | **not testable here** |" in summary
    assert reproduce.main(["report", str(tmp_path / "nowhere")]) == 2
    assert reproduce.main(["xor", "--write", "x.md", "--out", str(tmp_path / "o")]) == 2
    assert "--write and --include apply to report" in capsys.readouterr().err
    assert reproduce.main(["report", str(code), "--include", str(tmp_path / "missing.md")]) == 2
    assert "cannot read --include" in capsys.readouterr().err


def test_each_claim_is_reported_in_the_section_of_the_experiment_its_test_reads(tmp_path):
    # adam.blobs_collapse reads feature_collapse's results: the adam section must not list it as "not run"
    _save(tmp_path, "adam", {"settings_profile": "code", "wall_seconds": 1.0})
    _save(tmp_path, "feature_collapse", {"settings_profile": "code", "wall_seconds": 1.0})
    md = write_report([("x", tmp_path)])
    adam = md.split("## adam", 1)[1].split("\n## ", 1)[0]
    collapse = md.split("## feature_collapse", 1)[1].split("\n## ", 1)[0]
    assert "`adam.blobs_collapse`" not in adam and "`adam.blobs_collapse`" in collapse
    assert "`adam.xor_merge`" in adam


def test_long_causes_are_cut_to_the_cell_limit(tmp_path):
    long = V.Evaluation("xor.rich_merge", V.Verdict.UNDECIDED, "n", " ".join(["word"] * 100))
    assert aggregate("xor.rich_merge", [long]) is long
    md = write_report([("x", tmp_path)])
    assert "not run" in md


def test_aggregate_counts_networks():
    evals = [
        V.Evaluation("k", V.Verdict.REPRODUCED, "", "", network="a"),
        V.Evaluation("k", V.Verdict.RUN_FAILED, "", "", network="b"),
        V.Evaluation("k", V.Verdict.NETWORK_DIFFERS, "", "", network="c"),
    ]
    agg = aggregate("k", evals)
    assert agg.verdict is V.Verdict.NETWORK_DIFFERS
    assert (
        agg.number == "1 of 3 networks reproduced"
        and "b (run failed)" in agg.cause
        and "c (network differs)" in agg.cause
    )


def test_aggregate_names_the_weakest_curve_most_failures_share():
    evals = [
        V.Evaluation("k", V.Verdict.NETWORK_DIFFERS, "", "3 of 3 seeds trained; weakest curve w", network="a"),
        V.Evaluation("k", V.Verdict.NETWORK_DIFFERS, "", "3 of 3 seeds trained; weakest curve w", network="b"),
        V.Evaluation("k", V.Verdict.NETWORK_DIFFERS, "", "1 of 3 seeds trained; weakest curve y", network="c"),
        V.Evaluation("k", V.Verdict.REPRODUCED, "", "", network="d"),
    ]
    assert aggregate("k", evals).cause.endswith("; weakest curve w in 2 of 3")
