"""The replication's rescoring (length-controlled score, token F1, answer words), its table checks, and its contrasts
against hand computations on small made-up tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retmask_interp.data.tasks import generate_examples
from retmask_interp.retmask import replication as R
from retmask_interp.retmask.evaluation import first_words, score_example, token_f1


def test_token_f1_and_first_words():
    # "the" is dropped by the normalisation: precision 2 / 4, recall 1
    assert token_f1("The answer is 42 cats", ["42 cats"]) == pytest.approx(2 * 0.5 * 1 / (0.5 + 1))
    assert token_f1("42 cats", ["42 cats", "dogs"]) == 1.0
    assert token_f1("", ["x"]) == 0.0 and token_f1("x", [""]) == 0.0
    assert first_words(" a  b\nc d ", 3) == "a b c"
    with pytest.raises(ValueError):
        first_words("a", 0)


@pytest.mark.parametrize("task", ["niah", "multi_needle", "rag_qa"])
def test_rescore_cuts_before_scoring(task):
    ex = generate_examples(task, 1, seed=0, split="eval", num_words=200)[0]
    answer = " ".join(ex.answers)
    pred = "well " * 30 + answer
    out = R.rescore(ex, pred, n_words=10)
    assert out["score"] == score_example(ex, pred)["score"] > 0
    assert out["score_len_controlled"] == 0.0  # the answer comes after the first 10 words
    assert out["answer_words"] == 30 + len(answer.split())
    assert 0 < out["token_f1"] < 1
    assert math.isnan(R.rescore(ex, pred, None)["score_len_controlled"])
    early = R.rescore(ex, answer + " well" * 30, n_words=len(answer.split()))
    assert early["score_len_controlled"] == early["score"] > 0


def test_length_budget_rounds_the_median():
    assert R.length_budget({"niah": [1, 2, 3, 10], "rag_qa": [4]}) == {"niah": 3, "rag_qa": 4}


def _table(gains: dict[str, list[float]], n: int = 40, seed: int = 0, cells=None) -> pd.DataFrame:
    """Untrained scores at eval seed 0, and per condition one unit per listed gain (examples shifted by it)."""
    rng = np.random.default_rng(seed)
    cells = cells or [("niah", 2048), ("rag_qa", 2048)]
    base = {c: rng.integers(0, 2, n).astype(float) for c in cells}
    rows = []

    def add(cond, draw, s, shift):
        for (task, length), v in base.items():
            for i, x in enumerate(v):
                rows.append(
                    {"model": "m", "condition": cond, "control_draw": draw, "seed": s, "pair_seed": s,
                     "eval_seed": 0 if cond == "none" else s, "lr": 0.0 if cond == "none" else 5e-6, "task": task,
                     "length": length, "example": i, "score": x + shift, "score_len_controlled": x,
                     "token_f1": x, "answer_words": 10.0 + shift, "score_first15": x, "source": "t"}
                )  # fmt: skip

    add("none", "", -1, 0.0)
    for cond, shifts in gains.items():
        for k, g in enumerate(shifts):
            if cond == "random":
                add(cond, f"d{k}", 0, g)
            else:
                add(cond, "", 0, g)  # every unit at seed 0 / eval seed 0 (one per condition here)
    return pd.DataFrame(rows, columns=list(R.COLUMNS)), cells


def test_contrasts_recover_known_gains(tmp_path):
    df, cells = _table({"retmask": [0.1], "random": [0.02, -0.04, 0.0], "self": [0.05]})
    path = R.write_table(df, tmp_path / "scores.csv")
    back = R.read_table(path)
    rows = {r["contrast"]: r for r in R.contrast_table(back, R.CONTRASTS, cells, n_resamples=500)}
    h1, h2, h3 = rows["H1 retmask - random"], rows["H2 retmask - self"], rows["H3 retmask - untrained"]
    assert h3["estimate"] == pytest.approx(0.1) and h3["ci_low"] == pytest.approx(0.1)  # a constant shift
    assert h1["estimate"] == pytest.approx(0.1 - (-0.02 / 3))
    assert h1["ci_low"] < h1["estimate"] < h1["ci_high"]  # spread from the three draws
    assert h1["status"] == "preliminary (one unit)" and len(h1["baseline_units"]) == 3
    assert h2["estimate"] == pytest.approx(0.05)
    assert all(0 <= r["p_holm"] <= 1 for r in rows.values())
    none = R.contrast_table(back, {"x": ("top4", None)}, cells, n_resamples=10)[0]
    assert none["status"] == "not run" and math.isnan(none["estimate"])


def test_design_units_leave_out_shuffle_only_seeds():
    df, _ = _table({"retmask": [0.1]})
    odd = df[df["condition"] == "retmask"].assign(seed=1)  # pairs and examples of seed 0, DPO seed 1
    both = pd.concat([df, odd], ignore_index=True)
    assert set(R.design_units(both)["seed"]) == {-1, 0}


def test_table_checks():
    df, _ = _table({"retmask": [0.1]})
    with pytest.raises(ValueError, match="exactly the columns"):
        R.check_table(df.drop(columns="source"))
    with pytest.raises(ValueError, match="repeats"):
        R.check_table(pd.concat([df, df.iloc[:1]]))


def test_harm_pairs_masked_with_unmasked_examples():
    rows = []
    for name, scores in (("none", [1, 1, 0, 1]), ("d0", [0, 1, 0, 0]), ("retrieval", [0, 0, 0, 0])):
        for i, x in enumerate(scores):
            rows.append(
                {"model": "m", "condition": "masked", "control_draw": name, "seed": -1, "pair_seed": -1,
                 "eval_seed": -1, "lr": 0.0, "task": "niah_grid", "length": 1000 * (1 + i % 2), "example": i // 2,
                 "score": float(x), "score_len_controlled": np.nan, "token_f1": np.nan, "answer_words": np.nan,
                 "score_first15": np.nan, "source": "s"}
            )  # fmt: skip
    harm = {r["heads"]: r for r in R._harm(pd.DataFrame(rows, columns=list(R.COLUMNS)), 200)}
    assert set(harm) == {"d0", "retrieval"}
    assert harm["d0"]["unmasked"] == 0.75 and harm["d0"]["masked"] == 0.25 and harm["d0"]["delta"] == -0.5
    assert harm["retrieval"]["delta"] == -0.75 and harm["retrieval"]["ci_high"] <= 0


def test_an_arm_with_only_masked_sets_shows_its_harm_and_no_contrast_table():
    """A further model with nothing trained yet (a harm pilot): one line says its contrasts are not run, and its harm
    table names each row's source."""
    main, _ = _table({"retmask": [0.1], "random": [0.0]}, n=12, cells=ALL_CELLS)
    main["model"] = R.MAIN_MODEL
    rows = [{"model": "gemma-3-270m", "condition": "masked", "control_draw": name, "seed": -1, "pair_seed": -1,
             "eval_seed": 0, "lr": 0.0, "task": "niah", "length": 2048, "example": i, "score": float(x),
             "score_len_controlled": np.nan, "token_f1": np.nan, "answer_words": np.nan, "score_first15": np.nan,
             "source": "pilot"}
            for name, scores in (("none", [1, 1, 0, 1]), ("d0", [1, 0, 0, 1])) for i, x in enumerate(scores)]  # fmt: skip
    both = pd.concat([main, pd.DataFrame(rows, columns=list(R.COLUMNS))], ignore_index=True)
    tables, text = R.render_report(both, "notes", n_resamples=50)
    arm = text[text.index("## gemma-3-270m: the plan's section 6 arm") :]
    assert "every contrast of the plan is not run" in arm and "Primary metric" not in arm
    assert "| pilot | niah | d0 | 4 | 0.500 | 0.750 | -0.250 |" in arm
    assert [r["heads"] for r in tables["arms"]["gemma-3-270m"]["harm"]] == ["d0"]


