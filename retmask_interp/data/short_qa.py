"""Short questions with known short answers (``short_qa.jsonl``) and an exact-match scorer fair to chat models.

The short-context general check of the RetMask experiment: does DPO keep a small chat model's everyday knowledge?
``short_qa.jsonl`` holds 212 questions written for this package (fields ``id``, ``question``, ``answers`` = the
accepted answer strings, ``kind``, ``difficulty``), by kind: capital 35, arithmetic 32, science 24, opposite 22,
calendar 22, general 28, plural 17, units 17, spelling 15; difficulty easy / medium / hard. No question is a yes/no
question and no answer is an article. Ask each question as the user turn (chat template), decode greedily with a
small budget (``MAX_NEW_TOKENS``), and score the response with ``score_response``.

The rule. A chat model answers "The capital of France is Paris." as often as "Paris", so comparing the whole
response would be unfair, and a substring test would be too lenient (any mention counts). The scorer reads one
*answer sentence* and accepts it when an accepted answer is the sentence, opens it, follows its verb, or closes it:

1. Answer sentence: the first non-empty line of the response (Markdown ``**``, ``#``, ``>``, bullets removed), cut
   into sentences at ``. ! ?`` followed by a space (not after a single capital letter, as in "D.C."); the first
   sentence that is not a pleasantry ("Sure!", "Certainly.", "Great question!", ...) is the answer sentence; a line
   holding only pleasantries passes to the next line.
2. Normalisation (both sides): Unicode accents removed, lower case, ``=`` -> "equals", ``+`` -> "plus",
   ``×`` -> "times", ``%`` -> "percent", a spaced ``-`` between numbers -> "minus", thousands commas dropped
   ("1,000" -> "1000"), apostrophes dropped ("it's" -> "its"); ``, ; : ( ) --`` and other spaced dashes mark
   clause breaks, other punctuation is dropped, the articles a / an / the are dropped; tokens are words and numbers
   ("3.50" -> "3.5"; "H2O" stays one word). When the answer is a number, number words in the response become
   digits ("twenty-four" -> "24", "one thousand" -> "1000"); otherwise they stay words (so "12" does not answer
   "How do you spell 12 in words?").
3. Match, for some accepted answer A (a token sequence) and the answer sentence S:
   (whole) S is A; or
   (start) S starts with A, followed by the end, a clause break, a verb cue (is, are, was, equals, has, ...) or,
   for a number, a word that is not an operator ("7 days" counts, "7 times 1 equals 8" does not); or
   (cue) A follows the first verb cue of S ("... is Paris", "The answer is: 42", "It's 42", "2 + 3 = 5"); or
   (end) S has no negation (not, no, never, isn't, ...) and ends with A, or, for a number, its last number is A
   ("Water freezes at 0 degrees Celsius").
   When A occurs in the question itself (a choice question, "Which is spelled correctly: ... or receive?"), the
   *end* rule is off, so echoing the question does not score.

Known limits: a correct answer stated late ("Lyon is not it; it is Paris") or an unusual sentence shape ("A mouse is
smaller than an elephant" for "Which is bigger?") is not credited; a wrong answer that ends a sentence starting
with the right one can be. The tests in ``tests/data/test_short_qa.py`` list the cases that must and must not match.
This normalisation differs from ``evaluation.normalize_answer`` (SQuAD style) on purpose: SQuAD's turns "3.5" into
"35" and keeps "twenty-four" apart from "24".
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PATH",
    "MAX_NEW_TOKENS",
    "ShortQA",
    "answer_sentence",
    "load_short_qa",
    "normalize_tokens",
    "score_response",
    "score_short_qa",
    "summarize_scores",
]

DEFAULT_PATH = Path(__file__).with_name("short_qa.jsonl")
MAX_NEW_TOKENS = 32  # enough for a one-sentence answer; the scorer reads only the first answer sentence

_ARTICLES = {"a", "an", "the"}
_CUES = {
    "is", "are", "was", "were", "equals", "equal", "answer", "its", "thats", "theres", "be", "makes", "make",
    "gives", "has", "have", "called", "named", "get",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "cannot", "cant", "neither",
    "nor", "incorrect", "wrong",
}  # fmt: skip
_OPERATORS = {
    "plus",
    "minus",
    "times",
    "divided",
    "multiplied",
    "over",
    "x",
    "squared",
    "cubed",
    "and",
    "add",
}
_FILLERS = {
    "sure", "certainly", "of course", "okay", "ok", "yes", "great question", "good question", "absolutely",
    "hello", "hi", "sure thing", "no problem", "here you go", "happy to help", "i can help with that",
    "lets see", "let me think", "well", "hmm", "of course here is answer", "here is answer", "heres answer",
    "answer", "sure here is answer", "sure heres answer", "certainly here is answer",
}  # fmt: skip
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_BREAK = "|"


@dataclass(frozen=True)
class ShortQA:
    """One question; ``answers`` are the accepted answers (any one matching scores 1)."""

    id: str
    question: str
    answers: tuple[str, ...]
    kind: str
    difficulty: str = ""


def load_short_qa(path: str | Path | None = None) -> list[ShortQA]:
    """The questions of ``path`` (default: the packaged ``short_qa.jsonl``), checked: unique ids, a non-empty
    question and at least one non-empty answer each."""
    path = Path(path) if path is not None else DEFAULT_PATH
    items: list[ShortQA] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            answers = row.get("answers")
            if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
                raise ValueError(f"{path}:{n}: 'answers' must be a non-empty list of strings")
            if not all(normalize_tokens(a) for a in answers):
                raise ValueError(f"{path}:{n}: an answer normalises to nothing: {answers}")
            if not str(row.get("question", "")).strip():
                raise ValueError(f"{path}:{n}: empty question")
            if row.get("id") in seen:
                raise ValueError(f"{path}:{n}: duplicate id {row.get('id')!r}")
            seen.add(row["id"])
            items.append(
                ShortQA(row["id"], row["question"], tuple(answers), row["kind"], row.get("difficulty", ""))
            )
    return items


# -- normalisation -----------------------------------------------------------------------------------------------
def _canonical_number(token: str) -> str:
    if "." in token:
        token = token.rstrip("0").rstrip(".")
    return token.lstrip("0") or "0"


def _words_to_numbers(tokens: list[str]) -> list[str]:
    """Runs of number words ("twenty four", "one hundred and five", "a thousand" after article removal) as digits."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t not in _UNITS and t not in _TENS and t not in _SCALES:
            out.append(t)
            i += 1
            continue
        total, current = 0, 0
        while i < len(tokens):
            t = tokens[i]
            if t in _UNITS:
                current += _UNITS[t]
            elif t in _TENS:
                current += _TENS[t]
            elif t in _SCALES:
                if _SCALES[t] == 100:
                    current = max(current, 1) * 100
                else:
                    total += max(current, 1) * _SCALES[t]
                    current = 0
            elif (
                t == "and"
                and tokens[i - 1] in _SCALES
                and i + 1 < len(tokens)
                and (tokens[i + 1] in _UNITS or tokens[i + 1] in _TENS)
            ):
                pass
            else:
                break
            i += 1
        out.append(str(total + current))
    return out


