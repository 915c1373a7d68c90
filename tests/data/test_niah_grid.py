"""niah_grid: the one NIAH grid builder (the hand-built grids it replaced, its defaults, its errors)."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

import retmask_interp as rmi
from retmask_interp.core.io import InputError
from retmask_interp.data.niah import NIAHConfig, NIAHGrid, default_needles, niah_grid
from retmask_interp.data.synthetic import make_needles


@pytest.fixture(scope="module")
def organism():
    return rmi.load_model("organism", device="cpu")


def _digest(samples) -> str:
    blob = json.dumps(
        [
            [
                s.sample_id,
                s.input_ids,
                list(s.answer_span),
                list(s.needle_span),
                s.num_tokens,
                s.needle_position,
            ]
            for s in samples
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_the_demo_grid_is_the_one_built_by_hand_before(organism):
    # golden digests of the demo's and the organism check's grids, taken from the hand-built code that
    # niah_grid replaced (workflows/demo.py and workflows/organism_check.py at 93bbe0c)
    demo = niah_grid(organism, [400, 800, 1200, 1600], 5, 3)
    assert len(demo) == 60 and _digest(demo) == "207c5fb6401af303"
    check = niah_grid(
        organism,
        (500, 1000),
        3,
        2,
        needle_set="eval",
        needle_seed=2024,
        haystack="synthetic:11",
        style="chat",
    )
    assert len(check) == 12 and _digest(check) == "67486ce521a6647a"


def test_niah_config_builds_through_niah_grid(organism):
    cfg = NIAHConfig(lengths=[200, 900], depths=[0, 50, 100], style="qa")
    built = cfg.build(organism.tokenizer, organism.max_context)
    direct = niah_grid(
        organism,
        [200, 900],
        [0, 50, 100],
        None,
        needle_set="default",
        haystack="synthetic",
        style="qa",
        repeat_haystack=False,
    )
    assert _digest(built) == _digest(direct) and len(built) == 2 * 3 * len(default_needles())


def test_auto_style_and_needle_set(organism):
    grid = niah_grid(organism, [300], 2, 2)
    assert {s.style for s in grid} == {"chat"}  # the organism's tokenizer has a chat template
    assert [s.needle for s in grid[::2]] == make_needles(
        2, seed=0, split="eval"
    )  # organisms: held-out needles
    plain = copy.copy(organism)
    plain.tokenizer = copy.deepcopy(organism.tokenizer)
    plain.tokenizer.chat_template = None
    plain.name = "some-base-model"
    grid = niah_grid(plain, [300], 2, 2)
    assert {s.style for s in grid} == {"qa"}
    assert [s.needle for s in grid[::2]] == default_needles()[:2]  # other models: the package's needles
    assert grid.spec["needle_set"] == "default" and grid.spec["style"] == "qa"


def test_depths_lengths_and_needles_are_read_as_documented(organism):
    grid = niah_grid(organism, [300, 500], [10, 90], 3)
    assert len(grid) == 2 * 2 * 3
    assert sorted({s.depth for s in grid}) == [10.0, 90.0]
    assert sorted({s.context_length for s in grid}) == [300, 500]
    assert all(abs(s.num_tokens - s.context_length) <= 2 for s in grid)
    assert sorted({s.depth for s in niah_grid(organism, [300], 3, 1)}) == [0.0, 50.0, 100.0]
    given = make_needles(2, seed=5, split="eval")
    assert [s.needle for s in niah_grid(organism, [300], 1, given)] == given


def test_a_grid_has_a_short_repr_and_slices_stay_grids(organism):
    grid = niah_grid(organism, [300, 500], 3, 2)
    text = repr(grid)
    assert len(text) < 250 and "12 samples" in text and "[300, 500]" in text
    assert isinstance(grid[:3], NIAHGrid) and len(grid[:3]) == 3 and grid[:3].spec == grid.spec


def test_a_length_below_the_prompt_is_skipped(organism):
    # Wu et al.'s lengths start at 0 (NIAHConfig's default): such a length has no room for a haystack and is skipped
    grid = niah_grid(organism, [0, 300], 1, 1)
    assert [s.context_length for s in grid] == [300]


def test_lengths_over_the_window(organism):
    window = organism.max_context
    with pytest.raises(InputError, match=f"window of {window}"):
        niah_grid(organism, [300, window + 100], 1, 1)
    kept = niah_grid(organism, [300, window + 100], 1, 1, drop_long=True)
    assert [s.context_length for s in kept] == [300]
    with pytest.raises(InputError, match="longer than the model's window"):
        niah_grid(organism, [window + 100], 1, 1, drop_long=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depths=0), "depths must be >= 1"),
        (dict(depths=[10, 120]), r"percentages in \[0, 100\]"),
        (dict(lengths=[-5]), "token counts >= 0"),
        (dict(needles=0), "needles must be >= 1"),
        (dict(needles=10_000, needle_set="default"), "default needles"),
        (dict(needle_set="nope"), "unknown needle set"),
        (dict(style="poem"), "unknown prompt style"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(organism, kwargs, match):
    args = dict(lengths=[300], depths=1, needles=1) | kwargs
    with pytest.raises(InputError, match=match):
        niah_grid(organism, **args)


def test_the_public_name():
    assert rmi.niah_grid is niah_grid