ALL_CELLS = [(t, n) for t in R.PRIMARY_TASKS for n in (2048, 4096, 7000)]


def test_every_model_is_compared_with_its_own_untrained_model():
    """Two models in one table: the main model's tables are what it gives alone, the arm's gains are against the
    arm's own untrained model, and an arm without one is not run (never the main model's baseline)."""
    main, _ = _table({"retmask": [0.1], "random": [0.0]}, n=12, cells=ALL_CELLS)
    arm, _ = _table({"retmask": [0.3], "random": [0.1]}, n=12, seed=1, cells=ALL_CELLS)
    main["model"], arm["model"] = R.MAIN_MODEL, "gemma-3-270m"
    both = pd.concat([arm, main], ignore_index=True)
    with pytest.raises(ValueError, match="one model"):
        R.replication_tables(both, n_resamples=10)
    alone, text_alone = R.render_report(main, "notes", n_resamples=50)
    tables, text = R.render_report(both, "notes", n_resamples=50)
    assert R.models(both) == [R.MAIN_MODEL, "gemma-3-270m"]
    assert {k: v for k, v in tables.items() if k != "arms"} == alone
    h = {r["contrast"]: r for r in tables["arms"]["gemma-3-270m"]["primary"]}
    assert h["H3 retmask - untrained"]["estimate"] == pytest.approx(0.3)
    assert h["H1 retmask - random"]["estimate"] == pytest.approx(0.2)
    assert (
        text.startswith(text_alone.rstrip("\n")[:200]) and "## gemma-3-270m: the plan's section 6 arm" in text
    )
    orphan = pd.concat([main, arm[arm["condition"] != "none"]], ignore_index=True)
    t2, _ = R.render_report(orphan, "notes", n_resamples=50)
    h2 = {r["contrast"]: r for r in t2["arms"]["gemma-3-270m"]["primary"]}
    assert h2["H3 retmask - untrained"]["status"] == "not run"


