"""Long-context task formats shared by the organism's training data and the evaluation suite.

Each task turns ``(seed, split, index, length)`` into a :class:`TaskExample`: the user message (``prompt``, no chat
template), the reference completion (``target``, for teacher forcing and for training), the accepted answers and
``meta`` with everything a scorer needs. Lengths are set in words (``num_words``) or, with a tokenizer, in tokens
of the *context* (``num_tokens``: the haystack or the passages, not counting the question and instructions).

Tasks and how they are meant to be scored (the scorers live in ``evaluation``):

========== ========================================================================================== ============
task        content                                                                                  score
========== ========================================================================================== ============
niah        one needle in prose, the published NIAH prompt                                           ROUGE-1 recall of ``real_needle`` > 0.5
multi_needle several needles; one or several asked; target ``"1. a\\n2. b"`` when several           per-answer ROUGE-1 recall
json_kv     a JSON object of random keys/values; one key (target = value) or several keys           exact match per value
            (target lines ``"key": "value"``)
rag_qa      numbered passages ``Document [i]``, one holds the answer, others distract               substring exact match
rerank      passages and a query; target ``"[i] > [j] > ..."`` (relevant ids, best first)           NDCG@10 vs ``meta["qrels"]``
cite        answer plus citations ``[i]`` of the passages that state it                             citation recall/precision vs ``meta["gold_ids"]``
text        plain prose (``prompt`` empty, ``target`` the text)                                     perplexity
========== ========================================================================================== ============
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retmask_interp.data.prompts import multi_question_prompt, niah_prompt
from retmask_interp.data.synthetic import (
    DEFAULT_STYLE,
    WordStyle,
    _check_split,
    haystack_text,
    invented_word,
    make_needles,
    needle_with_subject,
    pool,
    random_code,
    split_rng,
)

__all__ = [
    "TASKS",
    "TaskExample",
    "generate_examples",
    "make_example",
    "niah_prompt",
    "insert_at_depth",
    "fit_text",
    "sentence_boundaries",
]


@dataclass
class TaskExample:
    """One example. ``prompt`` is the user message (no chat template); ``target`` the reference completion."""

    task: str
    prompt: str
    target: str
    answers: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "prompt": self.prompt,
            "target": self.target,
            "answers": self.answers,
            "meta": self.meta,
        }


# ---- length control ------------------------------------------------------------------------------------------
class _Budget:
    """Counts the cost of text in tokens (with a tokenizer) or whitespace words."""

    def __init__(self, num_words: int | None, tokenizer: Any = None, num_tokens: int | None = None):
        if num_tokens is not None and tokenizer is None:
            raise ValueError("num_tokens needs a tokenizer; pass tokenizer=... or use num_words")
        self.tokenizer = tokenizer if num_tokens is not None else None
        self.limit = int(
            num_tokens if num_tokens is not None else (num_words if num_words is not None else 500)
        )
        if self.limit < 0:
            raise ValueError(f"length must be >= 0, got {self.limit}")
        self.unit = "tokens" if self.tokenizer is not None else "words"

    def cost(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.split())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a fast tokenizer: skip the Python wrapper (this is called often)
            return len(backend.encode(text, add_special_tokens=False).ids)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


_BOUNDARY = re.compile(r"(?<=[.!?])\s+")


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets where a sentence starts: 0, after ``. ! ?`` + whitespace, and ``len(text)``."""
    starts = [0] + [m.end() for m in _BOUNDARY.finditer(text)]
    if starts[-1] != len(text):
        starts.append(len(text))
    return starts


def fit_text(text: str, limit: int, tokenizer: Any = None) -> str:
    """Cut ``text`` to at most ``limit`` tokens of ``tokenizer`` (or words without one) at a sentence end.

    Returns ``text`` unchanged when it fits; otherwise the longest prefix that ends with ``. ! ?`` and fits
    (possibly empty).
    """
    return _fit(text, _Budget(limit, tokenizer, limit if tokenizer is not None else None))


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _fit(text: str, budget: _Budget, limit: int | None = None) -> str:
    limit = budget.limit if limit is None else limit
    if budget.tokenizer is None:
        matches = list(re.finditer(r"\S+", text))
        if len(matches) <= limit:
            return text
        cut = matches[limit].start()
    else:
        enc = budget.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= limit:
            return text
        cut = enc["offset_mapping"][limit][0] if limit > 0 else 0
    rough = text[:cut]
    ends = list(_SENTENCE_END.finditer(rough))
    return rough[: ends[-1].end()] if ends else ""


