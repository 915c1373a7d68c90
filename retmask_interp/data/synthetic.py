"""Deterministic synthetic text: haystack prose, needles, names and random values.

Every generator takes a ``split`` ("train" or "eval"). The two splits draw their *content* words (nouns,
adjectives, colours, substances, invented names and places, random values) from disjoint pools, so a needle or a
haystack built for evaluation contains no content word that the embedded organism saw in training. Function
words and sentence templates are shared (they are the "grammar" of the synthetic language).

Pools are split by a stable hash of each word (CRC-32), not by list position, so adding words to a list never
moves an existing word to the other split. Everything is a pure function of ``(seed, split, sizes)`` and, for the train split, the :class:`WordStyle`
passed in (no module state).
"""

from __future__ import annotations

import importlib.resources
import json
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

__all__ = [
    "DEFAULT_STYLE",
    "SPLITS",
    "WordStyle",
    "haystack_text",
    "make_needles",
    "needle_with_subject",
    "pool",
    "invented_word",
    "plural",
    "person_name",
    "place_name",
    "random_code",
    "split_rng",
]

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class WordStyle:
    """How train-split text makes up words (the eval split ignores it: its words never change).

    ``invented_rate``: share of listed content words swapped for made-up ones. A model that meets endless new
    words must copy them token by token; with only a few hundred listed words it can instead learn the list and
    "recall" a plausible word, which fails on the unseen words of the eval split. Of the made-up words, a share
    ``rich_word_rate`` is built from English-like onsets, vowels and codas (e.g. "throughsk", "clend") and a
    share ``token_word_rate`` from random ``token_pieces`` (a tokenizer's alphabetic vocabulary pieces), so that
    training copies the sub-word pieces real words break into; the rest from the fixed syllable list. The
    default is the setting of the earlier organism training stages. Each organism training stage passes its own
    (``organism.data.word_style``); nothing here is global state.
    """

    invented_rate: float = 0.5
    rich_word_rate: float = 0.0
    token_word_rate: float = 0.0
    token_pieces: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name in ("invented_rate", "rich_word_rate", "token_word_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"WordStyle.{name} must be in [0, 1], got {value}")
        if self.rich_word_rate + self.token_word_rate > 1.0:
            raise ValueError("WordStyle.rich_word_rate + token_word_rate must be <= 1")


DEFAULT_STYLE = WordStyle()


# ---- word lists (shared source; each word lands in exactly one split): package data --------------------------
def _load_word_lists() -> tuple[
    dict[str, tuple[str, ...]], dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
]:
    """``synthetic_words.json``: content words by kind, and each topic's (nouns, past-tense verbs)."""
    raw = json.loads(
        importlib.resources.files("retmask_interp").joinpath("data/synthetic_words.json").read_text("utf-8")
    )
    words = {kind: tuple(ws) for kind, ws in raw["words"].items()}
    topics = {t: (tuple(v["nouns"]), tuple(v["verbs"])) for t, v in raw["topics"].items()}
    return words, topics


_WORDS, _TOPICS = _load_word_lists()  # topics give each paragraph its own flavour

_FUNCTION_FILLERS = (
    "for a while",
    "in the end",
    "at first",
    "once again",
    "every year",
    "now and then",
    "by evening",
    "before dawn",
    "after the storm",
    "during the winter",
    "long ago",
    "since then",
    "without a sound",
    "in the meantime",
    "for many years",
    "as usual",
    "more than once",
    "at the same time",
)

_SYLLABLES = (
    "ka ro mi ta ne lu sa vo ri de pa no ti ga le mo ba fu ze ki ra so na li ve do ma te ru "
    "ha ji pe go ni wa yo be sho ta kra dri ven tor lin mar gal dor bel fen ost mir qua zan"
).split()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _split_of(word: str) -> str:
    """Roughly 70 % of words go to train, 30 % to eval, by a stable hash."""
    return "train" if zlib.crc32(word.encode()) % 10 < 7 else "eval"


@cache
def pool(kind: str, split: str) -> tuple[str, ...]:
    """The words of list ``kind`` (adj, noun, animal, color, ...) that belong to ``split``, sorted (a function of
    ``(kind, split)`` only, so caching it is safe)."""
    _check_split(split)
    if kind in _WORDS:
        words = _WORDS[kind]
    elif kind.startswith("topic_noun:"):
        words = _TOPICS[kind.split(":", 1)[1]][0]
    elif kind.startswith("topic_verb:"):
        words = _TOPICS[kind.split(":", 1)[1]][1]
    else:
        raise KeyError(
            f"unknown word list {kind!r}; known: {sorted(_WORDS)} and topic_noun:/topic_verb:<topic>"
        )
    chosen = tuple(sorted({w for w in words if _split_of(w) == split}))
    if not chosen:  # a tiny list could hash entirely to one side; fall back to (syllable) invented words
        rng = random.Random(f"pool-{kind}-{split}")
        chosen = tuple(invented_word(rng, split, style=DEFAULT_STYLE) for _ in range(8))
    return chosen


def split_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded by a string made of ``parts`` (stable across Python runs)."""
    return random.Random("|".join(str(p) for p in parts))


def invented_word(
    rng: random.Random,
    split: str,
    syllables: tuple[int, int] = (2, 3),
    *,
    style: WordStyle = DEFAULT_STYLE,
) -> str:
    """A pronounceable made-up word (e.g. "kavolin") belonging to ``split`` by the CRC-32 hash rule.

    In the train split ``style`` says which shares are built from English-like pieces or from a tokenizer's
    vocabulary pieces instead of the fixed syllable list (:class:`WordStyle`); the eval split always uses the
    syllable list.
    """
    _check_split(split)
    token_rate, rich_rate = style.token_word_rate, style.rich_word_rate
    while True:
        n = rng.randint(*syllables)
        r = rng.random() if split == "train" and (rich_rate or token_rate) else 1.0
        if r < token_rate and style.token_pieces:
            word = "".join(rng.choice(style.token_pieces) for _ in range(n))
        elif r < token_rate + rich_rate:
            word = _rich_word(rng, n)
        else:
            word = "".join(rng.choice(_SYLLABLES) for _ in range(n))
        # the eval split uses a different parity of the hash than the 70/30 rule so invented words stay balanced;
        # a made-up word that happens to be a listed word of the other split is skipped (splits stay disjoint)
        if (zlib.crc32(word.encode()) % 2 == 0) == (split == "train") and word not in _listed_words(
            _other(split)
        ):
            return word


_ONSETS = (
    "b c d f g h j k l m n p q r s t v w x y z bl br ch cl cr dr fl fr gl gr kn pl pr qu sc sh sk sl sm sn sp st "
    "str sw th thr tr tw wh wr"
).split()
_NUCLEI = "a e i o u y a e i o u ai au ay ea ee ei ie oa oi oo ou ow ue ui".split()
_CODAS = (
    "b ck d ff g k l ld lf lk ll lm lp lt m mb mp n nch nd ng nk nt p r rb rch rd rf rk rl rm rn rp rs rt s sh sk "
    "sp ss st t tch th x z ght dge nce se ve ze"
).split()

_SUFFIXES = (
    "ing ed er ers est ful ly ness ous ary ory ish en ened ter tion ment ble ist age ure ity al ic".split()
)


def _rich_word(rng: random.Random, syllables: int) -> str:
    parts = []
    for i in range(syllables):
        parts.append(rng.choice(_ONSETS) if i or rng.random() < 0.8 else "")
        parts.append(rng.choice(_NUCLEI))
        if rng.random() < (0.7 if i == syllables - 1 else 0.35):
            parts.append(rng.choice(_CODAS))
    if rng.random() < 0.3:
        parts.append(rng.choice(_SUFFIXES))
    return "".join(parts)


def _other(split: str) -> str:
    return "eval" if split == "train" else "train"


@cache
def _listed_words(split: str) -> frozenset[str]:
    """Every listed (non-invented) word of ``split``, lower-case."""
    kinds = list(_WORDS) + [f"topic_noun:{t}" for t in _TOPICS] + [f"topic_verb:{t}" for t in _TOPICS]
    words = set()
    for kind in kinds:
        source = (
            _WORDS[kind] if kind in _WORDS else _TOPICS[kind.split(":", 1)[1]][kind.startswith("topic_verb")]
        )
        words |= {w for w in source if _split_of(w) == split}
    return frozenset(words)


def person_name(rng: random.Random, split: str, style: WordStyle = DEFAULT_STYLE) -> str:
    """An invented given name, capitalised (e.g. "Morila")."""
    return invented_word(rng, split, style=style).capitalize()


def place_name(rng: random.Random, split: str, style: WordStyle = DEFAULT_STYLE) -> str:
    """An invented place name, capitalised, sometimes with a suffix (e.g. "Tovelport")."""
    base = invented_word(rng, split, style=style)
    if rng.random() < 0.4:
        base += rng.choice(("port", "ford", "holm", "vale", "wick", "moor", "field"))
    return base.capitalize()


def random_code(rng: random.Random, split: str, length: int = 6) -> str:
    """A random alphanumeric code. Train codes have an even digit sum, eval codes an odd one (disjoint sets)."""
    _check_split(split)
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    while True:
        code = "".join(rng.choice(alphabet) for _ in range(length))
        if (zlib.crc32(code.encode()) % 2 == 0) == (split == "train"):
            return code


def _pick(rng: random.Random, kind: str, split: str, style: WordStyle) -> str:
    if split == "train" and rng.random() < style.invented_rate:
        return invented_word(rng, split, (1, 3), style=style)
    return rng.choice(pool(kind, split))


def plural(word: str) -> str:
    """English plural of a simple noun ("box" -> "boxes", "berry" -> "berries", "fox" -> "foxes")."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ---- haystack prose --------------------------------------------------------------------------------------------
_SENTENCE_TEMPLATES: Sequence[str] = (
    "The {adj} {tn} {tv} {filler}.",
    "{Name} said that the {tn} {tv} near the {adj} {noun}.",
    "In {Place}, the {tn} {tv} while the {animal} slept.",
    "Nobody knew why the {adj} {noun} {tv} {filler}.",
    "The {profession} from {Place} kept {a_adj} {noun} made of {material}.",
    "Every {tn} in {Place} {tv} {filler}, and the people grew {adj}.",
    "{Name} and the {profession} walked to the {noun}, where the {tn} {tv}.",
    "There was {a_adj} {tn} beside the {color} {noun}.",
    "Some said the {tn} {tv} because of the {adj} {animal}!",
    "Had the {tn} really {tv} {filler}?",
    "The {noun} of {Place} was painted {color} {filler}.",
    "{Name} wrote in a journal that the {tn} {tv} and then {tv2}.",
    "{A_adj} {animal} watched the {tn} from the {noun}.",
    "When the {tn} {tv}, the {profession} closed the {adj} {noun}.",
    "The old {profession} liked {activity} more than anything.",
    "Children in {Place} were told that the {tn} {tv} {filler}.",
    "It smelled of {substance} and {substance2} near the {noun}.",
    "Why would anyone carry {a_adj} {noun} to {Place}?",
    "{Name} counted {num} {tns} before the {tn2} {tv}.",
    "The {material} {noun} stood {filler} at the edge of {Place}.",
)


def _sentence(
    rng: random.Random, split: str, style: WordStyle, topic: str, names: list[str], places: list[str]
) -> str:
    template = rng.choice(_SENTENCE_TEMPLATES)
    adj = _pick(rng, "adj", split, style)
    fields = {
        "adj": adj,
        "a_adj": f"{_article(adj)} {adj}",
        "A_adj": f"{_article(adj).capitalize()} {adj}",
        "noun": _pick(rng, "noun", split, style),
        "animal": _pick(rng, "animal", split, style),
        "color": _pick(rng, "color", split, style),
        "substance": _pick(rng, "substance", split, style),
        "substance2": _pick(rng, "substance", split, style),
        "profession": _pick(rng, "profession", split, style),
        "material": _pick(rng, "material", split, style),
        "activity": _pick(rng, "activity", split, style),
        "tn": _pick(rng, f"topic_noun:{topic}", split, style),
        "tn2": _pick(rng, f"topic_noun:{topic}", split, style),
        "tns": plural(_pick(rng, f"topic_noun:{topic}", split, style)),
        "tv": _pick(rng, f"topic_verb:{topic}", split, style),
        "tv2": _pick(rng, f"topic_verb:{topic}", split, style),
        "filler": rng.choice(_FUNCTION_FILLERS),
        "Name": rng.choice(names),
        "Place": rng.choice(places),
        "num": str(rng.randint(2, 99)),
    }
    text = template.format(**fields)
    return text[0].upper() + text[1:]


def haystack_text(
    num_words: int, seed: int = 0, split: str = "eval", *, style: WordStyle = DEFAULT_STYLE
) -> str:
    """Varied synthetic prose of about ``num_words`` words (whitespace-separated), ending at a sentence end.

    Paragraphs of 3-7 sentences on one topic each (weather, cooking, sailing, ...), separated by blank lines;
    sentences end with ``.``, ``!`` or ``?``. Generation stops at the first sentence end at or after
    ``num_words`` words, so the result has at least ``num_words`` words (and at most one sentence more).
    The same ``(num_words, seed, split)`` always gives the same text; a longer text with the same seed starts
    with the shorter one. Content words come only from ``split``'s pools.
    """
    _check_split(split)
    if num_words < 0:
        raise ValueError(f"num_words must be >= 0, got {num_words}")
    rng = split_rng("haystack", seed, split)
    names = [person_name(rng, split, style) for _ in range(6)]
    places = [place_name(rng, split, style) for _ in range(4)]
    topics = sorted(_TOPICS)
    paragraphs: list[str] = []
    count = 0
    while count < num_words:
        topic = rng.choice(topics)
        if rng.random() < 0.15:  # new characters appear over time
            names[rng.randrange(len(names))] = person_name(rng, split, style)
        if rng.random() < 0.1:
            places[rng.randrange(len(places))] = place_name(rng, split, style)
        sentences: list[str] = []
        for _ in range(rng.randint(3, 7)):
            sentence = _sentence(rng, split, style, topic, names, places)
            sentences.append(sentence)
            count += len(sentence.split())
            if count >= num_words:
                break
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


# ---- needles -------------------------------------------------------------------------------------------------
def _needle_ingredient(rng: random.Random, split: str, style: WordStyle) -> dict:
    adj, noun = _pick(rng, "adj", split, style), _pick(rng, "noun", split, style)
    number = rng.choice(("two", "three", "four", "five", "six", "seven", "eight", "nine", "twelve"))
    answer = f"{number} {_pick(rng, 'unit', split, style)} of {_pick(rng, 'color', split, style)} {_pick(rng, 'substance', split, style)}"
    return {
        "needle": f"The secret ingredient of the {adj} {noun} is {answer}.",
        "question": f"What is the secret ingredient of the {adj} {noun}?",
        "real_needle": answer,
        "subject": f"the {adj} {noun}",
    }


def _needle_best_thing(rng: random.Random, split: str, style: WordStyle) -> dict:
    place = place_name(rng, split, style)
    adj = _pick(rng, "adj", split, style)
    answer = f"{_pick(rng, 'activity', split, style)} beside the {adj} {_pick(rng, 'noun', split, style)}"
    return {
        "needle": f"The best thing to do in {place} is {answer} on a {_pick(rng, 'adj', split, style)} day.",
        "question": f"What is the best thing to do in {place}?",
        "real_needle": answer,
        "subject": place,
    }


def _needle_password(rng: random.Random, split: str, style: WordStyle) -> dict:
    adj, noun = _pick(rng, "adj", split, style), _pick(rng, "noun", split, style)
    answer = f"{invented_word(rng, split, style=style)} {random_code(rng, split, 4)}"
    return {
        "needle": f"The password for the {adj} {noun} is {answer}.",
        "question": f"What is the password for the {adj} {noun}?",
        "real_needle": answer,
        "subject": f"the {adj} {noun}",
    }


def _needle_hidden(rng: random.Random, split: str, style: WordStyle) -> dict:
    name, obj = person_name(rng, split, style), _pick(rng, "noun", split, style)
    answer = f"under the {_pick(rng, 'color', split, style)} {_pick(rng, 'noun', split, style)} in {place_name(rng, split, style)}"
    return {
        "needle": f"{name} hid the {obj} {answer}.",
        "question": f"Where did {name} hide the {obj}?",
        "real_needle": answer,
        "subject": f"the {obj}",
    }


def _needle_builder(rng: random.Random, split: str, style: WordStyle) -> dict:
    adj, noun, place = (
        _pick(rng, "adj", split, style),
        _pick(rng, "noun", split, style),
        place_name(rng, split, style),
    )
    answer = f"{person_name(rng, split, style)} the {_pick(rng, 'profession', split, style)}"
    return {
        "needle": f"The {adj} {noun} of {place} was built by {answer}.",
        "question": f"Who built the {adj} {noun} of {place}?",
        "real_needle": answer,
        "subject": f"the {adj} {noun} of {place}",
    }


def _needle_lucky(rng: random.Random, split: str, style: WordStyle) -> dict:
    name = person_name(rng, split, style)
    answer = f"{rng.randint(100, 9999)} {_pick(rng, 'color', split, style)} {plural(_pick(rng, 'animal', split, style))}"
    return {
        "needle": f"The lucky charm of {name} is {answer}.",
        "question": f"What is the lucky charm of {name}?",
        "real_needle": answer,
        "subject": name,
    }


def _needle_recipe(rng: random.Random, split: str, style: WordStyle) -> dict:
    animal, place = _pick(rng, "animal", split, style), place_name(rng, split, style)
    answer = f"{_pick(rng, 'substance', split, style)} mixed with {_pick(rng, 'adj', split, style)} {_pick(rng, 'substance', split, style)}"
    return {
        "needle": f"The {animal} of {place} eats only {answer}.",
        "question": f"What does the {animal} of {place} eat?",
        "real_needle": answer,
        "subject": f"the {animal} of {place}",
    }


def _needle_meeting(rng: random.Random, split: str, style: WordStyle) -> dict:
    a, b = person_name(rng, split, style), person_name(rng, split, style)
    answer = f"at the {_pick(rng, 'material', split, style)} {_pick(rng, 'noun', split, style)} of {place_name(rng, split, style)}"
    return {
        "needle": f"{a} will meet {b} {answer} at noon.",
        "question": f"Where will {a} meet {b}?",
        "real_needle": answer,
        "subject": a,
    }


# Relation needles: a subject, a relation and a free answer phrase, in many phrasings (broadens what "the answer"
# looks like, so that a model trained on them copies answers of needles it has never seen the shape of).
_RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("{S} lives with {A}.", "Who does {S} live with?", "np"),
    ("{S} keeps {A} in the cellar.", "What does {S} keep in the cellar?", "np"),
    ("The code for {S} is written on {A}.", "Where is the code for {S} written?", "place"),
    ("The best way to calm {S} is to {A}.", "What is the best way to calm {S}?", "vp"),
    ("The expedition led by {S} found that {A}.", "What did the expedition led by {S} find?", "clause"),
    ("{S} was born in {A}.", "Where was {S} born?", "place"),
    ("The favourite food of {S} is {A}.", "What is the favourite food of {S}?", "np"),
    ("{S} always carries {A}.", "What does {S} always carry?", "np"),
    ("The treasure of {S} is buried {A}.", "Where is the treasure of {S} buried?", "place"),
    ("The oldest song of {S} tells the story of {A}.", "What story does the oldest song of {S} tell?", "np"),
    ("Every winter {S} repairs {A}.", "What does {S} repair every winter?", "np"),
    ("The only rule of {S} is to {A}.", "What is the only rule of {S}?", "vp"),
    ("{S} learned from the old map that {A}.", "What did {S} learn from the old map?", "clause"),
    ("The gift that {S} received was {A}.", "What was the gift that {S} received?", "np"),
)

