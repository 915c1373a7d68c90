"""A general instruction prompt set: short English chat prompts of nine kinds, built from templates and word lists.

RetMask samples one response per prompt from the normal and the masked model (the paper used the first user turns
of a general chat dataset: short, English, no long documents). No dataset can be downloaded here, so this module
builds such a set deterministically from templates and word lists written for this package
(``instruction_words.json``, package data: animals, countries, cities, professions, dishes, concepts, machines, skills, ... and 85
short paragraphs of 2-4 sentences written for the rewriting and summarising prompts).

Kinds (``KINDS``) and what their prompts ask for::

    factual         a question with a factual answer ("What do koalas eat?", "In which country can you find Petra?")
    howto           practical instructions or advice ("How do I unclog a kitchen sink?")
    explanation     explain a concept, a mechanism, a cause, a difference ("Explain osmosis to a ten-year-old.")
    creative        poems, stories, dialogues, messages, slogans, descriptions
    list            a list of items, ideas, tips or examples ("Give me five tips for packing light.")
    reasoning       arithmetic word problems, sequences, odd one out, syllogisms, ordering, dates
    classification  sentiment, topic, fact or opinion, spam, formality, emotion, categories of things
    rewrite         rewrite a short given paragraph or sentence (tone, audience, length, grammar, voice)
    summarize       summarise a short given paragraph or dialogue (one sentence, title, key points, ...)

How it is built. Each template (``TEMPLATES``; 5-22 per kind) draws up to ``max_per_template`` prompts with
distinct *keys* (the slot values that make two prompts different tasks; a count such as "three" or "five" is not
part of the key, so "List three X" and "List five X" never both occur), from a random generator seeded by
``(seed, template name)``. Rewordings of one question ("How do I X?", "What is the easiest way to X?") split their
word list between them, so each value is asked in one wording only. A kind's templates are interleaved round-robin
(in an order shuffled by the seed), the kinds are interleaved by ``KIND_WEIGHTS`` (each next prompt comes from
the kind furthest below its weighted share), and prompts that normalise to the same text are dropped. The set of
``n`` prompts is the first ``n`` of this pool, so a smaller ``n`` gives a prefix of a larger one (same seed).

Split. A prompt is held out (``split="eval"``) when a SHA-256 hash of its normalised text, read as a number in
[0, 1), is below ``eval_fraction``: the split of a text never depends on the seed, ``n`` or its position, and a
prompt held out at a fraction is held out at every larger fraction. The held-out prompts are new prompts from the
same templates (an i.i.d. split), not new templates.

Make-up of the default set (``InstructionConfig()``: seed 0, n 2,500, eval fraction 0.1, at most 40 per template;
lengths in whitespace words and characters; regenerate with ``python studies/instruction_prompts/instruction_prompts.py``):

<!-- instruction-summary:start -->
| kind | templates | train | eval | total | share | words p10 / p50 / p90 / max | chars p50 / max |
|---|---:|---:|---:|---:|---:|---|---|
| factual | 15 | 310 | 24 | 334 | 13.4% | 5 / 7 / 11 / 13 | 38 / 74 |
| howto | 20 | 298 | 35 | 333 | 13.3% | 7 / 10 / 13 / 17 | 47 / 83 |
| explanation | 15 | 292 | 41 | 333 | 13.3% | 4 / 8 / 13 / 20 | 43 / 89 |
| creative | 18 | 282 | 24 | 306 | 12.2% | 9 / 12 / 16 / 21 | 62 / 108 |
| list | 20 | 248 | 30 | 278 | 11.1% | 6 / 8 / 12 / 20 | 45 / 99 |
| reasoning | 26 | 223 | 27 | 250 | 10.0% | 12 / 16 / 21 / 31 | 79 / 148 |
| classification | 12 | 202 | 20 | 222 | 8.9% | 12 / 18 / 22 / 25 | 106 / 161 |
| rewrite | 12 | 205 | 17 | 222 | 8.9% | 13 / 38 / 44 / 51 | 222 / 300 |
| summarize | 8 | 201 | 21 | 222 | 8.9% | 32 / 40 / 46 / 52 | 222 / 305 |
| all | 146 | 2261 | 239 | 2500 | 100.0% | 6 / 11 / 38 / 52 | 59 / 305 |

2500 prompts (2500 distinct), from a pool of 3994; 146 templates.
<!-- instruction-summary:end -->

``pairs.builtin_prompts`` (12 templates filled with synthetic pool words, e.g. "Why would a scribe keep a mill
made of marble?") served the organisms, which cannot answer real questions; this set is for real chat models::

    from retmask_interp.data.instructions import InstructionConfig, instruction_prompts
    from retmask_interp.pairs import load_prompts

    prompts = instruction_prompts(InstructionConfig())
    train = load_prompts([p.to_record() for p in prompts if p.split == "train"])  # Prompt.id kept as the pair id
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from types import SimpleNamespace
from typing import Any

__all__ = [
    "KINDS",
    "KIND_WEIGHTS",
    "TEMPLATES",
    "InstructionConfig",
    "Prompt",
    "WORDS",
    "instruction_pool",
    "load_word_lists",
    "instruction_prompts",
    "normalize_prompt",
    "prompt_split",
    "summarize_prompts",
    "summary_markdown",
]


def _entries(name: str, value: Any) -> Any:
    """A list of strings -> tuple of strings; a list of ``[a, b, ...]`` -> tuple of tuples; an object -> dict."""
    if isinstance(value, dict):
        return {k: _entries(f"{name}.{k}", v) for k, v in value.items()}
    if not isinstance(value, list):
        raise ValueError(f"word list {name} is not a list")
    entries = tuple(tuple(x) if isinstance(x, list) else x for x in value)
    if len(set(entries)) != len(entries):
        dupes = sorted({str(x) for x in entries if entries.count(x) > 1})
        raise ValueError(f"duplicate entries in word list {name}: {dupes}")
    return entries


def load_word_lists(text: str | None = None) -> SimpleNamespace:
    """The word lists, sentences and paragraphs of the prompt set, from the package's ``instruction_words.json``
    (or the JSON ``text`` given): ``WORDS.ANIMALS``, ``WORDS.DIFFERENCE_PAIRS``, ... A list that holds an entry
    twice is an error."""
    if text is None:
        text = (
            importlib.resources.files("retmask_interp")
            .joinpath("data/instruction_words.json")
            .read_text("utf-8")
        )
    raw = json.loads(text)
    return SimpleNamespace(**{k: _entries(k, v) for k, v in raw.items() if not k.startswith("_")})


WORDS = load_word_lists()
W = WORDS  # the templates below read W.NAME

KINDS = (
    "factual",
    "howto",
    "explanation",
    "creative",
    "list",
    "reasoning",
    "classification",
    "rewrite",
    "summarize",
)
# relative shares of the kinds (a general chat set asks and explains more than it classifies or rewrites)
KIND_WEIGHTS = {
    "factual": 1.2,
    "howto": 1.2,
    "explanation": 1.2,
    "creative": 1.1,
    "list": 1.0,
    "reasoning": 0.9,
    "classification": 0.8,
    "rewrite": 0.8,
    "summarize": 0.8,
}
SPLITS = ("train", "eval")
_SALT = "retmask-instructions"


@dataclass(frozen=True)
class InstructionConfig:
    """Which prompt set: ``n`` prompts (train and eval together) of the pool seeded by ``seed``."""

    seed: int = 0  # chooses the fillers of every template and the interleaving order
    n: int = 2500  # prompts in the set (train and eval); at most the pool size
    eval_fraction: float = 0.1  # share held out, by a hash of the text (not by position)
    max_per_template: int = 40  # at most this many prompts come from one template

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_per_template < 1:
            raise ValueError(f"max_per_template must be >= 1, got {self.max_per_template}")


@dataclass(frozen=True)
class Prompt:
    """One instruction prompt. ``id`` is ``<kind>-<10 hex digits of the text's hash>``; ``template`` names the
    template it came from (``TEMPLATES``)."""

    id: str
    kind: str
    text: str
    split: str
    template: str

    def to_record(self) -> dict[str, str]:
        """A JSON-ready dict; ``prompt`` holds the text (the field ``pairs.load_prompts`` reads by default)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "split": self.split,
            "template": self.template,
            "prompt": self.text,
        }


