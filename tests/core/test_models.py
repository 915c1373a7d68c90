"""Model loading and the architecture table: the messages and warnings a user gets."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_tiny_model

from retmask_interp.core import models
from retmask_interp.core.architectures import UnsupportedArchitectureError, arch_for
from retmask_interp.core.models import as_model

REPO = Path(__file__).resolve().parents[2]


def test_unsupported_architecture_names_test_files_that_exist():
    with pytest.raises(UnsupportedArchitectureError) as err:
        arch_for(SimpleNamespace(model_type="nosuch"))
    named = re.findall(r"tests/[\w/]+\.py", str(err.value))
    assert named, str(err.value)
    for path in named:
        assert (REPO / path).is_file(), f"the message points to {path}, which does not exist"


class _Tok:
    pass


def test_as_model_second_tokenizer_replaces_and_warns(caplog):
    model = make_tiny_model("llama")
    first, second = _Tok(), _Tok()
    assert as_model(model, first).tokenizer is first
    with caplog.at_level(logging.WARNING, logger="retmask_interp.core.models"):
        rm = as_model(model, second)
    assert rm.tokenizer is second
    assert any("replacing the tokenizer" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retmask_interp.core.models"):
        assert as_model(model, second).tokenizer is second and as_model(model).tokenizer is second
    assert not caplog.records  # the same tokenizer again, or none: nothing to say


def test_load_model_eager_fallback_warns(monkeypatch, caplog):
    """A model class without sdpa support is reloaded with eager attention, and the user is told."""
    import transformers

    calls = []
    tiny = make_tiny_model("llama")

    def from_pretrained(name, **kwargs):
        calls.append(kwargs.get("attn_implementation"))
        if len(calls) == 1:
            raise ValueError("LlamaForCausalLM does not support an attention implementation through "
                             "torch.nn.functional.scaled_dot_product_attention yet.")  # fmt: skip
        return tiny

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _Tok())
    with caplog.at_level(logging.WARNING, logger="retmask_interp.core.models"):
        rm = models.load_model("some/local-model", device="cpu", dtype="float32")
    assert calls == [None, "eager"] and rm.model is tiny
    assert any("eager attention" in r.getMessage() for r in caplog.records)
    # asked for explicitly: no silent fallback
    calls.clear()
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        models.load_model("some/local-model", device="cpu", dtype="float32", attn_implementation="sdpa")


def test_single_kv_head_sdpa_on_cuda_with_old_transformers_is_refused(monkeypatch):
    """transformers < 5.23 + CUDA + sdpa + one KV head decoded gibberish (Gemma-3 on an H200): refused with the fix."""
    import torch

    from retmask_interp.core import models

    hf = make_tiny_model("gemma3_text", num_key_value_heads=1)
    rm = models.RetModel(hf, None, name="tiny-gemma3")
    assert rm.geometry.num_kv_heads == 1 < rm.geometry.num_heads
    models.check_decode_runtime(rm)  # on the CPU: fine
    monkeypatch.setattr(models.RetModel, "device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(rm.model.config, "_attn_implementation", "sdpa", raising=False)
    monkeypatch.setattr(models, "_transformers_version", lambda: (5, 17))
    with pytest.raises(models.UnsupportedRuntimeError, match=r"transformers>=5\.23"):
        models.check_decode_runtime(rm)
    monkeypatch.setattr(models, "_transformers_version", lambda: (5, 24))
    models.check_decode_runtime(rm)  # fixed versions pass
    monkeypatch.setattr(models, "_transformers_version", lambda: (5, 17))
    two_kv = models.RetModel(make_tiny_model("gemma3_text"), None, name="tiny-gemma3-gqa2")
    monkeypatch.setattr(two_kv.model.config, "_attn_implementation", "sdpa", raising=False)
    models.check_decode_runtime(two_kv)  # two KV heads: not refused
