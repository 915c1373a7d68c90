"""DPO through TRL on tiny models (full and LoRA), the reference model, and the RetMask CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_model

from retmask_interp.core.io import read_jsonl
from retmask_interp.retmask.pairs import pairs_from_responses
from retmask_interp.retmask.training import DPOSettings, _dpo_config, load_pairs_dataset, train_dpo

SHARED_STORIES = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "stories260K"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
PROMPTS = ["Once upon a time, there was a dog", "Lily went to the park", "Tom had a ball", "The sun was hot"]
GOOD = [" named Max. He liked to run.", " with her mom.", " that was red.", " and bright."]
BAD = [" the the the the", " park park park", " ball ball", " hot hot hot hot"]
FAST = dict(effective_batch_size=2, per_device_batch_size=2, max_steps=2, logging_steps=1, learning_rate=1e-3)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer():
    if not SHARED_STORIES.exists():
        pytest.skip("../shared/models/stories260K is absent")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SHARED_STORIES)


@pytest.fixture
def no_reference_reload(monkeypatch):
    """Fail if TRL tries to build a reference model from ``config._name_or_path`` (a hub download)."""
    import trl.trainer.dpo_trainer as dpo

    def refuse(*args, **kwargs):
        raise AssertionError(f"TRL tried to load a reference model from {args[:1]}")

    monkeypatch.setattr(dpo, "create_model_from_path", refuse)


def _pairs(tmp_path, fmt="plain") -> Path:
    path = tmp_path / f"pairs-{fmt}.jsonl"
    pairs_from_responses(PROMPTS, GOOD, BAD, path, heads=[(0, 1)], seed=0, format=fmt)
    return path


def _llama(seed=0):
    """A random tiny Llama built from a config (no ``_name_or_path``), with the stories tokenizer's vocab."""
    model = make_tiny_model("llama", seed=seed, vocab_size=512)
    assert model.config._name_or_path == ""
    return model


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model) -> float:
    after = model.state_dict()
    return max((after[k].float() - before[k].float()).abs().max().item() for k in before)


# -- settings ----------------------------------------------------------------------------------------------------
def test_paper_defaults_reach_the_trl_config(tmp_path):
    args, effective = _dpo_config(DPOSettings(), tmp_path, use_gpu=False, num_processes=1)
    assert (args.beta, args.learning_rate, args.weight_decay, args.num_train_epochs) == (0.1, 5e-7, 0.1, 2.0)
    assert (
        args.loss_type == ["sigmoid"]
        and getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "cosine"
    )
    assert getattr(args, "warmup_ratio", None) == 0.1 or args.warmup_steps == 0.1
    assert (
        args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 128 and effective == 512
    )
    assert args.bf16 is False and args.report_to in ([], "none", ["none"])
    args8, eff8 = _dpo_config(DPOSettings(per_device_batch_size=8), tmp_path, use_gpu=False, num_processes=8)
    assert args8.gradient_accumulation_steps == 8 and eff8 == 512
    _, eff = _dpo_config(DPOSettings(effective_batch_size=10, per_device_batch_size=4), tmp_path, False, 1)
    assert eff == 8  # nearest multiple, with a warning
    with pytest.raises(ValueError, match="does not know"):
        _dpo_config(DPOSettings(extra={"no_such_field": 1}), tmp_path, False, 1)


def test_load_pairs_dataset_checks(tmp_path):
    ds = load_pairs_dataset(_pairs(tmp_path))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 4
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(ValueError, match="lacks"):
        load_pairs_dataset(bad)
    mixed = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}]
    rows.append({"prompt": [{"role": "user", "content": "a"}], "chosen": "b", "rejected": "c"})
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="mixes"):
        load_pairs_dataset(mixed)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no pairs"):
        load_pairs_dataset(empty)


# -- training ----------------------------------------------------------------------------------------------------
def test_full_dpo_changes_weights_and_saves(tokenizer, tmp_path, no_reference_reload):
    from transformers import AutoModelForCausalLM

    model = _llama()
    before = _snapshot(model)
    out = tmp_path / "run"
    summary = train_dpo(model, tokenizer, _pairs(tmp_path), out, DPOSettings(**FAST))
    assert summary["optimizer_steps"] == 2 and summary["finite_loss"]
    assert _changed(before, model) > 1e-5
    losses = [r["loss"] for r in summary["log_history"] if "loss" in r]
    assert abs(losses[0] - 0.6931) < 1e-3  # first step: policy == reference, so the loss is log 2
    assert all(torch.isfinite(torch.tensor(losses)))
    saved = json.loads((out / "training_summary.json").read_text())
    assert saved["num_pairs"] == 4 and saved["pairs"]["heads_hash"] and saved["format"] == "plain"
    assert (out / "model.safetensors").exists() and not (out / "training_args.bin").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    for k, v in reloaded.state_dict().items():
        torch.testing.assert_close(v, model.state_dict()[k])
    with pytest.raises(FileExistsError):
        train_dpo(model, tokenizer, _pairs(tmp_path), out, DPOSettings(**FAST))