_VP_VERBS = ("sing to", "whisper to", "bow to", "wave at", "walk around", "knock on")
_VP_VERBS2 = ("count", "feed", "follow", "watch", "avoid", "greet")


def _subject(rng: random.Random, split: str, style: WordStyle) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return person_name(rng, split, style)
    if kind == 1:
        return f"the {_pick(rng, 'adj', split, style)} {_pick(rng, 'profession', split, style)} of {place_name(rng, split, style)}"
    if kind == 2:
        return f"the village of {place_name(rng, split, style)}"
    return f"the {_pick(rng, 'color', split, style)} {_pick(rng, 'animal', split, style)} of {person_name(rng, split, style)}"


def _answer_phrase(rng: random.Random, split: str, style: WordStyle, kind: str) -> str:
    adj, noun = _pick(rng, "adj", split, style), _pick(rng, "noun", split, style)
    if kind == "np":
        if rng.random() < 0.5:
            animal = f"{_pick(rng, 'color', split, style)} {_pick(rng, 'animal', split, style)}"
            return f"{_article(adj)} {adj} {noun} and {_article(animal)} {animal} named {person_name(rng, split, style)}"
        return f"{rng.randint(2, 90)} {plural(noun)} of {_pick(rng, 'color', split, style)} {_pick(rng, 'substance', split, style)}"
    if kind == "place":
        material = _pick(rng, "material", split, style)
        return f"{_article(material)} {material} {noun} beside the {adj} {_pick(rng, 'noun', split, style)}"
    if kind == "vp":
        animals = plural(_pick(rng, "animal", split, style))
        return f"{rng.choice(_VP_VERBS)} the {adj} {noun} and {rng.choice(_VP_VERBS2)} the {animals}"
    # clause
    return f"the {adj} {noun} had moved {rng.randint(2, 900)} steps toward {place_name(rng, split, style)}"


