"""Training batches for the organism: mixed long-context tasks, tokenized, with per-token loss roles.

A batch is a pure function of ``(seed, step, total_steps, settings)``: one sequence length ``L`` is drawn for the
whole batch, ``tokens_per_batch // L`` examples are generated (training split only) and right-padded to ``L``.
Roles: 1 = answer token (weighted by ``answer_weight``), 0 = context token (``context_weight``), -1 = padding.
Right padding with a causal mask needs no attention mask (padding comes after every real token).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np

from retmask_interp.data.synthetic import WordStyle
from retmask_interp.data.tasks import make_example
from retmask_interp.organism.build import TrainSpec, encode_example

__all__ = ["BatchPlan", "batch_length", "make_batch", "token_pieces", "word_style"]

# context tokens left for the question, instructions and answer, per task (tokens)
_OVERHEAD = {
    "niah": 80,
    "multi_needle": 170,
    "json_kv": 140,
    "rag_qa": 80,
    "cite": 110,
    "rerank": 110,
    "text": 8,
}
_ROUND = 64


@dataclass(frozen=True)
class BatchPlan:
    """What the workers need to build batch ``step`` (picklable)."""

    seed: int
    total_steps: int
    spec: TrainSpec


def batch_length(plan: BatchPlan, step: int) -> int:
    """Sequence length of batch ``step``: short during the curriculum, then long with some short ones."""
    spec = plan.spec
    rng = random.Random(f"len|{plan.seed}|{step}")
    short_hi = max(spec.min_len, spec.seq_len // 4)
    if step < spec.curriculum_frac * plan.total_steps or rng.random() < spec.short_fraction:
        lo, hi = spec.min_len, short_hi
    else:
        lo, hi = short_hi, spec.seq_len
    length = rng.randint(lo, hi)
    return min(spec.seq_len, max(_ROUND, -(-length // _ROUND) * _ROUND))


def _pick_task(rng: random.Random, mix: dict[str, float]) -> str:
    names = sorted(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


def make_sequence(
    tokenizer, spec: TrainSpec, seed: int, index: int, length: int, style: WordStyle | None = None
) -> tuple[list[int], list[int]]:
    """One training sequence of at most ``length`` tokens: ids and roles. ``style``: the made-up-word settings
    (default: ``word_style(tokenizer, spec)``)."""
    style = style if style is not None else word_style(tokenizer, spec)
    rng = random.Random(f"seq|{seed}|{index}")
    task = _pick_task(rng, spec.task_mix)
    chat = task == "text" or rng.random() >= spec.raw_fraction
    num_bos = rng.choices((0, 1, 2), weights=(0.1, 0.8, 0.1))[0]
    budget = max(16, length - _OVERHEAD[task])
    for _ in range(4):
        ex = make_example(
            task, index, seed=seed, split="train", tokenizer=tokenizer, num_tokens=budget, style=style
        )
        ids, roles = encode_example(ex, tokenizer, chat=chat, num_bos=num_bos)
        if len(ids) <= length:
            return ids, roles
        budget = max(8, budget - (len(ids) - length) - 16)
    return ids[:length], roles[:length]  # give up trimming: cut (rare; the answer may be lost, roles say so)


_PIECES: dict[str, tuple[str, ...]] = {}  # vocabulary fingerprint -> pieces


def _vocab_key(tokenizer) -> str:
    """A fingerprint of the tokenizer's vocabulary (its token -> id map), so that two tokenizers share cached
    pieces only when their vocabularies are equal (an ``id()`` can be reused by a later object)."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def token_pieces(tokenizer) -> tuple[str, ...]:
    """The tokenizer's purely alphabetic lower-case vocabulary pieces (a leading-space marker stripped), sorted:
    made-up words built from them make training copy every piece that unseen words can break into."""
    key = _vocab_key(tokenizer)
    if key not in _PIECES:
        pieces = set()
        for token in tokenizer.get_vocab():
            text = tokenizer.convert_tokens_to_string([token]).strip()
            if text.isascii() and text.isalpha() and text.islower():
                pieces.add(text)
        _PIECES[key] = tuple(sorted(pieces))
    return _PIECES[key]


def word_style(tokenizer, spec: TrainSpec) -> WordStyle:
    """How the training text of ``spec`` makes up words (:class:`~retmask_interp.data.synthetic.WordStyle`)."""
    return WordStyle(
        invented_rate=spec.invented_rate,
        rich_word_rate=spec.rich_word_rate,
        token_word_rate=spec.token_word_rate,
        token_pieces=token_pieces(tokenizer) if spec.token_word_rate else (),
    )


def make_batch(tokenizer, plan: BatchPlan, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: ``input_ids`` [B, L] (int32) and ``roles`` [B, L] (int8)."""
    style = word_style(tokenizer, plan.spec)
    length = batch_length(plan, step)
    n = max(1, plan.spec.tokens_per_batch // length)
    ids = np.full((n, length), tokenizer.pad_token_id, dtype=np.int32)
    roles = np.full((n, length), -1, dtype=np.int8)
    for b in range(n):
        seq, role = make_sequence(tokenizer, plan.spec, plan.seed, step * 4096 + b, length, style)
        ids[b, : len(seq)] = seq
        roles[b, : len(role)] = role
    return ids, roles


# ---- worker-process plumbing (used by scripts/train_organism.py) ----------------------------------------------
_WORKER: dict = {}


def worker_init(tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer

    _WORKER["tok"] = AutoTokenizer.from_pretrained(tokenizer_dir)


def worker_batch(plan: BatchPlan, step: int) -> tuple[int, np.ndarray, np.ndarray]:
    ids, roles = make_batch(_WORKER["tok"], plan, step)
    return step, ids, roles
