"""Short questions with known answers, the exact-match scorer, and the held-out perplexity texts."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from retmask_interp.data.instructions import instruction_pool, normalize_prompt
from retmask_interp.data.ppl_texts import DEFAULT_PATH as PPL_PATH
from retmask_interp.data.ppl_texts import load_ppl_texts
from retmask_interp.data.short_qa import (
    DEFAULT_PATH,
    ShortQA,
    answer_sentence,
    load_short_qa,
    normalize_tokens,
    score_response,
    score_short_qa,
    summarize_scores,
)


@pytest.fixture(scope="module")
def items():
    return load_short_qa()


# -- the file ----------------------------------------------------------------------------------------------------
def test_jsonl_is_valid_with_unique_ids():
    rows = [
        json.loads(line) for line in DEFAULT_PATH.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    assert len(rows) >= 150
    for row in rows:
        assert set(row) == {"id", "question", "answers", "kind", "difficulty"}, row
        assert isinstance(row["answers"], list) and row["answers"] and all(a.strip() for a in row["answers"])
        assert row["question"].strip().endswith(("?", "."))
        assert row["id"].startswith(row["kind"] + "-")
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"] for r in rows}) == len(rows)


def test_kinds_and_difficulties_are_varied(items):
    kinds = Counter(q.kind for q in items)
    assert len(kinds) >= 8 and min(kinds.values()) >= 10, kinds
    difficulty = Counter(q.difficulty for q in items)
    assert set(difficulty) == {"easy", "medium", "hard"}
    assert min(difficulty.values()) >= 25, difficulty


def test_answers_are_short_and_not_yes_no(items):
    for q in items:
        for a in q.answers:
            tokens = normalize_tokens(a)
            assert 1 <= len(tokens) <= 4, (q.id, a)
            assert tokens[0] not in {"yes", "no", "true", "false"}, q.id


def test_questions_are_not_in_the_instruction_prompts(items):
    pool = {normalize_prompt(text) for _, _, text in instruction_pool()}
    joined = "\n".join(pool)
    for q in items:
        assert normalize_prompt(q.question) not in joined, q.question


def test_loader_rejects_bad_files(tmp_path):
    good = {"id": "x-1", "question": "What is 2 + 2?", "answers": ["4"], "kind": "x"}
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match="duplicate id"):
        load_short_qa(path)
    path.write_text(json.dumps(good | {"answers": []}) + "\n")
    with pytest.raises(ValueError, match="answers"):
        load_short_qa(path)
    path.write_text(json.dumps(good | {"answers": ["the"]}) + "\n")
    with pytest.raises(ValueError, match="normalises to nothing"):
        load_short_qa(path)
    path.write_text(json.dumps(good) + "\n")
    assert load_short_qa(path) == [ShortQA("x-1", "What is 2 + 2?", ("4",), "x", "")]


# -- normalisation and the answer sentence -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "numbers", "expected"),
    [
        ("The Capital is PARIS!", False, ["capital", "is", "paris"]),
        ("Brasília", False, ["brasilia"]),
        ("1,000 grams", True, ["1000", "grams"]),
        ("3.50 and 4.0", False, ["3.5", "and", "4"]),
        ("twenty-four hours", True, ["24", "hours"]),
        ("twenty-four hours", False, ["twenty", "four", "hours"]),
        ("one hundred and five", True, ["105"]),
        ("a thousand", True, ["1000"]),
        ("2 + 3 = 5", False, ["2", "plus", "3", "equals", "5"]),
        ("10 - 5 = 6", False, ["10", "minus", "5", "equals", "6"]),
        ("It's H2O.", False, ["its", "h2o"]),
        ("twelve", True, ["12"]),
    ],
)
def test_normalize_tokens(text, numbers, expected):
    assert normalize_tokens(text, numbers=numbers) == expected


def test_clause_breaks_are_kept_on_request():
    assert normalize_tokens("Paris, of course", breaks=True) == ["paris", "|", "of", "course"]
    assert normalize_tokens("Paris, of course") == ["paris", "of", "course"]


@pytest.mark.parametrize(
    ("response", "sentence"),
    [
        ("Paris", "Paris"),
        ("Sure! The capital is Paris. It is big.", "The capital is Paris."),
        ("Certainly.\n\n**Paris** is the capital.", "Paris is the capital."),
        ("- Paris", "Paris"),
        (
            "It is Washington, D.C. It is on the coast.",
            "It is Washington, D.C. It is on the coast.",
        ),  # no cut
        ("It is 5. It is small.", "It is 5."),
        ("   \n\nOslo.\nMore text", "Oslo."),
        ("Sure!", ""),
        ("", ""),
    ],
)
def test_answer_sentence(response, sentence):
    assert answer_sentence(response) == sentence


# -- the scorer: cases that must and must not match --------------------------------------------------------------
MATCH = [
    ("Paris", ["Paris"], "What is the capital of France?"),
    ("paris.", ["Paris"], "What is the capital of France?"),
    ("The capital of France is Paris.", ["Paris"], "What is the capital of France?"),
    ("Paris is the capital of France.", ["Paris"], "What is the capital of France?"),
    ("Sure! The capital of France is Paris.", ["Paris"], "What is the capital of France?"),
    ("**Paris**\n\nParis has been the capital since...", ["Paris"], "What is the capital of France?"),
    ("The capital of France, which is in Europe, is Paris.", ["Paris"], "What is the capital of France?"),
    ("Paris, of course.", ["Paris"], "What is the capital of France?"),
    ("The capital of Brazil is Brasília.", ["Brasilia"], "What is the capital of Brazil?"),
    ("It is Washington, D.C. It lies on the Potomac.", ["Washington"], "What is the capital of the USA?"),
    ("2 + 3 = 5", ["5"], "What is 2 + 3?"),
    ("The answer is 5.", ["5"], "What is 2 + 3?"),
    ("It's 42.", ["42"], "What is 6 times 7?"),
    ("Six times seven equals forty-two.", ["42"], "What is 6 times 7?"),
    ("0.5 + 0.25 = 0.75", ["0.75"], "What is 0.5 + 0.25?"),
    ("There are 1,000 grams in a kilogram.", ["1000"], "How many grams are in a kilogram?"),
    ("One thousand.", ["1000"], "How many grams are in a kilogram?"),
    ("Water freezes at 0 degrees Celsius.", ["0"], "At what temperature does water freeze?"),
    ("A week has seven days.", ["7"], "How many days are in a week?"),
    ("7 days", ["7"], "How many days are in a week?"),
    ("There are 24 hours in a day, and 60 minutes in an hour.", ["24"], "How many hours are in a day?"),
    ("3 cats have 12 legs.", ["12"], "How many legs do 3 cats have in total?"),
    ('The plural of "mouse" is "mice".', ["mice"], 'What is the plural of "mouse"?'),
    ("The opposite of hot is cold.", ["cold"], 'What is the opposite of "hot"?'),
    ("Twelve", ["twelve"], "How do you spell the number 12 in words?"),
    (
        'The correct spelling is "receive".',
        ["receive"],
        'Which is spelled correctly: "recieve" or "receive"?',
    ),
    ("Romeo and Juliet was written by William Shakespeare.", ["Shakespeare"], "Who wrote Romeo and Juliet?"),
    ("An elephant is bigger than a mouse.", ["elephant"], "Which is bigger, an elephant or a mouse?"),
    ("The chemical formula for water is H2O.", ["H2O"], "What is the chemical formula for water?"),
    ("Here's the answer: Oslo", ["Oslo"], "What is the capital of Norway?"),
]

NO_MATCH = [
    ("The capital of France is Lyon.", ["Paris"], "What is the capital of France?"),
    ("The capital of France is not Paris.", ["Paris"], "What is the capital of France?"),
    ("I'm not sure.", ["Paris"], "What is the capital of France?"),
    ("", ["Paris"], "What is the capital of France?"),
    (
        "Lyon. Paris is nice too.",
        ["Paris"],
        "What is the capital of France?",
    ),  # only the first sentence counts
    ("10 - 5 = 6", ["5"], "What is 10 - 5?"),
    ("The answer is 15.", ["5"], "What is 2 + 3?"),
    ("7 times 1 equals 8", ["7"], "What is 7 times 1?"),
    ("5 - 0 = 4", ["5"], "What is 5 - 0?"),
    ("3 cats have 4 legs each.", ["12"], "How many legs do 3 cats have in total?"),
    ("0.5 + 0.25 = 0.8", ["0.75"], "What is 0.5 + 0.25?"),
    ("The plural of mouse is mouses, not mice.", ["mice"], 'What is the plural of "mouse"?'),
    ("Hot.", ["cold"], 'What is the opposite of "hot"?'),
    ("12", ["twelve"], "How do you spell the number 12 in words?"),
    (
        '"Recieve" is correct, not receive.',
        ["receive"],
        'Which is spelled correctly: "recieve" or "receive"?',
    ),
    ("The mouse is bigger than the elephant.", ["elephant"], "Which is bigger, an elephant or a mouse?"),
    ("The chemical formula for water is H2O.", ["O"], "What is the chemical symbol for oxygen?"),
    ("The capital of France is Parisian.", ["Paris"], "What is the capital of France?"),
    ("Sure!", ["Paris"], "What is the capital of France?"),
]


@pytest.mark.parametrize(("response", "answers", "question"), MATCH)
def test_scorer_accepts(response, answers, question):
    assert score_response(response, answers, question) == 1.0


@pytest.mark.parametrize(("response", "answers", "question"), NO_MATCH)
def test_scorer_rejects(response, answers, question):
    assert score_response(response, answers, question) == 0.0


def test_every_question_accepts_its_answer_in_common_shapes(items):
    for q in items:
        for shape in ("{}", "{}.", "The answer is {}.", "It is {}!", "Sure! {}", "**{}**"):
            assert score_response(shape.format(q.answers[0]), q.answers, q.question) == 1.0, (q.id, shape)


def test_no_question_accepts_another_questions_answer_or_its_own_echo(items):
    def forms(q):
        return {tuple(normalize_tokens(a, numbers=True)) for a in q.answers}

    for q in items:
        assert score_response(q.question, q.answers, q.question) == 0.0, q.id
        others = [o for o in items if o.kind == q.kind and not forms(o) & forms(q)]
        for o in others[:6]:
            for shape in ("{}", "The answer is {}."):
                assert score_response(shape.format(o.answers[0]), q.answers, q.question) == 0.0, (q.id, o.id)


def test_score_and_summarize_a_run(items):
    subset = items[:4]
    responses = [f"It is {q.answers[0]}." for q in subset[:3]] + ["No idea."]
    scores = score_short_qa(subset, responses)
    assert scores == [1.0, 1.0, 1.0, 0.0]
    summary = summarize_scores(subset, scores)
    assert summary["all"] == {"n": 4, "exact_match": 0.75}
    assert sum(v["n"] for k, v in summary.items() if k.startswith("kind:")) == 4
    with pytest.raises(ValueError):
        score_short_qa(subset, responses[:2])


# -- held-out perplexity texts -----------------------------------------------------------------------------------
def test_ppl_texts_are_valid_short_english_paragraphs():
    rows = [json.loads(line) for line in PPL_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = load_ppl_texts()
    assert len(texts) == len(rows) >= 25
    assert len({t.id for t in texts}) == len(texts)
    assert len({t.text for t in texts}) == len(texts)
    for t in texts:
        words = t.text.split()
        assert 60 <= len(words) <= 200, t.id
        assert t.text[-1] in ".!?"
        assert sum(w.strip(".,;:!?'\"").isalpha() for w in words) / len(words) > 0.9  # prose, not data
    assert len({t.topic for t in texts}) >= 15


def test_ppl_texts_share_no_sentence_with_the_prompts():
    pool = "\n".join(text for _, _, text in instruction_pool())
    for t in load_ppl_texts():
        for sentence in re.split(r"(?<=[.!?])\s+", t.text):
            assert sentence not in pool, (t.id, sentence)
