"""Held-out English paragraphs for the perplexity part of the short-context general check (``ppl_texts.jsonl``).

30 paragraphs written for this package (91-112 words each, about 3,000 words in all; fields ``id``, ``topic``,
``text``): plain English prose on everyday topics (weather, cooking, history, a letter, short stories, science,
travel, work, money, ...), none of it shared with the instruction prompts or the short questions. They replace, for
real chat models, the ``text`` task of the long-context suite, whose synthetic prose ("Petemar wrote in a journal
that the song faded and then faded.") measures how well a model predicts invented words and templated sentences
rather than English. Score them with ``evaluation.sequence_nll(model, [t.text for t in load_ppl_texts()])``
(summed NLL and token counts; perplexity = exp(total NLL / total tokens)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_PATH", "PplText", "load_ppl_texts"]

DEFAULT_PATH = Path(__file__).with_name("ppl_texts.jsonl")


@dataclass(frozen=True)
class PplText:
    id: str
    topic: str
    text: str


def load_ppl_texts(path: str | Path | None = None) -> list[PplText]:
    """The paragraphs of ``path`` (default: the packaged ``ppl_texts.jsonl``); ids must be unique, texts non-empty."""
    path = Path(path) if path is not None else DEFAULT_PATH
    out: list[PplText] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not str(row.get("text", "")).strip():
                raise ValueError(f"{path}:{n}: empty text")
            out.append(PplText(row["id"], row.get("topic", ""), row["text"]))
    if len({t.id for t in out}) != len(out):
        raise ValueError(f"{path}: duplicate ids")
    return out
