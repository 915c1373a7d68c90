"""RetMask preference pairs: one response from the normal model, one with the retrieval heads masked.

For every prompt the normal model and the masked model (``retmask_interp.interventions.masking.generate``, ``zero`` mode by
default: the heads' slices of the output projection are removed) each sample one response with the same sampling
settings (paper defaults: temperature 0.6, top-p 1.0, at most ``max_new_tokens`` new tokens). ``chosen`` is the
normal response, ``rejected`` the masked one. Pairs with an empty side or identical sides (after stripping
whitespace) are dropped and counted by reason.

Seeds and batches. Prompts are sorted by length (longest first, then by index) and cut into batches of
``batch_size``; prompt ``i`` is sampled by ``masking.generate`` with its own generator seeded ``sample_seed(seed,
i)``, on *both* sides: the normal and the masked model draw the same random numbers (common random numbers), so
where masking leaves the next-token distribution unchanged the two responses agree, and they part where the masked
heads matter. A prompt's draws depend only on the run seed and its index, not on the batch size or the other
prompts, so an interrupted run resumed with another ``batch_size`` or more prompts reproduces an uninterrupted one
(same prompts, seed and device; up to the last bits of padded batched arithmetic). ``temperature=0`` is greedy.

Files. ``pairs.jsonl`` holds the kept pairs, ``pairs.dropped.jsonl`` the dropped ones with their reason, and
``pairs.stats.json`` the ``PairStats`` (written last: its presence marks a finished run). Records::

    {"prompt": ..., "chosen": ..., "rejected": ...,          # read by trl.DPOTrainer as they are
     "prompt_index": 17, "prompt_id": ..., "seed": 0, "heads_hash": "3f2a...", "mode": "zero",
     "settings": "9c1e...",                                 # hash of sampling settings and format
     "run": {"temperature": 0.6, "top_p": 1.0, "max_new_tokens": 2048, "format": "conversational",
             "seeding": "per-prompt", "model": ..., "revision": ..., "dtype": ..., "model_hash": ...},  # by name
     "chosen_tokens": 312, "rejected_tokens": 280, "chosen_finished": true, "rejected_finished": false,
     "sample_seed": ...}                                    # the prompt's generator seed; (dropped: + "reason")

Format. ``conversational`` (the default when the tokenizer has a chat template): ``prompt`` is
``[{"role": "user", "content": text}]`` and ``chosen`` / ``rejected`` are ``[{"role": "assistant", "content":
response}]``; TRL renders them with the same template that was used for sampling. ``plain`` (no chat template, or
forced): all three are strings; the prompt is tokenised exactly as TRL will tokenise it (``tokenizer(prompt)``).

Base models. A base model has no chat template, and a bare instruction makes it continue the instruction rather than
answer it. ``template`` writes each prompt into a text such as ``"Question: {prompt}\nAnswer:"`` (plain pairs
only; the pairs file holds the written prompt, so DPO trains on what was sampled), and ``stop`` ends a response at
the first of some strings (``"\nQuestion:"``: such a model goes on writing new questions and answers). A cut
response counts as finished and its token count covers the text kept. Neither is recorded when left at its default,
so files made before they existed resume as before.

Large runs: export the masked checkpoint (``retmask export-masked``), sample both checkpoints with a fast engine
(vLLM), and write the pairs with ``pairs_from_responses``, which applies the same filtering (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from retmask_interp.core.io import (
    InputError,
    append_jsonl,
    atomic_write_json,
    read_jsonl,
    refuse_overwrite,
    settings_diff,
)
from retmask_interp.core.locks import run_lock
from retmask_interp.core.options import option
from retmask_interp.core.ranges import NONNEGATIVE, POSITIVE_INT, SEED, TOP_P, check_fields

__all__ = [
    "PairsConfig",
    "PairStats",
    "PairPaths",
    "Prompt",
    "builtin_prompts",
    "task_prompts",
    "heads_hash",
    "load_prompts",
    "make_pairs",
    "pair_paths",
    "pair_records",
    "pairs_from_responses",
    "plain_qa",
    "apply_template",
    "cut_at_stop",
    "resolve_heads",
    "sample_seed",
]

log = logging.getLogger(__name__)

Head = tuple[int, int]
PLAIN_QA = "Question: {prompt}\nAnswer:"
QA_STOP = ("\nQuestion:",)  # under PLAIN_QA a base model answers, then writes the next question itself


def plain_qa(text: str) -> str:
    """A prompt for a base model (no chat template): ``Question: {text}\nAnswer:``, the form in which the
    long-context suite asks its questions (so training prompts and test prompts end alike)."""
    return apply_template(text, PLAIN_QA)


DROP_REASONS = ("empty_chosen", "empty_rejected", "empty_both", "identical")


PROMPT_SLOT = "{prompt}"


def check_template(template: str, stop: Sequence[str] = ()) -> None:
    """Refuse a prompt template without exactly one ``{prompt}`` and an empty stop string."""
    if template.count(PROMPT_SLOT) != 1:
        raise InputError(
            f"prompt template {template!r} must hold '{PROMPT_SLOT}' exactly once, where the prompt goes "
            "(e.g. 'Question: {prompt}\\nAnswer:')"
        )
    if any(not isinstance(x, str) or not x for x in stop):
        raise InputError(f"stop strings must be non-empty strings, got {list(stop)!r}")


def extra_settings(template: str, stop: Sequence[str]) -> dict[str, Any]:
    """The template and stop strings as recorded settings: only what differs from the defaults."""
    out: dict[str, Any] = {}
    if template != PROMPT_SLOT:
        out["template"] = template
    if stop:
        out["stop"] = list(stop)
    return out


def apply_template(text: str, template: str = PROMPT_SLOT) -> str:
    """``text`` written into ``template`` at its ``{prompt}`` (braces elsewhere in ``text`` are left alone)."""
    return template.replace(PROMPT_SLOT, text, 1)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to, without, the first occurrence of any of ``stop``, and whether one occurred."""
    hits = [i for i in (text.find(x) for x in stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


@dataclass
class PairsConfig:
    """Sampling settings, identical for both sides of every pair."""

    temperature: float = option(0.6, "sampling temperature, 0 = greedy (paper)", range=NONNEGATIVE)
    top_p: float = option(1.0, "nucleus sampling (paper)", range=TOP_P)
    max_new_tokens: int = option(2048, "longest response in tokens (the paper's cap)", range=POSITIVE_INT)
    batch_size: int = option(8, "prompts per generate call (left-padded)", range=POSITIVE_INT)
    # prompt i samples with its own generator seeded sample_seed(seed, i), on both sides: its responses do not
    # depend on the batch size or on the other prompts (a resume with another batch size equals a clean run)
    seed: int = option(
        0, "run seed (prompt i samples with its own generator from it, on both sides)", range=SEED
    )
    mode: str = option("zero", "masking mode of the rejected side (interventions.masking.generate)")
    format: str = option(
        "auto", "pair format: conversational iff the tokenizer has a chat template (auto), or as given",
        choices=("auto", "conversational", "plain"),
    )  # fmt: skip
    template: str = option(
        PROMPT_SLOT, "plain pairs: the text a prompt is written into, '{prompt}' where it goes (base models: "
        "'Question: {prompt}\\nAnswer:')",
    )  # fmt: skip
    stop: tuple[str, ...] = option(
        (), "strings that end a response: cut before the first, and the response counts as finished"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        check_template(self.template, self.stop)

    def extra_settings(self) -> dict[str, Any]:
        """``template`` and ``stop`` where they differ from the defaults (recorded with the sampling settings)."""
        return extra_settings(self.template, self.stop)


@dataclass(frozen=True)
class Prompt:
    """A prompt and its position in the prompt set (``index`` keys resumption and the sampling noise)."""

    index: int
    text: str
    id: Any = None


@dataclass(frozen=True)
class PairPaths:
    pairs: Path
    dropped: Path
    stats: Path


@dataclass
class PairStats:
    """Counts of one pairs run. ``dropped`` maps a reason (``DROP_REASONS``) to a count; ``truncated_*`` count
    kept responses that hit ``max_new_tokens`` without an end-of-sequence token (unknown for external responses)."""

    total_prompts: int
    kept: int
    dropped: dict[str, int]
    heads: list[list[int]]
    heads_hash: str
    mode: str
    seed: int | None
    format: str
    sampling: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    truncated_chosen: int | None = None
    truncated_rejected: int | None = None
    pairs_path: str = ""
    dropped_path: str = ""

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"num_dropped": self.num_dropped}


# -- prompts -----------------------------------------------------------------------------------------------------
def _first_user_turn(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a conversation: take the first user turn
        for msg in value:
            if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str):
                return msg["content"]
    raise InputError(
        f"{where}: expected a prompt string or a list of chat messages with a user turn, got {value!r:.80}"
    )


def _as_prompts(prompts) -> list[Prompt]:
    if isinstance(prompts, list) and prompts and all(isinstance(p, Prompt) for p in prompts):
        return prompts
    return load_prompts(prompts)


def load_prompts(
    source: str | Path | Sequence[str | dict | Prompt] | Any,
    *,
    column: str = "prompt",
    id_column: str = "id",
    limit: int | None = None,
) -> list[Prompt]:
    """Prompts from a JSONL file, a ``datasets.Dataset``, or a list of strings / dicts / ``Prompt``.

    ``column`` names the prompt field; its value may also be a chat (list of messages): the first user turn is
    used. ``id_column`` is kept as ``Prompt.id`` when present. ``limit`` keeps the first prompts only.
    """
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InputError(f"limit must be >= 1 (or None for every prompt), got {limit} (CLI: --limit)")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        rows: Iterable = read_jsonl(path)
        where = str(path)
    else:
        rows, where = source, "prompts"
    out: list[Prompt] = []
    for i, row in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        if isinstance(row, Prompt):
            out.append(row)
            continue
        if isinstance(row, str):
            text, pid = row, None
        elif isinstance(row, dict):
            if column not in row:
                raise InputError(
                    f"{where}: row {i} has no {column!r} field (fields: {sorted(row)}); pass the prompt column's "
                    "name (CLI: --prompt-column)"
                )
            text, pid = _first_user_turn(row[column], f"{where}: row {i}"), row.get(id_column)
        else:
            raise InputError(f"{where}: row {i} is a {type(row).__name__}; expected a string or an object")
        if not text.strip():
            raise InputError(f"{where}: row {i} has an empty prompt")
        out.append(Prompt(i, text, pid))
    if not out:
        raise InputError(f"{where}: no prompts")
    return out


_PROMPT_TEMPLATES = (
    "Write a short story about a {adj} {animal} who loves {activity}.",
    "Describe a {adj} {noun} in three sentences.",
    "Give me three tips for a {profession} who is new to {activity}.",
    "Explain to a child why a {animal} might hide in a {noun}.",
    "Write a short poem about {color} {substance}.",
    "What should I pack for a day of {activity} near a {noun}?",
    "Tell me a story about a {profession} and a {adj} {animal}.",
    "List three things you could make from {material} and {substance}.",
    "Why would a {profession} keep a {noun} made of {material}?",
    "Write a friendly letter from a {animal} to a {profession}.",
    "How do you take care of a {adj} {noun}?",
    "Summarise a day in the life of a {profession} in a {adj} {noun}.",
)


def builtin_prompts(n: int, *, seed: int = 0, split: str = "train") -> list[str]:
    """``n`` short general chat prompts (no long documents), a pure function of ``(n, seed, split)``.

    Words come from ``retmask_interp.synthetic`` pools of ``split``; training prompts use ``"train"``.
    """
    from retmask_interp.data.synthetic import pool, split_rng

    if n < 0:
        raise ValueError("n must be >= 0")
    rng = split_rng("builtin-prompts", seed, split)
    kinds = ("adj", "animal", "activity", "noun", "profession", "color", "substance", "material")
    words = {k: pool(k, split) for k in kinds}
    return [
        rng.choice(_PROMPT_TEMPLATES).format(**{k: rng.choice(v) for k, v in words.items()}) for _ in range(n)
    ]


def task_prompts(
    n: int,
    *,
    tokenizer=None,
    num_tokens: int = 320,
    tasks: Sequence[str] = ("niah", "multi_needle", "json_kv", "rag_qa", "cite"),
    seed: int = 0,
    split: str = "train",
) -> list[str]:
    """``n`` long-context task prompts (a document and a question, ``retmask_interp.tasks``), cycling through
    ``tasks``; about ``num_tokens`` tokens each with ``tokenizer`` (else words). A pure function of its arguments.

    For a model that cannot hold a general conversation (the organism), these are the prompts where the normal
    and the masked model differ in the way RetMask is about: one copies from the context, the other cannot.
    """
    from retmask_interp.data.tasks import make_example

    if n < 0:
        raise ValueError("n must be >= 0")
    if not tasks:
        raise ValueError("tasks must name at least one task")
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        if tokenizer is not None:
            ex = make_example(task, i, seed=seed, split=split, tokenizer=tokenizer, num_tokens=num_tokens)
        else:
            ex = make_example(task, i, seed=seed, split=split, num_words=num_tokens)
        out.append(ex.prompt)
    return out


# -- heads and seeds ---------------------------------------------------------------------------------------------
def resolve_heads(
    heads: Iterable[Sequence[int]] | None = None,
    *,
    head_file: str | Path | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
) -> list[Head]:
    """Heads given as a list of ``(layer, head)``, or chosen from a head file (any format that
    ``heads.formats.load_any_head_list`` reads) by ``top_k`` and/or ``threshold``."""
    if (heads is None) == (head_file is None):
        raise ValueError("give either a list of heads or a head file (with top_k and/or threshold)")
    if head_file is not None:
        from retmask_interp.heads.formats import load_any_head_list

        return load_any_head_list(head_file).select(top_k=top_k, threshold=threshold)
    assert heads is not None  # exactly one of heads and head_file is given (checked above)
    return sorted({(int(layer), int(head)) for layer, head in heads})


def heads_hash(heads: Iterable[Sequence[int]], mode: str = "zero") -> str:
    """12 hex digits identifying a masked head set and mode (order of ``heads`` does not matter)."""
    canon = json.dumps({"heads": sorted([int(a), int(b)] for a, b in heads), "mode": mode})
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


_M64 = (1 << 64) - 1


def sample_seed(seed: int, index: int) -> int:
    """The 64-bit sampling seed of prompt ``index`` in a run seeded with ``seed`` (splitmix64 of both)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


# -- generation --------------------------------------------------------------------------------------------------
def _conversational(tokenizer, fmt: str) -> bool:
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "auto":
        return has_template
    if fmt == "conversational":
        if not has_template:
            raise ValueError(
                "format='conversational' needs a tokenizer with a chat template; use format='plain'"
            )
        return True
    if fmt == "plain":
        return False
    raise ValueError(f"unknown pair format {fmt!r}; use 'auto', 'conversational' or 'plain'")


def encode_prompt(tokenizer, text: str, conversational: bool, template: str = PROMPT_SLOT) -> list[int]:
    """Token ids of a prompt exactly as TRL's DPO tokenises it (chat template with a generation prompt, or the
    plain text written into ``template``)."""
    if conversational:
        if template != PROMPT_SLOT:
            raise InputError(
                f"prompt template {template!r} applies to plain pairs, and this tokenizer has a chat template "
                "(conversational pairs): leave the template at '{prompt}', or ask for plain pairs (format='plain')"
            )
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True, return_dict=True
        )
        return list(out["input_ids"])
    return list(tokenizer(text=apply_template(text, template))["input_ids"])


def _masking_generate():
    from retmask_interp.interventions import masking

    return masking.generate


def sample_responses(
    rm,
    prompt_ids: Sequence[Sequence[int]],
    seed: int | Sequence[int],
    heads: Sequence[Head],
    config: PairsConfig,
) -> list[tuple[str, int, bool]]:
    """One response per prompt with ``heads`` masked (``()`` = the normal model), as ``(text, new tokens,
    finished)``; ``finished`` is False when the response hit ``max_new_tokens`` without an end-of-sequence token or
    one of ``config.stop`` (a response is cut before its first stop string; its tokens then cover the text kept).

    Sampling is ``masking.generate``'s, seeded with ``seed`` (one seed per prompt: each prompt its own generator,
    as ``make_pairs`` does): the same seed draws the same random numbers.
    """
    tok = rm.tokenizer
    eos = rm.eos_token_ids()
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else 0)
    width = max(len(p) for p in prompt_ids)
    out = _masking_generate()(
        rm,
        [torch.as_tensor(p, dtype=torch.long) for p in prompt_ids],
        list(heads),
        mode=config.mode,
        max_new_tokens=config.max_new_tokens,
        do_sample=config.temperature > 0,
        temperature=config.temperature if config.temperature > 0 else 1.0,
        top_p=config.top_p,
        seed=seed,
        eos_token_id=eos or None,
        pad_token_id=pad,
    )
    results = []
    for prompt, row in zip(prompt_ids, out[:, width:].tolist()):
        cut = next((i for i, t in enumerate(row) if t in eos), None)
        new = row if cut is None else row[:cut]
        text = _decode_continuation(tok, list(prompt), new)
        kept, stopped = cut_at_stop(text, config.stop)
        if stopped:
            n = _tokens_covering(tok, list(prompt), new, len(kept))
            results.append((kept, n, True))
        else:
            results.append((text, len(new), cut is not None))
    return results


def _tokens_covering(tok, prompt: list[int], new: list[int], chars: int) -> int:
    """The fewest leading tokens of ``new`` whose text (after ``prompt``) is at least ``chars`` characters long."""
    lo, hi = 0, len(new)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_decode_continuation(tok, prompt, new[:mid])) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _decode_continuation(tok, prompt: list[int], new: list[int]) -> str:
    """The text that ``new`` adds after ``prompt`` (decoding ``new`` alone loses a leading space with
    SentencePiece tokenizers, and plain-format DPO concatenates prompt and response as strings)."""
    head = tok.decode(prompt, skip_special_tokens=True)
    full = tok.decode(prompt + new, skip_special_tokens=True)
    return full[len(head) :] if full.startswith(head) else tok.decode(new, skip_special_tokens=True)


# -- writing -----------------------------------------------------------------------------------------------------
def pair_paths(out: str | Path) -> PairPaths:
    """``pairs.jsonl`` -> its ``pairs.dropped.jsonl`` and ``pairs.stats.json`` siblings."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return PairPaths(out, out.with_name(stem + ".dropped.jsonl"), out.with_name(stem + ".stats.json"))


