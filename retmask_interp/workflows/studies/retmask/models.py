"""How the RetMask study loads its model: sampling and evaluation in ``eval_dtype``, training in float32."""

from __future__ import annotations

from retmask_interp.workflows.studies.retmask.config import StudyConfig

__all__ = ["load"]


def load(config: StudyConfig, path: str | None = None, *, train: bool = False):
    """The study's model (or a trained one at ``path``), with a pad token."""
    import torch

    from retmask_interp.core.models import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    dtype = "float32" if train else config.eval_dtype
    rm = load_model(path or config.model, device=config.device, dtype=dtype)
    if rm.tokenizer is not None and rm.tokenizer.pad_token_id is None:
        rm.tokenizer.pad_token = rm.tokenizer.eos_token
    return rm
