"""Needle-in-a-haystack (NIAH) samples: the inputs of retrieval-head detection (Wu et al. 2024).

A sample is a prompt of ``context_length`` tokens in total (template, haystack, needle and question) with a needle
inserted at ``depth`` percent of its haystack part, and the token span of the needle's answer (``real_needle``):

- The haystack is tokenized once (:func:`tokenize_haystack`), keeping character offsets. Its first ``B`` tokens are
  kept, ``B`` chosen so that the whole prompt has ``context_length`` tokens.
- The needle goes at haystack token ``round(B * depth / 100)``, moved back to the nearest *sentence boundary*: a
  token starting after a sentence-ending ``.``/``!``/``?`` (then optional closing quotes or brackets, then
  whitespace or a capital letter), after a blank line, or at the start. Depth 100 is no exception (the needle goes
  before the last, cut, sentence; Wu et al. put it after the cut). Boundaries come from the tokenizer's offsets,
  never from token ids; abbreviations such as "Mr." can pass for sentence ends.
- The needle is joined with one space on each side, except where the haystack has whitespace there already
  (``"... there. NEEDLE We ..."``; after a blank line ``"...\n\nNEEDLE Next ..."``).
- The final prompt string is tokenized once, with offsets: ``input_ids`` are exactly that tokenization, and the
  answer span is the tokens whose characters overlap ``real_needle``'s characters in it (no fuzzy matching).
  Tokens can merge at the cut and around the needle, so ``B`` is corrected and the prompt rebuilt while the
  length misses; the result is within :data:`LENGTH_TOLERANCE` tokens of ``context_length`` (in practice exact).

Styles: ``"chat"`` puts :data:`WU_PROMPT_TEMPLATE` in the user turn of the tokenizer's chat template; ``"qa"`` is the
same text with no template (with BOS where the tokenizer adds one); ``"continuation"`` is the haystack, a newline
and the needle's lead-in (its text before ``real_needle``), for small base models.

A haystack too short for a length is an error that says how many tokens it has, unless it is repeated
(``tokenize_haystack(..., repeat=True)``, ``NIAHConfig.repeat_haystack``), as Wu et al.'s code does. Lengths below
the prompt without haystack are an error in :func:`build_sample` and skipped with a warning by :func:`build_grid`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from retmask_interp.core.io import InputError
from retmask_interp.core.models import ORGANISM_PREFIX
from retmask_interp.data.prompts import WU_PROMPT_TEMPLATE, prompt_parts

__all__ = [
    "WU_PROMPT_TEMPLATE",
    "STYLES",
    "LENGTH_TOLERANCE",
    "Haystack",
    "TokenizedHaystack",
    "NIAHSample",
    "NIAHConfig",
    "load_haystack",
    "tokenize_haystack",
    "read_needles",
    "validate_needles",
    "default_needles",
    "answer_char_span",
    "wu_depths",
    "linspace_lengths",
    "min_context_length",
    "build_sample",
    "build_grid",
    "sample_id",
    "NIAHGrid",
    "NEEDLE_SETS",
    "niah_grid",
]

log = logging.getLogger(__name__)

STYLES = ("chat", "qa", "continuation")
LENGTH_TOLERANCE = 2  # |num_tokens - context_length| is at most this many tokens (in practice 0)
_MAX_ROUNDS = 5
_NEEDLE_FIELDS = ("needle", "question", "real_needle")
_CLOSERS = "\"'\u201d\u2019)\\]\u00bb"
_SENTENCE_END = re.compile(rf"(?P<p>[.!?]+[{_CLOSERS}]*)(?:\s+|(?=[A-Z]))")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")


# ------------------------------------------------------------------------------------------------ haystacks
@dataclass(frozen=True)
class Haystack:
    """Haystack text and a short name (used in sample ids)."""

    name: str
    text: str


def load_haystack(spec: str | Path, *, num_words: int = 8192) -> Haystack:
    """A haystack from a source spec: a ``.txt`` file, a directory (its ``.txt`` files, recursively, sorted by
    relative path, joined by blank lines), or ``"synthetic"`` / ``"synthetic:SEED"`` (the package's synthetic
    prose, ``num_words`` words; a longer text with the same seed starts with the shorter one)."""
    s = str(spec)
    if s == "synthetic" or s.startswith("synthetic:"):
        seed_text = s.partition(":")[2] or "0"
        if not seed_text.lstrip("-").isdigit():
            raise ValueError(f"bad haystack spec {s!r}: the seed after 'synthetic:' must be an integer")
        from retmask_interp.data import synthetic

        return Haystack(
            f"synthetic:{int(seed_text)}", synthetic.haystack_text(num_words, seed=int(seed_text))
        )
    path = Path(s).expanduser()
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*.txt") if p.is_file()), key=lambda p: p.relative_to(path).as_posix()
        )
        if not files:
            raise ValueError(
                f"haystack directory {path} has no .txt files; point to a text file or directory"
            )
        text = "\n\n".join(_read_text_file(p, "haystack").strip() for p in files)
    elif path.is_file():
        text = _read_text_file(path, "haystack")
    else:
        raise FileNotFoundError(f"haystack {s!r} is neither a file, a directory nor 'synthetic[:SEED]'")
    text = text.strip()
    if not text:
        raise InputError(f"haystack {path} is empty; give a file or directory with text in it")
    return Haystack(path.name or s, text)


def _read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file; binary data (not UTF-8, NUL bytes, mostly control characters) is refused."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            f"{what} {path} is not UTF-8 text (line {line}, byte {err.start}); give a plain-text file"
        ) from None
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r")
    if "\x00" in text or control > 0.01 * max(len(text), 1):
        raise InputError(
            f"{what} {path} holds binary data (control characters), not text; give a plain-text file"
        )
    return text


def haystack_digest(spec: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a haystack's text: its identity for resumed runs (not its file name)."""
    return hashlib.sha256(load_haystack(spec).text.encode("utf-8")).hexdigest()[:16]


