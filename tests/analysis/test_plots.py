"""Figures: traces, shapes and values from known inputs; files written by save_figure."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from retmask_interp.analysis import export as _analysis_export
from retmask_interp.analysis import plots as F
from retmask_interp.analysis.metrics import metrics_table
from retmask_interp.heads.formats import load_any_head_list
from retmask_interp.heads.scores import HeadScores

M = np.array([[0.0, 0.05, 0.3], [0.12, 0.0, 0.0], [0.0, 0.9, 0.1]])


def _marked(trace) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for x, y in zip(trace.x, trace.y)}


def test_head_heatmap_values_markers_and_ranks():
    fig = F.head_heatmap(HeadScores.from_matrix(M, model="toy"), threshold=0.1, annotate_top=3)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    heat, marks = fig.data
    np.testing.assert_array_equal(np.asarray(heat.z), M)
    assert _marked(marks) == {(0, 2), (1, 0), (2, 1), (2, 2)}  # exactly the heads >= 0.1 (0.1 included)
    np.testing.assert_allclose(marks.customdata, [M[y, x] for x, y in zip(marks.x, marks.y)])
    ranks = [(a.text, a.y, a.x) for a in fig.layout.annotations]
    assert ranks == [("1", 2, 1), ("2", 0, 2), ("3", 1, 0)]
    assert "toy" in fig.layout.title.text
    assert len(F.head_heatmap(M, threshold=None, annotate_top=0).data) == 1


def test_heatmaps_side_by_side_share_a_colour_scale():
    small = np.array([[0.2, 0.0], [0.0, 0.4]])
    fig = F.heatmaps_side_by_side({"A": M, "B": small}, threshold=0.3, annotate_top=1)
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "heatmap", "scatter"]
    assert {t.coloraxis for t in fig.data if t.type == "heatmap"} == {"coloraxis"}
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(0.9)
    np.testing.assert_array_equal(np.asarray(fig.data[2].z), small)  # different geometry kept
    assert _marked(fig.data[1]) == {(0, 2), (2, 1)} and _marked(fig.data[3]) == {(1, 1)}
    assert fig.data[2].xaxis == "x2"
    ranks = [a for a in fig.layout.annotations if a.text == "1"]
    assert [(a.xref, a.x, a.y) for a in ranks] == [("x", 1, 2), ("x2", 1, 1)]
    assert F.heatmaps_side_by_side({"A": M}, zmax=2.0).layout.coloraxis.cmax == 2.0


def test_sorted_score_curves():
    fig = F.sorted_score_curves({"A": M, "zero": np.zeros((2, 2))})
    assert len(fig.data) == 4
    np.testing.assert_allclose(fig.data[0].y, np.sort(M.ravel())[::-1])
    np.testing.assert_allclose(fig.data[1].y, np.cumsum(np.sort(M.ravel())[::-1]) / M.sum())
    assert fig.data[1].x[-1] == 1.0 and fig.data[3].y[-1] == pytest.approx(1.0)


def test_metrics_chart_from_metrics_table():
    df = metrics_table({"A": M, "B": np.ones((3, 3))})
    fig = F.metrics_chart(df)
    assert [t.name for t in fig.data] == ["A", "B"]
    assert list(fig.data[0].x) == [
        "gini",
        "hoyer",
        "top10_share",
        "normalized_entropy",
        "effective_heads_fraction",
    ]
    assert fig.data[0].y[0] == pytest.approx(df.loc["A", "gini"]) and fig.data[1].y[0] == 0.0
    with pytest.raises(ValueError, match="metrics_table"):
        F.metrics_chart(pd.DataFrame({"x": [1]}))


def _niah_df():
    rows = []
    for length in (1000, 2000):
        for depth in (0.0, 50.0, 100.0):
            for ok in (1, 0, 1 if length == 1000 else 0):
                rows.append({"context_length": length, "depth": depth, "success": ok})
    return pd.DataFrame(rows)


def test_niah_grid_means_per_cell():
    fig = F.niah_grid(_niah_df())
    heat = fig.data[0]
    assert list(heat.x) == ["1000", "2000"] and list(heat.y) == [
        "0",
        "50",
        "100",
    ]  # the axis spans the depths only
    np.testing.assert_allclose(np.asarray(heat.z), [[2 / 3, 1 / 3]] * 3)
    np.testing.assert_array_equal(np.asarray(heat.customdata), np.full((3, 2), 3))
    assert heat.zmin == 0 and heat.zmax == 1
    with pytest.raises(ValueError, match="depth"):
        F.niah_grid(pd.DataFrame({"context_length": [1], "success": [1]}))


def test_niah_grids_side_by_side():
    df = _niah_df()
    masked = df.assign(success=0)
    fig = F.niah_grids({"unmasked": df, "retrieval-masked": masked, "random-masked": df})
    assert len(fig.data) == 3 and {t.coloraxis for t in fig.data} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)
    assert np.asarray(fig.data[1].z).sum() == 0
    assert [a.text for a in fig.layout.annotations] == ["unmasked", "retrieval-masked", "random-masked"]


def test_topk_masking_curve_with_ci():
    df = pd.DataFrame(
        {
            "k": [0, 10, 20, 0, 10, 20, 10],
            "kind": ["retrieval"] * 3 + ["random"] * 4,
            "success": [1.0, 0.4, 0.1, 1.0, 0.9, 0.8, 0.7],
            "ci_low": [0.9, 0.3, 0.0, 0.9, 0.8, 0.7, 0.6],
            "ci_high": [1.0, 0.5, 0.2, 1.0, 1.0, 0.9, 0.8],
        }
    )
    fig = F.topk_masking_curve(df)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"retrieval", "random"}
    assert list(by_name["retrieval"].y) == [1.0, 0.4, 0.1]
    assert list(by_name["random"].x) == [0, 10, 20] and by_name["random"].y[1] == pytest.approx(0.8)  # mean
    np.testing.assert_allclose(by_name["retrieval"].error_y.arrayminus, [0.1, 0.1, 0.1])
    assert F.topk_masking_curve(df.drop(columns=["ci_low", "ci_high"])).data[0].error_y.array is None
    # several models in one figure: one colour per model, random heads dashed
    two = pd.concat([df.assign(kind=m + ": " + df["kind"]) for m in ("a", "b")], ignore_index=True)
    lines = {t.name: t.line for t in F.topk_masking_curve(two).data}
    assert lines["a: random"].color == lines["a: retrieval"].color != lines["b: random"].color
    assert [lines[f"a: {k}"].dash for k in ("random", "retrieval")] == ["dash", "solid"]
    # the paper's ks (0, 1, 2, 4, ..., 32) are drawn evenly spaced and labelled; evenly spaced ks stay as they are
    assert F.topk_masking_curve(df).layout.xaxis.ticktext is None
    geo = pd.DataFrame({"k": [0, 1, 2, 4, 8, 16, 32], "kind": "retrieval", "success": np.linspace(1, 0, 7)})
    fig = F.topk_masking_curve(pd.concat([geo, geo.assign(kind="random").iloc[[0, 3, 6]]]))
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["retrieval"].x) == list(range(7)) and list(by_name["random"].x) == [0, 3, 6]
    assert list(by_name["random"].customdata) == [0, 4, 32]
    assert list(fig.layout.xaxis.ticktext) == ["0", "1", "2", "4", "8", "16", "32"]


def test_agreement_figure_wu_vs_duo_attention(shared_dir):
    wu = load_any_head_list(shared_dir / "data/head_scores/wu2024/Mistral-7B-v0.2-hf.json")
    duo = load_any_head_list(
        shared_dir / "data/head_patterns/duo_attention/Mistral-7B-Instruct-v0.2", group_size=4
    )
    fig = F.agreement_figure(wu, duo, names=("Wu et al.", "DuoAttention"))
    scatter, bars = fig.data
    np.testing.assert_array_equal(scatter.x, wu.matrix().ravel())
    np.testing.assert_array_equal(scatter.y, duo.matrix().ravel())
    assert list(bars.x) == ["top-10", "top-20", "top-50"]
    assert "Spearman 0.35" in fig.layout.title.text


def test_gain_vs_concentration():
    df = pd.DataFrame({"model": ["a", "b", "c"], "gini": [0.8, 0.9, 0.95], "gain": [0.5, 1.5, 2.0]})
    fig = F.gain_vs_concentration(df)
    assert list(fig.data[0].text) == ["a", "b", "c"] and len(fig.data) == 2
    slope, intercept = np.polyfit(df["gini"], df["gain"], 1)
    np.testing.assert_allclose(fig.data[1].y, slope * np.array([0.8, 0.95]) + intercept)
    assert len(F.gain_vs_concentration(df.iloc[:2]).data) == 1


def test_save_figure_html_deterministic_and_refuses_overwrite(tmp_path):
    fig = F.head_heatmap(M)
    (html,) = _analysis_export.save_figure(fig, tmp_path / "heat", formats=("html",))
    first = html.read_bytes()
    assert len(first) > 1_000_000 and b"retmask-heat" in first  # plotly.js embedded, fixed div id
    with pytest.raises(FileExistsError):
        _analysis_export.save_figure(fig, tmp_path / "heat", formats=("html",))
    _analysis_export.save_figure(F.head_heatmap(M), tmp_path / "heat", formats=("html",), overwrite=True)
    assert html.read_bytes() == first
    with pytest.raises(ValueError, match="unknown figure formats"):
        _analysis_export.save_figure(fig, tmp_path / "x", formats=("gif",))


def test_save_figure_without_browser_warns_and_keeps_html(tmp_path, monkeypatch, caplog):
    fig = F.head_heatmap(M)

    def no_browser(*args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr(type(fig), "to_image", no_browser)
    with caplog.at_level(logging.WARNING):
        written = _analysis_export.save_figure(fig, tmp_path / "f", formats=("html", "png"))
    assert written == [tmp_path / "f.html"] and not (tmp_path / "f.png").exists()
    assert "apt-get install chromium" in caplog.text


def test_save_figure_png(tmp_path):
    (png,) = _analysis_export.save_figure(F.head_heatmap(M), tmp_path / "heat", formats=("png",))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
