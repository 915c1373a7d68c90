"""The head explorer driven from Python: a click selects a head and the views follow (the browser test is
tests/analysis/test_explorer_browser.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")
pytest.importorskip("circuitsvis")

import retmask_interp as rmi  # noqa: E402
from retmask_interp.data.niah import NIAHConfig  # noqa: E402
from retmask_interp.heads.scores import HeadScores  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    rm = rmi.load_model("organism", device="cpu")
    grid = NIAHConfig(lengths=[300], depths=[20, 80], needles=None).build(rm.tokenizer)[:2]
    m = np.zeros((6, 8))
    m[4, 1], m[5, 2], m[4, 6] = 0.9, 0.8, 0.3
    return rm, HeadScores.from_matrix(m, model=rm.name), grid


def _click(ex, key: str, shift: bool = False) -> None:
    """What the browser sends for a click on cell ``key``."""
    ex.grid_view.clicked = {"head": key, "add": shift, "n": len(ex.selected) + 1000 * shift + hash(key) % 997}


def test_explorer_click_selects_heads_and_updates_the_views(setup):
    rm, hs, grid = setup
    widget = rmi.explore(rm, hs, grid, max_new_tokens=8)
    ex = widget.explorer
    assert "none" in ex.status.value and " masked</th>" not in ex.answers.value
    assert ex.attention.value == ""
    plain = ex.unmasked_answer()
    assert plain == rm.generate(grid[0], 8, stop="newline")
    _click(ex, "4-1")
    assert ex.selected == [(4, 1)] and "4-1" in ex.status.value and ex.grid_view.selected == ["4-1"]
    with rmi.masked(rm, [(4, 1)]) as m:
        want = m.generate(grid[0], 8, stop="newline")
    assert (
        f"<code>{want}</code>" in ex.answers.value.replace("&#x27;", "'") and "4-1 masked" in ex.answers.value
    )
    assert "attention-view" in ex.attention.value and "4-1" in ex.attention.value  # circuitsvis, offline
    _click(ex, "5-2", shift=True)  # shift-click adds
    assert ex.selected == [(4, 1), (5, 2)] and "4-1, 5-2 masked" in ex.answers.value
    ex.add.value = True
    _click(ex, "4-1")  # with "add to selection", clicking a selected head again removes it
    assert ex.selected == [(5, 2)]
    ex.choose_sample(1)
    grid_view = ex.grid_view
    assert grid_view.tips[4 * 8 + 1] == "4-1: 0.900" and grid_view.labels[4 * 8 + 1] == "1"
    assert (
        grid_view.inks[4 * 8 + 1] == "black" and grid_view.inks[4 * 8 + 6] == "white"
    )  # legible on every colour
    assert ex.samples.value == 1 and ex.unmasked_answer() == rm.generate(grid[1], 8, stop="newline")
    ex.clear.click()
    assert ex.selected == [] and "none" in ex.status.value