def pair_records(out: str | Path) -> list[dict[str, Any]]:
    """Every record of a pairs run: the kept pairs of ``out`` then the dropped ones (``pair_paths``), each as
    written (a dropped record carries its ``drop_reason``)."""
    paths = pair_paths(out)
    return [*read_jsonl(paths.pairs), *(read_jsonl(paths.dropped) if paths.dropped.exists() else [])]


def _drop_reason(chosen: str, rejected: str) -> str | None:
    c, r = chosen.strip(), rejected.strip()
    if not c or not r:
        return "empty_both" if not (c or r) else "empty_chosen" if not c else "empty_rejected"
    return "identical" if c == r else None


def _record(
    p: Prompt, chosen, rejected, meta: dict, conversational: bool, template: str = PROMPT_SLOT
) -> dict:
    rec = {
        "prompt": [{"role": "user", "content": p.text}]
        if conversational
        else apply_template(p.text, template),
        "chosen": [{"role": "assistant", "content": chosen[0]}] if conversational else chosen[0],
        "rejected": [{"role": "assistant", "content": rejected[0]}] if conversational else rejected[0],
        "prompt_index": p.index,
        "prompt_id": p.id,
    }
    rec.update(meta)
    rec.update({"chosen_tokens": chosen[1], "rejected_tokens": rejected[1]})
    rec.update({"chosen_finished": chosen[2], "rejected_finished": rejected[2]})
    return rec