def normalize_tokens(text: str, *, numbers: bool = False, breaks: bool = False) -> list[str]:
    """The token sequence of ``text`` under the rule in the module docstring; ``numbers`` turns number words into
    digits, ``breaks`` keeps clause breaks as ``"|"`` tokens."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
    text = (
        text.replace("=", " equals ").replace("+", " plus ").replace("×", " times ").replace("÷", " divided ")
    )
    text = text.replace("%", " percent ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"['’‘`]", "", text)
    text = re.sub(
        r"(?<=\d)\s+-\s+(?=\d)", " minus ", text
    )  # "10 - 5" is arithmetic, "Paris - a city" a break
    text = re.sub(r"[,;:()\[\]—–]|\s-\s|--", f" {_BREAK} ", text)
    tokens = re.findall(r"[a-z]+\d[a-z0-9]*|\d+(?:\.\d+)?|[a-z]+|\|", text)  # "h2o" stays one word
    tokens = [_canonical_number(t) if _NUMBER.fullmatch(t) else t for t in tokens if t not in _ARTICLES]
    if numbers:
        tokens = _words_to_numbers(tokens)
    if not breaks:
        tokens = [t for t in tokens if t != _BREAK]
    return tokens


# -- the answer sentence -----------------------------------------------------------------------------------------
_MARKUP = re.compile(r"^\s*(?:[#>*\-•]+\s*)+")
_SENTENCE_END = re.compile(r"(?<![\s.][A-Z]\.)(?<=[.!?])\s+")


def _is_filler(sentence: str) -> bool:
    words = normalize_tokens(sentence)
    return not words or " ".join(words) in _FILLERS


def answer_sentence(response: str) -> str:
    """The sentence of ``response`` that the scorer reads (see the module docstring); ``""`` if there is none."""
    for line in response.splitlines():
        line = _MARKUP.sub("", line.replace("**", "").replace("__", "")).strip()
        if not line:
            continue
        for sentence in _SENTENCE_END.split(line):
            if not _is_filler(sentence):
                return sentence.strip()
    return ""


# -- matching ----------------------------------------------------------------------------------------------------
def _find(seq: list[str], sub: list[str]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def _after_words(tokens: list[str], n: int) -> list[str]:
    """``tokens`` after its first ``n`` word tokens (clause breaks kept)."""
    seen = 0
    for i, t in enumerate(tokens):
        if t != _BREAK:
            seen += 1
            if seen == n:
                return tokens[i + 1 :]
    return []


def _matches(sentence: list[str], answer: list[str], numeric: bool, echoed: bool) -> bool:
    words = [t for t in sentence if t != _BREAK]
    if not answer or not words:
        return False
    if words == answer:  # whole
        return True
    n = len(answer)
    if words[:n] == answer:  # start
        rest = _after_words(sentence, n)
        if not rest or rest[0] == _BREAK or rest[0] in _CUES:
            return True
        if numeric and not _NUMBER.fullmatch(rest[0]) and rest[0] not in _OPERATORS:
            return True
    cue = next((i for i, t in enumerate(sentence) if t in _CUES), None)
    if cue is not None:  # cue
        j = cue + 1
        while j < len(sentence) and (sentence[j] in _CUES or sentence[j] == _BREAK):
            j += 1
        if sentence[j : j + n] == answer:
            return True
    if echoed or any(t in _NEGATIONS for t in words):
        return False
    if numeric:  # end: the last number
        last = next((t for t in reversed(words) if _NUMBER.fullmatch(t)), None)
        return last == answer[0]
    return words[-n:] == answer  # end


def score_response(response: str, answers: Sequence[str], question: str = "") -> float:
    """1.0 if the response's answer sentence matches one of ``answers`` by the rule of the module docstring."""
    text = answer_sentence(response)
    if not text:
        return 0.0
    for answer in answers:
        probe = normalize_tokens(answer)
        numeric = len(probe) == 1 and bool(_NUMBER.fullmatch(probe[0]))
        target = normalize_tokens(answer, numbers=numeric)
        sentence = normalize_tokens(text, numbers=numeric, breaks=True)
        echoed = _find(normalize_tokens(question, numbers=numeric), target) if question else False
        if _matches(sentence, target, numeric, echoed):
            return 1.0
    return 0.0


def score_short_qa(items: Sequence[ShortQA], responses: Sequence[str]) -> list[float]:
    """``score_response`` of every item with its response (same order)."""
    if len(items) != len(responses):
        raise ValueError(f"{len(items)} questions but {len(responses)} responses")
    return [score_response(r, q.answers, q.question) for q, r in zip(items, responses)]


def summarize_scores(items: Iterable[ShortQA], scores: Iterable[float]) -> dict[str, Any]:
    """Mean exact match overall, per kind and per difficulty, with counts."""
    groups: dict[str, list[float]] = defaultdict(list)
    for q, s in zip(items, scores, strict=True):
        for key in ("all", f"kind:{q.kind}", f"difficulty:{q.difficulty}"):
            groups[key].append(float(s))
    return {k: {"n": len(v), "exact_match": sum(v) / len(v)} for k, v in sorted(groups.items())}
