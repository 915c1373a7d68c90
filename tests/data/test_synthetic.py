"""Synthetic text: determinism, shape of the prose, needle format, and train/eval disjointness."""

from __future__ import annotations

import re

import pytest

from retmask_interp.data import synthetic as syn


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _template_words() -> set[str]:
    """Words the shared grammar itself contains (templates, fillers, needle frames)."""
    src = " ".join(syn._SENTENCE_TEMPLATES) + " " + " ".join(syn._FUNCTION_FILLERS)
    src += " ".join(" ".join(r[:2]) for r in syn._RELATIONS) + " ".join(syn._VP_VERBS + syn._VP_VERBS2)
    src = re.sub(r"\{[^}]*\}", " ", src)
    needle_frames = (
        "the secret ingredient of is what best thing to do in on a day password for hid under where did hide "
        "was built by who lucky charm eats only mixed with does eat will meet at noon an a "
        "two three four five six seven eight nine twelve port ford holm vale wick moor field "
        "village named had moved steps toward and beside"
    )
    return _words(src) | set(needle_frames.split())


def test_haystack_deterministic_and_prefix():
    a = syn.haystack_text(300, seed=4)
    assert a == syn.haystack_text(300, seed=4)
    assert a != syn.haystack_text(300, seed=5)
    assert syn.haystack_text(900, seed=4).startswith(a)


@pytest.mark.parametrize("n", [1, 50, 777])
def test_haystack_length_and_shape(n):
    text = syn.haystack_text(n, seed=1, split="train")
    words = len(text.split())
    assert n <= words <= n + 25  # stops at the first sentence end at or after n words
    assert text[-1] in ".!?"
    for para in text.split("\n\n"):
        assert para and para == para.strip()
        for sentence in re.split(r"(?<=[.!?]) ", para):
            assert sentence[0].isupper() and sentence[-1] in ".!?"


def test_haystack_is_varied():
    text = syn.haystack_text(3000, seed=0)
    assert text.count("\n\n") >= 20
    assert len(_words(text)) > 300
    assert {"!", "?"} <= set(text)


def test_pools_disjoint_and_nonempty():
    kinds = ["adj", "noun", "animal", "color", "substance", "unit", "activity", "profession", "material"]
    kinds += [f"topic_noun:{t}" for t in syn._TOPICS] + [f"topic_verb:{t}" for t in syn._TOPICS]
    for kind in kinds:
        train, ev = set(syn.pool(kind, "train")), set(syn.pool(kind, "eval"))
        assert train and ev, kind
        assert not train & ev, kind


def test_eval_text_has_no_training_content_words():
    train_vocab = _words(syn.haystack_text(20000, seed=0, split="train"))
    for n in syn.make_needles(400, seed=0, split="train"):
        train_vocab |= _words(n["needle"])
    eval_vocab = _words(syn.haystack_text(20000, seed=7, split="eval"))
    for n in syn.make_needles(400, seed=3, split="eval"):
        eval_vocab |= _words(n["needle"] + " " + n["question"])
    shared = {w for w in train_vocab & eval_vocab if not w.isdigit()}
    assert shared <= _template_words(), sorted(shared - _template_words())


def test_needles_format():
    needles = syn.make_needles(40, seed=2)
    assert needles == syn.make_needles(40, seed=2)
    assert syn.make_needles(10, seed=2) == needles[:10]
    assert len({n["needle"] for n in needles}) == 40
    for n in needles:
        assert set(n) == {"needle", "question", "real_needle"}
        assert n["real_needle"] in n["needle"]
        assert n["question"].endswith("?") and n["needle"].endswith(".")
        assert 2 <= len(n["real_needle"].split()) <= 10
    # the example of the brief's shape
    first = syn.make_needles(1, seed=0)[0]
    assert first["needle"].startswith("The secret ingredient of the ")
    assert first["question"].startswith("What is the secret ingredient of the ")


def test_needle_subject():
    for i in range(16):
        n = syn.needle_with_subject(i, seed=1)
        assert n["subject"].lower() in n["needle"].lower()


def test_codes_and_names_disjoint():
    import random

    rng = random.Random(0)
    train = {syn.random_code(rng, "train") for _ in range(300)}
    ev = {syn.random_code(rng, "eval") for _ in range(300)}
    assert not train & ev
    names_t = {syn.person_name(rng, "train") for _ in range(300)}
    names_e = {syn.person_name(rng, "eval") for _ in range(300)}
    assert not names_t & names_e


def test_plural():
    assert [syn.plural(w) for w in ("box", "berry", "day", "fox", "lamp", "brush")] == [
        "boxes",
        "berries",
        "days",
        "foxes",
        "lamps",
        "brushes",
    ]


def test_bad_split_and_sizes():
    with pytest.raises(ValueError, match="split"):
        syn.haystack_text(10, split="test")
    with pytest.raises(ValueError, match="split"):
        syn.make_needles(1, split="dev")
    with pytest.raises(ValueError, match=">= 0"):
        syn.haystack_text(-1)
    assert syn.haystack_text(0) == ""