# -- text helpers ------------------------------------------------------------------------------------------------
def normalize_prompt(text: str) -> str:
    """Lower case, every run of non-alphanumeric characters one space: the text two prompts must not share."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def prompt_split(text: str, eval_fraction: float) -> str:
    """``"eval"`` if the hash of the normalised ``text`` (a number in [0, 1)) is below ``eval_fraction``."""
    digest = hashlib.sha256(f"{_SALT}|split|{normalize_prompt(text)}".encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction else "train"


def _prompt_id(kind: str, text: str) -> str:
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


_AN_WORDS = {"hour", "honest", "heir", "honour"}
_A_PREFIXES = ("uni", "use", "usu", "eu", "one")


def _article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front (by the first word's spelling, with the usual exceptions)."""
    first = phrase.split()[0].lower()
    if first in _AN_WORDS:
        return f"an {phrase}"
    if first.startswith(_A_PREFIXES):
        return f"a {phrase}"
    return f"{'an' if first[0] in 'aeiou' else 'a'} {phrase}"


_IRREGULAR_PLURALS = {
    "sheep": "sheep",
    "goose": "geese",
    "mouse": "mice",
    "deer": "deer",
    "fish": "fish",
    "salmon": "salmon",
    "goldfish": "goldfish",
    "jellyfish": "jellyfish",
    "bison": "bison",
    "moose": "moose",
    "octopus": "octopuses",
    "hippopotamus": "hippos",
    "rhinoceros": "rhinos",
    "wolf": "wolves",
    "person": "people",
    "child": "children",
    "cactus": "cacti",
    "mosquito": "mosquitoes",
    "platypus": "platypuses",
}


