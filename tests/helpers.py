"""Helpers shared by the tests (imported as ``from helpers import ...``): tiny random models of every supported family,
hand-built NIAH samples, a word tokenizer, scripts imported as modules. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tiny configs, one per family. GQA (4 query heads over 2 KV heads) wherever the family has it.
_COMMON = dict(
    vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
)
FAMILY_CONFIGS: dict[str, dict] = {
    "llama": dict(_COMMON, num_key_value_heads=2),
    "mistral": dict(_COMMON, num_key_value_heads=2),
    "qwen2": dict(_COMMON, num_key_value_heads=2),
    "qwen3": dict(_COMMON, num_key_value_heads=2, head_dim=16),
    "olmo2": dict(_COMMON, num_key_value_heads=2),
    "olmo3": dict(_COMMON, num_key_value_heads=2),
    "gemma2": dict(_COMMON, num_key_value_heads=2, head_dim=16),
    "gemma3_text": dict(_COMMON, num_key_value_heads=2, head_dim=16),
    "phi3": dict(_COMMON, num_key_value_heads=2, pad_token_id=0),
    "gpt2": dict(vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_positions=512),
    "gpt_neox": dict(_COMMON),
}
FAMILIES = list(FAMILY_CONFIGS)
# expected (layers, query heads, kv heads) of each fixture, checked so a misspelt key cannot build a big model
EXPECTED_GEOMETRY = {f: (2, 4, 2) for f in FAMILIES} | {"gpt2": (2, 4, 4), "gpt_neox": (2, 4, 4)}


def make_tiny_model(family: str, seed: int = 0, attn_implementation: str | None = None, **overrides):
    """A random-weight causal LM of ``family`` (float32, eval mode), small enough for CPU tests."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kwargs = dict(FAMILY_CONFIGS[family], **overrides)
    config = AutoConfig.for_model(family, **kwargs)
    config.eos_token_id = None  # random models: no accidental early stop unless a test asks for one
    config.bos_token_id = None
    impl = attn_implementation or "sdpa"
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=impl)
    except ValueError:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 2_000_000, f"{family} fixture has {n_params} parameters: a config key is misspelt"
    # random init is small; scale it up so attention is peaked and hits happen (sharper top-1 keys)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
                p.mul_(4.0)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = None
        model.generation_config.bos_token_id = None
    return model


@dataclass
class NiahSample:
    """The fields detection reads from a NIAH sample, for tests that build prompts by hand."""

    sample_id: str
    input_ids: list
    answer_span: tuple
    needle: dict


class WordTokenizer:
    """Decodes token ``i`` as the word ``t{i}``: enough for ROUGE on random models."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids)


@contextlib.contextmanager
def script_module(path: Path, name: str):
    """A script of benchmarks/ or scripts/ imported as module ``name``, registered in ``sys.modules`` while in use
    (a dataclass looks its module up there); the test is skipped when the file is absent."""
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def tiny_gguf(path: Path, arch: str = "llama", tokens: bool = False) -> Path:
    """A GGUF file of architecture ``arch`` holding one 4-float tensor (``tokens``: and a llama sentencepiece
    vocabulary of five tokens without scores); the test is skipped without the ``gguf`` package."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    if tokens:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(["<unk>", "<s>", "</s>", "a", "b"])
    writer.add_tensor("t", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
