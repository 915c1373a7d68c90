"""The RetMask run on SmolLM2 committed in studies/smollm2_retmask/ (issue 13): the score CSV holds every
condition, seed, task and length the protocol asks for, its tables recompute from it, and the docs' results table (docs/results.md) is
those tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from retmask_interp.retmask.report import check_scores, read_scores, study_tables
from retmask_interp.workflows.studies.retmask import LONG_TASKS

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "studies/smollm2_retmask"
LENGTHS = {2048, 4096, 7000}


@pytest.fixture(scope="module")
def scores():
    df = read_scores(RUN / "scores.csv")
    check_scores(df)
    return df


def test_scores_cover_the_protocol(scores):
    assert set(scores.condition) == {"none", "retmask", "random"}
    for cond in ("retmask", "random"):
        part = scores[scores.condition == cond]
        assert set(part.seed) == {0, 1, 2} and set(part.lr) == {5e-6}
        for seed, g in part.groupby("seed"):
            cells = g[g.task.isin(LONG_TASKS)].groupby(["task", "length"]).example.nunique()
            assert set(cells.index) == {(t, n) for t in LONG_TASKS for n in LENGTHS}, (cond, seed)
            assert cells.min() >= 100
    assert set(scores[scores.condition == "none"].task) == set(LONG_TASKS) | {"short_qa", "ppl_nll"}


def test_tables_recompute_from_the_csv(scores):
    saved = json.loads((RUN / "tables.json").read_text())
    bootstrap = json.loads((RUN / "study.json").read_text())["config"]["bootstrap"]
    again = json.loads(json.dumps(study_tables(scores, n_resamples=bootstrap), default=float))
    assert saved.keys() == again.keys()
    for key in saved:
        assert len(saved[key]) == len(again[key])
        for a, b in zip(saved[key], again[key]):
            assert a.keys() == b.keys()
            for k in a:
                if isinstance(a[k], float) and isinstance(b[k], float):
                    assert a[k] == pytest.approx(b[k], abs=1e-9, nan_ok=True), (key, a, k)
                else:
                    assert a[k] == b[k], (key, a, k)


def test_readme_table_is_the_tables():
    tables = json.loads((RUN / "tables.json").read_text())
    means = {(r["condition"], r["task"], r["length"]): r["mean"] for r in tables["means"]}
    diffs = {(r["task"], r["length"]): r for r in tables["vs_random"]}
    text = (REPO / "docs" / "results.md").read_text()  # the results moved from the README to the docs site
    lengths = sorted(LENGTHS)
    checked = 0
    for task in ("niah", "multi_needle", "rag_qa"):
        row = re.search(rf"^\| {task} \| (.+) \|$", text, re.M)
        assert row, f"docs/results.md has no RetMask row for {task}"
        cols = [c.strip() for c in row.group(1).split("|")]
        for col, cond in zip(cols[:3], ("none", "retmask", "random")):
            for value, n in zip(col.split(" / "), lengths):
                assert float(value) == pytest.approx(round(means[(cond, task, n)], 3), abs=1e-9)
                checked += 1
        for part, n in zip(cols[3].split(" / "), lengths):
            delta = float(part.split(" [")[0])
            assert delta == pytest.approx(round(diffs[(task, n)]["delta"], 3), abs=1e-9)
            checked += 1
    assert checked == 36
