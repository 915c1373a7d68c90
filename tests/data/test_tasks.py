"""Task formats: prompts, targets, metadata a scorer needs, length control, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from retmask_interp.data import tasks
from retmask_interp.data.tasks import TASKS, generate_examples, insert_at_depth, make_example

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "retmask_interp" / "organism" / "tokenizer"


@pytest.fixture(scope="module")
def tok():
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip("the organism tokenizer is not in this checkout")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def _docs(prompt: str) -> dict[int, str]:
    parts = re.split(r"\n\n(?=Document \[)", prompt.split("\n\n", 1)[1])
    out = {}
    for p in parts:
        m = re.match(r"Document \[(\d+)\] \(Title: \w+\): (.*)", p, flags=re.S)
        if m:
            out[int(m.group(1))] = m.group(2).split("\n\nQu")[0]
    return out


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_deterministic(task):
    a = generate_examples(task, 3, num_words=200, seed=5)
    b = generate_examples(task, 3, num_words=200, seed=5)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert a[0].to_dict() != a[1].to_dict()
    for ex in a:
        assert ex.task == task and ex.target
        assert ex.meta["split"] == "eval" and ex.meta["length_unit"] == "words"
        json.dumps(ex.to_dict())  # metadata is JSON-serialisable


def test_niah_prompt_format():
    ex = make_example("niah", 0, num_words=300, seed=1)
    m = ex.meta
    assert ex.prompt.startswith("<book>")
    assert ex.prompt.endswith(
        f"</book>\nBased on the content of the book, Question: {m['question']}\nAnswer:"
    )
    assert m["needle"] in ex.prompt and ex.target == m["real_needle"] == ex.answers[0]
    assert m["context"][m["needle_char_offset"] :].startswith(m["needle"])
    before = m["context"][: m["needle_char_offset"]]
    assert before == "" or before.rstrip()[-1] in ".!?"  # inserted at a sentence boundary


def test_insert_at_depth():
    ctx = "One two. Three four! Five six? Seven eight."
    assert insert_at_depth(ctx, "N.", 0) == ("N. " + ctx, 0)
    text, at = insert_at_depth(ctx, "N.", 100)
    assert text == ctx + " N." and at == len(ctx) + 1
    text, at = insert_at_depth(ctx, "N.", 50)
    assert text == "One two. Three four! N. Five six? Seven eight." and text[at:].startswith("N.")
    with pytest.raises(ValueError):
        insert_at_depth(ctx, "N.", 101)


def test_multi_needle():
    for i in range(6):
        ex = make_example("multi_needle", i, num_words=400, seed=2)
        for n in ex.meta["needles"]:
            assert n["needle"] in ex.prompt
        asked = [ex.meta["needles"][j] for j in ex.meta["asked"]]
        assert ex.answers == [n["real_needle"] for n in asked]
        if len(asked) > 1:
            assert ex.target.splitlines() == [f"{k + 1}. {n['real_needle']}" for k, n in enumerate(asked)]
            assert all(f"Question {k + 1}: {n['question']}" in ex.prompt for k, n in enumerate(asked))
        else:
            assert ex.target == asked[0]["real_needle"]


def test_json_kv():
    seen_multi = False
    for i in range(10):
        ex = make_example("json_kv", i, num_words=300, seed=3)
        obj = json.loads(ex.prompt.split("\n")[1])
        assert ex.meta["num_pairs"] == len(obj)
        assert [obj[k] for k in ex.meta["keys"]] == ex.meta["values"] == ex.answers
        if len(ex.answers) == 1:
            assert ex.target == ex.answers[0]
        else:
            seen_multi = True
            assert [json.loads("{" + line + "}") for line in ex.target.splitlines()] == [
                {k: obj[k]} for k in ex.meta["keys"]
            ]
    assert seen_multi


@pytest.mark.parametrize("task", ["rag_qa", "cite", "rerank"])
def test_passage_tasks_gold(task):
    for i in range(5):
        ex = make_example(task, i, num_words=600, seed=4)
        docs = _docs(ex.prompt)
        assert sorted(docs) == list(range(1, len(docs) + 1)) and len(docs) == ex.meta["num_passages"]
        if task == "rerank":
            grades = {int(k): v for k, v in ex.meta["qrels"].items()}
            assert ex.target == " > ".join(f"[{d}]" for d in sorted(grades, key=lambda d: (-grades[d], d)))
            gold = [d for d, g in grades.items() if g == 2]
        else:
            gold = ex.meta["gold_ids"]
            answer = ex.meta["real_needle"]
            for d, body in docs.items():
                assert (answer in body) == (d in gold), (d, gold)
        assert gold
        if task == "cite":
            assert ex.target == ex.meta["real_needle"] + " " + "".join(f"[{d}]" for d in gold)


def test_text_task():
    ex = make_example("text", 0, num_words=120, seed=0)
    assert ex.prompt == "" and 95 <= len(ex.target.split()) <= 120


def test_token_lengths(tok):
    for task in sorted(TASKS):
        for n in (200, 900):
            ex = make_example(task, 1, seed=0, split="train", tokenizer=tok, num_tokens=n)
            assert ex.meta["length_unit"] == "tokens" and ex.meta["length"] == n
            prompt_tokens = len(tok(ex.prompt + " " + ex.target, add_special_tokens=False)["input_ids"])
            assert prompt_tokens <= n + 200, (task, n, prompt_tokens)
            if task in ("niah", "text"):
                assert prompt_tokens >= n - 60, (task, n, prompt_tokens)


def test_fit_text(tok):
    text = "Alpha beta gamma. Delta epsilon! Zeta eta theta? Iota kappa."
    assert tasks.fit_text(text, 100) == text
    assert tasks.fit_text(text, 6) == "Alpha beta gamma. Delta epsilon!"
    assert tasks.fit_text(text, 2) == ""
    cut = tasks.fit_text(text, 16, tokenizer=tok)
    assert cut, tok.tokenize(text)
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 16 and cut[-1] in ".!?"


def test_errors():
    with pytest.raises(ValueError, match="unknown task"):
        make_example("summarise", 0)
    with pytest.raises(ValueError, match="tokenizer"):
        make_example("niah", 0, num_tokens=100)
    with pytest.raises(ValueError, match="split"):
        make_example("niah", 0, split="validation")
