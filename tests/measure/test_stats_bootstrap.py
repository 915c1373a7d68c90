"""Holm's correction, bootstrap p-values and the crossed bootstrap over units of several groups (the replication's
statistics), against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from retmask_interp.measure.stats import (
    bootstrap_p,
    crossed_bootstrap_ci,
    crossed_bootstrap_means,
    holm,
    unit_bootstrap,
    unit_mean,
)


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08 -> monotone 0.09, 0.5
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    out = holm([0.02, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([0.9, 0.8]).max() <= 1.0
    with pytest.raises(ValueError, match="must lie in"):
        holm([1.5])


def test_bootstrap_p_is_two_sided():
    assert bootstrap_p(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(0.5)
    assert bootstrap_p(np.ones(10)) == 0.0
    assert bootstrap_p(np.r_[np.ones(5), -np.ones(5)]) == 1.0
    with pytest.raises(ValueError):
        bootstrap_p([])


def test_crossed_ci_is_unchanged_by_the_refactor():
    rng = np.random.default_rng(3)
    m = rng.random((3, 40))
    means = crossed_bootstrap_means(m, 500, 7)
    assert crossed_bootstrap_ci(m, 500, 7) == tuple(np.quantile(means, [0.025, 0.975]))
    r = np.random.default_rng(7)
    rows, cols = r.integers(0, 3, (500, 3)), r.integers(0, 40, (500, 40))
    assert means == pytest.approx(m[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2)))


def test_unit_bootstrap_centres_pairs_and_spreads_over_units():
    rng = np.random.default_rng(0)
    base = rng.random((2, 50))
    # group a: two units on example set 0, group b: the same examples shifted by 0.1 -> a paired contrast is exact
    groups = {"a": [(0, base), (0, base + 0.2)], "b": [(0, base + 0.1), (0, base + 0.1)]}
    draws = unit_bootstrap(groups, 2000, 1)
    assert unit_mean(groups["a"]) == pytest.approx(base.mean() + 0.1)
    # only the unit draw of group a varies the contrast: a - b is -0.1, 0 or +0.1 whatever the examples drawn
    diff = draws["a"] - draws["b"]
    assert set(np.round(diff, 10)) <= {-0.1, 0.0, 0.1}
    assert 0.4 < np.mean(np.isclose(diff, 0)) < 0.6  # units (0, 1) or (1, 0) of group a
    # one unit per group on independent example sets: the spread is the example spread of both
    one = unit_bootstrap({"x": [(0, base)], "y": [(1, base)]}, 4000, 2)
    assert np.std(one["x"] - one["y"]) == pytest.approx(np.sqrt(2) * np.std(one["x"]), rel=0.15)
    with pytest.raises(ValueError, match="same cells"):
        unit_bootstrap({"a": [(0, base)], "b": [(0, base[:, :10])]}, 10)
    with pytest.raises(ValueError, match="no units"):
        unit_bootstrap({"a": []}, 10)