@dataclass
class TokenizedHaystack:
    """A haystack tokenized once (no special tokens): token character offsets and sentence-boundary tokens.

    ``starts[i]`` / ``ends[i]`` are token ``i``'s character offsets in ``text``; ``boundaries`` are the sorted
    indices of tokens where a needle may be inserted (0 and ``num_tokens``, the end of the text, included).
    """

    name: str
    text: str
    starts: np.ndarray
    ends: np.ndarray
    boundaries: np.ndarray

    @property
    def num_tokens(self) -> int:
        return len(self.starts)

    def cut_char(self, num_tokens: int) -> int:
        """Character position where the first ``num_tokens`` tokens end (the start of the next token)."""
        return len(self.text) if num_tokens >= self.num_tokens else int(self.starts[num_tokens])

    def insertion_token(self, num_tokens: int, depth: float) -> int:
        """The last boundary at or before token ``round(num_tokens * depth / 100)`` of a ``num_tokens`` prefix."""
        target = min(num_tokens, math.floor(num_tokens * depth / 100 + 0.5))
        i = int(np.searchsorted(self.boundaries, target, side="right")) - 1
        return int(self.boundaries[max(i, 0)])


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow tokenizer and gives no character offsets, which NIAH samples "
            "need; load a fast one (AutoTokenizer.from_pretrained(path), which needs tokenizer.json or "
            "use_fast=True)"
        )


_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"


