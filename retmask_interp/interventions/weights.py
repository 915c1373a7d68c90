"""Weight edits: the RetMask ablated model (zeroed output-projection columns), zeroed query rows, and the
exported masked checkpoint."""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from retmask_interp.core.architectures import query_features
from retmask_interp.core.io import atomic_write_json, refuse_overwrite
from retmask_interp.core.models import as_model, get_submodule
from retmask_interp.heads.scores import Head
from retmask_interp.interventions.masking import _by_layer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


@torch.no_grad()
def zero_head_outputs_(model, heads: Iterable[Head]) -> None:
    """In place: zero the output projection's input columns of each head (the RetMask ablated model)."""
    rm = as_model(model)
    d = rm.geometry.head_dim
    for layer, hs in _by_layer(rm, heads).items():
        proj = get_submodule(rm.attention(layer), rm.spec.out_proj)
        for h in hs:
            if rm.spec.weight_layout == "conv1d":  # weight [in, out]
                proj.weight[h * d : (h + 1) * d, :] = 0
            else:  # nn.Linear weight [out, in]
                proj.weight[:, h * d : (h + 1) * d] = 0


@torch.no_grad()
def zero_head_queries_(model, heads: Iterable[Head]) -> None:
    """In place: zero each head's query (weight rows and bias of its query projection, per the table's
    ``query_layout``; for a query norm taken over all heads, that head's slice of the norm's weight)."""
    rm = as_model(model)
    d = rm.geometry.head_dim
    for layer, hs in _by_layer(rm, heads).items():
        if rm.spec.joint_query_norm:
            norm = get_submodule(rm.attention(layer), rm.spec.joint_query_norm)
            for h in hs:
                norm.weight[query_features(rm.spec, h, d)] = 0
            continue
        proj = get_submodule(rm.attention(layer), rm.spec.query)
        for h in hs:
            cols = query_features(rm.spec, h, d)
            if rm.spec.weight_layout == "conv1d":
                proj.weight[:, cols] = 0
            else:
                proj.weight[cols, :] = 0
            if getattr(proj, "bias", None) is not None:
                proj.bias[cols] = 0


MASKED_HEADS_FILE = "retmask_heads.json"


# -- masked checkpoint -----------------------------------------------------------------------------------
def export_masked(
    model,
    heads: Iterable[Head],
    out_dir: str | Path,
    *,
    provenance: Mapping[str, Any],
    overwrite: bool = False,
    tokenizer=None,
) -> Path:
    """Write the RetMask ablated model: a Hugging Face checkpoint (safetensors + tokenizer) of a deep copy of
    ``model`` whose attention output projection has the columns of ``heads`` zeroed, plus ``retmask_heads.json``
    (the heads and ``provenance``). It loads with ``AutoModelForCausalLM.from_pretrained`` (or vLLM) and needs no
    hooks. The directory is written under a temporary name and renamed when complete; an existing ``out_dir``
    is replaced only with ``overwrite=True``. Returns ``out_dir``.
    """
    from retmask_interp import __version__
    from retmask_interp.core.models import as_model
    from retmask_interp.interventions.weights import zero_head_outputs_

    rm = as_model(model, tokenizer)
    heads = rm.check_heads(heads)
    if not heads:
        raise ValueError("no heads to mask: the selection is empty (lower --threshold or raise --top-k)")
    out_dir = Path(out_dir)
    refuse_overwrite(out_dir, overwrite, "masked checkpoint")
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MASKED_HEADS_FILE).exists())
    ):
        raise FileExistsError(
            f"{out_dir} exists and is not a masked checkpoint written by export_masked (no {MASKED_HEADS_FILE}); "
            "refusing to replace it even with overwrite=True. Choose another directory."
        )
    masked = cast(
        "PreTrainedModel", copy.deepcopy(rm.model)
    )  # save_pretrained below needs a transformers model
    zero_head_outputs_(masked, heads)
    record = {
        "schema": "retmask-interp/masked-heads",
        "schema_version": 1,
        "base_model": rm.name,
        "revision": rm.revision,
        "geometry": rm.geometry.as_dict(),
        "intervention": "zeroed input columns [h*head_dim, (h+1)*head_dim) of the attention output projection",
        "num_masked": len(heads),
        "heads": [[layer, head] for layer, head in heads],
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": dict(provenance),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        masked.save_pretrained(tmp)
        if rm.tokenizer is not None:
            rm.tokenizer.save_pretrained(tmp)
        else:
            log.warning("no tokenizer: %s holds the model only; copy the tokenizer files beside it", out_dir)
        atomic_write_json(tmp / MASKED_HEADS_FILE, record)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a checkpoint is shared like any directory
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s with %d heads zeroed", out_dir, len(heads))
    return out_dir