def _plural(phrase: str) -> str:
    """The plural of ``phrase`` (its last word pluralised)."""
    head, _, last = phrase.rpartition(" ")
    low = last.lower()
    if low in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[low]
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    elif low.endswith("y") and low[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _render(pattern: str, values: dict[str, Any]) -> str:
    """Fill ``{slot}``, ``{slot:a}`` (with an article), ``{slot:pl}`` (plural), ``{slot:cap}`` (capitalised) and
    ``{slot:0}`` (part 0 of a tuple value)."""

    def fill(m: re.Match) -> str:
        value, form = values[m.group(1)], m.group(2)
        if form is None:
            return value
        if form.isdigit():
            return value[int(form)]
        if form == "a":
            return _article(value)
        if form == "pl":
            return _plural(value)
        if form == "cap":
            return value[:1].upper() + value[1:]
        raise ValueError(f"unknown slot form {form!r} in {pattern!r}")

    return _SLOT.sub(fill, pattern)


# -- templates ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Free:
    """Slot values that do not make two prompts different (counts such as "three" / "five")."""

    values: tuple[str, ...]


_COUNT = Free(("three", "four", "five"))
_FEW = Free(("three", "five"))


@dataclass(frozen=True)
class Template:
    """A source of prompts: ``draw(rng)`` returns ``(key, text)``, or ``(None, "")`` for a rejected draw; prompts
    with equal keys count as the same task. ``cap`` (if set) lowers ``max_per_template`` for this template."""

    name: str
    kind: str
    draw: Callable[[random.Random], tuple[Any, str]]
    cap: int | None = None
    space: int | None = None  # number of possible keys (pattern templates), so that drawing stops early


def _pattern(
    kind: str, name: str, pattern: str, *, cap: int | None = None, **slots: Sequence[Any] | Free
) -> Template:
    """A template filling ``pattern`` with one value per slot; slots drawing from the same list take distinct
    values; the key is the tuple of values of all but the ``Free`` slots."""
    for slot in _SLOT.findall(pattern):
        if slot[0] not in slots:
            raise ValueError(f"template {name}: slot {slot[0]!r} has no values")
    names = list(slots)
    keyed = [s for s in names if not isinstance(slots[s], Free)]
    lists = {s: (v.values if isinstance(v, Free) else tuple(v)) for s, v in slots.items()}
    shared = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if lists[a] is lists[b]]

    def draw(rng: random.Random) -> tuple[Any, str]:
        values = {s: rng.choice(lists[s]) for s in names}
        if any(values[a] == values[b] for a, b in shared):
            return None, ""
        return tuple(values[s] for s in keyed), _render(pattern, values)

    space = 1
    for s in keyed:
        space *= len(lists[s])
    return Template(f"{kind}/{name}", kind, draw, cap, space)


def _variants(
    kind: str, name: str, patterns: Sequence[str], slot: str, values: Sequence[Any], **other: Any
) -> list:
    """Rewordings of one request: ``values`` of ``slot`` are split between ``patterns`` (value i goes to pattern
    i mod len(patterns)), so no value is asked in two wordings."""
    return [
        _pattern(kind, f"{name}{i}", p, **({slot: tuple(values[i :: len(patterns)])} | other))
        for i, p in enumerate(patterns)
    ]


def _generator(kind: str, name: str, fn: Callable[[random.Random], tuple[Any, str]], cap: int | None = None):
    return Template(f"{kind}/{name}", kind, fn, cap)


# fmt: off
_FACTUAL = [
    _pattern("factual", "animal_diet", "What do {animal:pl} eat?", animal=W.ANIMALS),
    _pattern("factual", "animal_home", "Where do {animal:pl} live in the wild?", animal=W.ANIMALS),
    _pattern("factual", "animal_life", "How long does {animal:a} usually live?", animal=W.ANIMALS),
    _pattern("factual", "language", "What language is spoken in {country}?", country=W.COUNTRIES),
    _pattern("factual", "continent", "Which continent is {country} in?", country=W.COUNTRIES),
    _pattern("factual", "famous_for", "What is {country} famous for?", country=W.COUNTRIES),
    _pattern("factual", "job_day", "What does {job:a} do in a typical working day?", job=W.PROFESSIONS),
    _pattern("factual", "job_tools", "What tools or equipment does {job:a} use?", job=W.PROFESSIONS),
    _pattern("factual", "dish_origin", "Tell me about the origin and the main ingredients of {dish}.",
             dish=W.DISHES[2::3]),
    _pattern("factual", "landmark_country", "In which country can you find {place}?", place=W.LANDMARKS[0::2]),
    _pattern("factual", "landmark_famous", "What is {place}, and why is it famous?", place=W.LANDMARKS[1::2]),
    _pattern("factual", "question", "{question}", question=W.FACT_QUESTIONS),
    _pattern("factual", "word_meaning", 'What does the word "{word}" mean?', word=W.VOCAB[0::2]),
    _pattern("factual", "term", "What is {term:a}? Explain it in two or three sentences.", term=W.TERMS),
    _pattern("factual", "weather", "What is the weather usually like in {city} in {season}?",
             city=W.CITIES, season=W.SEASONS),
]

_HOWTO = [
    *_variants("howto", "task", [
        "How do I {task}?",
        "What is the easiest way to {task}?",
        "Can you give me step-by-step instructions to {task}?",
        "I have never tried to {task} before. Where should I start?",
    ], "task", W.HOWTO_TASKS),
    _pattern("howto", "clean", "How do I clean {thing:a} without damaging it?", thing=W.CLEAN_OBJECTS),
    _pattern("howto", "plant_care", "How should I take care of {plant:a}?", plant=W.HOUSEPLANTS),
    _pattern("howto", "cook", "How do I make {dish} at home?", dish=W.DISHES[0::3]),
    *_variants("howto", "skill", [
        "How can I get better at {skill}?",
        "What is the best way for a beginner to improve at {skill}?",
        "I want to improve my {skill}. What should I practise first?",
    ], "skill", W.SKILLS),
    *_variants("howto", "event", [
        "How do I prepare for {event}?",
        "What should I do to get ready for {event}?",
    ], "event", W.EVENTS[0::2]),
    _pattern("howto", "appliance", "What should I do if my {thing} stops working?", thing=W.APPLIANCES),
    _pattern("howto", "dog_trick", "How can I teach my dog to {trick}?", trick=W.DOG_TRICKS),
    _pattern("howto", "craft", "How do I make {craft}?", craft=W.CRAFTS),
    _pattern("howto", "become", "How do I become {job:a}?", job=W.PROFESSIONS),
    _pattern("howto", "visit", "What should a first-time visitor to {country} know before going?",
             country=W.COUNTRIES),
    _pattern("howto", "write", "How do I write {document:a}?", document=W.DOCUMENTS),
    _pattern("howto", "support", "How can I support a friend who {situation}?", situation=W.SUPPORT),
    _pattern("howto", "pet_care", "How do I look after {pet:a}?", pet=W.PETS),
]