def _prompt_text(rec: dict) -> str:
    prompt = rec["prompt"]
    return prompt if isinstance(prompt, str) else _first_user_turn(prompt, "pairs file")


def _settings_hash(sampling: dict, fmt: str) -> str:
    return hashlib.sha256(json.dumps([sampling, fmt], sort_keys=True).encode()).hexdigest()[:12]


def _start(
    paths: PairPaths, prompts: Sequence[Prompt], meta: dict, overwrite: bool, template: str = PROMPT_SLOT
) -> set[int]:
    """Handle an existing run: refuse a finished one, or return the prompt indices already done (validated)."""
    if overwrite:
        for p in (paths.pairs, paths.dropped, paths.stats):
            p.unlink(missing_ok=True)
    refuse_overwrite(paths.stats, overwrite=False, what="pairs run (its stats file marks it finished)")
    by_index = {p.index: p for p in prompts}
    done: set[int] = set()
    fix = "pass overwrite=True (CLI: --overwrite) to start over, or write to another path"
    names = {"heads_hash": "the masked heads (head list, --top-k / --threshold)", "mode": "the masking mode"}
    for path in (paths.pairs, paths.dropped):
        for rec in read_jsonl(path, torn_tail=True):
            if not isinstance(rec.get("prompt_index"), int) or "prompt" not in rec:
                raise InputError(
                    f"{path} holds a record without prompt/prompt_index: it is not a pairs file being made by "
                    f"`retmask pairs`; {fix}"
                )
            for key in (
                "seed",
                "mode",
                "heads_hash",
                "run",
                "settings",
            ):  # mode first: heads_hash includes it
                run = rec.get("run")  # named settings (files from older versions carry only the hash)
                if key == "run" and isinstance(run, dict) and run != meta.get("run"):
                    raise InputError(
                        f"{path} was made with other settings ({settings_diff(run, meta.get('run') or {})}); "
                        f"{fix}"
                    )
                if key != "run" and rec.get(key) != meta[key]:
                    what = names.get(key, "the sampling settings or format" if key == "settings" else key)
                    raise InputError(
                        f"{path} was made with other {what} ({key} was {rec.get(key)!r}, now {meta[key]!r}); "
                        f"{fix}"
                    )
            i = rec["prompt_index"]
            if i not in by_index or _prompt_text(rec) not in (
                by_index[i].text
                if isinstance(rec["prompt"], list)
                else apply_template(by_index[i].text, template),
            ):
                raise ValueError(f"{path}: prompt {i} differs from this prompt set; use another output path")
            done.add(i)
    if done:
        log.info("resuming: %d of %d prompts already done", len(done), len(prompts))
    return done


