"""Model loading and the architecture table: the messages and warnings a user gets."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import make_tiny_model

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