_EXPLANATION = [
    *_variants("explanation", "concept", [
        "Explain {concept} in simple terms.",
        "Explain {concept} to a ten-year-old.",
        "Give a simple everyday example that explains {concept}.",
    ], "concept", W.CONCEPTS),
    _pattern("explanation", "machine", "Explain how {machine} works.", machine=W.MACHINES),
    *_variants("explanation", "why", [
        "{question}",
        'A child asks me, "{question}" What is a good answer?',
    ], "question", W.WHY_QUESTIONS),
    _pattern("explanation", "difference", "What is the difference between {pair:0} and {pair:1}?",
             pair=W.DIFFERENCE_PAIRS),
    _pattern("explanation", "tell_apart", "How can I tell {pair:0} from {pair:1}?", pair=W.TELL_APART_PAIRS),
    _pattern("explanation", "important", "Why {thing:0} {thing:1} important?", thing=W.IMPORTANT),
    _pattern("explanation", "causes", "What causes {thing}?", thing=W.CAUSES),
    _pattern("explanation", "body", "What happens to your body when you {event}?", event=W.BODY_EVENTS),
    _pattern("explanation", "process", "Describe, step by step, how {process}.", process=W.PROCESSES),
    _pattern("explanation", "rules", "Explain the rules of {game} in a few sentences.", game=W.GAMES),
    _pattern("explanation", "organ", "What does {organ} do in the human body?", organ=W.ORGANS),
    _pattern("explanation", "history", "What was {event}, and why did it matter?", event=W.HISTORY),
]

_CREATIVE = [
    *_variants("creative", "poem", [
        "Write a short poem about {subject}.",
        "Write a haiku about {subject}.",
        "Write a four-line rhyming poem about {subject}.",
    ], "subject", W.POEM_SUBJECTS),
    _pattern("creative", "story", "Write a short story about {job:a} who finds {thing:a} in {place}.",
             job=W.PROFESSIONS, thing=W.FOUND_OBJECTS, place=W.STORY_PLACES),
    _pattern("creative", "limerick", "Write a limerick about {animal:a} that loves {food}.",
             animal=W.ANIMALS, food=W.SILLY_FOODS),
    _pattern("creative", "birthday", "Write a short birthday message for my {relation} who loves {hobby}.",
             relation=W.RELATIONS, hobby=W.HOBBIES),
    *_variants("creative", "pov", [
        "Write a four-line poem from the point of view of {thing:a}.",
        "Write a short diary entry by {thing:a} about its day.",
    ], "thing", W.POV_OBJECTS),
    _pattern("creative", "opening", "Write the opening paragraph of {genre:a} story set in {setting}.",
             genre=W.GENRES, setting=W.SETTINGS),
    _pattern("creative", "dialogue", "Write a short dialogue between {a:a} and {b:a} who meet at {place}.",
             a=W.ANIMALS, b=W.ANIMALS, place=W.MEETING_PLACES),
    _pattern("creative", "slogan", "Invent a name and a slogan for a new {business}.", business=W.BUSINESSES),
    _pattern("creative", "product", "Write a short product description for {product:a}.", product=W.PRODUCTS),
    _pattern("creative", "scene", "Describe {scene} in a few vivid sentences.", scene=W.SCENES),
    _pattern("creative", "fairy_tale", "Write a fairy tale in five sentences about {animal:a} and {item:a}.",
             animal=W.ANIMALS, item=W.MAGIC_ITEMS),
    _pattern("creative", "thanks", "Write a short thank-you note to my {relation} for {gift}.",
             relation=W.RELATIONS, gift=W.GIFTS),
    _pattern("creative", "club", "Write a short speech to welcome new members to {club:a} club.", club=W.CLUBS),
    _pattern("creative", "dream_job", "Write a funny short story about {animal:a} that wants to become {job:a}.",
             animal=W.ANIMALS, job=W.PROFESSIONS),
    _pattern("creative", "use_word", 'Write two sentences that use the word "{word}" correctly.',
             word=W.VOCAB[1::2]),
]

_LIST = [
    *_variants("list", "category", [
        "List {n} {category}.",
        "Can you name {n} {category}?",
        "Give me a list of {n} {category}, with one sentence about each.",
    ], "category", W.LIST_CATEGORIES, n=_COUNT),
    *_variants("list", "ideas", [
        "Give me {n} ideas for {occasion}.",
        "What are some fun ideas for {occasion}?",
    ], "occasion", W.OCCASIONS, n=_COUNT),
    _pattern("list", "packing", "Make a packing list for {trip}.", trip=W.TRIPS),
    _pattern("list", "questions", "List {n} questions I should ask {who}.", who=W.ASK_WHO, n=_COUNT),
    _pattern("list", "pet_names", "Suggest {n} names for {adj:a} {pet}.", adj=W.PET_ADJECTIVES, pet=W.PETS,
             n=_COUNT),
    _pattern("list", "rhymes", 'List {n} words that rhyme with "{word}".', word=W.RHYME_WORDS, n=_COUNT),
    _pattern("list", "examples", "Give me {n} examples of {what}.", what=W.EXAMPLE_OF, n=_COUNT),
    _pattern("list", "parts", "What are the main parts of {thing}?", thing=W.PARTS_OF),
    _pattern("list", "hobbies", "What are some good hobbies for {who}?", who=W.HOBBY_PEOPLE),
    _pattern("list", "tips", "Give me {n} tips for {goal}.", goal=W.GOALS, n=_COUNT),
    _pattern("list", "geography", "Name {n} {things} in {region}.", things=W.GEO_THINGS, region=W.REGIONS,
             n=_FEW),
    _pattern("list", "dishes", "What are some traditional dishes from {country}?", country=W.COUNTRIES),
    _pattern("list", "rainy_day", "What are some things to do in {city} on a rainy day?", city=W.CITIES),
    _pattern("list", "checklist", "Make a checklist for {event}.", event=W.EVENTS[1::2]),
    _pattern("list", "job_skills", "What skills does {job:a} need?", job=W.PROFESSIONS),
    _pattern("list", "ingredients", "What ingredients do I need to make {dish}?", dish=W.DISHES[1::3]),
    _pattern("list", "synonyms", 'Give {n} synonyms for the word "{word}".', word=W.VOCAB, n=_FEW),
]

