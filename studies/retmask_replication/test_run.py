"""The replication driver's seed-0 directory: rebuilt from the 2026-12-03 run state, its normal and RetMask sides
equal that run's pair files, and the RetMask study accepts every copied stage (prompts, heads, responses, pairs)
without sampling anything or loading a model."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from retmask_interp.core.io import read_jsonl

HERE = Path(__file__).resolve().parent


def _driver():
    spec = importlib.util.spec_from_file_location("replication_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_s0_is_rebuilt_exactly_and_resumes_without_a_model(tmp_path, monkeypatch):
    run = _driver()
    if not (run.REPO / run.OLD_STATE).exists():
        pytest.skip("the 2026-12-03 run state is not in this checkout")
    run.prepare_s0(tmp_path)
    s0 = tmp_path / "s0"
    pairs = {r["prompt_index"]: r for r in read_jsonl(s0 / "pairs" / "retmask.train.jsonl")}
    normal = {r["prompt_index"]: r for r in read_jsonl(s0 / "responses" / "normal.train.jsonl")}
    masked = {r["prompt_index"]: r for r in read_jsonl(s0 / "responses" / "masked_retmask.train.jsonl")}
    assert len(normal) == len(masked) == 2261 and set(pairs) <= set(normal)
    for i, p in pairs.items():
        assert (
            normal[i]["text"] == p["chosen"][0]["content"]
            and masked[i]["text"] == p["rejected"][0]["content"]
        )
        assert normal[i]["tokens"] == p["chosen_tokens"] and masked[i]["finished"] == p["rejected_finished"]

    from retmask_interp.workflows.studies.retmask import run_study, sampling

    def no_model(*a, **k):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr(sampling, "sample_side", no_model)
    config = run.unit_config(run.Unit.parse("retmask:s0"), tmp_path)
    config = dataclasses.replace(config, conditions=("retmask",), only=())
    res = run_study(config, until="pairs")
    assert res["pairs"]["retmask.train"]["kept"] == 2247
    heads = json.loads((s0 / "stages" / "heads.json").read_text())
    assert len(heads["result"]["retmask"]) == 17


def test_units_and_top_k():
    run = _driver()
    assert run.Unit.parse("random:d3:s1").directory == "s1_d3"
    assert run.Unit.parse("top4:s0").directory == "s0_top4"
    with pytest.raises(SystemExit, match="unknown unit"):
        run.Unit.parse("random:s0")
    from retmask_interp.heads.formats import load_any_head_list

    hs = load_any_head_list(str(run.REPO / run.HEADS))
    for k in (4, 17, 34):
        assert len(hs.select(threshold=run.top_k_threshold(k))) == k