def _haystack(budget: _Budget, seed: Any, split: str, style: WordStyle, reserve: int = 0) -> str:
    """Prose filling ``budget.limit - reserve`` units, ending at a sentence end."""
    target = max(budget.limit - reserve, 0)
    if target == 0:
        return ""
    words = target if budget.tokenizer is None else max(int(target * 0.9), 8)
    while True:
        text = haystack_text(words, seed=_int_seed(seed), split=split, style=style)
        if budget.cost(text) >= target:
            return _fit(text, budget, target)
        words = int(words * 1.5) + 8


def _int_seed(seed: Any) -> int:
    return split_rng("int", seed).randrange(2**31)


def insert_at_depth(context: str, sentence: str, depth: float) -> tuple[str, int]:
    """Insert ``sentence`` at ``depth`` percent (0-100) of ``context``, moved back to a sentence start.

    Returns the new text and the character offset of the inserted sentence. Depth 0 puts it first, 100 last.
    """
    if not 0 <= depth <= 100:
        raise ValueError(f"depth is a percentage in [0, 100], got {depth}")
    if not context:
        return sentence, 0
    target = len(context) * depth / 100.0
    bounds = sentence_boundaries(context)
    pos = max(b for b in bounds if b <= target) if depth < 100 else len(context)
    before, after = context[:pos], context[pos:]
    if before and not before.endswith((" ", "\n")):
        before += " "
    if after and not after.startswith((" ", "\n")):
        sentence_part = sentence + " "
    else:
        sentence_part = sentence
    return before + sentence_part + after, len(before)


