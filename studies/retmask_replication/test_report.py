"""The RetMask replication's report recomputes from its per-example table: every table (``tables.json``) and the
whole ``README.md`` are generated again from ``scores.csv`` (with the notes, stage times and length budget committed
beside it), so a changed number in the report, or in the table, fails here."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
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
        concentration=_load("concentration.json"),
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


@contextlib.contextmanager
def _build_module():
    """``build.py`` imported as a module (registered while in use: its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location("replication_build", STUDY / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    try:
        spec.loader.exec_module(build)
        yield build
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.skipif(
    not (STUDY / "concentration.json").exists(), reason="the replication's table is not built yet"
)
def test_concentration_inputs_recompute_from_the_head_lists_and_the_organism_study():
    """The x axis (Gini, effective heads, heads >= 0.1 of the head list each model's runs masked) and the organisms'
    gains, as build.py derives them from committed files."""
    with _build_module() as build:
        assert build.concentration_inputs() == _load("concentration.json")
    c = _load("concentration.json")
    # the figures: 20.5 against 6.5 effective heads, Gini 0.944 / 0.930
    assert round(c["models"]["smollm2-135m-instruct"]["effective_heads"], 1) == 20.5
    assert round(c["models"]["gemma-3-270m"]["effective_heads"], 1) == 6.5


def test_concentration_figures_once_the_table_is_ready():
    """Not drawn while the plan withholds the table; once ready, one point per model with its interval."""
    rows = [{"model": m, "gini": g, "effective_heads": e, "gain": y, "gain_ci_low": y - 0.01,
             "gain_ci_high": y + 0.02} for m, g, e, y in (("a", 0.94, 20.5, 0.04), ("b", 0.93, 6.5, 0.08))]  # fmt: skip
    with _build_module() as build:
        assert build.concentration_figures({"ready": False, "rows": []}) == {}
        figs = build.concentration_figures({"ready": True, "rows": rows})
    assert set(figs) == {"gain_vs_gini", "gain_vs_effective_heads"}
    point = figs["gain_vs_effective_heads"].data[0]
    assert list(point.x) == [20.5, 6.5] and list(point.y) == [0.04, 0.08]
    assert list(point.error_y.arrayminus) == pytest.approx([0.01, 0.01])


@pytest.mark.skipif(not (STUDY / "scores.csv").exists(), reason="the replication's table is not built yet")
def test_the_pilot_rows_are_its_committed_predictions():
    """Every row of a pilot (PILOTS in build.py) in ``scores.csv`` is a record of its committed JSONL files, and every
    record is in the table: a changed or lost score in either fails here."""
    df = R.read_table(STUDY / "scores.csv")
    key = ["model", "control_draw", "task", "length", "example", "score"]
    with _build_module() as build:
        assert build.PILOTS
        for model, directory, label in build.PILOTS:
            units = build.new_units(directory, label, model)
            assert len(units) == len(list((directory / "harm_run" / "harm").glob("*.jsonl"))) > 0
            read = sorted(tuple(r) for u, _ in units for r in u[key].itertuples(index=False))
            table = sorted(tuple(r) for r in df[df["source"] == label][key].itertuples(index=False))
            assert read == table
