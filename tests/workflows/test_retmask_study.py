"""The RetMask study end to end on the organism at a toy size (15 s on an idle 2-core machine, 2-4 min under
the usual shared load: marked slow), and the report's tables against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retmask_interp.retmask.report import (
    SCORE_COLUMNS,
    check_scores,
    condition_means,
    paired_differences,
    read_scores,
    study_tables,
    write_scores,
)


def _toy_scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for cond, seeds, lr, shift in (
        ("none", [-1], 0.0, 0.0),
        ("retmask", [0, 1], 5e-6, 0.2),
        ("random", [0, 1], 5e-6, 0.1),
    ):
        for s in seeds:
            for e in range(5):
                score = float(rng.random() < 0.5) + shift * (s + 2)
                rows.append(
                    {
                        "condition": cond,
                        "seed": s,
                        "lr": lr,
                        "task": "niah",
                        "length": 512,
                        "example": e,
                        "score": score,
                    }
                )
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def test_means_and_paired_differences_match_hand_computation(tmp_path):
    df = _toy_scores()
    write_scores(df, tmp_path / "s.csv")
    back = read_scores(tmp_path / "s.csv")
    assert tuple(back.columns) == SCORE_COLUMNS
    means = condition_means(back, n_resamples=200).set_index("condition")
    for cond in ("none", "retmask", "random"):
        assert means.loc[cond, "mean"] == pytest.approx(df[df.condition == cond].score.mean())
        assert means.loc[cond, "ci_low"] <= means.loc[cond, "mean"] <= means.loc[cond, "ci_high"]
    vs_none = paired_differences(back, "none", n_resamples=200).set_index("condition")
    base = df[df.condition == "none"].set_index("example").score
    ret = df[df.condition == "retmask"]
    expected = np.mean([r.score - base[r.example] for r in ret.itertuples()])
    assert vs_none.loc["retmask", "delta"] == pytest.approx(expected)
    vs_random = paired_differences(back, "random", n_resamples=200).set_index("condition")
    rnd = df[df.condition == "random"].set_index(["seed", "example"]).score
    expected = np.mean([r.score - rnd[(r.seed, r.example)] for r in ret.itertuples()])
    assert vs_random.loc["retmask", "delta"] == pytest.approx(expected)
    assert vs_random.loc["retmask", "pairs"] == 10


def test_score_table_columns_are_checked():
    df = _toy_scores()
    with pytest.raises(ValueError, match="exactly the columns"):
        check_scores(df.assign(extra=1))
    with pytest.raises(ValueError, match="repeats"):
        check_scores(pd.concat([df, df.iloc[:1]]))


def test_choose_lr_follows_the_heldout_criterion():
    from retmask_interp.workflows.studies.retmask import choose_lr

    sweep = [
        {"lr": 1e-6, "heldout_accuracy": 0.6, "heldout_margin": 0.1, "heldout_ppl": 10.0},
        {"lr": 5e-6, "heldout_accuracy": 0.7, "heldout_margin": 0.2, "heldout_ppl": 10.2},
        {
            "lr": 2e-5,
            "heldout_accuracy": 0.9,
            "heldout_margin": 0.5,
            "heldout_ppl": 12.0,
        },  # ppl +20 %: excluded
    ]
    lr, rows = choose_lr(sweep, 10.0, 0.05)
    assert lr == 5e-6 and [r["chosen"] for r in rows] == [False, True, False]
    lr, _ = choose_lr(sweep, 5.0, 0.05)  # nothing eligible: the smallest lr
    assert lr == 1e-6


def test_heldout_logprobs_match_a_manual_sum():
    import torch

    from retmask_interp.core.models import load_model
    from retmask_interp.retmask.heldout import response_logprobs, response_token_ids

    rm = load_model("organism", device="cpu", dtype="float32")
    prompt = [{"role": "user", "content": "Name a colour."}]
    resp = [{"role": "assistant", "content": "Blue."}]
    got = response_logprobs(
        rm.model, rm.tokenizer, [prompt, prompt], [resp, [{"role": "assistant", "content": "A"}]]
    )
    p, r = response_token_ids(rm.tokenizer, prompt, resp)
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(rm.model(ids).logits[0].float(), -1)
    manual = sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(r))
    assert got[0] == pytest.approx(manual, abs=1e-4)
    assert got[0] != pytest.approx(got[1])


@pytest.mark.slow
def test_study_runs_end_to_end_on_the_organism(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    from retmask_interp.heads.scores import HeadScores, save_head_scores
    from retmask_interp.workflows.studies.retmask import StageMismatch, StudyConfig, run_study

    m = np.zeros((6, 8))
    for a, b, s in ((4, 4, 0.8), (4, 5, 0.7), (5, 5, 0.6), (3, 1, 0.05)):
        m[a, b] = s
    heads = save_head_scores(HeadScores.from_matrix(m, model="organism"), tmp_path / "heads.json")
    config = StudyConfig(
        out=str(tmp_path / "run"),
        model="organism",
        heads=str(heads),
        device="cpu",
        n_prompts=4,
        n_heldout=2,
        max_new_tokens=8,
        pair_batch_size=4,
        conditions=("retmask", "random"),
        lrs=(5e-5,),
        seeds=(0, 1),
        effective_batch_size=2,
        per_device_batch_size=2,
        max_length=128,
        lengths=(256,),
        n_per_cell=2,
        tasks=("niah", "rag_qa"),
        eval_batch_size=2,
        eval_max_new_tokens=8,
        n_short_qa=3,
        n_ppl=2,
        bootstrap=50,
        prune_weights=True,
    )
    res = run_study(config)
    report = tmp_path / "run" / "report"
    df = read_scores(report / "scores.csv")
    assert tuple(df.columns) == SCORE_COLUMNS
    assert set(df.condition) == {"none", "retmask", "random"}
    assert set(df[df.condition == "retmask"].seed) == {0, 1}
    assert set(df.task) == {"niah", "rag_qa", "short_qa", "ppl_nll"}
    # the heads: retrieval = score >= 0.1; the control avoids them and matches their layers
    assert sorted(map(tuple, res["heads"]["retmask"])) == [(4, 4), (4, 5), (5, 5)]
    control = list(map(tuple, res["heads"]["random"]))
    assert sorted(a for a, _ in control) == [4, 4, 5] and not set(control) & {(4, 4), (4, 5), (5, 5)}
    # the tables recompute from the CSV
    saved = json.loads((report / "tables.json").read_text())
    again = json.loads(json.dumps(study_tables(df, n_resamples=50), default=float))
    assert saved == again
    assert "## Long-context suite" in (report / "README.md").read_text()
    # a second run skips every stage; a changed setting is refused by name
    assert run_study(config)["chosen_lr"] == res["chosen_lr"]
    # a machine lost between a run's training and its evaluation: the weights are gone, the train marker is not;
    # the resumed study trains that run again and evaluates it, and leaves the evaluated runs alone
    from retmask_interp.core.stages import Stages
    from retmask_interp.workflows.studies.retmask import remove_run

    run = tmp_path / "run"
    _marker = Stages(run).marker
    name = f"retmask_lr{res['chosen_lr']:g}_s1"
    other = _marker("eval/random_lr5e-05_s0").read_text()
    first = json.loads(_marker(f"train/{name}").read_text())
    assert not any((run / "train" / name).glob("*.safetensors"))  # pruned after its evaluation
    remove_run(run, f"eval/{name}")
    # a process given a subset of the final runs (--only) runs that subset and leaves the report to a run without it
    import dataclasses

    part = run_study(dataclasses.replace(config, only=("random:1",)))
    assert "report" not in part and not _marker(f"eval/{name}").exists()
    assert [(r["condition"], r["seed"]) for r in part["dpo"]][-1] == ("random", 1)
    with pytest.raises(ValueError, match="names no final run"):
        dataclasses.replace(config, only=("retmask:7",))
    again = run_study(config)
    second = json.loads(_marker(f"train/{name}").read_text())
    assert second["settings"] == first["settings"] and second["wall_s"] != first["wall_s"]
    assert _marker(f"eval/{name}").exists() and (run / "eval" / f"{name}.csv").exists()
    assert _marker("eval/random_lr5e-05_s0").read_text() == other
    assert len(again["dpo"]) == len(res["dpo"]) == 4  # the sweep run (= retmask s0), retmask s1, random s0/s1
    config.max_new_tokens = 9
    with pytest.raises(StageMismatch, match="stage 'responses/normal.train' .* max_new_tokens was 8, now 9"):
        run_study(config)


def test_the_committed_run_state_resumes_under_the_stage_runner(tmp_path, monkeypatch):
    """The finished SmolLM2 run's state (markers written by the study engine before ``core.stages``) resumes: every
    stage is found finished with the same settings (no model is loaded), and the report it writes is the committed
    one (scores.csv byte for byte, tables.json to 1e-9)."""
    import dataclasses
    import tarfile
    from pathlib import Path

    from retmask_interp.workflows.studies.retmask import StudyConfig, run_study

    repo = Path(__file__).resolve().parents[2]
    committed = repo / "studies/smollm2_retmask"
    with tarfile.open(committed / "run_state.tar.gz") as tar:
        tar.extractall(tmp_path / "run", filter="data")
    old = json.loads((tmp_path / "run" / "config.last.json").read_text())
    names = {f.name for f in dataclasses.fields(StudyConfig)}
    config = StudyConfig(**{k: v for k, v in old.items() if k in names})
    config = dataclasses.replace(
        config,
        out=str(tmp_path / "run"),
        heads=str(
            committed / "heads_2026-11-28.json"
        ),  # the list that run used (its sha256 is in its markers)
        only=(),
        report_dir=str(tmp_path / "report"),
    )

    def no_model(*a, **k):
        raise AssertionError("a finished stage loaded a model")

    monkeypatch.setattr("retmask_interp.core.models.load_model", no_model)
    res = run_study(config)
    assert res["chosen_lr"] == 5e-6 and len(res["dpo"]) == 3 + 5  # the sweep (3 lrs) and 5 more final runs
    assert (tmp_path / "report" / "scores.csv").read_bytes() == (committed / "scores.csv").read_bytes()
    saved = json.loads((committed / "tables.json").read_text())
    again = json.loads((tmp_path / "report" / "tables.json").read_text())
    assert saved.keys() == again.keys()
    for key in saved:
        assert len(saved[key]) == len(again[key])
        for a, b in zip(saved[key], again[key]):
            assert a.keys() == b.keys()
            for k in a:
                if isinstance(a[k], float):
                    assert a[k] == pytest.approx(b[k], abs=1e-9, nan_ok=True), (key, a, k)
                else:
                    assert a[k] == b[k], (key, a, k)
    # the same directory with a changed setting is refused, naming it
    from retmask_interp.core.stages import StageMismatch

    with pytest.raises(StageMismatch, match="stage 'heads' .* head_threshold was 0.1, now 0.2"):
        run_study(dataclasses.replace(config, head_threshold=0.2))


def test_a_base_model_study_writes_its_prompts_into_the_template_and_stops(tmp_path):
    """The study's sides and pairs with a prompt template and a stop string (Gemma-3's arm of the replication), on
    stories260K (no chat template): the pairs hold the written prompt, no side holds the stop string, the stage
    markers record both settings, and another template is refused by name."""
    from helpers import SHARED

    path = SHARED / "models" / "stories260K"
    if not path.exists():
        pytest.skip("../shared/models/stories260K is absent")
    from retmask_interp.core.io import read_jsonl
    from retmask_interp.heads.scores import HeadScores, save_head_scores
    from retmask_interp.retmask.pairs import pair_records
    from retmask_interp.workflows.studies.retmask import StageMismatch, StudyConfig, run_study

    m = np.zeros((5, 8))
    m[4, 6], m[3, 1], m[2, 5] = 0.9, 0.5, 0.3
    heads = save_head_scores(HeadScores.from_matrix(m, model="stories260K"), tmp_path / "heads.json")
    template = "Story: {prompt}\nEnd:"
    config = StudyConfig(
        out=str(tmp_path / "run"), model=str(path), heads=str(heads), device="cpu", n_prompts=4, n_heldout=2,
        max_new_tokens=16, pair_batch_size=4, conditions=("retmask", "self"), prompt_template=template,
        stop=(".",),
    )  # fmt: skip
    res = run_study(config, until="pairs")
    run = tmp_path / "run"
    prompts = {r["prompt_index"]: r for r in read_jsonl(run / "responses" / "normal.train.jsonl")}
    assert len(prompts) == 4 and not any("." in r["text"] for r in prompts.values())
    for cond in ("retmask", "self"):
        recs = pair_records(run / "pairs" / f"{cond}.train.jsonl")
        assert len(recs) == 4
        for r in recs:
            assert r["prompt"].startswith("Story: ") and r["prompt"].endswith("\nEnd:")
            assert "." not in r["chosen"] and "." not in r["rejected"]
        assert res["pairs"][f"{cond}.train"]["sampling"]["template"] == template
    marker = json.loads((run / "stages" / "responses" / "normal.train.json").read_text())
    assert marker["settings"]["template"] == template and marker["settings"]["stop"] == ["."]
    import dataclasses

    with pytest.raises(StageMismatch, match="template"):
        run_study(dataclasses.replace(config, prompt_template="Tale: {prompt}\nEnd:"), until="pairs")
