"""The real-model results committed in studies/real_models/ (GPU runs of studies/real_models/real_model_study.py): the shipped head
lists are the studies' primary lists, the tables recompute from the per-sample files, and `retmask figures`
re-draws them without running a model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retmask_interp.analysis.metrics import agreement
from retmask_interp.heads.scores import load_head_scores, shipped_head_lists
from retmask_interp.measure.outcomes import summarize_outcomes
from retmask_interp.workflows.studies.real_models import load_study_results

REPO = Path(__file__).resolve().parents[2]
STUDIES = {
    "smollm2-135m-instruct": REPO / "studies/real_models/smollm2",
    "gemma-3-270m": REPO / "studies/real_models/gemma3",
}


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_shipped_head_list_is_the_studys_primary_list(name):
    shipped = load_head_scores(name)  # a shipped list by name
    assert shipped_head_lists()[name].name == f"{name}.json"
    study = load_head_scores(STUDIES[name] / "heads.json")
    assert (shipped.num_layers, shipped.num_heads) == (study.num_layers, study.num_heads)
    assert sorted(shipped.above(0.1)) == sorted(study.above(0.1))
    a = agreement(shipped, study, k=(5, 10))
    assert a["spearman"] > 0.999 and a["top10_overlap"] == 10
    params = shipped.params  # provenance: the grid it was detected on
    cfg = json.loads((STUDIES[name] / "config.json").read_text())
    assert params.get("lengths") and max(params["lengths"]) == cfg["max_length"]


def test_unknown_head_list_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="smollm2-135m-instruct"):
        load_head_scores("no-such-model")


@pytest.mark.parametrize("folder", ["studies/real_models/smollm2", "studies/real_models/gemma3"])
def test_masking_summary_recomputes_from_the_per_sample_outcomes(folder):
    """Every study's masking table (zero, uniform and mean modes) recomputes from its per-sample outcomes, and in
    every mode masking the retrieval heads ends retrieval where as many random heads leave part of it (the numbers
    studies/real_models/README.md reports)."""
    d = REPO / folder
    outcomes = pd.read_csv(d / "masking_outcomes.csv.gz")
    assert outcomes.groupby(["mode", "condition"]).size().eq(48).all()
    stored = pd.read_csv(d / "masking_summary.csv")
    again = summarize_outcomes(outcomes, by=("mode", "kind"), metrics=("success", "rouge", "answer_logprob"))
    merged = stored.merge(again, on=["mode", "kind", "metric"], suffixes=("", "_again"))
    assert len(merged) == len(stored) == len(again)
    for col in ("mean", "ci_low", "ci_high", "n_samples", "n_seeds"):
        assert merged[col].to_numpy() == pytest.approx(merged[f"{col}_again"].to_numpy(), abs=1e-9), col
    assert set(stored["mode"]) == {"zero", "uniform", "mean"}
    for mode, s in stored[stored.metric == "success"].groupby("mode"):
        s = s.set_index("kind")
        assert s.loc["retrieval", "mean"] == 0.0 and s.loc["random", "n_seeds"] == 10, mode
        assert 0 < s.loc["random", "mean"] < s.loc["unmasked", "mean"], mode


def test_study_results_load_for_the_figures():
    smol = load_study_results(STUDIES["smollm2-135m-instruct"])
    assert smol.name == "smollm2-135m-instruct" and len(smol.retrieval) == 17
    assert set(smol.niah["mode"]) == {"zero"} and {"unmasked", "retrieval", "random"} <= set(
        smol.niah["kind"]
    )
    assert {"k", "kind", "success", "ci_low", "ci_high"} <= set(smol.topk.columns)
    gemma = load_study_results(STUDIES["gemma-3-270m"])
    assert set(gemma.niah["mode"]) == {"zero"} and len(gemma.niah) == 12 * 48
    for study in (smol, gemma):  # both top-k curves are finished: every k, 5 random seeds each
        assert sorted(set(study.topk.k)) == [0, 1, 2, 4, 8, 16, 32]
        assert set(study.topk.kind) == {"retrieval", "random"}
        assert study.topk[study.topk.kind == "random"].set_index("k").loc[1:, "n_seeds"].eq(5).all()
    assert set(gemma.niah["kind"]) == {"unmasked", "retrieval", "random"}
    assert (gemma.heads.num_layers, gemma.heads.num_heads) == (18, 4)


def test_not_a_study_is_refused(tmp_path):
    from retmask_interp.core.io import InputError

    with pytest.raises(InputError, match="not a real-model study"):
        load_study_results(tmp_path)


def test_figures_redraw_the_real_model_studies(tmp_path):
    from retmask_interp.workflows.paper_figures import FigureConfig, regenerate_all

    m = regenerate_all(
        tmp_path / "figs",
        models={},
        real_studies=[STUDIES["smollm2-135m-instruct"], STUDIES["gemma-3-270m"]],
        config=FigureConfig(formats=("html",), html="cdn"),
    )
    stems = {e["stem"] for e in m["figures"]}
    assert {"heatmaps_real_models", "niah_masking_smollm2-135m-instruct", "topk_masking_real_models"} <= stems
    assert "niah_masking_gemma-3-270m" in stems
    metrics = pd.read_csv(tmp_path / "figs" / "data" / "metrics.csv", index_col=0)
    assert {"smollm2-135m-instruct", "gemma-3-270m"} <= set(metrics.index)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_topk_curve_recomputes_from_the_per_sample_outcomes(name):
    """The top-k table recomputes from its per-sample outcomes, and the top-1 retrieval head costs more than any
    single random head (the curves studies/real_models/README.md reports)."""
    from retmask_interp.measure.outcomes import curve_from_outcomes

    d = STUDIES[name]
    stored = pd.read_csv(d / "topk_curve.csv")
    again = curve_from_outcomes(pd.read_csv(d / "topk_outcomes.csv.gz"))
    merged = stored.merge(again, on=["k", "kind"], suffixes=("", "_again"))
    assert len(merged) == len(stored) == len(again) == 14
    for col in ("success", "ci_low", "ci_high", "n_seeds"):
        assert merged[col].to_numpy() == pytest.approx(merged[f"{col}_again"].to_numpy(), abs=1e-9), col
    curve = stored.set_index(["kind", "k"])["success"]
    assert curve["retrieval", 1] < 0.2 < curve["random", 1]
    assert curve["retrieval", 16] == curve["retrieval", 32] == 0.0


def test_smollm2_study_covers_three_styles_two_dtypes_and_a_balanced_subset():
    """SmolLM2's study (2026-12-03): three prompt styles on two haystacks and fp32, its primary list the shipped
    ranking, and its masking subset covering every length, depth and needle."""
    d = STUDIES["smollm2-135m-instruct"]
    a = agreement(load_head_scores("smollm2-135m-instruct"), load_head_scores(d / "heads.json"), k=(10,))
    assert a["spearman"] > 0.999 and a["top10_overlap"] == 10
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["subset_rule"] == "balanced" and cfg["styles"] == ["chat", "qa", "continuation"]
    sub = pd.read_csv(d / "masking_outcomes.csv.gz").drop_duplicates("sample_id")
    assert len(sub) == 48
    assert sub.depth.nunique() == 5 and sub.context_length.nunique() == 8 and sub.needle_index.nunique() == 3
    stab = json.loads((d / "stability.json").read_text())["pairs"]
    assert len(stab) == 6 and all(p["top10_overlap"] >= 9 for p in stab)
    fp32 = next(p for p in stab if p["condition"].endswith("float32"))
    assert fp32["spearman"] > 0.999 and fp32["top10_overlap"] == 10


def test_gemma3_ranking_is_the_same_in_float32():
    d = STUDIES["gemma-3-270m"]
    bf16 = load_head_scores(d / "detect/PaulGrahamEssays.continuation.bfloat16.heads.json")
    fp32 = load_head_scores(d / "detect/PaulGrahamEssays.continuation.float32.heads.json")
    assert sorted(bf16.above(0.1)) == sorted(fp32.above(0.1)) and len(bf16.above(0.1)) == 6
    pair = next(
        p
        for p in json.loads((d / "stability.json").read_text())["pairs"]
        if p["condition"].endswith("float32")
    )
    assert (
        pair["spearman"] == pytest.approx(agreement(bf16, fp32)["spearman"], abs=1e-9)
        and pair["spearman"] > 0.999
    )


def test_two_studies_of_one_model_are_refused_not_overwritten(tmp_path):
    import shutil

    from retmask_interp.core.io import InputError
    from retmask_interp.workflows.paper_figures import regenerate_all

    again = shutil.copytree(STUDIES["smollm2-135m-instruct"], tmp_path / "smollm2_again")
    with pytest.raises(InputError, match="both of 'smollm2-135m-instruct'"):
        regenerate_all(
            tmp_path / "figs",
            models={},
            real_studies=[
                STUDIES["smollm2-135m-instruct"],
                again,
            ],
        )
    assert not (tmp_path / "figs" / "manifest.json").exists()


@pytest.mark.parametrize("name, n_heads", [("smollm2-135m-instruct", 270), ("gemma-3-270m", 72)])
def test_single_head_effects_table_gives_its_stated_correlation(name, n_heads):
    """The single-head masking table (every head of both models) recomputes the score-effect rank correlation that
    the study states, and the retrieval head whose masking costs most costs far more than a typical other head
    (on SmolLM2 the largest single effect is a non-copying head's, 16.0: studies/real_models/README.md)."""
    from retmask_interp.measure.stats import spearman

    d = STUDIES[name]
    table = pd.read_csv(d / "single_head_effects.csv")
    stated = json.loads((d / "single_head_effects.json").read_text())
    assert len(table) == n_heads and len(table[["layer", "head"]].drop_duplicates()) == n_heads
    assert spearman(table["score"], table["effect"]) == pytest.approx(stated["spearman"], abs=1e-9)
    retrieval = table[table["score"] >= 0.1]
    others = table[table["score"] < 0.1]
    assert retrieval["effect"].max() > 10 * others["effect"].abs().median()
    assert retrieval["ci_low"].max() > 0.4  # the top copying head's effect is clearly above 0