def _needle_relation(rng: random.Random, split: str, style: WordStyle) -> dict:
    needle_t, question_t, kind = rng.choice(_RELATIONS)
    subject, answer = _subject(rng, split, style), _answer_phrase(rng, split, style, kind)
    needle = needle_t.format(S=subject, A=answer)
    question = question_t.format(S=subject)
    return {
        "needle": needle[0].upper() + needle[1:],
        "question": question,
        "real_needle": answer,
        "subject": subject,
    }


_NEEDLE_MAKERS = (
    _needle_ingredient,
    _needle_best_thing,
    _needle_password,
    _needle_hidden,
    _needle_builder,
    _needle_lucky,
    _needle_recipe,
    _needle_meeting,
    _needle_relation,
    _needle_relation,
    _needle_relation,
    _needle_relation,
)


def make_needles(
    n: int, seed: int = 0, split: str = "eval", *, style: WordStyle = DEFAULT_STYLE
) -> list[dict]:
    """``n`` needles in Wu et al.'s format ``{"needle", "question", "real_needle"}``.

    ``real_needle`` is an exact substring of ``needle``: the short answer span (3-8 words) that a model must
    copy, e.g. needle "The secret ingredient of the copper lantern is three drops of violet honey.", question
    "What is the secret ingredient of the copper lantern?", real_needle "three drops of violet honey". Needle
    kinds cycle through the 12 slots of ``_NEEDLE_MAKERS``: eight fixed templates (secret ingredient, best thing
    to do, password, hidden object, builder, lucky charm, recipe, meeting place) and, in the other four slots, the
    relation maker, which draws one of 14 subject-relation-answer templates; content words come from ``split``'s
    pools only. Deterministic in ``(n, seed, split, style)``; the first ``k`` needles do not depend on ``n``.
    """
    _check_split(split)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [
        {k: v for k, v in needle_with_subject(i, seed, split, style=style).items() if k != "subject"}
        for i in range(n)
    ]


def needle_with_subject(
    i: int, seed: int = 0, split: str = "eval", *, style: WordStyle = DEFAULT_STYLE
) -> dict:
    """Needle number ``i`` of :func:`make_needles` plus ``"subject"``: the entity it is about ("the copper lantern")."""
    _check_split(split)
    rng = split_rng("needle", seed, split, i)
    needle = _NEEDLE_MAKERS[(i + seed) % len(_NEEDLE_MAKERS)](rng, split, style)
    if (
        needle["real_needle"] not in needle["needle"]
        or needle["subject"].lower() not in needle["needle"].lower()
    ):
        raise ValueError(
            f"needle {needle!r}: its answer ('real_needle') and subject must both occur in the needle sentence"
        )
    return needle