def test_rich_invented_words_train_only():
    import random

    rich_style = syn.WordStyle(rich_word_rate=1.0)
    rng = random.Random(0)
    rich = {syn.invented_word(rng, "train", style=rich_style) for _ in range(400)}
    syllable_only = set("".join(syn._SYLLABLES))
    # built from English-like pieces: letters the syllable list never uses show up
    assert set("".join(rich)) - syllable_only
    assert not rich & syn._listed_words("eval")
    # the eval split never changes with the training setting
    before = [syn.invented_word(random.Random(1), "eval") for _ in range(5)]
    assert [syn.invented_word(random.Random(1), "eval", style=rich_style) for _ in range(5)] == before
    assert syn.make_needles(5, seed=3, split="eval", style=rich_style) == syn.make_needles(
        5, seed=3, split="eval"
    )
    assert syn.haystack_text(80, 3, "train", style=rich_style) != syn.haystack_text(80, 3, "train")


def test_rich_word_rate_zero_keeps_syllable_words():
    import random

    assert syn.DEFAULT_STYLE.rich_word_rate == 0.0  # the default reproduces the earlier training stages' data
    rng = random.Random(0)
    for _ in range(50):
        word = syn.invented_word(rng, "train")
        assert _splits(word), word  # a concatenation of list syllables


def test_word_style_is_passed_not_global():
    """The word settings travel as an argument (no module globals): a styled call leaves the default alone, and
    the settings are validated."""
    assert not [n for n in vars(syn) if n.startswith("TRAIN_")]
    plain = syn.haystack_text(120, seed=4, split="train")
    styled = syn.haystack_text(120, seed=4, split="train", style=syn.WordStyle(invented_rate=1.0))
    assert styled != plain
    assert syn.haystack_text(120, seed=4, split="train") == plain
    with pytest.raises(ValueError, match="invented_rate"):
        syn.WordStyle(invented_rate=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        syn.WordStyle(rich_word_rate=0.6, token_word_rate=0.6)


# Recorded from the code before WordStyle replaced the TRAIN_* globals (main 1cf3cb7): default settings must
# give the same text.
GOLDEN_TRAIN_HAYSTACK = (
    "Mokaga counted 70 ritas before the pupil improved. When the essay mafen, the sailor closed the ragal saw. "
    "In Ostnitor, the vo galne while the lizard slept. In Linrudri, the slate began while the dezan slept.\n\n"
    "Nobody knew why the painted brooch spread since then."
)
GOLDEN_EVAL_HAYSTACK = (
    "Yolin wrote in a journal that the merchant fell and then fell. The old astronomer liked sailing more than "
    "anything. Children in Mirpema were told that the guild shrank without a sound. When the merchant shrank, the "
    "smith closed the woolen hat."
)
GOLDEN_TRAIN_NEEDLES = [
    {
        "needle": "The lucky charm of Vete is 1843 charcoal monkeys.",
        "question": "What is the lucky charm of Vete?",
        "real_needle": "1843 charcoal monkeys",
    },
    {
        "needle": "The moose of Tapa eats only salt mixed with frozen migallu.",
        "question": "What does the moose of Tapa eat?",
        "real_needle": "salt mixed with frozen migallu",
    },
]


def test_default_style_output_unchanged():
    assert syn.haystack_text(40, seed=7, split="train") == GOLDEN_TRAIN_HAYSTACK
    assert syn.haystack_text(40, seed=7, split="eval") == GOLDEN_EVAL_HAYSTACK
    assert syn.make_needles(2, seed=5, split="train") == GOLDEN_TRAIN_NEEDLES
    rich = syn.WordStyle(rich_word_rate=1.0)
    import random

    assert syn.invented_word(random.Random(0), "train", style=rich) == "veiwrobroaest"


def _splits(word: str) -> bool:
    if not word:
        return True
    return any(word.startswith(s) and _splits(word[len(s) :]) for s in syn._SYLLABLES)


def test_needle_consistency_is_a_value_error(monkeypatch):
    """A made needle whose answer or subject is not in its sentence raises ValueError (not an ``assert``, which
    ``python -O`` drops)."""

    def bad(rng, split, style):
        return {"needle": "The sky is blue.", "question": "Q?", "real_needle": "green", "subject": "the sky"}

    monkeypatch.setattr(syn, "_NEEDLE_MAKERS", (bad,))
    with pytest.raises(ValueError, match="real_needle"):
        syn.needle_with_subject(0)


# Digest of every word pool, two haystacks and two needle sets per split, made when the word lists were Python
# literals of synthetic.py (before they became data/synthetic_words.json): the data file changes no text.
SYNTHETIC_SHA256 = "b8e5812aa59057fe3a4867e68ad4493b66861add6b043119bd4c73b5efe8444b"


def test_word_data_file_gives_the_text_the_literals_gave():
    import hashlib
    import json

    from retmask_interp.data.synthetic import haystack_text, make_needles, pool

    topics = ["weather", "cooking", "sailing", "farming", "music", "trade", "astronomy", "building", "travel",
              "school", "medicine", "forest"]  # fmt: skip
    kinds = ["adj", "noun", "animal", "color", "substance", "unit", "activity", "profession", "material"]
    kinds += [f"topic_{w}:{t}" for t in topics for w in ("noun", "verb")]
    out = {
        "pools": {f"{k}/{s}": pool(k, s) for k in kinds for s in ("train", "eval")},
        "hay": [haystack_text(2000, seed=i, split=s) for i in range(2) for s in ("train", "eval")],
        "needles": [make_needles(24, seed=i, split=s) for i in range(2) for s in ("train", "eval")],
    }
    assert hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest() == SYNTHETIC_SHA256
