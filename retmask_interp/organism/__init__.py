"""The embedded model organisms: small Llama models trained here, in which retrieval heads exist and matter.

Two organisms ship with the package (see ``MODEL_CARD.md`` next to this file):

- ``"concentrated"``: retrieval done by a few heads; masking them collapses needle-in-a-haystack recall.
- ``"distributed"``: same size and data, trained with head dropout so that retrieval is spread over many heads.

``load_organism(name)`` returns a :class:`~retmask_interp.core.models.RetModel`; ``organism_path(name)`` the weight
directory (loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``). The training code is
``organism.train`` (command line: ``scripts/train_organism.py``) with ``configs/<name>.json``.
"""

from __future__ import annotations

__all__ = ["ORGANISMS", "DEFAULT_ORGANISM", "organism_path", "load_organism", "available_organisms"]

from retmask_interp.core.models import (
    DEFAULT_ORGANISM,
    ORGANISMS,
    available_organisms,
    load_organism,
    organism_path,
)