_CLASSIFICATION = [
    *_variants("classification", "sentiment", [
        'Classify the sentiment of this review as positive, negative or neutral: "{text}"',
        'Is the following review positive, negative or neutral?\n\n"{text}"',
    ], "text", W.REVIEWS),
    _pattern("classification", "animal_class",
             "Is {animal:a} a mammal, a bird, a reptile, an amphibian, a fish or an insect?", animal=W.ANIMALS),
    _pattern("classification", "food_group",
             "Is {food} a fruit, a vegetable, a grain or a dairy product?", food=W.PRODUCE),
    _pattern("classification", "headline",
             'Which category does this headline belong to: sports, politics, science, business or '
             'entertainment?\n\n"{text}"', text=W.HEADLINES),
    _pattern("classification", "fact_opinion", 'Is the following statement a fact or an opinion? "{text}"',
             text=W.STATEMENTS),
    _pattern("classification", "spam", 'Is this message spam or not spam?\n\n"{text}"', text=W.MESSAGES),
    _pattern("classification", "formality", 'Is the following sentence formal or informal? "{text}"',
             text=W.FORMALITY),
    _pattern("classification", "emotion",
             'Which emotion does the speaker feel: joy, sadness, anger, fear or surprise? "{text}"',
             text=W.EMOTION_SENTENCES),
    _pattern("classification", "material", "Is {material} a natural or a man-made material?",
             material=W.MATERIALS),
    _pattern("classification", "place_type",
             'Which of these best describes "{place}": a city, a country, a continent, an ocean or a mountain '
             "range?", place=W.PLACE_TYPES),
    _pattern("classification", "topic",
             'Which topic is this question about: health, money, travel, technology or cooking? "{text}"',
             text=W.TOPIC_QUESTIONS),
]

