"""The model organism: tokenizer and template, model building, training data, the training script, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retmask_interp import organism
from retmask_interp.data.tasks import make_example
from retmask_interp.organism import build, data
from retmask_interp.organism import train as tr
from retmask_interp.workflows.organism_check import training_check

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO / "retmask_interp" / "organism" / "tokenizer"
CONFIGS = REPO / "retmask_interp" / "organism" / "configs"


@pytest.fixture(scope="module")
def tok():
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip("the organism tokenizer is not in this checkout")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


TINY = build.tiny_model_spec()


def test_tokenizer_template_and_ids(tok):
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
    assert tok.eos_token == "<|end|>" and 3000 <= len(tok) <= 8192
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi there."}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|bos|><|user|>\nHi there.<|end|>\n<|assistant|>\n"
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi there."}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # exactly one BOS
    assert tok("Hi there.")["input_ids"][0] == tok.bos_token_id
    assert (
        tok.decode(tok("The copper lantern 2544.", add_special_tokens=False)["input_ids"])
        == "The copper lantern 2544."
    )
    assert tok.tokenize(" 2544")[-4:] == ["2", "5", "4", "4"]  # digits one by one


def test_encode_example_matches_chat_template(tok):
    ex = make_example("niah", 0, num_words=120, seed=0)
    ids, roles = build.encode_example(ex, tok)
    n_ctx = roles.count(0)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": ex.prompt}], add_generation_prompt=True, tokenize=False
    )
    assert ids[:n_ctx] == tok(rendered, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[n_ctx:]) == ex.target + "<|end|>"
    assert roles == [0] * n_ctx + [1] * (len(ids) - n_ctx)
    raw, raw_roles = build.encode_example(ex, tok, chat=False, num_bos=0)
    assert tok.decode(raw) == ex.prompt + " " + ex.target + "<|end|>"
    text = make_example("text", 0, num_words=50)
    t_ids, t_roles = build.encode_example(text, tok, num_bos=2)
    assert t_ids[:2] == [1, 1] and set(t_roles) == {0}


def test_config_files_parse():
    for path in sorted(CONFIGS.glob("*.json")):
        cfg = build.OrganismConfig.from_json(path)
        assert path.stem == cfg.name or path.stem.startswith(cfg.name + "_")  # <organism>[_<stage>].json
        assert cfg.model.num_attention_heads % cfg.model.num_key_value_heads == 0
        assert cfg.model.max_position_embeddings >= 2 * cfg.train.seq_len >= 4096


def test_config_rejects_misspelt_keys(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"name": "bad", "model": {"hidden_sise": 12}}))
    with pytest.raises(ValueError, match="hidden_sise"):
        build.OrganismConfig.from_json(p)


def test_build_model_geometry(tok):
    model = build.build_model(TINY, tok)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (2, 4, 2)
    assert cfg.eos_token_id == tok.eos_token_id and cfg.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    n = sum(p.numel() for p in model.parameters())
    assert n == len(tok) * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 2 * 64) + 64
    full = build.build_model(
        build.OrganismConfig.from_json(CONFIGS / "concentrated.json").model, tok, attn_implementation="sdpa"
    )
    n_full = sum(p.numel() for p in full.parameters())
    assert 3e6 < n_full < 12e6  # "a few million parameters"; bf16 stays under 25 MB


def test_batches(tok):
    spec = build.TrainSpec(tokens_per_batch=2048, seq_len=512, min_len=128)
    plan = data.BatchPlan(seed=0, total_steps=100, spec=spec)
    ids, roles = data.make_batch(tok, plan, 50)
    ids2, roles2 = data.make_batch(tok, plan, 50)
    assert np.array_equal(ids, ids2) and np.array_equal(roles, roles2)
    length = data.batch_length(plan, 50)
    assert ids.shape == (2048 // length, length) and length % 64 == 0 and 128 <= length <= 512
    assert (ids[roles == -1] == tok.pad_token_id).all()
    assert (roles == 1).sum() > 0
    # padding only at the end of each row (no attention mask is needed with a causal model)
    for row in roles:
        real = np.nonzero(row >= 0)[0]
        assert real.max() == len(real) - 1
    # curriculum: early batches are short
    assert all(data.batch_length(plan, s) <= 128 for s in range(10))


# sha256(ids + roles)[:16] of batches recorded before WordStyle replaced synthetic's TRAIN_* globals (1cf3cb7)
GOLDEN_BATCHES = {
    ("default", 5): "4ea717d17e13e3bc",
    ("default", 60): "31e4d5368b843c33",
    ("rich", 5): "777a4ae8bd169f76",
    ("rich", 60): "d72d96d3243ab081",
    ("tok", 5): "d79a303c6f6fdf0b",
    ("tok", 60): "ea539d34e5f9df6a",
}
STYLES = {
    "default": {},
    "rich": {"rich_word_rate": 0.5},
    "tok": {"token_word_rate": 0.4, "rich_word_rate": 0.2, "invented_rate": 0.7},
}


def test_batches_unchanged_and_stateless(tok):
    """Batches for each word style equal the ones the global-knob code made, in any order of calls (a batch of
    one style leaves nothing behind for the next)."""
    import hashlib

    from retmask_interp.data import synthetic

    plain = synthetic.haystack_text(200, seed=1, split="train")
    for (name, step), want in sorted(GOLDEN_BATCHES.items(), key=lambda kv: kv[0][0] != "tok"):
        spec = build.TrainSpec(tokens_per_batch=2048, seq_len=512, min_len=128, **STYLES[name])
        ids, roles = data.make_batch(tok, data.BatchPlan(seed=3, total_steps=100, spec=spec), step)
        assert hashlib.sha256(ids.tobytes() + roles.tobytes()).hexdigest()[:16] == want, (name, step)
        assert synthetic.haystack_text(200, seed=1, split="train") == plain


class _FakeTokenizer:
    def __init__(self, vocab):
        self.vocab = vocab

    def get_vocab(self):
        return {t: i for i, t in enumerate(self.vocab)}

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens).replace("\u2581", " ")


def test_token_pieces_cache_follows_the_vocabulary():
    """The pieces cache is keyed by the vocabulary, not by ``id(tokenizer)`` (which Python reuses once an object
    is freed): a tokenizer whose vocabulary differs gets its own pieces."""
    first = _FakeTokenizer(["\u2581cat", "dog", "X1"])
    assert data.token_pieces(first) == ("cat", "dog")
    first.vocab = ["\u2581emu", "owl"]  # same object (same id), another vocabulary
    assert data.token_pieces(first) == ("emu", "owl")
    assert data.token_pieces(_FakeTokenizer(["owl", "\u2581emu"])) == ("emu", "owl")


def test_head_dropout_hook(tok):
    model = build.build_model(TINY, tok).train()
    hd = tr.HeadDropout(model, 0.5, [[1, 2]], torch.Generator().manual_seed(0))
    hd.sample(64, "cpu")
    m = hd.masks.view(2, 64, 4, 16)
    assert torch.equal(m[1, :, 2], torch.ones(64, 16))  # protected head: never dropped, never scaled
    values = set(m[0, :, 0, 0].tolist())
    assert values == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    hd2 = tr.HeadDropout(model, 0.0, [], torch.Generator().manual_seed(0), targeted=[[0, 1, 0.75]])
    hd2.sample(400, "cpu")
    m2 = hd2.masks.view(2, 400, 4, 16)[..., 0]
    assert set(m2[0, :, 1].tolist()) == {0.0, 4.0} and 0.6 < (m2[0, :, 1] == 0).float().mean() < 0.9
    assert torch.equal(m2[:, :, [0, 2, 3]], torch.ones(2, 400, 3)) and torch.equal(m2[1], torch.ones(400, 4))
    for h in hd2.hooks:
        h.remove()
    model.eval()
    ids = torch.randint(6, len(tok), (1, 8))
    ref = build.build_model(TINY, tok).eval()
    assert torch.allclose(model(ids).logits, ref(ids).logits)  # no effect in eval mode


def test_train_script_tiny(tmp_path):
    out = tmp_path / "o"
    argv = ["--config", str(CONFIGS / "concentrated.json"), "--out", str(out), "--tiny", "--workers", "0"]
    assert tr.main(argv + ["--no-check"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps_done"] == 3 and log["tiny"] and len(log["loss_curve"]) >= 1
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 2 and model.dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(str(out)).chat_template
    assert tr.main(argv) == 2  # refuses to overwrite a finished model
    # a second stage starts from the first one's weights and can stop early without changing its schedule
    out2 = tmp_path / "o2"
    argv2 = ["--config", str(CONFIGS / "distributed.json"), "--out", str(out2), "--tiny", "--workers", "0"]
    assert tr.main(argv2 + ["--init", str(out), "--stop-at", "2", "--set", "lr=0.0005", "--no-check"]) == 0
    log2 = json.loads((out2 / "train_log.json").read_text())
    assert log2["steps_done"] == 2 and log2["init_from"]["path"] == str(out)
    assert log2["config"]["train"]["lr"] == 0.0005


@pytest.mark.slow
def test_train_script_tiny_with_check(tmp_path):
    """The end-of-training check tells a model that retrieves from one that does not: after 3 tiny steps it
    records that the model answered no held-out needle (the weights and the log are kept); on a trained organism
    the same check reports retrieval, one row of scores per layer."""
    out = tmp_path / "o"
    argv = ["--config", str(CONFIGS / "distributed.json"), "--out", str(out), "--tiny", "--workers", "1"]
    assert tr.main(argv, check=training_check) == 0
    assert (out / "model.safetensors").is_file()
    check = json.loads((out / "train_log.json").read_text())["check"]
    assert "no NIAH sample counted" in check.get("error", ""), check  # 3 steps teach nothing
    rm = organism.load_organism("concentrated")
    trained = training_check(rm, [300], 3, 2)
    n = trained["num_samples"]
    assert n >= 3 and n % 3 == 0  # every needle that fits 300 tokens, at each of the 3 depths
    assert trained["niah_success"] >= 0.8, trained["niah_success"]
    assert len(trained["scores"]) == rm.geometry.num_layers  # one row of retrieval scores per layer


def test_organism_path_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown organism"):
        organism.organism_path("nope")
    from retmask_interp.core import models

    monkeypatch.setattr(models, "_REQUIRED", ("no_such_file.bin",))
    with pytest.raises(FileNotFoundError, match="train_organism.py"):
        organism.organism_path("concentrated")


@pytest.mark.parametrize("name", organism.ORGANISMS)
def test_load_organism_and_it_retrieves_where_a_random_init_does_not(name):
    if name not in organism.available_organisms():
        pytest.skip(f"weights of {name!r} are not in this checkout")
    rm = organism.load_organism(name)
    assert rm.name == f"retmask-organism-{name}"
    assert rm.model.dtype == torch.float32 and not rm.model.training
    g = rm.geometry
    assert g.num_kv_heads < g.num_heads  # grouped-query attention
    assert rm.eos_token_ids() == [rm.tokenizer.eos_token_id]
    size = sum(f.stat().st_size for f in organism.organism_path(name).iterdir())
    assert size < 25e6
    from retmask_interp.core.models import load_model

    assert load_model(f"organism:{name}").name == rm.name  # the CLI's --model organism:NAME
    # behaviour: held-out needles (eval split) at three depths are retrieved by the trained weights and by no
    # random-init model of the same config (so the embedded weights are a trained organism, not just its shape)
    trained, untrained = _niah_success(rm), _niah_success(_random_init(name, rm.tokenizer))
    assert trained >= 0.8, trained  # 1.0 here; the model card's 120-prompt grid: 0.99-1.0
    assert untrained <= 0.2, untrained  # 0.0 here


def _niah_success(rm) -> float:
    """NIAH success (Wu's ROUGE rule) on 6 held-out prompts: 2 eval-split needles x 3 depths at 300 tokens."""
    from retmask_interp.data.niah import build_grid, load_haystack
    from retmask_interp.data.synthetic import make_needles
    from retmask_interp.measure.outcomes import niah_outcomes

    needles = make_needles(2, seed=5, split="eval")
    hay = load_haystack("synthetic:7", num_words=1000)
    samples = build_grid(rm.tokenizer, hay, needles, [300], [0, 50, 100], "chat", repeat_haystack=True)
    rows = niah_outcomes(rm, samples, [], max_new_tokens=24, batch_size=6)
    assert len(rows) == 6
    return sum(r["success"] for r in rows) / len(rows)


def _random_init(name: str, tokenizer):
    """A model of organism ``name``'s config with the weights ``build_model`` starts training from."""
    from retmask_interp.core.models import as_model

    cfg = build.OrganismConfig.from_json(CONFIGS / f"{name}.json")
    return as_model(build.build_model(cfg.model, tokenizer, seed=0).float().eval(), tokenizer)
