"""The RetMask replication's report recomputes from its per-example table: every table (``tables.json``) and the
whole ``README.md`` are generated again from ``scores.csv`` (with the notes, stage times and length budget committed
beside it), so a changed number in the report, or in the table, fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retmask_interp.retmask import replication as R

STUDY = Path(__file__).resolve().parent


def _load(name: str):
    path = STUDY / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@pytest.mark.skipif(not (STUDY / "scores.csv").exists(), reason="the replication's table is not built yet")
def test_report_and_tables_recompute_from_the_csv():
    df = R.read_table(STUDY / "scores.csv")
    committed = _load("tables.json")
    tables, text = R.render_report(
        df,
        STUDY / "NOTES.md",
        timings=_load("timings.json"),
        length_budget=_load("length_budget.json"),
        n_resamples=committed["n_resamples"],
    )
    assert json.loads(json.dumps(tables)) == committed
    assert text == (STUDY / "README.md").read_text(encoding="utf-8")


@pytest.mark.skipif(not (STUDY / "scores.csv").exists(), reason="the replication's table is not built yet")
def test_a_changed_score_changes_the_report():
    df = R.read_table(STUDY / "scores.csv")
    committed = _load("tables.json")
    i = df.index[(df["condition"] == "retmask") & (df["task"] == "niah") & (df["length"] == 2048)][0]
    df.loc[i, "score"] = 1.0 - df.loc[i, "score"]
    cells = [tuple(c) for c in committed["cells"]]
    # point estimates do not depend on the bootstrap, so a few resamples suffice to see the change
    changed = R.contrast_table(df, R.CONTRASTS, cells, n_resamples=20)
    before = {r["contrast"]: r["estimate"] for r in committed["primary"]}
    assert changed[2]["estimate"] != pytest.approx(before[changed[2]["contrast"]], abs=1e-12)
