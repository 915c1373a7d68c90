"""Training batches for the organism: mixed long-context tasks, tokenized, with per-token loss roles.

A batch is a pure function of ``(seed, step, total_steps, settings)``: one sequence length ``L`` is drawn for the
whole batch, ``tokens_per_batch // L`` examples are generated (training split only) and right-padded to ``L``.
Roles: 1 = answer token (weighted by ``answer_weight``), 0 = context token (``context_weight``), -1 = padding.
Right padding with a causal mask needs no attention mask (padding comes after every real token).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from retmask_interp.data import synthetic
from retmask_interp.data.tasks import make_example
from retmask_interp.organism.build import TrainSpec, encode_example

__all__ = ["BatchPlan", "batch_length", "make_batch"]

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
    tokenizer, spec: TrainSpec, seed: int, index: int, length: int
) -> tuple[list[int], list[int]]:
    """One training sequence of at most ``length`` tokens: ids and roles."""
    rng = random.Random(f"seq|{seed}|{index}")
    task = _pick_task(rng, spec.task_mix)
    chat = task == "text" or rng.random() >= spec.raw_fraction
    num_bos = rng.choices((0, 1, 2), weights=(0.1, 0.8, 0.1))[0]
    budget = max(16, length - _OVERHEAD[task])
    for _ in range(4):
        ex = make_example(task, index, seed=seed, split="train", tokenizer=tokenizer, num_tokens=budget)
        ids, roles = encode_example(ex, tokenizer, chat=chat, num_bos=num_bos)
        if len(ids) <= length:
            return ids, roles
        budget = max(8, budget - (len(ids) - length) - 16)
    return ids[:length], roles[:length]  # give up trimming: cut (rare; the answer may be lost, roles say so)


_PIECES: dict[int, tuple[str, ...]] = {}


def token_pieces(tokenizer) -> tuple[str, ...]:
    """The tokenizer's purely alphabetic lower-case vocabulary pieces (a leading-space marker stripped), sorted:
    made-up words built from them make training copy every piece that unseen words can break into."""
    key = id(tokenizer)
    if key not in _PIECES:
        pieces = set()
        for token in tokenizer.get_vocab():
            text = tokenizer.convert_tokens_to_string([token]).strip()
            if text.isascii() and text.isalpha() and text.islower():
                pieces.add(text)
        _PIECES[key] = tuple(sorted(pieces))
    return _PIECES[key]


def make_batch(tokenizer, plan: BatchPlan, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: ``input_ids`` [B, L] (int32) and ``roles`` [B, L] (int8)."""
    names = ("TRAIN_INVENTED_RATE", "TRAIN_RICH_WORD_RATE", "TRAIN_TOKEN_WORD_RATE", "TRAIN_TOKEN_PIECES")
    saved = [getattr(synthetic, n) for n in names]
    synthetic.TRAIN_INVENTED_RATE = plan.spec.invented_rate
    synthetic.TRAIN_RICH_WORD_RATE = plan.spec.rich_word_rate
    synthetic.TRAIN_TOKEN_WORD_RATE = plan.spec.token_word_rate
    synthetic.TRAIN_TOKEN_PIECES = token_pieces(tokenizer) if plan.spec.token_word_rate else ()
    try:
        length = batch_length(plan, step)
        n = max(1, plan.spec.tokens_per_batch // length)
        ids = np.full((n, length), tokenizer.pad_token_id, dtype=np.int32)
        roles = np.full((n, length), -1, dtype=np.int8)
        for b in range(n):
            seq, role = make_sequence(tokenizer, plan.spec, plan.seed, step * 4096 + b, length)
            ids[b, : len(seq)] = seq
            roles[b, : len(role)] = role
    finally:
        for n, v in zip(names, saved):
            setattr(synthetic, n, v)
    return ids, roles


# ---- worker-process plumbing (used by scripts/train_organism.py) ----------------------------------------------
_WORKER: dict = {}


def worker_init(tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer

    _WORKER["tok"] = AutoTokenizer.from_pretrained(tokenizer_dir)


def worker_batch(plan: BatchPlan, step: int) -> tuple[int, np.ndarray, np.ndarray]:
    ids, roles = make_batch(_WORKER["tok"], plan, step)
    return step, ids, roles