def _encode(
    tokenizer, text: str, add_special_tokens: bool, *, longer_than_model: bool = False
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets. ``longer_than_model``: the text is meant to exceed the model's window
    (a whole haystack, cut later), so transformers' "Token indices sequence length is longer than the specified
    maximum" warning is silenced for this call only."""
    flags = getattr(tokenizer, "deprecation_warnings", None)
    if not longer_than_model or not isinstance(flags, dict):
        enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    had = flags.get(_LONG_WARNING)
    flags[_LONG_WARNING] = True  # transformers warns once per tokenizer unless this flag is set
    try:
        enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    finally:
        if had is None:
            flags.pop(_LONG_WARNING, None)
        else:
            flags[_LONG_WARNING] = had
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _offset_arrays(offsets: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def _boundary_tokens(text: str, starts: np.ndarray) -> np.ndarray:
    lo, hi = [], []
    for m in _SENTENCE_END.finditer(text):
        lo.append(m.end("p"))
        hi.append(m.end())
    for m in _PARAGRAPH.finditer(text):
        lo.append(m.start())
        hi.append(m.end())
    ends = [0, len(starts)]  # the start and the end of the text
    if not lo or not len(starts):
        return np.asarray(sorted(set(ends)), dtype=np.int64)
    lo_a, hi_a = np.asarray(lo), np.asarray(hi)
    idx = np.searchsorted(starts, hi_a, side="right") - 1  # last token starting inside each gap
    ok = (idx >= 0) & (starts[np.clip(idx, 0, None)] >= lo_a)
    return np.unique(np.concatenate([ends, idx[ok]])).astype(np.int64)


def tokenize_haystack(
    tokenizer, haystack: str | Haystack, *, name: str = "", min_tokens: int = 0, repeat: bool = False
) -> TokenizedHaystack:
    """Tokenize ``haystack`` once for many samples. With ``repeat=True`` a haystack of fewer than
    ``min_tokens`` tokens is repeated (joined by blank lines) until it is long enough."""
    _check_fast(tokenizer)
    if isinstance(haystack, Haystack):
        name, text = name or haystack.name, haystack.text
    else:
        text = haystack
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the haystack is empty; give a text file, a directory of .txt files, or 'synthetic'")
    text = text.strip()
    ids, offsets = _encode(tokenizer, text, add_special_tokens=False, longer_than_model=True)
    if repeat and 0 < len(ids) < min_tokens:
        text = "\n\n".join([text] * (math.ceil(min_tokens / len(ids)) + 1))
        ids, offsets = _encode(tokenizer, text, add_special_tokens=False, longer_than_model=True)
    starts, ends = _offset_arrays(offsets)
    return TokenizedHaystack(name or "haystack", text, starts, ends, _boundary_tokens(text, starts))


# -------------------------------------------------------------------------------------------------- needles
def answer_char_span(needle: dict, index: int | None = None) -> tuple[int, int]:
    """Character span of ``real_needle`` in ``needle``: an exact match, else a case-insensitive one."""
    text, answer = needle["needle"], needle["real_needle"]
    pos = text.find(answer)
    if pos >= 0:
        return pos, pos + len(answer)
    m = re.search(re.escape(answer), text, flags=re.IGNORECASE)
    if m:
        return m.start(), m.end()
    which = f"needle {index}" if index is not None else "the needle"
    raise InputError(
        f"{which}: real_needle {answer!r} is not a substring of needle {text!r} (even ignoring case); "
        "real_needle must be the exact answer text inside the needle"
    )


def validate_needles(records: Sequence[Any], source: str = "needles") -> list[dict]:
    """Check each record has non-empty string ``needle``, ``question``, ``real_needle`` and that the answer is
    inside the needle; errors name the record (line) number."""
    out = []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise InputError(f"{source}: line {i} is not a JSON object")
        for key in _NEEDLE_FIELDS:
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise InputError(
                    f"{source}: line {i} has a missing or empty {key!r}; each needle needs non-empty "
                    f"{', '.join(_NEEDLE_FIELDS)}"
                )
        answer_char_span(rec, index=i)
        out.append(dict(rec))
    if not out:
        raise InputError(f"{source} holds no needles")
    return out


def read_needles(path: str | Path) -> list[dict]:
    """Needles from a JSONL file in Wu et al.'s format (``needle``, ``question``, ``real_needle`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"needles file {path} does not exist (or is not a file); give a JSONL file")
    records = []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: line {i} is not UTF-8 text; give a UTF-8 JSONL file") from None
        if line.strip():
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as e:
                msg = getattr(e, "msg", "nested too deeply")
                raise InputError(f"{path}: line {i} is not valid JSON ({msg})") from None
    return validate_needles(records, source=str(path))


def default_needles() -> list[dict]:
    """The package's own needles (``retmask_interp/data/needles.jsonl``)."""
    res = importlib.resources.files("retmask_interp").joinpath("data/needles.jsonl")
    lines = [json.loads(line) for line in res.read_text(encoding="utf-8").splitlines() if line.strip()]
    return validate_needles(lines, source="retmask_interp/data/needles.jsonl")


# ------------------------------------------------------------------------------------------------------ grids
def wu_depths(n: int = 10) -> list[int]:
    """Needle depths in percent: ``round(linspace(0, 100, n))`` (Wu et al.: n = 10)."""
    return [int(x) for x in np.round(np.linspace(0, 100, n))]


def linspace_lengths(lo: int, hi: int, n: int = 20) -> list[int]:
    """``n`` context lengths in tokens, ``round(linspace(lo, hi, n))`` (Wu et al.: 20; RetMask: 0-5000)."""
    return [int(x) for x in np.round(np.linspace(lo, hi, n))]


# ------------------------------------------------------------------------------------------------------ samples
@dataclass
class NIAHSample:
    """One NIAH prompt. ``answer_span`` / ``needle_span`` are token index ranges ``[start, end)`` in ``input_ids``
    of ``real_needle`` / the whole needle; ``context_length`` and ``depth`` are the targets, ``num_tokens`` and
    ``needle_position`` (haystack tokens before the needle, in percent of the prompt's haystack tokens) what was
    built; ``answer_text`` is the decoded answer span, stripped."""

    sample_id: str
    input_ids: list[int]
    answer_span: tuple[int, int]
    needle: dict
    needle_index: int
    context_length: int
    depth: float
    num_tokens: int
    needle_position: float
    style: str
    answer_text: str
    needle_span: tuple[int, int] = (0, 0)
    haystack_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["answer_span"], d["needle_span"] = list(self.answer_span), list(self.needle_span)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NIAHSample:
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("answer_span", "needle_span"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def sample_id(
    haystack_name: str, needle: dict, needle_index: int, context_length: int, depth: float, style: str
):
    """Stable id: haystack name, needle index and a hash of the needle, length, depth and style."""
    digest = hashlib.sha1(json.dumps(needle, sort_keys=True).encode()).hexdigest()[:8]
    return f"{haystack_name}|n{needle_index}-{digest}|L{int(context_length)}|d{float(depth):g}|{style}"


def _prompt_parts(tokenizer, style: str, needle: dict, chat_template_kwargs: dict | None):
    """A function ``context -> (prompt string, char offset of context, add_special_tokens)`` for ``style``."""
    head, tail = prompt_parts(needle["question"])
    if style == "qa":
        return lambda ctx: (head + ctx + tail, len(head), True)
    if style == "continuation":
        lead = needle["needle"][: answer_char_span(needle)[0]].rstrip()
        if not lead:
            raise ValueError(
                f"needle {needle['needle']!r} starts with its answer, so the 'continuation' style has no lead-in to "
                "continue; use --prompt-style qa or chat, or a needle with text before real_needle"
            )
        return lambda ctx: (ctx + "\n" + lead, 0, True)
    if style != "chat":
        raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "this tokenizer has no chat template, so the 'chat' prompt style cannot be used; "
            "use --prompt-style qa (base models) or --prompt-style continuation (small base models)"
        )

    def render(ctx: str):
        content = head + ctx + tail
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}],
            add_generation_prompt=True,
            tokenize=False,
            **(chat_template_kwargs or {}),
        )
        pos = text.find(content)
        if pos < 0:
            raise ValueError("the chat template changed the message text; use --prompt-style qa instead")
        return text, pos + len(head), False

    return render