_REWRITE = [
    _pattern("rewrite", "formal", "Rewrite the following paragraph in a more formal tone:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "child", "Rewrite this paragraph so that a young child could understand it:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "shorter", "Make this paragraph shorter without losing its main point:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "bullets", "Turn the following paragraph into a list of bullet points:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "casual", "Rewrite this paragraph in a friendly, casual tone:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "paraphrase", "Paraphrase the following paragraph using different words:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "social", "Turn this paragraph into a short, catchy social media post:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("rewrite", "news", "Rewrite this paragraph as a short news report:\n\n{text}", text=W.PARAGRAPHS),
    _pattern("rewrite", "grammar", 'Correct the grammar and spelling in this sentence: "{text}"',
             text=W.BAD_GRAMMAR),
    _pattern("rewrite", "polite", 'Rewrite this message so that it sounds more polite: "{text}"', text=W.BLUNT),
    _pattern("rewrite", "passive", 'Rewrite this sentence in the passive voice: "{text}"',
             text=W.ACTIVE_SENTENCES),
    _pattern("rewrite", "simpler", 'Rewrite this sentence using simpler words: "{text}"',
             text=W.COMPLEX_SENTENCES),
]

_SUMMARIZE = [
    _pattern("summarize", "one_sentence", "Summarize the following paragraph in one sentence:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("summarize", "main_idea", "What is the main idea of this paragraph?\n\n{text}", text=W.PARAGRAPHS),
    _pattern("summarize", "title", "Give this paragraph a short title:\n\n{text}", text=W.PARAGRAPHS),
    _pattern("summarize", "ten_words", "Summarize this text in ten words or fewer:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("summarize", "key_points", "List the key points of this paragraph:\n\n{text}", text=W.PARAGRAPHS),
    _pattern("summarize", "hurry",
             "Write a two-sentence summary of this paragraph for someone in a hurry:\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("summarize", "who_what", "Who or what is this paragraph about, and what happens?\n\n{text}",
             text=W.PARAGRAPHS),
    _pattern("summarize", "dialogue", "Summarize this conversation in one sentence:\n\n{text}",
             text=tuple(d.replace(" B: ", "\nB: ").replace(" A: ", "\nA: ") for d in W.DIALOGUES)),
]
# fmt: on


# -- reasoning: generators with numbers (numbers are not part of the key: one prompt per names / items) ---------
def _add(rng: random.Random):
    name, item = rng.choice(W.NAMES), rng.choice(W.COUNT_ITEMS)
    a, b = rng.randint(3, 40), rng.randint(2, 20)
    return (name, item), f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"


def _subtract(rng: random.Random):
    name, item = rng.choice(W.NAMES), rng.choice(W.COUNT_ITEMS)
    a = rng.randint(8, 50)
    b = rng.randint(2, a - 1)
    return (name, item), f"{name} had {a} {item} and gave {b} of them to a friend. How many {item} are left?"


def _multiply(rng: random.Random):
    box, item = rng.choice(W.CONTAINERS), rng.choice(W.COUNT_ITEMS)
    a, b = rng.randint(3, 12), rng.randint(2, 9)
    return (box, item), f"One {box} holds {a} {item}. How many {item} are there in {b} {_plural(box)}?"


def _share(rng: random.Random):
    item = rng.choice(W.COUNT_ITEMS)
    who = rng.choice(("children", "friends", "classmates", "teammates", "cousins"))
    b = rng.randint(2, 8)
    a = b * rng.randint(2, 9)
    return (item, who), f"{a} {item} are shared equally among {b} {who}. How many {item} does each get?"


def _arrival(rng: random.Random):
    (vehicle, verb), city = rng.choice(W.TRAVELLERS), rng.choice(W.CITIES)
    h, m = rng.randint(5, 20), rng.choice((0, 10, 15, 20, 30, 40, 45))
    d, dm = rng.randint(1, 5), rng.choice((10, 15, 20, 30, 45, 50))
    return (vehicle, city), (
        f"A {vehicle} {verb} {city} at {h}:{m:02d} and the journey takes {d} hour{'s' * (d > 1)} and {dm} minutes. "
        "What time does it arrive?"
    )


def _distance(rng: random.Random):
    vehicle, name = rng.choice(W.VEHICLES), rng.choice(W.NAMES)
    speed = rng.choice((12, 15, 20, 30, 40, 45, 50, 60, 80, 90, 100))
    hours = rng.choice(("two", "three", "four", "half an", "one and a half"))
    unit = "hour" if hours in ("half an",) else "hours"
    who = "the cyclist" if vehicle == "cyclist" else f"{name}'s {vehicle}"
    text = f"If {who} travels at {speed} kilometres per hour, how far does it go in {hours} {unit}?"
    return (vehicle, name), text


def _weekday(rng: random.Random):
    day, k = rng.choice(W.WEEKDAYS), rng.choice((3, 5, 9, 10, 12, 15, 20, 30, 100))
    form = rng.randrange(2)
    text = (
        f"If today is {day}, what day of the week will it be in {k} days?"
        if form == 0
        else f"If it was {day} {k} days ago, what day is it today?"
    )
    return (day, form), text


def _ordering(rng: random.Random):
    comparative, lowest, highest = rng.choice(W.COMPARATIVES)
    a, b, c = rng.sample(W.NAMES, 3)
    ask = rng.choice((lowest, highest))
    text = f"{a} is {comparative} than {b}, and {b} is {comparative} than {c}. Who is the {ask}?"
    return (comparative, a), text


def _heavier(rng: random.Random):
    x, y = rng.sample(W.HEAVY_STUFF, 2)
    return frozenset((x, y)), f"Which is heavier, a kilogram of {x} or a kilogram of {y}?"


def _sequence(rng: random.Random):
    kind = rng.choice(("add", "times", "squares", "minus"))
    if kind == "add":
        start, step = rng.randint(1, 20), rng.randint(2, 9)
        seq = [start + step * i for i in range(5)]
    elif kind == "times":
        start, step = rng.randint(1, 5), rng.choice((2, 3))
        seq = [start * step**i for i in range(5)]
    elif kind == "minus":
        step = rng.randint(2, 7)
        start = step * 6 + rng.randint(0, 20)
        seq = [start - step * i for i in range(5)]
    else:
        start = rng.randint(1, 6)
        seq = [(start + i) ** 2 for i in range(5)]
    return tuple(seq), f"What number comes next in the sequence {', '.join(map(str, seq))}?"


def _odd_one_out(rng: random.Random):
    main, other = rng.sample(sorted(W.ODD_ONE_OUT), 2)
    words = rng.sample(W.ODD_ONE_OUT[main], 3) + [rng.choice(W.ODD_ONE_OUT[other])]
    rng.shuffle(words)
    return frozenset(words), f"Which word does not belong in this group: {', '.join(words)}?"


def _sale(rng: random.Random):
    item = rng.choice(W.SALE_ITEMS)
    price, off = rng.choice((20, 40, 50, 60, 80, 120, 200)), rng.choice((10, 20, 25, 50))
    text = f"{_article(item).capitalize()} costs {price} dollars and is on sale for {off} percent off."
    return (item,), text + " What is the sale price?"


def _same_time(rng: random.Random):
    what = rng.choice(
        (
            ("dry one towel on the washing line", "dry {k} towels on the same line"),
            ("boil one egg", "boil {k} eggs together in the same pot"),
            ("bake one tray of cookies", "bake {k} trays of cookies side by side in a big oven"),
            ("grow one tomato plant to full size", "grow {k} tomato plants in the same garden"),
            ("play one song on the radio", "play {k} different radios with the same song at once"),
        )
    )
    a, k = rng.choice((5, 10, 20, 30)), rng.randint(3, 8)
    return (what[0],), (
        f"It takes {a} minutes to {what[0]}. How long does it take to {what[1].format(k=k)}? Explain your answer."
    )


def _save_up(rng: random.Random):
    name, thing = rng.choice(W.NAMES), rng.choice(W.SAVE_FOR)
    per = rng.choice((5, 10, 15, 20, 25))
    cost = per * rng.randint(4, 20)
    return (name, thing), (
        f"{name} saves {per} dollars a week. How many weeks will it take to save for {_article(thing)} that costs "
        f"{cost} dollars?"
    )


def _read_book(rng: random.Random):
    name = rng.choice(W.NAMES)
    per = rng.choice((10, 15, 20, 25, 30, 40))
    pages = per * rng.randint(5, 20)
    text = f"{name} reads {per} pages a day. How many days will it take to finish a {pages}-page book?"
    return (name,), text


def _prime(rng: random.Random):
    n = rng.randint(11, 99)
    return (n,), f"Is {n} a prime number? Explain your answer."


def _sort_numbers(rng: random.Random):
    nums = rng.sample(range(1, 200), rng.randint(5, 7))
    return tuple(sorted(nums)), f"Sort these numbers from smallest to largest: {', '.join(map(str, nums))}."


def _sort_words(rng: random.Random):
    pool = rng.choice((W.ANIMALS, W.CITIES, W.SKILLS, W.HOBBIES))
    words = rng.sample(pool, 5)
    return frozenset(words), f"Put these words in alphabetical order: {', '.join(words)}."


def _mystery_number(rng: random.Random):
    op = rng.choice(("double", "triple", "halve"))
    x = rng.randint(2, 30) * (2 if op == "halve" else 1)
    y = x * {"double": 2, "triple": 3}[op] if op != "halve" else x // 2
    a = rng.randint(1, 15)
    return (op, a), f"I am thinking of a number. If I {op} it and add {a}, I get {y + a}. What is the number?"


def _crowd(rng: random.Random):
    noun, where, leave, arrive = rng.choice(W.GROUP_SCENES)
    a = rng.randint(8, 30)
    b, c = rng.randint(1, a - 2), rng.randint(1, 9)
    return (noun,), (
        f"There are {a} {noun} {where}. {b} {leave}, and then {c} more {arrive}. How many {noun} are there now?"
    )


def _ages(rng: random.Random):
    a, b = rng.sample(W.NAMES, 2)
    x, d, k = rng.randint(5, 40), rng.randint(2, 12), rng.randint(2, 10)
    return (a, b), f"{a} is {x} years old. {b} is {d} years older than {a}. How old will {b} be in {k} years?"


def _syllogism(rng: random.Random):
    subject, single, plural, group, groups = rng.choice(W.SYLLOGISMS)
    form = rng.randrange(2)
    first = subject[:1].upper() + subject[1:]
    text = (
        f"All {plural} are {groups}. {first} is {_article(single)}. Is {subject} {_article(group)}?"
        if form == 0
        else f"All {plural} are {groups}. {first} is {_article(group)}. Does that mean it is {_article(single)}?"
    )
    return (single, form), text


def _recipe(rng: random.Random):
    ingredient = rng.choice(W.RECIPE_INGREDIENTS)
    k, m = rng.choice(((2, 6), (4, 6), (4, 10), (3, 9), (6, 9), (2, 5), (8, 12)))
    grams = rng.choice((100, 150, 200, 240, 300, 400))
    return (ingredient,), (
        f"A recipe for {k} people needs {grams} grams of {ingredient}. How much {ingredient} is needed for {m} people?"
    )


def _units(rng: random.Random):
    small, big, k = rng.choice(
        (
            ("minutes", "hours", rng.randint(2, 9)),
            ("seconds", "minutes", rng.randint(2, 9)),
            ("days", "weeks", rng.randint(2, 12)),
            ("months", "years", rng.randint(2, 10)),
            ("centimetres", "metres", rng.randint(2, 9)),
            ("grams", "kilograms", rng.randint(2, 9)),
            ("hours", "days", rng.randint(2, 7)),
        )
    )
    return (small, big), f"How many {small} are there in {k} {big}?"


def _journey(rng: random.Random):
    name, dest = rng.choice(W.NAMES), rng.choice(W.DESTINATIONS)
    h, m = rng.randint(6, 10), rng.choice((5, 10, 15, 20, 35, 40, 50))
    dur = rng.choice((15, 25, 35, 45, 50, 70, 85))
    end = h * 60 + m + dur
    return (name, dest), (
        f"{name} leaves home at {h}:{m:02d} and arrives at {dest} at {end // 60}:{end % 60:02d}. "
        "How long was the journey?"
    )


def _area(rng: random.Random):
    thing = rng.choice(W.RECTANGLES)
    b = rng.randint(2, 15)
    a = rng.randint(b + 1, b + 12)
    ask = rng.choice(("area", "perimeter"))
    return (thing, ask), f"A rectangular {thing} is {a} metres long and {b} metres wide. What is its {ask}?"


_REASONING = [
    _generator("reasoning", "add", _add),
    _generator("reasoning", "subtract", _subtract),
    _generator("reasoning", "multiply", _multiply),
    _generator("reasoning", "share", _share),
    _generator("reasoning", "arrival", _arrival),
    _generator("reasoning", "distance", _distance),
    _generator("reasoning", "weekday", _weekday, cap=14),
    _generator("reasoning", "ordering", _ordering),
    _generator("reasoning", "heavier", _heavier, cap=10),  # caps at or below the number of keys
    _generator("reasoning", "sequence", _sequence, cap=20),
    _generator("reasoning", "odd_one_out", _odd_one_out),
    _generator("reasoning", "sale", _sale, cap=8),
    _generator("reasoning", "same_time", _same_time, cap=5),
    _generator("reasoning", "save_up", _save_up),
    _generator("reasoning", "read_book", _read_book, cap=15),
    _generator("reasoning", "prime", _prime, cap=12),
    _generator("reasoning", "sort_numbers", _sort_numbers, cap=10),
    _generator("reasoning", "sort_words", _sort_words, cap=20),
    _generator("reasoning", "mystery_number", _mystery_number, cap=15),
    _generator("reasoning", "crowd", _crowd, cap=6),
    _generator("reasoning", "ages", _ages, cap=25),
    _generator("reasoning", "syllogism", _syllogism, cap=16),
    _generator("reasoning", "recipe", _recipe, cap=7),
    _generator("reasoning", "units", _units, cap=7),
    _generator("reasoning", "journey", _journey, cap=25),
    _generator("reasoning", "area", _area),
]

TEMPLATES: tuple[Template, ...] = tuple(
    _FACTUAL
    + _HOWTO
    + _EXPLANATION
    + _CREATIVE
    + _LIST
    + _REASONING
    + _CLASSIFICATION
    + _REWRITE
    + _SUMMARIZE
)
if len({t.name for t in TEMPLATES}) != len(TEMPLATES):  # pragma: no cover - a programming error
    raise RuntimeError("template names must be unique")


# -- the pool ----------------------------------------------------------------------------------------------------
def _draw(template: Template, rng: random.Random, cap: int) -> list[str]:
    """Up to ``cap`` prompts of ``template`` with distinct keys (rejection sampling, a bounded number of tries)."""
    limit = min(cap, template.cap or cap, template.space or cap)
    keys: set[Any] = set()
    out: list[str] = []
    for _ in range(60 * limit + 200):
        if len(out) >= limit:
            break
        key, text = template.draw(rng)
        if key is None or key in keys:
            continue
        keys.add(key)
        out.append(text)
    return out


@functools.lru_cache(maxsize=8)
def instruction_pool(seed: int = 0, max_per_template: int = 40) -> tuple[tuple[str, str, str], ...]:
    """Every prompt the templates give for ``seed``: ``(kind, template name, text)`` in the order the set takes
    them (kinds interleaved by ``KIND_WEIGHTS``, templates round-robin within a kind, no two equal normalised
    texts)."""
    lists: dict[str, list[list[tuple[str, str]]]] = defaultdict(list)
    for t in TEMPLATES:
        rng = random.Random(f"{_SALT}|{seed}|{t.name}")
        lists[t.kind].append([(t.name, text) for text in _draw(t, rng, max_per_template)])
    queues: dict[str, list[tuple[str, str]]] = {}
    for kind in KINDS:
        groups = lists[kind]
        random.Random(f"{_SALT}|{seed}|order|{kind}").shuffle(groups)
        queues[kind] = [x for row in zip_longest(*groups) for x in row if x is not None]
    position = dict.fromkeys(KINDS, 0)
    taken = dict.fromkeys(KINDS, 0)
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    while True:
        live = [k for k in KINDS if position[k] < len(queues[k])]
        if not live:
            break
        kind = min(live, key=lambda k: ((taken[k] + 1) / KIND_WEIGHTS[k], KINDS.index(k)))
        name, text = queues[kind][position[kind]]
        position[kind] += 1
        norm = normalize_prompt(text)
        if norm in seen:
            continue
        seen.add(norm)
        taken[kind] += 1
        out.append((kind, name, text))
    return tuple(out)


def instruction_prompts(config: InstructionConfig = InstructionConfig()) -> list[Prompt]:
    """The first ``config.n`` prompts of the pool of ``config.seed``, each with its id, kind, split and template.

    Deterministic: the same config gives the same list in every Python process. Raises ``ValueError`` when
    ``n`` exceeds the pool.
    """
    pool = instruction_pool(config.seed, config.max_per_template)
    if config.n > len(pool):
        raise ValueError(
            f"n={config.n} exceeds the {len(pool)} prompts of the pool (seed {config.seed}, "
            f"max_per_template {config.max_per_template}); raise max_per_template or lower n"
        )
    return [
        Prompt(_prompt_id(kind, text), kind, text, prompt_split(text, config.eval_fraction), name)
        for kind, name, text in pool[: config.n]
    ]


# -- make-up -----------------------------------------------------------------------------------------------------
def _quantiles(values: Sequence[float]) -> dict[str, float]:
    """min, 10th, 50th and 90th percentile (linear interpolation), max and mean of ``values``."""
    xs = sorted(values)
    if not xs:
        return {k: float("nan") for k in ("min", "p10", "p50", "p90", "max", "mean")}

    def q(p: float) -> float:
        pos = p * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {
        "min": xs[0],
        "p10": q(0.1),
        "p50": q(0.5),
        "p90": q(0.9),
        "max": xs[-1],
        "mean": sum(xs) / len(xs),
    }


def summarize_prompts(prompts: Iterable[Prompt]) -> dict[str, Any]:
    """The make-up of a prompt set: per kind (and ``"all"``) the number of templates used, prompts per split,
    share of the set, and length quantiles in whitespace words and in characters."""
    prompts = list(prompts)
    by_kind: dict[str, list[Prompt]] = defaultdict(list)
    for p in prompts:
        by_kind[p.kind].append(p)
    rows = {}
    for kind in [k for k in KINDS if k in by_kind] + sorted(set(by_kind) - set(KINDS)) + ["all"]:
        group = prompts if kind == "all" else by_kind[kind]
        splits = Counter(p.split for p in group)
        rows[kind] = {
            "templates": len({p.template for p in group}),
            "train": splits.get("train", 0),
            "eval": splits.get("eval", 0),
            "total": len(group),
            "share": len(group) / max(len(prompts), 1),
            "words": _quantiles([len(p.text.split()) for p in group]),
            "chars": _quantiles([len(p.text) for p in group]),
        }
    return {
        "total": len(prompts),
        "distinct": len({normalize_prompt(p.text) for p in prompts}),
        "kinds": rows,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summarize_prompts``'s result as a Markdown table (one row per kind, then all)."""
    head = (
        "| kind | templates | train | eval | total | share | words p10 / p50 / p90 / max | chars p50 / max |\n"
        "|---|---:|---:|---:|---:|---:|---|---|"
    )
    lines = [head]
    for kind, r in summary["kinds"].items():
        w, c = r["words"], r["chars"]
        lines.append(
            f"| {kind} | {r['templates']} | {r['train']} | {r['eval']} | {r['total']} | {r['share']:.1%} | "
            f"{w['p10']:.0f} / {w['p50']:.0f} / {w['p90']:.0f} / {w['max']:.0f} | {c['p50']:.0f} / {c['max']:.0f} |"
        )
    return "\n".join(lines)
