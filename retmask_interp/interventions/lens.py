"""TransformerLens: head masking as ``hook_z`` hooks on a ``TransformerBridge``."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterable
from typing import Any

from retmask_interp.heads.scores import Head, by_layer


def tl_mask_hooks(heads: Iterable[Head], mode: str = "zero") -> list[tuple[str, Any]]:
    """``(hook_name, fn)`` pairs for ``TransformerBridge.run_with_hooks`` that zero the given heads' outputs.

    Each hook acts on ``blocks.{layer}.attn.hook_z`` (``[batch, pos, head, d_head]``, the input of the output
    projection), which equals zeroing the heads' columns of ``o_proj`` and nnsight masking with ``mode="zero"``.
    """
    if mode != "zero":
        raise ValueError(f"TransformerLens masking supports mode='zero' only, got {mode!r}")
    hooks = []
    for layer, idx in by_layer(heads).items():

        def fn(z, hook=None, idx=tuple(idx)):
            z = z.clone()
            z[:, :, list(idx), :] = 0.0
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", fn))
    return hooks


def tl_bridge(model, tokenizer=None, *, label: str | None = None):
    """A TransformerLens ``TransformerBridge`` around a *deep copy* of ``model`` (TL edits the model in place).

    The tokenizer is saved and reloaded from a temporary directory first, as ``boot_transformers`` needs;
    nothing is downloaded.
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from retmask_interp.core.models import as_model

    rm = as_model(model, tokenizer)
    if rm.tokenizer is None:
        raise ValueError("TransformerBridge needs a tokenizer: pass tokenizer=... or a RetModel that has one")
    with tempfile.TemporaryDirectory(prefix="retmask-tl-") as tmp:
        rm.tokenizer.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(tmp)
        return TransformerBridge.boot_transformers(
            label or rm.name or "model",
            hf_model=copy.deepcopy(rm.model),
            tokenizer=tok,
            device=str(rm.device),
        )


def tl_run_masked(bridge, input_ids, heads: Iterable[Head], mode: str = "zero"):
    """Logits of ``bridge`` on ``input_ids`` with ``heads`` zeroed (``tl_mask_hooks``)."""
    return bridge.run_with_hooks(input_ids, fwd_hooks=tl_mask_hooks(heads, mode))