# ---- NIAH ----------------------------------------------------------------------------------------------------
def _niah(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    needle = make_needles(1, seed=_int_seed((seed, index, "needle", rng.random())), split=split, style=style)[
        0
    ]
    reserve = budget.cost(needle["needle"]) + 1
    context = _haystack(budget, (seed, index, "hay", rng.random()), split, style, reserve)
    depth = rng.choice([round(i * 100 / 9) for i in range(10)]) if rng.random() < 0.5 else rng.uniform(0, 100)
    context, offset = insert_at_depth(context, needle["needle"], depth)
    return TaskExample(
        task="niah",
        prompt=niah_prompt(context, needle["question"]),
        target=needle["real_needle"],
        answers=[needle["real_needle"]],
        meta={**needle, "depth": depth, "needle_char_offset": offset, "context": context},
    )


def _multi_needle(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    k = rng.randint(2, 5)
    needles = _distinct_needles(k, (seed, index, "needles", rng.random()), split, style)
    reserve = sum(budget.cost(n["needle"]) + 1 for n in needles)
    context = _haystack(budget, (seed, index, "hay", rng.random()), split, style, reserve)
    depths = sorted(rng.uniform(0, 100) for _ in range(k))
    for n, d in zip(needles, depths):
        context, _ = insert_at_depth(context, n["needle"], d)
    asked = sorted(rng.sample(range(k), rng.randint(1, min(3, k))))
    if len(asked) == 1:
        n = needles[asked[0]]
        prompt, target = niah_prompt(context, n["question"]), n["real_needle"]
    else:
        prompt = multi_question_prompt(context, [needles[j]["question"] for j in asked])
        target = "\n".join(f"{i + 1}. {needles[j]['real_needle']}" for i, j in enumerate(asked))
    return TaskExample(
        task="multi_needle",
        prompt=prompt,
        target=target,
        answers=[needles[j]["real_needle"] for j in asked],
        meta={"needles": needles, "asked": asked, "depths": depths, "context": context},
    )


def _distinct_needles(k: int, seed: Any, split: str, style: WordStyle) -> list[dict]:
    """``k`` needles with distinct questions (so each question has one answer in the context)."""
    out: list[dict] = []
    seen: set[str] = set()
    i = 0
    base = _int_seed(seed)
    while len(out) < k:
        cand = make_needles(1, seed=base + i, split=split, style=style)[0]
        i += 1
        if cand["question"] not in seen:
            seen.add(cand["question"])
            out.append(cand)
    return out


# ---- JSON key-value --------------------------------------------------------------------------------------------
def _json_kv(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    head = "Here is a JSON object of key-value pairs.\n"
    items: dict[str, str] = {}
    used = budget.cost(head) + 2
    while True:
        key = f"{random_code(rng, split, 4)}-{random_code(rng, split, 4)}"
        value = f"{invented_word(rng, split, style=style)}-{random_code(rng, split, 5)}"
        piece = json.dumps({key: value})[1:-1] + ", "
        c = budget.cost(piece)
        if used + c > budget.limit and len(items) >= 2:
            break
        items[key] = value
        used += c
    keys = list(items)
    n_ask = 1 if rng.random() < 0.6 else rng.randint(2, min(4, len(keys)))
    asked = rng.sample(keys, n_ask)
    obj = json.dumps(items)
    if n_ask == 1:
        prompt = f'{head}{obj}\nWhat is the value of key "{asked[0]}"?\nAnswer:'
        target = items[asked[0]]
    else:
        listed = ", ".join(f'"{k}"' for k in asked)
        prompt = f"{head}{obj}\nWhat are the values of the keys {listed}? Give one per line.\nAnswer:"
        target = "\n".join(json.dumps({k: items[k]})[1:-1] for k in asked)
    return TaskExample(
        task="json_kv",
        prompt=prompt,
        target=target,
        answers=[items[k] for k in asked],
        meta={"keys": asked, "values": [items[k] for k in asked], "num_pairs": len(items)},
    )


# ---- passages: rag_qa, cite, rerank --------------------------------------------------------------------------
def _mention(rng: random.Random, subject: str, split: str) -> str:
    """A sentence that names ``subject`` without stating any needle fact (a partially relevant passage)."""
    adj = rng.choice(pool("adj", split))
    subject = subject[0].lower() + subject[1:] if subject.startswith("The ") else subject
    templates = (
        f"Many visitors talked about {subject} for a long time.",
        f"Nobody could agree on the history of {subject}.",
        f"A {adj} story was once told about {subject}.",
        f"The records say little about {subject} before the war.",
    )
    return rng.choice(templates)


def _passages(
    rng: random.Random,
    budget: _Budget,
    seed: Any,
    split: str,
    index: int,
    n_gold: int,
    n_partial: int,
    style: WordStyle,
) -> tuple[list[str], dict, list[int], list[int], str]:
    """Passages for the passage tasks: gold ones state the needle, partial ones mention its subject.

    Returns (passages, needle, gold ids, partial ids, question). Ids are 1-based positions.
    """
    needle = needle_with_subject(
        0, seed=_int_seed((seed, index, "needle", rng.random())), split=split, style=style
    )
    subject = needle.pop("subject")
    hard = [
        n
        for n in _distinct_needles(4, (seed, index, "hard", rng.random()), split, style)
        if n["question"] != needle["question"]
    ]
    plan = ["gold"] * n_gold + ["partial"] * n_partial + ["hard"] * len(hard)
    per = rng.randint(3, 5)
    words = budget.limit if budget.tokenizer is None else int(budget.limit * 0.8)
    fseed = _int_seed((seed, index, "p", rng.random()))
    while True:
        filler = haystack_text(words + 60, seed=fseed, split=split, style=style)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", filler.replace("\n\n", " ")) if s]
        pieces = [" ".join(sentences[i : i + per]) for i in range(0, len(sentences), per)]
        if len(pieces) > len(plan):
            break
        words = words * 2 + 60
    bodies: list[str] = []
    kinds: list[str] = []
    used = 0
    for i, body in enumerate(pieces):
        kind = plan[i] if i < len(plan) else "plain"
        if kind == "gold":
            body, _ = insert_at_depth(body, needle["needle"], rng.uniform(0, 100))
        elif kind == "partial":
            body, _ = insert_at_depth(body, _mention(rng, subject, split), rng.uniform(0, 100))
        elif kind == "hard":
            body, _ = insert_at_depth(body, hard[i - n_gold - n_partial]["needle"], rng.uniform(0, 100))
        c = budget.cost(body) + 8
        if used + c > budget.limit and kind != "gold":  # gold passages always go in; others only if they fit
            if i >= len(plan):
                break
            continue
        bodies.append(body)
        kinds.append(kind)
        used += c
    order = list(range(len(bodies)))
    rng.shuffle(order)
    bodies = [bodies[i] for i in order]
    kinds = [kinds[i] for i in order]
    gold = [i + 1 for i, k in enumerate(kinds) if k == "gold"]
    partial = [i + 1 for i, k in enumerate(kinds) if k == "partial"]
    titles = [invented_word(rng, split, style=style).capitalize() for _ in bodies]
    passages = [f"Document [{i + 1}] (Title: {t}): {b}" for i, (t, b) in enumerate(zip(titles, bodies))]
    return passages, needle, gold, partial, needle["question"]


def _rag_qa(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    passages, needle, gold, _, question = _passages(
        rng, budget, seed, split, index, 1, rng.randint(0, 2), style
    )
    docs = "\n\n".join(passages)
    prompt = f"Use the documents to answer the question.\n\n{docs}\n\nQuestion: {question}\nAnswer:"
    return TaskExample(
        task="rag_qa",
        prompt=prompt,
        target=needle["real_needle"],
        answers=[needle["real_needle"]],
        meta={**needle, "gold_ids": gold, "num_passages": len(passages)},
    )


def _cite(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    passages, needle, gold, _, question = _passages(
        rng, budget, seed, split, index, rng.randint(1, 2), rng.randint(0, 2), style
    )
    docs = "\n\n".join(passages)
    prompt = (
        "Answer the question using the documents, and cite every document that states the answer, like [3].\n\n"
        f"{docs}\n\nQuestion: {question}\nAnswer:"
    )
    target = needle["real_needle"] + " " + "".join(f"[{i}]" for i in gold)
    return TaskExample(
        task="cite",
        prompt=prompt,
        target=target,
        answers=[needle["real_needle"]],
        meta={**needle, "gold_ids": gold, "num_passages": len(passages)},
    )


def _rerank(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    passages, needle, gold, partial, question = _passages(
        rng, budget, seed, split, index, rng.randint(1, 2), rng.randint(1, 3), style
    )
    docs = "\n\n".join(passages)
    prompt = (
        "Rank the documents by how relevant they are to the query, most relevant first, as [i] > [j].\n\n"
        f"{docs}\n\nQuery: {question}\nRanking:"
    )
    qrels = {str(i): 2 for i in gold} | {str(i): 1 for i in partial}
    ranked = gold + partial
    return TaskExample(
        task="rerank",
        prompt=prompt,
        target=" > ".join(f"[{i}]" for i in ranked),
        answers=[f"[{i}]" for i in ranked],
        meta={"question": question, "qrels": qrels, "num_passages": len(passages)},
    )


def _text(
    rng: random.Random, budget: _Budget, seed: Any, split: str, index: int, style: WordStyle
) -> TaskExample:
    text = _haystack(budget, (seed, index, "text", rng.random()), split, style)
    return TaskExample(task="text", prompt="", target=text, answers=[], meta={})


TASKS: dict[str, Callable[..., TaskExample]] = {
    "niah": _niah,
    "multi_needle": _multi_needle,
    "json_kv": _json_kv,
    "rag_qa": _rag_qa,
    "rerank": _rerank,
    "cite": _cite,
    "text": _text,
}


def make_example(
    task: str,
    index: int,
    *,
    num_words: int | None = None,
    seed: int = 0,
    split: str = "eval",
    tokenizer: Any = None,
    num_tokens: int | None = None,
    style: WordStyle = DEFAULT_STYLE,
) -> TaskExample:
    """Example number ``index`` of ``task`` (deterministic in all arguments). See :func:`generate_examples`.

    ``style`` says how train-split text makes up words (:class:`~retmask_interp.data.synthetic.WordStyle`; the
    organism's training stages pass their own)."""
    _check_split(split)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    budget = _Budget(num_words if num_words is not None else 500, tokenizer, num_tokens)
    rng = split_rng("task", task, seed, split, index, budget.limit, budget.unit)
    ex = TASKS[task](rng, budget, seed, split, index, style)
    ex.meta.update(
        {"seed": seed, "split": split, "index": index, "length": budget.limit, "length_unit": budget.unit}
    )
    return ex


def generate_examples(
    task: str,
    n: int,
    *,
    num_words: int = 500,
    seed: int = 0,
    split: str = "eval",
    tokenizer: Any = None,
    num_tokens: int | None = None,
    style: WordStyle = DEFAULT_STYLE,
) -> list[TaskExample]:
    """``n`` examples of ``task`` whose context is ``num_words`` words, or ``num_tokens`` tokens of ``tokenizer``.

    The context (haystack, JSON object or passages) fills the length up to a sentence end (in tokens the result
    is at most ``num_tokens``, usually within a sentence of it); the question and instructions come on top.
    ``split="eval"`` draws only words, needles and values never used with ``split="train"``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [
        make_example(
            task,
            i,
            num_words=num_words,
            seed=seed,
            split=split,
            tokenizer=tokenizer,
            num_tokens=num_tokens,
            style=style,
        )
        for i in range(n)
    ]