def _write(
    paths: PairPaths, prompts, chosen, rejected, meta: dict, conversational: bool, extra=None,
    template: str = PROMPT_SLOT,
) -> None:  # fmt: skip
    """Filter and append one batch; ``chosen`` / ``rejected`` are ``(text, tokens, finished)`` per prompt."""
    kept, dropped = [], []
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        rec = _record(p, c, r, meta, conversational, template) | (extra[i] if extra else {})
        reason = _drop_reason(c[0], r[0])
        if reason is None:
            kept.append(rec)
        else:
            dropped.append(rec | {"reason": reason})
    if dropped:
        append_jsonl(paths.dropped, dropped)
    if kept:
        append_jsonl(paths.pairs, kept)


def _finish(
    paths: PairPaths, n_prompts: int, heads, meta: dict, fmt: str, sampling: dict, model: str
) -> PairStats:
    kept = list(read_jsonl(paths.pairs, torn_tail=True))
    dropped = list(read_jsonl(paths.dropped, torn_tail=True))
    indices = [r["prompt_index"] for r in kept + dropped]
    if len(indices) != len(set(indices)):
        raise RuntimeError(f"{paths.pairs}: a prompt was written twice; the file is damaged")
    reasons = Counter(r["reason"] for r in dropped)

    def truncated(side: str) -> int | None:
        flags = [r.get(f"{side}_finished") for r in kept]
        return None if any(f is None for f in flags) else sum(not f for f in flags)

    stats = PairStats(
        total_prompts=n_prompts,
        kept=len(kept),
        dropped={k: reasons.get(k, 0) for k in DROP_REASONS},
        heads=[list(h) for h in heads],
        heads_hash=meta["heads_hash"],
        mode=meta["mode"],
        seed=meta["seed"],
        format=fmt,
        sampling=sampling,
        model=model,
        truncated_chosen=truncated("chosen"),
        truncated_rejected=truncated("rejected"),
        pairs_path=str(paths.pairs),
        dropped_path=str(paths.dropped),
    )
    if not paths.pairs.exists():
        paths.pairs.touch()  # an empty pairs file, so that a finished run always has one
    atomic_write_json(paths.stats, stats.to_dict())
    log.info("pairs: kept %d of %d, dropped %s", stats.kept, n_prompts, dict(reasons))
    return stats


