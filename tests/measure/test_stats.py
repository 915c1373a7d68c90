"""Wu et al.'s NIAH success rule: rouge-score with the Porter stemmer (the default) against the old simple rule,
and their stop at the first generated newline."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from retmask_interp.measure.stats import niah_success, rouge1_recall


@pytest.mark.parametrize(
    ("reference", "hypothesis", "wu", "simple"),
    [
        ("eat a sandwich", "I would eat a sandwich today", 1.0, 1.0),  # agree
        ("eat a sandwich", "eating sandwiches", 2 / 3, 0.0),  # stemming: eat/eating, sandwich/sandwiches
        ("the dogs barked", "the dog barks", 1.0, 1 / 3),
        ("a a b", "a b", 2 / 3, 2 / 3),  # clipped counts in both
    ],
)
def test_wu_scorer_differs_from_simple_where_expected(reference, hypothesis, wu, simple):
    assert rouge1_recall(reference, hypothesis) == pytest.approx(wu)
    assert rouge1_recall(reference, hypothesis, "simple") == pytest.approx(simple)


def test_wu_scorer_equals_the_library_call():
    ref = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    for a, b in [("eat a sandwich in Dolores Park", "Eating sandwiches at the park."), ("x y", "")]:
        assert rouge1_recall(a, b) == ref.score(a, b)["rouge1"].recall


def test_niah_success_rule_and_bad_threshold():
    assert niah_success("eat a sandwich", "eating sandwiches") == (True, pytest.approx(2 / 3))
    assert niah_success("eat a sandwich", "eating sandwiches", scorer="simple")[0] is False
    assert niah_success("x", "y", 0.0)[0] is True  # threshold 0 counts every sample
    with pytest.raises(ValueError, match=r"rouge_threshold must be in \[0, 1\)"):
        niah_success("x", "x", 2.0)
    with pytest.raises(ValueError, match="scorer must be one of"):
        rouge1_recall("x", "x", "bleu")


def test_newline_stop_on_the_organism(monkeypatch):
    """Wu's decoding stops at the first generated newline token (that step is generated and scored); ``stop="eos"``
    runs on. The organism rarely writes a line break, so the test declares the token it writes third a "newline"
    (``newline_token_ids`` patched) and checks that detection and NIAH outcomes stop right after it."""
    from retmask_interp.core import models
    from retmask_interp.measure.detect import copy_paste_scores
    from retmask_interp.measure.outcomes import greedy_texts

    rm = models.load_organism()
    nl = models.newline_token_ids(rm.tokenizer)
    assert nl and all("\n" in rm.tokenizer.decode([i]) for i in nl)
    assert set(rm.stop_token_ids("eos")) < set(rm.stop_token_ids("newline"))
    tok = rm.tokenizer
    prompt = tok("Title: The mill\n\nThe mill stood by the river and the miller", add_special_tokens=False)[
        "input_ids"
    ]
    full, _ = copy_paste_scores(rm, prompt, (0, 2), 12, eos_token_ids=rm.stop_token_ids("eos"))
    full = full.tolist()
    assert len(full) >= 4
    fake = full[2]
    first = full.index(fake)
    monkeypatch.setattr(models, "newline_token_ids", lambda tokenizer: (fake,))
    gen, _ = copy_paste_scores(rm, prompt, (0, 2), 12, eos_token_ids=rm.stop_token_ids("newline"))
    assert gen.tolist() == full[: first + 1]  # the "newline" step is generated (and scored), then it stops
    text = greedy_texts(rm, [prompt], max_new_tokens=12, stop="newline")[0]
    assert text == tok.decode(full[:first], skip_special_tokens=True).strip()
    assert (
        greedy_texts(rm, [prompt], max_new_tokens=12, stop="eos")[0]
        == tok.decode(full, skip_special_tokens=True).strip()
    )
