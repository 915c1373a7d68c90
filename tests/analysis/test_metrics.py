"""Organisation metrics: hand-computed values, the published score files, agreement, the analyze command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from retmask_interp.analysis import metrics as A
from retmask_interp.cli import main
from retmask_interp.heads.scores import HeadScores, load_head_scores
from retmask_interp.measure import stats as _measure_stats
from retmask_interp.workflows import analyze as _workflows_analyze

RETMASK = ("Llama-3.1-8B-Instruct", "Qwen3-8B", "Olmo-3-7B-Think")  # most to least concentrated


def _pairwise_gini(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


# -- single metrics, known values ----------------------------------------------------------------------
def test_gini_known_values():
    assert A.gini([0, 0, 0, 1]) == pytest.approx(0.75)  # 1 - 1/n for one non-zero head
    assert A.gini([1, 2, 3]) == pytest.approx(2 / 9)
    assert A.gini([5, 5, 5, 5]) == 0.0
    x = np.random.default_rng(1).exponential(size=57)
    assert A.gini(x) == pytest.approx(_pairwise_gini(x))


def test_hoyer_known_values():
    assert A.hoyer([0, 0, 0, 2]) == pytest.approx(1.0)
    assert A.hoyer([1, 1, 1, 1]) == pytest.approx(0.0)
    assert A.hoyer([3, 4]) == pytest.approx((math.sqrt(2) - 7 / 5) / (math.sqrt(2) - 1))


def test_entropy_and_effective_heads_known_values():
    assert A.normalized_entropy([1, 1, 0, 0]) == pytest.approx(math.log(2) / math.log(4))
    assert A.effective_heads([1, 1, 0, 0]) == pytest.approx(2.0)
    assert A.normalized_entropy([2, 2, 2]) == pytest.approx(1.0)
    assert A.normalized_entropy([0, 0, 7]) == pytest.approx(0.0)
    p = np.array([0.5, 0.25, 0.25])
    h = -(p * np.log(p)).sum()
    assert A.effective_heads([2, 1, 1]) == pytest.approx(math.exp(h))
    assert A.normalized_entropy([2, 1, 1]) == pytest.approx(h / math.log(3))


def test_top_k_share_and_counts():
    assert A.top_k_share([4, 3, 2, 1], 2) == pytest.approx(0.7)
    assert A.top_k_share([4, 3, 2, 1], 10) == pytest.approx(1.0)
    assert A.top_k_share([4, 3, 2, 1], 0) == 0.0
    assert A.count_at_or_above([0.1, 0.0999, 0.2, 0.05], 0.1) == 2  # "at or above"
    with pytest.raises(ValueError, match="k must be"):
        A.top_k_share([1], -1)


def test_degenerate_inputs_follow_the_documented_flat_convention():
    zero = np.zeros((2, 3))
    m = A.organization_metrics(zero)
    assert m["total_mass"] == 0.0
    assert (m["gini"], m["hoyer"], m["normalized_entropy"], m["effective_heads"]) == (0.0, 0.0, 1.0, 6.0)
    assert m["top10_share"] == 1.0  # min(10, 6) / 6
    assert A.top_k_share(np.zeros(10), 3) == pytest.approx(0.3)
    assert m["layer_mass_share"] == [0.5, 0.5]
    assert m["layers_for_half_mass"] == 1
    assert (
        m["span_layer_min"] is None
        and m["span_layer_max"] is None
        and m["n_layers_above_span_threshold"] == 0
    )
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in m.values())
    one = A.organization_metrics([[0.4]])
    assert (one["gini"], one["hoyer"], one["normalized_entropy"], one["effective_heads"]) == (
        0.0,
        0.0,
        1.0,
        1.0,
    )


def test_negatives_are_clipped_and_bad_input_rejected():
    assert A.gini([-1, 0, 0, 1]) == A.gini([0, 0, 0, 1])
    assert A.organization_metrics([[-0.5, 1.0]])["total_mass"] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        A.organization_metrics([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="layers, heads"):
        A.organization_metrics([1.0, 2.0])


def test_layer_profile_known_values():
    m = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    out = A.organization_metrics(m, span_threshold=0.5, thresholds=(0.5, 1.5))
    assert out["layer_mass_share"] == pytest.approx([0.25, 0.0, 0.75])
    assert out["layers_for_half_mass"] == 1
    assert (out["span_layer_min"], out["span_layer_max"], out["n_layers_above_span_threshold"]) == (0, 2, 2)
    assert out["mass_centroid_depth"] == pytest.approx((0 * 0.25 + 2 * 0.75) / 2)
    assert (out["n_ge_0.5"], out["n_ge_1.5"]) == (3, 1)
    assert A.layers_for_mass([[1.0], [1.0]], 0.5) == 1  # exactly half counts
    assert A.layers_for_mass([[1.0], [1.0], [1.0], [1.0]], 0.6) == 3


def test_inputs_headscores_dict_and_array_agree():
    m = np.array([[0.0, 0.3], [0.9, 0.1]])
    hs = HeadScores.from_matrix(m)
    as_dict = {(0, 1): 0.3, (1, 0): 0.9, (1, 1): 0.1}
    assert A.organization_metrics(hs) == A.organization_metrics(m) == A.organization_metrics(as_dict)


# -- the published files -------------------------------------------------------------------------------
@pytest.fixture
def retmask_scores(shared_dir):
    return {
        name: load_head_scores(shared_dir / f"data/head_scores/retmask2026/{name}.json") for name in RETMASK
    }


def test_published_files_order_llama_qwen_olmo(retmask_scores):
    df = A.metrics_table(retmask_scores)
    llama, qwen, olmo = (df.loc[n] for n in RETMASK)
    for metric in ("gini", "hoyer", "top10_share"):  # higher = more concentrated
        assert llama[metric] > qwen[metric] > olmo[metric], metric
    for metric in ("normalized_entropy", "effective_heads"):  # lower = more concentrated
        assert llama[metric] < qwen[metric] < olmo[metric], metric
    # golden values (regression): computed from the published files
    assert llama["gini"] == pytest.approx(0.93511, abs=1e-4)
    assert olmo["hoyer"] == pytest.approx(0.68383, abs=1e-4)


def test_published_counts_match_method_notes(retmask_scores):
    expected = {
        "Llama-3.1-8B-Instruct": (64, 33, 18),
        "Qwen3-8B": (98, 57, 31),
        "Olmo-3-7B-Think": (113, 46, 20),
    }
    df = A.metrics_table(retmask_scores)
    for name, counts in expected.items():
        assert tuple(df.loc[name, ["n_ge_0.05", "n_ge_0.1", "n_ge_0.2"]]) == counts
    assert tuple(df["n_heads"]) == (1024, 1152, 1024)
    assert list(df.index) == list(RETMASK)


# -- agreement ----------------------------------------------------------------------------------------
def test_rankdata_and_spearman_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=40).astype(float)  # many ties
    y = x + rng.normal(size=40)
    np.testing.assert_allclose(_measure_stats.rankdata(x), stats.rankdata(x))
    assert _measure_stats.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(_measure_stats.spearman(np.ones(5), np.arange(5)))


def test_agreement_known_values():
    a = np.array([[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]])
    b = np.array([[5.0, 0.0, 3.0], [2.0, 1.0, 4.0]])  # swaps heads (0, 1) and (1, 2)
    out = A.agreement(a, b, k=(2, 3))
    assert out["n_heads"] == 6
    assert out["top2_overlap"] == 1 and out["top2_jaccard"] == pytest.approx(1 / 3)  # {00,01} vs {00,12}
    assert out["top3_overlap"] == 2 and out["top3_jaccard"] == pytest.approx(2 / 4)
    assert out["top2_a_in_b"] == 0.5 and out["top2_boundary_ties"] == 0
    assert A.agreement(a, a)["spearman"] == pytest.approx(1.0)
    assert A.agreement(a, -a + 10)["spearman"] == pytest.approx(-1.0)
    ties = A.agreement(np.ones((2, 2)), np.array([[4.0, 3.0], [2.0, 1.0]]), k=(1,))
    assert ties["top1_boundary_ties"] == 3 and ties["top1_b_in_a"] == 1.0
    with pytest.raises(ValueError, match="different geometry"):
        A.agreement(np.ones((2, 2)), np.ones((2, 4)))


# -- files in, table and figures out ---------------------------------------------------------------------
def test_analyze_files_writes_table_and_figures(shared_dir, tmp_path):
    paths = [shared_dir / f"data/head_scores/retmask2026/{n}.json" for n in RETMASK]
    df = _workflows_analyze.analyze_files(paths, tmp_path / "out", formats=("html",))
    assert list(df.index) == list(RETMASK)
    for name in (
        "metrics.csv",
        "metrics.md",
        "metrics.json",
        "heatmaps.html",
        "sorted_scores.html",
        "metrics.html",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    full = json.loads((tmp_path / "out/metrics.json").read_text())
    assert len(full["Qwen3-8B"]["layer_mass_share"]) == 36
    assert "| Llama-3.1-8B-Instruct |" in (tmp_path / "out/metrics.md").read_text()
    with pytest.raises(FileExistsError):
        _workflows_analyze.analyze_files(paths, tmp_path / "out", formats=("html",))
    _workflows_analyze.analyze_files(
        paths[:1], tmp_path / "out", formats=("html",), overwrite=True, labels=["L"]
    )
    assert (tmp_path / "out/metrics.csv").read_text().splitlines()[1].startswith("L,")


def test_cli_analyze(tmp_path):
    m = np.zeros((3, 4))
    m[1, 2], m[2, 0] = 0.8, 0.2
    path = tmp_path / "heads.csv"
    path.write_text("layer,head,score\n" + "\n".join(f"{i},{j},{m[i, j]}" for i, j in np.ndindex(m.shape)))
    out = tmp_path / "analysis"
    assert main(["-q", "analyze", str(path), "--out", str(out), "--formats", "html"]) == 0
    assert "heads" in (out / "metrics.csv").read_text()
    assert main(["-q", "analyze", str(path), "--out", str(out), "--formats", "html"]) == 2  # refuses
    assert main(["-q", "analyze", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
