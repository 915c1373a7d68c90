"""Scoring functions (hand-computed values), bootstrap CIs, the paired comparison, and the suite on a real model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from retmask_interp.measure.stats import bootstrap_ci, paired_bootstrap_ci, rouge1_recall
from retmask_interp.retmask.evaluation import (
    citation_scores,
    compare,
    ndcg_at_k,
    normalize_answer,
    parse_citations,
    parse_ranking,
    score_example,
    sequence_nll,
    substring_exact_match,
    summarize,
)

SHARED_STORIES = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "stories260K"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def stories():
    if not SHARED_STORIES.exists():
        pytest.skip("../shared/models/stories260K is absent")
    from retmask_interp.core.models import load_model

    return load_model(SHARED_STORIES, device="cpu", dtype="float32")


# -- metrics -----------------------------------------------------------------------------------------------------
def test_normalize_and_substring_em():
    assert normalize_answer("  The Quick, brown FOX!  ") == "quick brown fox"
    assert substring_exact_match("I think it is The Red Lantern.", ["red lantern"]) == 1.0
    assert substring_exact_match("I think it is the blue one", ["red lantern", "green"]) == 0.0
    assert substring_exact_match("anything", [""]) == 0.0  # an empty answer never matches
    assert substring_exact_match("It is kavo-12ab3.", ["Kavo-12AB3"]) == 1.0
    assert substring_exact_match("kavo12ab3", ["Kavo-12AB3"]) == 1.0  # punctuation is removed on both sides
    assert substring_exact_match("kavo 12ab3", ["Kavo-12AB3"]) == 0.0


def test_rouge1_recall_hand_values():
    assert rouge1_recall("the cat sat", "the cat") == pytest.approx(2 / 3)
    assert rouge1_recall("a a b", "a") == pytest.approx(1 / 3)  # clipped counts
    assert rouge1_recall("a a b", "a a a b") == 1.0
    assert rouge1_recall("Figs and honey.", "FIGS, honey") == pytest.approx(2 / 3)
    assert rouge1_recall("", "x") == 0.0


def test_ndcg_hand_values():
    qrels = {"1": 2, "2": 1}
    ideal = 2 + 1 / math.log2(3)
    assert ndcg_at_k(["1", "2"], qrels) == pytest.approx(1.0)
    assert ndcg_at_k(["2", "1"], qrels) == pytest.approx((1 + 2 / math.log2(3)) / ideal)  # 0.85972
    assert ndcg_at_k(["2", "1"], qrels) == pytest.approx(0.859719, abs=1e-6)
    assert ndcg_at_k(["5", "1"], qrels) == pytest.approx((2 / math.log2(3)) / ideal)
    assert ndcg_at_k([str(i) for i in range(3, 13)] + ["1"], qrels) == 0.0  # rank 11 is cut at 10
    assert ndcg_at_k([], qrels) == 0.0 and ndcg_at_k(["1"], {"1": 0}) == 0.0


def test_parsing_and_citations():
    assert parse_ranking("[3] > [1] > [3] > [12]") == ["3", "1", "12"]
    assert parse_citations("Figs [1][2], as said in [2] and [7].") == [1, 2, 7]
    assert citation_scores("answer [1][3]", [1, 2]) == (0.5, 0.5)
    assert citation_scores("answer [1][2]", [1, 2]) == (1.0, 1.0)
    assert citation_scores("answer", [1]) == (0.0, 0.0)
    assert citation_scores("[4]", [1, 2]) == (0.0, 0.0)


@pytest.mark.parametrize("task", ["niah", "multi_needle", "json_kv", "rag_qa", "rerank", "cite"])
def test_reference_answers_score_perfectly(task):
    from retmask_interp.data.tasks import generate_examples

    for ex in generate_examples(task, 3, num_words=150, seed=1):
        assert score_example(ex, ex.target)["score"] == pytest.approx(1.0), (task, ex.target)
        assert score_example(ex, "I do not know.")["score"] < 1.0


# -- statistics --------------------------------------------------------------------------------------------------
def test_bootstrap_ci_properties():
    assert bootstrap_ci([0.7] * 20) == pytest.approx((0.7, 0.7))
    x = np.random.default_rng(1).normal(0.5, 1.0, size=200)
    low, high = bootstrap_ci(x)
    assert low < x.mean() < high
    assert (low, high) == bootstrap_ci(x)  # seeded
    assert bootstrap_ci(x, seed=1) != (low, high)
    narrow = bootstrap_ci(x, alpha=0.5)
    assert low < narrow[0] < narrow[1] < high
    big = np.random.default_rng(2).normal(0.5, 1.0, size=5000)
    assert np.diff(bootstrap_ci(big))[0] < (high - low) / 3  # about 1/sqrt(25) as wide
    # a 95 % CI of a normal mean is about mean +- 1.96 sd / sqrt(n)
    assert (high - low) / 2 == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(len(x)), rel=0.15)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], alpha=1.5)


def test_paired_bootstrap_removes_shared_variation():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 5, size=100)
    assert paired_bootstrap_ci(base, base + 0.3) == pytest.approx((0.3, 0.3))
    low, high = paired_bootstrap_ci(base, base + 0.3 + rng.normal(0, 0.1, size=100))
    assert 0.2 < low < 0.3 < high < 0.4
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1, 2], [1])


def test_compare_and_summarize_tables():
    keys = dict(task=["rag_qa"] * 4 + ["text"] * 2, length=[8] * 6, index=[0, 1, 2, 3, 0, 1])
    before = pd.DataFrame(keys | {"score": [0, 0, 1, 0, 2.0, 4.0], "tokens": [0] * 4 + [10, 30]})
    after = pd.DataFrame(keys | {"score": [1, 0, 1, 1, 2.0, 3.0], "tokens": [0] * 4 + [10, 30]})
    table = compare(before, after)
    rag = table[table.task == "rag_qa"].iloc[0]
    assert (rag.n, rag.before, rag.after, rag.delta) == (4, 0.25, 0.75, 0.5)
    assert rag.relative_pct == pytest.approx(200.0) and rag.ci_low <= 0.5 <= rag.ci_high
    text = table[table.task == "text"].iloc[0]
    assert text.delta == pytest.approx(-0.5)
    pooled = table[table.task == "all"].iloc[0]  # text (lower is better) is left out of the pool
    assert (pooled.n, pooled.delta) == (4, 0.5)
    assert "all" not in set(compare(before, after, overall=False).task)
    summ = summarize(before)
    t = summ[summ.task == "text"].iloc[0]
    assert t.perplexity == pytest.approx(math.exp((2 * 10 + 4 * 30) / 40))
    assert summ[summ.task == "rag_qa"].iloc[0]["mean"] == 0.25
    with pytest.raises(ValueError, match="share no"):
        compare(before, after.assign(length=99))


# -- running a model ---------------------------------------------------------------------------------------------
def test_sequence_nll_matches_a_direct_forward(stories):
    texts = ["Once upon a time there was a dog.", "Lily liked to play in the big green park with Tom."]
    got = sequence_nll(stories, texts, batch_size=2)
    for text, (nll, n) in zip(texts, got):
        ids = torch.tensor([stories.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logp = stories.model(ids).logits[0, :-1].log_softmax(-1)
        want = -logp.gather(-1, ids[0, 1:, None]).sum().item()
        assert n == ids.shape[1] - 1 and nll == pytest.approx(want, rel=1e-4)
    # masking heads changes the likelihood
    masked = sequence_nll(stories, texts[:1], heads=[(0, 0), (1, 1), (2, 2)])
    assert masked[0][0] != pytest.approx(got[0][0], rel=1e-4)


def test_evaluate_runs_and_is_deterministic(stories):
    from retmask_interp.retmask.evaluation import evaluate

    kw = dict(tasks=["niah", "json_kv", "rag_qa", "text"], lengths=[48], n_per_cell=2, ppl_length=40)
    df = evaluate(stories, progress=False, **kw)
    assert list(df.groupby("task").size().sort_index()) == [2, 2, 2, 2]
    assert set(df.columns) >= {"task", "length", "index", "score", "prediction", "prompt_tokens", "tokens"}
    gen = df[df.task != "text"]
    assert gen["score"].between(0, 1).all() and (gen["prediction"].str.len() > 0).all()
    assert (df[df.task == "text"]["score"] > 0).all()
    again = evaluate(stories, progress=False, **kw)
    pd.testing.assert_frame_equal(df, again)


def test_greedy_texts_agree_with_hf_generate(stories):
    """The evaluation's decoding (``outcomes.greedy_texts``, left-padded batches) equals HF ``generate`` per
    prompt; masking heads changes it."""
    from retmask_interp.measure.outcomes import greedy_texts

    tok = stories.tokenizer
    prompts = [
        tok(t)["input_ids"] for t in ("Once upon a time, a little girl", "The dog ran", "Tom had a big red")
    ]
    plain = greedy_texts(stories, prompts, max_new_tokens=12, batch_size=3)
    for ids, text in zip(prompts, plain):
        ref = stories.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :]
        eos = set(stories.eos_token_ids())
        ref = ref.tolist()
        ref = ref[: next((i for i, t in enumerate(ref) if t in eos), len(ref))]
        assert text == tok.decode(ref, skip_special_tokens=True)
    masked = greedy_texts(stories, prompts, heads=[(0, 0), (1, 3), (2, 5), (3, 1)], max_new_tokens=12)
    assert masked != plain