def _join(left: str, needle: str, right: str) -> tuple[str, int]:
    pre = "" if not left or left[-1].isspace() else " "
    post = "" if not right or right[0].isspace() else " "
    return left + pre + needle + post + right, len(left) + len(pre)


def _token_range(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Tokens overlapping characters ``[lo, hi)`` (tokens of zero width, such as BOS, never overlap)."""
    hit = np.nonzero((starts < hi) & (ends > lo) & (ends > starts))[0]
    return (int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0)


def min_context_length(
    tokenizer, needle: dict, style: str = "chat", chat_template_kwargs: dict | None = None
) -> int:
    """Tokens of a prompt with the needle and no haystack: the shortest possible ``context_length``."""
    _check_fast(tokenizer)
    render = _prompt_parts(tokenizer, style, needle, chat_template_kwargs)
    return len(_encode(tokenizer, *render(needle["needle"])[::2])[0])


def build_sample(
    tokenizer,
    haystack: str | Haystack | TokenizedHaystack,
    needle: dict,
    context_length: int,
    depth: float,
    style: str = "chat",
    *,
    needle_index: int = 0,
    max_context: int | None = None,
    allow_overflow: bool = False,
    haystack_name: str = "",
    chat_template_kwargs: dict | None = None,
) -> NIAHSample:
    """One NIAH sample of ``context_length`` prompt tokens in total with the needle at ``depth`` percent.

    Pass a :class:`TokenizedHaystack` when building many samples from one haystack (a plain string is tokenized
    on every call). ``max_context`` is the model's window: longer prompts are refused unless ``allow_overflow``.
    ``chat_template_kwargs`` go to ``apply_chat_template`` (e.g. ``{"enable_thinking": False}`` for Qwen3).
    """
    _check_fast(tokenizer)
    validate_needles([needle], source=f"needle {needle_index}")
    if not 0 <= depth <= 100:
        raise ValueError(f"depth must be a percentage in [0, 100], got {depth}")
    if max_context is not None and context_length > max_context and not allow_overflow:
        raise ValueError(
            f"context_length {context_length} exceeds the model's window of {max_context} tokens; "
            "use shorter lengths or pass allow_overflow=True (CLI: --allow-overflow) to build them anyway"
        )
    render = _prompt_parts(tokenizer, style, needle, chat_template_kwargs)
    minimum = len(_encode(tokenizer, *render(needle["needle"])[::2])[0])
    if context_length < minimum:
        raise ValueError(
            f"context_length {context_length} is below the {minimum} tokens of the prompt with this needle and no "
            "haystack; use a longer context length"
        )
    hay = haystack if isinstance(haystack, TokenizedHaystack) else tokenize_haystack(tokenizer, haystack)
    name = haystack_name or hay.name
    ans_lo, ans_hi = answer_char_span(needle, needle_index)
    budget = context_length - minimum
    best: tuple[Any, ...] | None = None
    tried: set[int] = set()
    k: int | None = None
    for _ in range(_MAX_ROUNDS):
        if budget > hay.num_tokens and best is not None:
            break
        if budget > hay.num_tokens:
            raise ValueError(
                f"haystack {name!r} has {hay.num_tokens} tokens but a {context_length}-token prompt needs about "
                f"{budget}; use a longer haystack (a directory of files, or 'synthetic') or repeat it "
                "(tokenize_haystack(..., repeat=True), CLI: --repeat-haystack)"
            )
        budget = max(budget, 0)
        tried.add(budget)
        if k is None or k > budget:  # insertion point fixed after the first round: only the cut moves
            k = hay.insertion_token(budget, depth)
        cut, at = hay.cut_char(budget), hay.cut_char(k)
        context, n_at = _join(hay.text[:at], needle["needle"], hay.text[at:cut])
        prompt, ctx_at, special = render(context)
        ids, offsets = _encode(tokenizer, prompt, special)
        miss = len(ids) - context_length
        cand = (abs(miss), miss > 0, budget, k, prompt, ctx_at, ids, offsets, len(context), n_at)
        if best is None or cand[:2] < best[:2]:
            best = cand
        if miss == 0 or budget - miss in tried:
            break
        budget -= miss
    if best is None:  # only when _MAX_ROUNDS < 1
        raise RuntimeError(f"could not build a {context_length}-token prompt; please report")
    err, _, budget, k, prompt, ctx_at, ids, offsets, ctx_len, n_at = best
    if err > LENGTH_TOLERANCE:
        raise RuntimeError(
            f"could not build a {context_length}-token prompt (off by {err} tokens); please report"
        )
    if max_context is not None and len(ids) > max_context and not allow_overflow:
        raise ValueError(f"the prompt has {len(ids)} tokens, over the model's window of {max_context}")
    starts, ends = _offset_arrays(offsets)
    n0 = ctx_at + n_at
    answer = _token_range(starts, ends, n0 + ans_lo, n0 + ans_hi)
    needle_span = _token_range(starts, ends, n0, n0 + len(needle["needle"]))
    if answer[1] <= answer[0] or prompt[n0 : n0 + len(needle["needle"])] != needle["needle"]:
        raise ValueError(f"answer span of needle {needle_index} not found in the tokenized prompt")
    ctx = _token_range(starts, ends, ctx_at, ctx_at + ctx_len)
    before, after = needle_span[0] - ctx[0], ctx[1] - needle_span[1]
    position = 100.0 * before / (before + after) if before + after > 0 else float(depth)
    return NIAHSample(
        sample_id=sample_id(name, needle, needle_index, context_length, depth, style),
        input_ids=[int(i) for i in ids],
        answer_span=answer,
        needle=dict(needle),
        needle_index=needle_index,
        context_length=int(context_length),
        depth=float(depth),
        num_tokens=len(ids),
        needle_position=position,
        style=style,
        answer_text=tokenizer.decode(ids[answer[0] : answer[1]]).strip(),
        needle_span=needle_span,
        haystack_name=name,
    )


def build_grid(
    tokenizer,
    haystack: str | Haystack | TokenizedHaystack | Sequence[Haystack | TokenizedHaystack],
    needles: Sequence[dict],
    lengths: Sequence[int],
    depths: Sequence[float],
    style: str = "chat",
    *,
    repeat_haystack: bool = False,
    **kw,
) -> list[NIAHSample]:
    """Samples for every needle x length x depth, in that (needle-major) order.

    ``haystack`` is one haystack for all needles, or a sequence of one per needle (Wu et al. pair needle ``i``
    with ``haystack_for_detect/part{i+1}``). Lengths below a needle's minimum prompt are skipped with a warning.
    Other keyword arguments go to :func:`build_sample`.
    """
    needles = validate_needles(list(needles))
    per_needle = isinstance(haystack, Sequence) and not isinstance(haystack, str | Haystack)
    hays: list = list(cast(Sequence, haystack)) if per_needle else [haystack]
    if per_needle and len(hays) != len(needles):
        raise ValueError(
            f"{len(hays)} haystacks for {len(needles)} needles; give one haystack or one per needle"
        )
    need = max(lengths, default=0)
    tok_hay = lambda h: tokenize_haystack(tokenizer, h, min_tokens=need, repeat=repeat_haystack)  # noqa: E731
    tokenized = [h if isinstance(h, TokenizedHaystack) else tok_hay(h) for h in hays]
    samples, skipped = [], []
    for i, needle in enumerate(needles):
        hay = tokenized[i if per_needle else 0]
        low = min_context_length(tokenizer, needle, style, kw.get("chat_template_kwargs"))
        for length in lengths:
            if length < low:
                skipped.append((i, int(length), low))
                continue
            for depth in depths:
                samples.append(
                    build_sample(tokenizer, hay, needle, int(length), depth, style, needle_index=i, **kw)
                )
    if skipped:
        log.warning(
            "skipped %d (needle, length) pairs below the minimum prompt length (needle, length, minimum): %s",
            len(skipped),
            skipped[:10],
        )
    return samples


# -------------------------------------------------------------------------------------------------- the grid
NEEDLE_SETS = ("auto", "default", "eval", "train")


class NIAHGrid(list):
    """The samples of :func:`niah_grid` (a list of :class:`NIAHSample`, needle-major) and the settings that made
    them (``spec``: lengths, depths, needle set, haystack, style; JSON-ready, for provenance)."""

    def __init__(self, samples: Sequence[NIAHSample] = (), spec: dict[str, Any] | None = None):
        super().__init__(samples)
        self.spec: dict[str, Any] = dict(spec or {})

    def __repr__(self) -> str:
        lengths = sorted({s.context_length for s in self})
        depths = sorted({s.depth for s in self})
        needles = len({s.needle_index for s in self})
        style = self.spec.get("style") or ",".join(sorted({s.style for s in self})) or "-"
        return (
            f"NIAHGrid({len(self)} samples: {needles} needles ({self.spec.get('needle_set', '?')}) x "
            f"lengths {lengths} x depths {[f'{d:g}' for d in depths]}, style {style!r}, "
            f"haystack {self.spec.get('haystack', '?')!r})"
        )

    def __getitem__(self, index):  # slices stay grids
        got = super().__getitem__(index)
        return NIAHGrid(got, self.spec) if isinstance(index, slice) else got


def _tokenizer_and_window(model) -> tuple[Any, int | None, str]:
    """``(tokenizer, window, name)`` of a :class:`~retmask_interp.core.models.RetModel` (or anything with
    ``tokenizer`` and ``max_context``) or of a bare tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        if hasattr(model, "encode") and hasattr(model, "decode"):
            return model, None, ""
        raise InputError(
            f"niah_grid needs a model with a tokenizer (rmi.load_model(...)) or a tokenizer, got {type(model).__name__}"
        )
    return tokenizer, getattr(model, "max_context", None), str(getattr(model, "name", "") or "")


def _grid_needles(needles: int | str | Sequence[dict] | None, needle_set: str, seed: int, name: str):
    """``(needle dicts, the set's name)``. ``needles``: how many (int), all of the set (None), a JSONL path (str)
    or the needle dicts themselves."""
    if needles is not None and not isinstance(needles, int | str):
        return validate_needles(list(needles)), "given"
    if isinstance(needles, str):
        return read_needles(needles), str(needles)
    if isinstance(needles, int) and needles < 1:
        raise InputError(f"needles must be >= 1 (how many needles per length and depth), got {needles}")
    if needle_set == "auto":
        needle_set = "eval" if name.startswith(ORGANISM_PREFIX) else "default"
    if needle_set == "default":
        pool = default_needles()
        if needles is not None and needles > len(pool):
            raise InputError(
                f"needles={needles} but the package has {len(pool)} default needles; ask for at most "
                f"{len(pool)}, or use needle_set='eval' (synthetic needles, any number) or a JSONL file"
            )
        return pool[: needles if needles is not None else len(pool)], "default"
    if needle_set in ("eval", "train"):
        from retmask_interp.data.synthetic import make_needles

        return make_needles(needles if needles is not None else 5, seed=seed, split=needle_set), needle_set
    path = Path(needle_set).expanduser()
    if path.suffix == ".jsonl" or path.is_file():
        pool = read_needles(path)
        return pool[: needles if needles is not None else len(pool)], str(needle_set)
    raise InputError(
        f"unknown needle set {needle_set!r}: use one of {', '.join(NEEDLE_SETS)} or a JSONL file of needles"
    )


def niah_grid(
    model,
    lengths: Sequence[int] | None = None,
    depths: int | Sequence[float] = 5,
    needles: int | str | Sequence[dict] | None = 2,
    *,
    needle_set: str = "auto",
    needle_seed: int = 0,
    haystack: str | Path | Sequence[str | Path] = "synthetic:0",
    style: str = "auto",
    drop_long: bool = False,
    allow_overflow: bool = False,
    repeat_haystack: bool = True,
    chat_template_kwargs: dict | None = None,
    max_context: int | None = None,
) -> NIAHGrid:
    """The NIAH grid for ``model``: every needle x length x depth (needle-major). THE grid builder of the package.

    - ``model``: a loaded model (``rmi.load_model``), whose tokenizer and window are used, or a bare tokenizer.
    - ``lengths``: prompt lengths in tokens (default 500, 1000, 2000, those inside the window). A length over the
      window is an error, unless ``drop_long`` (dropped, logged) or ``allow_overflow`` (built anyway).
    - ``depths``: needle depths in percent, or an int ``n`` for Wu et al.'s ``n`` evenly spaced depths 0-100.
    - ``needles``: how many needles of ``needle_set`` (``None``: all), a JSONL file, or the needle dicts.
    - ``needle_set``: ``"default"`` (the package's needles), ``"eval"`` / ``"train"`` (the synthetic needles of
      that split, ``needle_seed``; ``"eval"`` is held out of the organisms' training), a JSONL file, or
      ``"auto"``: ``"eval"`` for the package's organisms, ``"default"`` for every other model.
    - ``haystack``: ``"synthetic:SEED"``, a ``.txt`` file or folder, or one such spec per needle.
    - ``style``: ``"chat"``, ``"qa"``, ``"continuation"`` or ``"auto"`` (``chat`` where the tokenizer has a chat
      template, else ``qa``).
    - ``repeat_haystack``: repeat a haystack too short for the longest length (Wu et al.'s code does).
    - ``max_context``: the window, where ``model`` is a bare tokenizer (a model's own window is used otherwise).
    """
    tokenizer, window, name = _tokenizer_and_window(model)
    window = window if max_context is None else int(max_context)
    if isinstance(depths, int) and depths < 1:
        raise InputError(f"depths must be >= 1 (a number of depths) or a list of percentages, got {depths}")
    depth_list = wu_depths(depths) if isinstance(depths, int) else list(depths)
    if not depth_list or any(not 0 <= float(d) <= 100 for d in depth_list):
        raise InputError(f"depths must be percentages in [0, 100], got {list(depth_list)}")
    if style == "auto":
        style = "chat" if getattr(tokenizer, "chat_template", None) else "qa"
    if style not in STYLES:
        raise InputError(f"unknown prompt style {style!r}; use one of auto, {', '.join(STYLES)}")
    if lengths is None:
        chosen = [n for n in (500, 1000, 2000) if window is None or n <= window]
        length_list = chosen or [int(window or 500)]
    else:
        length_list = [int(n) for n in lengths]
        if not length_list or min(length_list) < 0:  # a length below a needle's prompt is skipped (logged)
            raise InputError(f"lengths must be token counts >= 0, got {list(lengths)}")
        over = [n for n in length_list if window is not None and n > window]
        if over and drop_long:
            log.info("dropping lengths %s: longer than the window of %d tokens", over, window)
            length_list = [n for n in length_list if n not in over]
            if not length_list:
                raise InputError(f"every length {over} is longer than the model's window of {window} tokens")
        elif over and not allow_overflow:
            raise InputError(
                f"lengths {over} are longer than {name or 'the model'}'s window of {window} tokens; use lengths "
                f"up to {window} (or drop_long=True to drop them, allow_overflow=True to build them anyway)"
            )
    needle_list, set_name = _grid_needles(needles, needle_set, needle_seed, name)
    if window is not None and not allow_overflow:
        for i, needle in enumerate(needle_list):
            low = min_context_length(tokenizer, needle, style, chat_template_kwargs)
            if low > window:
                raise InputError(
                    f"needle {i} ({set_name}) needs a prompt of {low} tokens without any haystack, more than "
                    f"the model's window of {window}: shorten the needle"
                )
    specs = [haystack] if isinstance(haystack, str | Path) else list(haystack)
    # synthetic text: every word is at least one token; a longer text with the same seed starts with the shorter
    hays = [load_haystack(spec, num_words=max(4096, 2 * max(length_list))) for spec in specs]
    samples = build_grid(
        tokenizer,
        hays[0] if len(specs) == 1 and isinstance(haystack, str | Path) else hays,
        needle_list,
        length_list,
        depth_list,
        style,
        repeat_haystack=repeat_haystack,
        max_context=window,
        allow_overflow=allow_overflow,
        chat_template_kwargs=chat_template_kwargs,
    )
    spec = {
        "lengths": length_list,
        "depths": [float(d) for d in depth_list],
        "needles": len(needle_list),
        "needle_set": set_name,
        "needle_seed": needle_seed if set_name in ("eval", "train") else None,
        "haystack": str(haystack) if isinstance(haystack, str | Path) else [str(h) for h in haystack],
        "style": style,
    }
    return NIAHGrid(samples, spec)


# ------------------------------------------------------------------------------------------------------ config
@dataclass
class NIAHConfig:
    """What NIAH samples to build. ``haystack``: a path, ``"synthetic"`` or ``"synthetic:SEED"``, or a list of
    such specs, one per needle; ``needles``: a JSONL path, or None for the package's default needles;
    ``lengths``: total prompt lengths in tokens; ``depths``: needle depths in percent; ``style``: ``chat``,
    ``qa`` or ``continuation``; ``allow_overflow``: build prompts longer than the model's window;
    ``repeat_haystack``: repeat a haystack that is too short instead of failing."""

    haystack: str | list[str] = "synthetic"
    needles: str | None = None
    lengths: list[int] = field(default_factory=lambda: linspace_lengths(0, 5000, 20))
    depths: list[float] = field(default_factory=lambda: [*wu_depths()])  # ints, as Wu et al. name them
    style: str = "chat"
    allow_overflow: bool = False
    repeat_haystack: bool = False
    chat_template_kwargs: dict | None = None

    def check(self) -> dict[str, Any]:
        """Read the haystacks and needles (no model needed) and check the grid, so that bad input fails before
        a model is loaded. Returns the inputs' identities (content hashes, prompt style) that change a sample."""
        if not self.lengths or any(int(n) < 0 for n in self.lengths):
            raise InputError(f"lengths must be token counts >= 0, got {self.lengths}")
        if not self.depths or any(not 0 <= float(d) <= 100 for d in self.depths):
            raise InputError(f"depths must be percentages in [0, 100], got {self.depths}")
        if self.style not in STYLES:
            raise InputError(f"unknown prompt style {self.style!r}; use one of {', '.join(STYLES)}")
        needles = read_needles(self.needles) if self.needles else default_needles()
        specs = [self.haystack] if isinstance(self.haystack, str) else list(self.haystack)
        if len(specs) > 1 and len(specs) != len(needles):
            raise InputError(
                f"{len(specs)} haystacks for {len(needles)} needles; give one haystack or one per needle"
            )
        digests = [haystack_digest(spec) for spec in specs]
        blob = json.dumps(needles, sort_keys=True).encode("utf-8")
        return {
            "haystack_sha256": digests[0] if len(digests) == 1 else digests,
            "needles_sha256": hashlib.sha256(blob).hexdigest()[:16],
            "prompt_style": self.style,
            "chat_template_kwargs": self.chat_template_kwargs,
        }

    def build(self, tokenizer, max_context: int | None = None) -> list[NIAHSample]:
        """The samples (:func:`niah_grid`), for a tokenizer and (optionally) the model's window ``max_context``."""
        return niah_grid(
            tokenizer,
            self.lengths,
            self.depths,
            None,
            needle_set=self.needles or "default",
            haystack=self.haystack,
            style=self.style,
            allow_overflow=self.allow_overflow,
            repeat_haystack=self.repeat_haystack,
            chat_template_kwargs=self.chat_template_kwargs,
            max_context=max_context,
        )
