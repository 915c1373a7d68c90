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
from retmask_interp.retmask.pairs import pair_records

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


def _tiny_gemma(tmp_path: Path) -> Path:
    """A random-weight Gemma-3 text model with Gemma-3-270M's head layout (18 layers x 4 query heads over 1 KV
    head, global attention at layers 5, 11 and 17) and stories260K's tokenizer (no chat template), saved."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    stories = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "stories260K"
    if not stories.exists():
        pytest.skip("../shared/models/stories260K is absent")
    tok = AutoTokenizer.from_pretrained(stories)
    assert not getattr(tok, "chat_template", None)
    types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]
    config = AutoConfig.for_model(
        "gemma3_text", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=64, layer_types=types,
        max_position_embeddings=4096,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random init is flat; scaled up, masking six heads changes what the model writes
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(4.0)
    out = tmp_path / "tiny-gemma3"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_gemma_arm_runs_end_to_end_on_a_tiny_gemma3(tmp_path):
    """Gemma-3's arm on a random model of its layout: the Q/A template reaches the pairs, the stop string the
    responses, the random control keeps out of the retrieval heads and, where layer 5 has no free head, to global
    layers, and a unit trains and evaluates under the study (the path the GPU run takes, at a toy size)."""
    pytest.importorskip("trl")
    run = _driver()
    model = _tiny_gemma(tmp_path)
    unit = run.Unit.parse("gemma3:random:d0:s0")
    config = run.unit_config(unit, tmp_path / "root", model=str(model), device="cpu", batch=2)
    assert config.prompt_template == "Question: {prompt}\nAnswer:" and config.stop == ("\nQuestion:",)
    config = dataclasses.replace(
        config, n_prompts=4, n_heldout=2, max_new_tokens=12, pair_batch_size=4, effective_batch_size=2,
        per_device_batch_size=2, max_length=128, lengths=(256,), n_per_cell=2, eval_max_new_tokens=8, n_short_qa=3,
        n_ppl=2, bootstrap=50, eval_dtype="float32",
    )  # fmt: skip
    from retmask_interp.workflows.studies.retmask import run_study

    res = run_study(config, until="eval")
    d = tmp_path / "root" / "gemma3" / "s0_d0"
    retrieval = {tuple(h) for h in res["heads"]["retmask"]}
    control = {tuple(h) for h in res["heads"]["random"]}
    assert retrieval == {(5, 0), (5, 1), (5, 2), (5, 3), (11, 2), (13, 3)}
    assert len(control) == 6 and not control & retrieval
    layers = sorted(a for a, _ in control)
    assert layers.count(13) == 1 and sum(a in (11, 17) for a in layers) == 5  # layer 5's four: global layers
    assert control == set(run.head_sets(_load(model), "gemma3")["d0"])  # what the harm stage masks
    for cond in ("retmask", "random"):
        recs = pair_records(d / "pairs" / f"{cond}.train.jsonl")
        assert len(recs) == 4
        for r in recs:
            assert r["prompt"].startswith("Question: ") and r["prompt"].endswith("\nAnswer:")
            assert "\nQuestion:" not in r["chosen"] and "\nQuestion:" not in r["rejected"]
    evaluated = {p.name for p in (d / "eval").glob("*.csv")}
    assert "none.csv" in evaluated and any(n.startswith("random_") for n in evaluated)
    # build.py reads the arm's directories as Gemma-3 rows: the draw's random run (its RetMask run and untrained
    # evaluation belong to the seed directory, gemma3/s0, which this unit did not make)
    spec = importlib.util.spec_from_file_location("replication_build_run", HERE / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    try:
        spec.loader.exec_module(build)
        units = build.new_units(tmp_path / "root" / "gemma3", "test", build.GEMMA)
    finally:
        sys.modules.pop(spec.name, None)
    rows = {(df["model"].iloc[0], df["condition"].iloc[0], df["control_draw"].iloc[0]) for df, _ in units}
    assert rows == {("gemma-3-270m", "random", "d0")}


def _load(path):
    from retmask_interp.core.models import load_model

    return load_model(str(path), device="cpu", dtype="float32")


def test_lanes_start_their_processes_and_skip_what_the_call_has_no_time_for(tmp_path):
    """The GPU call's orchestration on the CPU: ``lanes`` prepares s0 once, starts one process per lane with the
    arguments ``lane`` parses (no ``--model``: each arm's own), and a unit the call has no time left for is logged and
    skipped, so the call ends in time and its logs come back."""
    import subprocess

    if not (_driver().REPO / _driver().OLD_STATE).exists():
        pytest.skip("the 2026-12-03 run state is not in this checkout")
    root = tmp_path / "rep"
    cmd = [sys.executable, str(HERE / "run.py"), "lanes", "--root", str(root), "--seconds", "5", "--device", "cpu",
           "--lanes", "self:s0,random:d1:s0;gemma3:harm;harm"]  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": str(HERE.parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (root / "s0" / "stages" / "heads.json").exists()  # prepared once, before the lanes
    logs = {p.name: p.read_text() for p in sorted((root / "logs").glob("lane*.log"))}
    assert set(logs) == {"lane0.log", "lane1.log", "lane2.log"}
    assert "self:s0: not started" in logs["lane0.log"] and "random:d1:s0: not started" in logs["lane0.log"]
    assert "gemma3:harm: not started" in logs["lane1.log"] and "harm: not started" in logs["lane2.log"]
    assert not any("Traceback" in text for text in logs.values())
    bad = subprocess.run(
        cmd[:-1] + ["self:s0;gemma3:top4:s0"], capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode != 0 and "unknown unit 'gemma3:top4:s0'" in bad.stderr
