"""The one NIAH prompt template (Wu et al.'s user message), used by the detection grids (``data.niah``) and the
training / evaluation tasks (``data.tasks``), so that the prompts a head is detected on and the ones the organisms
and RetMask train on cannot drift apart.

``<book>{context}</book>`` then, for one question, ``Based on the content of the book, Question: {question}`` and
``Answer:`` on its own line; for several, ``answer each question.`` and the numbered questions.
"""

from __future__ import annotations

__all__ = [
    "MULTI_QUESTION_TEMPLATE",
    "WU_PROMPT_TEMPLATE",
    "multi_question_prompt",
    "niah_prompt",
    "prompt_parts",
]

WU_PROMPT_TEMPLATE = "<book>{context}</book>\nBased on the content of the book, Question: {question}\nAnswer:"
MULTI_QUESTION_TEMPLATE = (
    "<book>{context}</book>\nBased on the content of the book, answer each question.\n{questions}\nAnswer:"
)


def prompt_parts(question: str) -> tuple[str, str]:
    """The text before and after the context in :data:`WU_PROMPT_TEMPLATE` for ``question``."""
    head, _, tail = WU_PROMPT_TEMPLATE.partition("{context}")
    return head, tail.replace("{question}", question)


def niah_prompt(context: str, question: str) -> str:
    """The published NIAH user message (Wu et al.): ``<book>...</book>`` then the question and ``Answer:``."""
    head, tail = prompt_parts(question)
    return head + context + tail


def multi_question_prompt(context: str, questions: list[str]) -> str:
    """The same book, then several numbered questions (``Question 1: ...``) answered one per line."""
    numbered = "\n".join(f"Question {i + 1}: {q}" for i, q in enumerate(questions))
    return MULTI_QUESTION_TEMPLATE.format(context=context, questions=numbered)