def make_pairs(
    model,
    prompts,
    heads: Iterable[Sequence[int]],
    out_path: str | Path,
    *,
    config: PairsConfig | None = None,
    tokenizer=None,
    overwrite: bool = False,
    progress: bool = True,
) -> PairStats:
    """Sample normal vs masked responses for ``prompts`` and write DPO pairs to ``out_path`` (JSONL).

    ``model`` is a HF causal LM (with ``tokenizer``) or a ``RetModel``; ``prompts`` anything ``load_prompts``
    takes; ``heads`` the ``(layer, query head)`` pairs to mask (see ``resolve_heads``). An interrupted run resumes
    where it stopped (done prompts are skipped); a finished run (stats file present) needs ``overwrite=True``.
    """
    from tqdm.auto import tqdm

    from retmask_interp.core.models import as_model
    from retmask_interp.measure.detect import model_identity

    config = config or PairsConfig()
    rm = as_model(model, tokenizer)
    if rm.tokenizer is None:
        raise ValueError("make_pairs needs a tokenizer: pass tokenizer=... or a RetModel that has one")
    heads = rm.check_heads(heads)
    if not heads:
        raise ValueError(
            "no heads to mask: both sides would be the same model; choose heads (top-k/threshold)"
        )
    if config.temperature < 0 or config.max_new_tokens < 1 or config.batch_size < 1:
        raise ValueError("need temperature >= 0, max_new_tokens >= 1 and batch_size >= 1")
    prompts = _as_prompts(prompts)
    conversational = _conversational(rm.tokenizer, config.format)
    fmt = "conversational" if conversational else "plain"
    paths = pair_paths(out_path)
    sampling = {k: getattr(config, k) for k in ("temperature", "top_p", "max_new_tokens")}
    sampling |= config.extra_settings()  # template, stop: only where set
    meta: dict[str, Any] = {"seed": config.seed, "heads_hash": heads_hash(heads, config.mode)}
    meta["mode"] = config.mode
    meta["settings"] = _settings_hash(sampling, fmt)
    # "seeding": how the noise is drawn (files of older versions seeded each batch: not resumable with this one)
    meta["run"] = {**sampling, "format": fmt, "seeding": "per-prompt", **model_identity(rm)}
    with run_lock(paths.pairs, what="pairs file"):  # one writer per pairs file (core.locks)
        done = _start(paths, prompts, meta, overwrite, config.template)
        encoded = {
            p.index: encode_prompt(rm.tokenizer, p.text, conversational, config.template) for p in prompts
        }
        order = sorted(prompts, key=lambda p: (-len(encoded[p.index]), p.index))
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        bar = tqdm(
            total=len(prompts) - len(done), desc="pairs", disable=not progress or len(done) == len(prompts)
        )
        for batch in batches:
            todo = [j for j, p in enumerate(batch) if p.index not in done]
            if not todo:
                continue
            ids = [encoded[p.index] for p in batch]
            seeds = [sample_seed(config.seed, p.index) for p in batch]
            normal = sample_responses(rm, ids, seeds, (), config)
            masked = sample_responses(rm, ids, seeds, heads, config)
            pick = [batch[j] for j in todo]
            extra = [{"sample_seed": seeds[j]} for j in todo]
            _write(
                paths, pick, [normal[j] for j in todo], [masked[j] for j in todo], meta, conversational, extra,
                config.template,
            )  # fmt: skip
            bar.update(len(todo))
        bar.close()
        return _finish(paths, len(prompts), heads, meta, fmt, sampling, rm.name)