def test_lora_dpo_merges_adapter(tokenizer, tmp_path, no_reference_reload):
    model = _llama(seed=1)
    before = _snapshot(model)
    out = tmp_path / "lora"
    summary = train_dpo(model, tokenizer, _pairs(tmp_path), out, DPOSettings(lora=True, lora_r=4, **FAST))
    assert summary["finite_loss"] and summary["optimizer_steps"] == 2
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    assert not any("lora" in k for k in model.state_dict())  # merged and unloaded
    assert _changed(before, model) > 1e-6


def test_precomputed_reference_and_conversational_pairs(tokenizer, tmp_path, no_reference_reload):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    model = _llama(seed=2)
    before = _snapshot(model)
    settings = DPOSettings(reference="precompute", **FAST)
    pairs = _pairs(tmp_path, "conversational")
    summary = train_dpo(model, tok, pairs, tmp_path / "conv", settings)
    assert summary["format"] == "conversational" and summary["finite_loss"]
    assert _changed(before, model) > 1e-5
    with pytest.raises(ValueError, match="chat template"):
        train_dpo(_llama(), tokenizer, pairs, tmp_path / "x", DPOSettings(**FAST))


# -- CLI ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory, tokenizer):
    from retmask_interp.heads.scores import HeadScores

    root = tmp_path_factory.mktemp("cli")
    scores = torch.zeros(5, 8)
    for i, (layer, head) in enumerate([(0, 2), (1, 5), (2, 0), (3, 7), (4, 4), (1, 1)]):
        scores[layer, head] = 0.9 - 0.1 * i
    heads = HeadScores.from_matrix(scores.numpy(), model="stories260K").save(root / "heads.json")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    return root, heads, prompts


def test_cli_pairs_train_evaluate_compare(cli_setup):
    from retmask_interp.cli import main

    root, heads, prompts = cli_setup
    model = str(SHARED_STORIES)
    pairs = root / "pairs.jsonl"
    argv = ["-q", "pairs", model, "--heads", str(heads), "--top-k", "6", "--prompts", str(prompts)]
    argv += ["--prompt-column", "text", "--out", str(pairs), "--max-new-tokens", "8", "--batch-size", "2"]
    assert main(argv + ["--device", "cpu", "--no-progress"]) == 0
    stats = json.loads((root / "pairs.stats.json").read_text())
    assert stats["total_prompts"] == 4 and len(stats["heads"]) == 6
    assert main(argv + ["--device", "cpu", "--no-progress"]) == 2  # finished: refused without --overwrite

    if stats["kept"] == 0:  # pragma: no cover - masking 6 heads changes this model's samples in practice
        pytest.skip("no pair kept")
    run = root / "run"
    argv = ["-q", "train", model, "--pairs", str(pairs), "--out", str(run), "--device", "cpu"]
    argv += [
        "--max-steps",
        "1",
        "--effective-batch-size",
        "2",
        "--per-device-batch-size",
        "2",
        "--lr",
        "1e-4",
    ]
    assert main(argv) == 0
    assert json.loads((run / "training_summary.json").read_text())["optimizer_steps"] == 1

    evals = []
    for name, path in (("before", model), ("after", str(run))):
        out = root / f"{name}.csv"
        argv = ["-q", "evaluate", path, "--out", str(out), "--tasks", "niah", "text", "--lengths", "48"]
        argv += ["--n-per-cell", "2", "--ppl-length", "48", "--device", "cpu", "--no-progress"]
        assert main(argv) == 0
        evals.append(out)
    assert (root / "before.summary.csv").exists()
    table = root / "compare.csv"
    assert main(["-q", "compare", str(evals[0]), str(evals[1]), "--out", str(table)]) == 0
    import pandas as pd

    df = pd.read_csv(table)
    assert set(df["task"]) == {"niah", "text", "all"} and (df["n"] == 2).all()


def test_cli_retmask_chain(cli_setup):
    from retmask_interp.cli import main

    root, heads, _ = cli_setup
    out = root / "chain"
    argv = ["-q", "retmask", str(SHARED_STORIES), "--heads", str(heads), "--threshold", "0.45"]
    argv += ["--builtin-prompts", "4", "--out", str(out), "--max-new-tokens", "6", "--device", "cpu"]
    argv += [
        "--max-steps",
        "1",
        "--effective-batch-size",
        "2",
        "--per-device-batch-size",
        "2",
        "--no-progress",
    ]
    code = main(argv)
    stats = json.loads((out / "pairs.stats.json").read_text())
    assert stats["heads"] == [[0, 2], [1, 5], [2, 0], [3, 7], [4, 4]]
    if stats["kept"] == 0:  # pragma: no cover
        assert code == 2
        return
    assert code == 0 and (out / "model" / "training_summary.json").exists()
    assert len(list(read_jsonl(out / "pairs.jsonl"))) == stats["kept"]


def test_cli_errors_are_one_line(cli_setup, capsys):
    from retmask_interp.cli import main

    root, heads, _ = cli_setup
    argv = ["train", str(SHARED_STORIES), "--pairs", str(root / "missing.jsonl"), "--out", str(root / "x")]
    assert main(argv + ["--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err
