"""The general instruction prompt set: determinism, size, distinctness, split, make-up, grammar, docs in sync."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from retmask_interp.data import instructions as I
from retmask_interp.data.instructions import (
    KINDS,
    InstructionConfig,
    instruction_pool,
    instruction_prompts,
    normalize_prompt,
    prompt_split,
    summarize_prompts,
    summary_markdown,
)
from retmask_interp.retmask.pairs import load_prompts

REPO = Path(__file__).resolve().parents[2]
W = I.WORDS
DEFAULT = InstructionConfig()


@pytest.fixture(scope="module")
def prompts():
    return instruction_prompts(DEFAULT)


def _digest(ps) -> str:
    return hashlib.sha256("\n".join(f"{p.id}|{p.split}|{p.text}" for p in ps).encode()).hexdigest()


# -- determinism -------------------------------------------------------------------------------------------------
def test_same_config_same_prompts(prompts):
    I.instruction_pool.cache_clear()
    again = instruction_prompts(InstructionConfig())
    assert again == prompts


def test_same_prompts_in_other_processes(prompts):
    """No dependence on hash randomisation or set order: two fresh interpreters give the same set."""
    code = (
        "import hashlib;from retmask_interp.data.instructions import instruction_prompts as f;"
        "print(hashlib.sha256('\\n'.join(f'{p.id}|{p.split}|{p.text}' for p in f()).encode()).hexdigest())"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for hash_seed in ("1", "987"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env | {"PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == _digest(prompts)


def test_seed_changes_the_fillers(prompts):
    other = instruction_prompts(InstructionConfig(seed=1))
    assert len(other) == len(prompts)
    shared = {p.text for p in prompts} & {p.text for p in other}
    assert len(shared) < 0.8 * len(prompts)


def test_smaller_n_is_a_prefix(prompts):
    small = instruction_prompts(InstructionConfig(n=700))
    assert small == prompts[:700]


# -- size and distinctness ---------------------------------------------------------------------------------------
def test_at_least_2000_distinct_training_prompts(prompts):
    assert len(prompts) == DEFAULT.n >= 2000
    assert sum(p.split == "train" for p in prompts) >= 2000
    assert len(instruction_pool()) >= 3500  # room for larger sets


def test_texts_and_ids_distinct(prompts):
    assert len({normalize_prompt(p.text) for p in prompts}) == len(prompts)
    assert len({p.id for p in prompts}) == len(prompts)
    assert all(re.fullmatch(rf"{p.kind}-[0-9a-f]{{10}}", p.id) for p in prompts)


_COUNT_WORDS = r"\b(two|three|four|five|six|seven|ten)\b"


def test_no_prompts_differ_only_in_a_count(prompts):
    """ "List three X" and "List five X" are one task: removing count words leaves distinct texts."""
    stripped = Counter(
        re.sub(_COUNT_WORDS, "#", normalize_prompt(p.text)) for p in prompts if p.kind != "reasoning"
    )
    assert [t for t, c in stripped.items() if c > 1] == []


def test_rewordings_never_share_a_value():
    """Each how-to task, skill, concept, poem subject, ... is asked in one wording only."""
    groups = {
        "howto/task": W.HOWTO_TASKS,
        "howto/skill": W.SKILLS,
        "explanation/concept": W.CONCEPTS,
        "explanation/why": W.WHY_QUESTIONS,
        "creative/poem": W.POEM_SUBJECTS,
        "list/category": W.LIST_CATEGORIES,
    }
    pool = instruction_pool()
    for base, values in groups.items():
        where: dict[str, set[str]] = {}
        for _, name, text in pool:
            if name.rstrip("0123456789") == base:
                value = max((v for v in values if v in text), key=len)  # the longest value the text holds
                where.setdefault(value, set()).add(name)
        assert len({n for names in where.values() for n in names}) >= 2, base  # really several wordings
        assert all(len(names) == 1 for names in where.values()), (base, where)


def test_paragraphs_are_not_overused(prompts):
    uses = Counter(par for p in prompts for par in W.PARAGRAPHS if par in p.text)
    assert len(uses) == len(W.PARAGRAPHS)  # every paragraph is used
    assert max(uses.values()) <= 10


# -- split -------------------------------------------------------------------------------------------------------
def test_split_fraction_and_disjointness(prompts):
    train = {p.text for p in prompts if p.split == "train"}
    held = {p.text for p in prompts if p.split == "eval"}
    assert train and held and not train & held
    assert abs(len(held) / len(prompts) - DEFAULT.eval_fraction) < 0.03
    assert {p.split for p in prompts} == {"train", "eval"}


def test_split_depends_on_the_text_only(prompts):
    by_text = {p.text: p.split for p in prompts}
    for p in instruction_prompts(InstructionConfig(seed=1)):  # another seed, other positions
        if p.text in by_text:
            assert p.split == by_text[p.text]
    assert all(prompt_split(p.text, DEFAULT.eval_fraction) == p.split for p in prompts)


def test_split_is_monotone_in_the_fraction(prompts):
    wider = instruction_prompts(InstructionConfig(eval_fraction=0.3))
    held = {p.text for p in prompts if p.split == "eval"}
    held_wide = {p.text for p in wider if p.split == "eval"}
    assert held < held_wide
    assert abs(len(held_wide) / len(wider) - 0.3) < 0.04
    assert all(p.split == "train" for p in instruction_prompts(InstructionConfig(n=300, eval_fraction=0.0)))


# -- make-up -----------------------------------------------------------------------------------------------------
def test_every_kind_present_with_a_reasonable_share(prompts):
    counts = Counter(p.kind for p in prompts)
    assert set(counts) == set(KINDS)
    weights = sum(I.KIND_WEIGHTS.values())
    for kind in KINDS:
        expected = I.KIND_WEIGHTS[kind] / weights
        assert abs(counts[kind] / len(prompts) - expected) < 0.02, kind
        assert sum(p.split == "eval" for p in prompts if p.kind == kind) >= 10, kind


def test_no_template_dominates(prompts):
    per_template = Counter(p.template for p in prompts)
    assert max(per_template.values()) <= DEFAULT.max_per_template
    per_kind_templates = Counter(
        I.TEMPLATES[[t.name for t in I.TEMPLATES].index(n)].kind for n in per_template
    )
    assert min(per_kind_templates.values()) >= 5
    assert all(p.template.split("/")[0] == p.kind for p in prompts)


def test_prompts_are_short(prompts):
    words = [len(p.text.split()) for p in prompts]
    assert max(words) <= 60
    assert sorted(words)[len(words) // 2] <= 15
    for p in prompts:
        if p.kind not in ("rewrite", "summarize", "classification"):
            assert len(p.text.split()) <= 35, p.text


def test_texts_are_well_formed():
    """No unfilled slot, no "a apple" / "an dog", one space between words, ends like a request."""
    exceptions = re.compile(r"\b[Aa] (uni|use|usu|eu|one)", re.I)
    for _, name, text in instruction_pool():
        assert "{" not in text and "}" not in text, text
        assert "  " not in text.replace("\n\n", " "), text
        for m in re.finditer(r"\b([Aa]n?) ([A-Za-z]+)", text):
            article, word = m.group(1).lower(), m.group(2).lower()
            if article == "a" and word[0] in "aeiou":
                assert exceptions.match(m.group(0)), (name, text)
            if article == "an":
                assert word[0] in "aeiouh", (name, text)
        assert text[-1] in '.?!"' or "\n\n" in text, (name, text)  # a quoted text may end without a stop


def test_article_and_plural_helpers():
    assert [I._article(w) for w in ("owl", "dog", "umbrella", "unicorn", "hour", "European bison")] == [
        "an owl",
        "a dog",
        "an umbrella",
        "a unicorn",
        "an hour",
        "a European bison",
    ]
    assert [I._plural(w) for w in ("fox", "butterfly", "polar bear", "sheep", "wolf", "day", "box")] == [
        "foxes",
        "butterflies",
        "polar bears",
        "sheep",
        "wolves",
        "days",
        "boxes",
    ]
    assert (
        I._render("{x:a} / {x:pl} / {x:cap} / {p:1}", {"x": "owl", "p": ("a", "b")})
        == "an owl / owls / Owl / b"
    )


def test_word_lists_reject_duplicates():
    with pytest.raises(ValueError, match="duplicate entries in word list PETS"):
        I.load_word_lists('{"PETS": ["cat", "dog", "cat"]}')
    with pytest.raises(ValueError, match="duplicate entries in word list ODD_ONE_OUT.fruits"):
        I.load_word_lists('{"ODD_ONE_OUT": {"fruits": ["fig", "fig"]}}')
    with pytest.raises(ValueError, match="not a list"):
        I.load_word_lists('{"PETS": "cat"}')


# Digests of the word lists and of the prompts built from them when the lists were Python literals
# (data/_instruction_words.py, removed when they became data/instruction_words.json): the data file holds the same
# lists, entry for entry and type for type (strings, pairs as tuples, objects of lists), and the prompt set is
# unchanged.
WORDS_SHA256 = "f486dbb4502366459dbad5b7754d35864241401125d0b77a23fe0e8f514cc76a"
PROMPTS_SHA256 = (
    "c167a29cc96f2ca8ecb659946e6cf84c79b26cbe57f0e11ce50e7bd62d03369d"  # id|split|text|kind|template
)
POOL_SHA256 = "5e8df65b5761bba66cc0574fddef79cdff5187db4f6660c3fc4a4f90dda01ca8"  # instruction_pool() as JSON


def test_word_data_file_holds_the_former_literals(prompts):
    import json

    lists = vars(W)
    assert len(lists) == 99
    for name, value in lists.items():  # the types the literals had
        groups = value.values() if isinstance(value, dict) else [value]
        assert all(isinstance(g, tuple) for g in groups), name
        for g in groups:
            assert all(isinstance(x, str) for x in g) or all(
                isinstance(x, tuple) and all(isinstance(y, str) for y in x) for x in g
            ), name
    canon = json.dumps(lists, ensure_ascii=False, sort_keys=True)
    assert hashlib.sha256(canon.encode()).hexdigest() == WORDS_SHA256
    built = "\n".join(f"{p.id}|{p.split}|{p.text}|{p.kind}|{p.template}" for p in prompts)
    assert hashlib.sha256(built.encode()).hexdigest() == PROMPTS_SHA256
    pool = json.dumps(instruction_pool())
    assert hashlib.sha256(pool.encode()).hexdigest() == POOL_SHA256


def test_summary_counts(prompts):
    summary = summarize_prompts(prompts)
    assert summary["total"] == summary["distinct"] == len(prompts)
    rows = summary["kinds"]
    assert list(rows) == [*KINDS, "all"]
    assert sum(rows[k]["total"] for k in KINDS) == rows["all"]["total"] == len(prompts)
    for r in rows.values():
        assert r["train"] + r["eval"] == r["total"]
        w = r["words"]
        assert w["min"] <= w["p10"] <= w["p50"] <= w["p90"] <= w["max"]
    table = summary_markdown(summary)
    assert len(table.splitlines()) == 2 + len(KINDS) + 1
    assert "| all | " in table


def test_summary_of_a_hand_made_set():
    ps = [
        I.Prompt("a", "factual", "one two three", "train", "t1"),
        I.Prompt("b", "factual", "one", "eval", "t2"),
    ]
    row = summarize_prompts(ps)["kinds"]["factual"]
    assert (row["train"], row["eval"], row["templates"]) == (1, 1, 2)
    assert row["words"]["p50"] == 2.0 and row["words"]["p10"] == pytest.approx(1.2)
    assert row["chars"]["max"] == len("one two three")


def test_config_validation():
    with pytest.raises(ValueError):
        InstructionConfig(n=-1)
    with pytest.raises(ValueError):
        InstructionConfig(eval_fraction=1.0)
    with pytest.raises(ValueError):
        InstructionConfig(max_per_template=0)
    with pytest.raises(ValueError, match="exceeds"):
        instruction_prompts(InstructionConfig(n=10**6))


def test_records_feed_pairs_load_prompts(prompts):
    loaded = load_prompts([p.to_record() for p in prompts[:20]])
    assert [(q.text, q.id) for q in loaded] == [(p.text, p.id) for p in prompts[:20]]