def pairs_from_responses(
    prompts,
    normal_responses: Sequence[str],
    masked_responses: Sequence[str],
    out_path: str | Path,
    *,
    heads: Iterable[Sequence[int]] = (),
    mode: str = "zero",
    seed: int | None = None,
    format: str = "conversational",
    sampling: dict[str, Any] | None = None,
    model: str = "",
    overwrite: bool = False,
    template: str = PROMPT_SLOT,
) -> PairStats:
    """Write pairs from responses sampled elsewhere: same filtering, files and ``PairStats`` as ``make_pairs``.

    ``format`` is ``"conversational"`` or ``"plain"``; ``heads`` / ``mode`` / ``seed`` / ``sampling`` are recorded
    as provenance; a missing response may be ``None``. ``template`` (plain pairs): the text each prompt was written
    into when it was sampled (``PairsConfig.template``), so that the pairs hold the prompt the responses answered. The vLLM route for large runs: ``retmask export-masked MODEL
    --heads H --top-k K --out masked/``, then, with the same sampling settings and seeds on both sides::

        from vllm import LLM, SamplingParams
        from retmask_interp.retmask.pairs import load_prompts, pairs_from_responses, sample_seed

        prompts = load_prompts("prompts.jsonl")
        chats = [[{"role": "user", "content": p.text}] for p in prompts]
        params = [SamplingParams(temperature=0.6, top_p=1.0, max_tokens=2048,
                                 seed=sample_seed(0, p.index) % 2**31) for p in prompts]

        def sample(path):  # one engine at a time; free the GPU between the two
            llm = LLM(path)
            texts = [o.outputs[0].text for o in llm.chat(chats, params)]
            del llm
            return texts

        normal, masked = sample("meta-llama/Llama-3.1-8B-Instruct"), sample("masked/")
        pairs_from_responses(prompts, normal, masked, "pairs.jsonl", heads=heads, format="conversational",
                             seed=0, sampling={"temperature": 0.6, "top_p": 1.0, "max_new_tokens": 2048})

    (vLLM draws its own random numbers, so these pairs are not token for token those of ``make_pairs``.)
    """
    prompts = _as_prompts(prompts)
    if not len(prompts) == len(normal_responses) == len(masked_responses):
        raise ValueError(
            f"got {len(prompts)} prompts, {len(normal_responses)} normal and {len(masked_responses)} masked "
            "responses; they must be parallel lists"
        )
    if format not in ("conversational", "plain"):
        raise ValueError(f"format must be 'conversational' or 'plain', got {format!r}")
    check_template(template)
    if format == "conversational" and template != PROMPT_SLOT:
        raise InputError(
            "a prompt template applies to plain pairs: pass format='plain', or leave template at '{prompt}'"
        )
    sampling = dict(sampling or {}) | extra_settings(template, ())
    heads = sorted({(int(a), int(b)) for a, b in heads})
    paths = pair_paths(out_path)
    meta: dict[str, Any] = {"seed": seed, "heads_hash": heads_hash(heads, mode), "mode": mode}
    meta["settings"] = _settings_hash(sampling, format)
    meta["run"] = {**sampling, "format": format, "model": model}
    done = _start(paths, prompts, meta, overwrite, template)
    rows = [(p, n, m) for p, n, m in zip(prompts, normal_responses, masked_responses) if p.index not in done]
    for i, (_, n, m) in enumerate(rows):
        if n is not None and not isinstance(n, str) or m is not None and not isinstance(m, str):
            raise ValueError(f"response {i}: expected strings (or None for a missing response)")
    side = [[(n or "", None, None) for _, n, _ in rows], [(m or "", None, None) for _, _, m in rows]]
    _write(paths, [r[0] for r in rows], side[0], side[1], meta, format == "conversational", template=template)
    return _finish(paths, len(prompts), heads, meta, format, sampling, model)
