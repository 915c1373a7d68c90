"""Detection prompts (data.niah) and task prompts (data.tasks) come from the one template in data.prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from retmask_interp.data import prompts
from retmask_interp.data.niah import build_sample
from retmask_interp.data.synthetic import haystack_text, make_needles
from retmask_interp.data.tasks import make_example

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "retmask_interp" / "organism" / "tokenizer"


@pytest.fixture(scope="module")
def tok():
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip("the organism tokenizer is not in this checkout")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def _detection_prompt(tok) -> tuple[str, dict]:
    needle = make_needles(1, seed=2)[0]
    sample = build_sample(tok, haystack_text(400, seed=1), needle, 200, 50, "qa")
    return tok.decode(sample.input_ids, skip_special_tokens=True), needle


def test_detection_and_task_prompts_share_the_template(tok, monkeypatch):
    text, needle = _detection_prompt(tok)
    head, tail = prompts.prompt_parts(needle["question"])
    assert text.startswith(head) and text.endswith(tail)
    ex = make_example("niah", 0, num_words=120, seed=1)
    assert ex.prompt == prompts.niah_prompt(ex.meta["context"], ex.meta["question"])
    # change the template: both kinds of prompt follow it (no second copy left anywhere)
    new = "<doc>{context}</doc>\nQ: {question}\nA:"
    monkeypatch.setattr(prompts, "WU_PROMPT_TEMPLATE", new)
    text, needle = _detection_prompt(tok)
    assert text.startswith("<doc>") and text.endswith(f"</doc>\nQ: {needle['question']}\nA:")
    ex = make_example("niah", 0, num_words=120, seed=1)
    assert ex.prompt.startswith("<doc>") and ex.prompt.endswith(f"\nQ: {ex.meta['question']}\nA:")


def test_multi_question_prompt():
    got = prompts.multi_question_prompt("ctx", ["a?", "b?"])
    assert got == "<book>ctx</book>\nBased on the content of the book, answer each question.\n" + (
        "Question 1: a?\nQuestion 2: b?\nAnswer:"
    )
