"""The embedded model organisms: small Llama models trained here, in which retrieval heads exist and matter.

Two organisms ship with the package (see ``MODEL_CARD.md`` next to this file):

- ``"concentrated"``: retrieval done by a few heads; masking them collapses needle-in-a-haystack recall.
- ``"distributed"``: same size and data, trained with head dropout so that retrieval is spread over many heads.

``load_organism(name)`` returns a :class:`~retmask_interp.models.RetModel`; ``organism_path(name)`` the weight
directory (loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``). The training code is
``scripts/train_organism.py`` with ``configs/<name>.json``.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

__all__ = ["ORGANISMS", "DEFAULT_ORGANISM", "organism_path", "load_organism", "available_organisms"]

log = logging.getLogger(__name__)

ORGANISMS = ("concentrated", "distributed")
DEFAULT_ORGANISM = "concentrated"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def available_organisms() -> list[str]:
    """Names of the organisms whose weights are present in this installation."""
    root = importlib.resources.files(__name__) / "weights"
    out = []
    for name in ORGANISMS:
        d = root / name
        if all((d / f).is_file() for f in _REQUIRED):
            out.append(name)
    return out


def organism_path(name: str = DEFAULT_ORGANISM) -> Path:
    """Directory of organism ``name``'s weights, config and tokenizer (inside the installed package).

    Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` when the weights are missing.
    """
    if name not in ORGANISMS:
        raise ValueError(f"unknown organism {name!r}; choose one of {', '.join(ORGANISMS)}")
    path = Path(str(importlib.resources.files(__name__) / "weights" / name))
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the {name!r} organism's files {missing} are missing from {path}. The weights ship as package data; "
            "reinstall the package from a complete checkout (`pip install -e .`), or train them with "
            f"`python scripts/train_organism.py --config retmask_interp/organism/configs/{name}.json --out {path}`."
        )
    return path


def load_organism(name: str = DEFAULT_ORGANISM, device: str | None = "cpu", dtype: str | None = "auto"):
    """Load organism ``name`` as a :class:`~retmask_interp.models.RetModel` named ``retmask-organism-<name>``.

    ``device``: ``"cpu"`` (default), ``"cuda"``, or ``"auto"`` (a GPU when there is one). ``dtype``: ``"auto"``
    (float32 on CPU, bfloat16 on GPU) or a dtype name. The model is returned in eval mode with sdpa attention.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import RetModel, resolve_device, resolve_dtype

    path = organism_path(name)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, attn_implementation="sdpa")
    model.to(dev).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return RetModel(model, tokenizer, name=f"retmask-organism-{name}")