def _primary(n_retmask: int, n_random: int, n_self: int) -> dict:
    def row(name, units, base):
        return {"contrast": name, "units": [f"u{i}" for i in range(units)], "baseline_units": [f"b{i}" for i in range(base)],
                "estimate": 0.05, "ci_low": 0.01, "ci_high": 0.09}  # fmt: skip

    return {"primary": [row("H1 retmask - random", n_retmask, n_random), row("H2 retmask - self", n_retmask, n_self),
                        row("H3 retmask - untrained", n_retmask, 0)]}  # fmt: skip


def test_concentration_waits_for_two_units_of_every_condition_in_every_arm():
    metrics = {m: {"gini": 0.9, "effective_heads": 6.0, "n_ge_0.1": 6} for m in ("a", "b")}
    organisms = [{"model": "organism x", "gini": 0.8, "effective_heads": 9.0, "n_ge_0.1": 9, "gain": 0.01,
                  "ci_low": -0.01, "ci_high": 0.02, "source": "s"}]  # fmt: skip
    only_a = R.concentration_table({"a": _primary(3, 5, 2)}, metrics, organisms)
    assert not only_a["ready"] and only_a["counts"]["b"] == {"retmask": 0, "random": 0, "self": 0}
    assert all("gain" not in r for r in only_a["rows"])  # the x axis only
    short = R.concentration_table({"a": _primary(3, 5, 2), "b": _primary(2, 3, 1)}, metrics, organisms)
    assert not short["ready"] and short["counts"]["b"]["self"] == 1
    ready = R.concentration_table({"a": _primary(3, 5, 2), "b": _primary(2, 3, 2)}, metrics, organisms)
    assert ready["ready"] and [r["model"] for r in ready["rows"]] == ["a", "b", "organism x"]
    assert ready["rows"][0]["gain"] == 0.05 and ready["rows"][0]["vs_random_ci_high"] == 0.09
    assert ready["rows"][2]["gain"] == 0.01 and ready["rows"][2]["gain_ci_low"] == -0.01
