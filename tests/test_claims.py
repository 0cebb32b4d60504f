"""The claims registry: every quote is the paper's, every claim has a test, `reproduce claims` prints it."""

import hashlib
import json
import pathlib
import re

import pytest

from repalign_jax import paper as C
from repalign_jax.reproduce import main

PAPER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "seeds" / "002_86af288b2609196e.txt"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


#: sha256 of every quote as it was checked against the paper's text (rewrite it only with the text
#: at hand: `test_every_quote_occurs_in_the_paper` then checks the file too).
CHECKED = pathlib.Path(__file__).resolve().parent / "data" / "quotes_checked.json"


def _digest(quote: str) -> str:
    return hashlib.sha256(_norm(quote).encode()).hexdigest()


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper's text (shared/seeds) is not beside this checkout")
def test_every_quote_occurs_in_the_paper():
    paper = _norm(PAPER.read_text())
    missing = [c.key for c in C.CLAIMS if _norm(c.quote) not in paper]
    assert not missing, missing
    checked = json.loads(CHECKED.read_text())
    assert checked == {c.key: _digest(c.quote) for c in C.CLAIMS}, "rewrite tests/data/quotes_checked.json"


def test_every_quote_is_one_checked_against_the_paper():
    """Where the paper's text is not beside the checkout (CI): each quote is the one whose
    occurrence in the paper was checked, by its digest."""
    checked = json.loads(CHECKED.read_text())
    changed = [c.key for c in C.CLAIMS if checked.get(c.key) != _digest(c.quote)]
    assert not changed, f"quotes not checked against the paper: {changed}"


def test_a_changed_quote_is_caught():
    """The check above can fail: a quote with one word changed is not in the paper."""
    if not PAPER.is_file():
        pytest.skip("the paper's text is not here")
    paper = _norm(PAPER.read_text())
    quote = C.claim("universality.all_curves").quote.replace("quite well", "perfectly")
    assert _norm(quote) not in paper


def test_registry_is_complete_and_consistent():
    keys = [c.key for c in C.CLAIMS]
    assert len(keys) == len(set(keys))
    assert all(c.evaluate is not None for c in C.CLAIMS if c.can_fail)  # every claim that can fail has its test
    for c in C.CLAIMS:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", c.fixed), c.key
        assert c.experiment in C.EXPERIMENTS, c.key
        for field in ("figure", "short", "quote", "measures", "test", "fair"):
            assert getattr(c, field).strip(), (c.key, field)
        assert len(c.short.split()) <= 15, c.key
    assert {c.key for c in C.CLAIMS if not c.can_fail} == {
        "adam.own_rates",
        "random_features.a_low_fixed",
        "random_features.spread_vanishes",  # the theory's formula on initialisations, no training (round 2)
    }
    with pytest.raises(KeyError, match="known"):
        C.claim("no.such")


def test_the_claims_the_issue_names_are_registered():
    for key in (
        "universality.loss_fit",  # the loss fit with tau
        "feature_collapse.single_line",  # the contexts collapsing (Figure 12)
        "xor.intermediate",  # the XOR intermediate gain
        "adam.blobs_collapse",  # Adam on blobs
        "gains.loss_plateau",  # Figure 3 (bottom), round 2's finding 7
        "adam.final_distance",  # Figure 14: final distances under Adam from rates fitted at one task
    ):
        assert C.claim(key).can_fail


def test_reproduce_claims_prints_the_registry(capsys):
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    for c in C.CLAIMS:
        assert c.key in out and c.quote in out
    assert out.count("[cannot fail") == 3


def test_committed_digests_are_the_registry_s():
    """`tests/data/claim_digests.json` is the registry's digests, committed with every change to a test
    (before the reruns it judges): a test changed without it fails here. Rewrite it with
    `python -c "import json, repalign_jax.paper as P; print(json.dumps({c.key: {'digest': c.digest,
    'fixed': c.fixed} for c in P.CLAIMS}, indent=1))" > tests/data/claim_digests.json`. It sits with the
    tests it fingerprints, not with the results (`reproduction/`): a commit that changes a test and this
    file holds no result."""
    committed = json.loads((pathlib.Path(__file__).parent / "data" / "claim_digests.json").read_text())
    assert committed == {c.key: {"digest": c.digest, "fixed": c.fixed} for c in C.CLAIMS}


def test_a_changed_test_changes_the_digest():
    import dataclasses

    c = C.claim("xor.rich_merge")
    assert dataclasses.replace(c, test=c.test + " ").digest != c.digest
    assert dataclasses.replace(c, fair="another reason").digest == c.digest  # wording outside the test
    assert dataclasses.replace(c, evaluate=C.claim("xor.lazy_keeps").evaluate).digest != c.digest
    line = C.claim("feature_collapse.single_line")  # its threshold is a default argument of its test
    test = line.evaluate
    assert test is not None
    assert dataclasses.replace(line, evaluate=lambda n, one_line=0.1: test(n)).digest != line.digest
