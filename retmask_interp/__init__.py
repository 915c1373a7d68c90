"""retmask-interp: find, mask and train retrieval heads of long-context language models.

Stages, one module each: ``niah`` (needle-in-a-haystack samples), ``detect`` (Wu et al.'s copy-paste retrieval
score), ``heads`` (head lists), ``masking`` (head interventions), ``analysis`` / ``figures`` (organisation metrics
and plots), ``interop`` (other tools' head lists, TransformerLens), ``pairs`` / ``training`` / ``evaluation``
(RetMask), ``organism`` (the embedded model). Importing the package loads none of them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "architectures",
    "models",
    "niah",
    "detect",
    "heads",
    "masking",
    "analysis",
    "figures",
    "interop",
    "pairs",
    "training",
    "evaluation",
    "organism",
    "synthetic",
    "tasks",
}

__all__ = ["__version__", *sorted(_SUBMODULES)]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'retmask_interp' has no attribute {name!r}")
