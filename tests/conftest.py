"""Shared fixtures: tiny random models of every supported family, seeded RNGs, paths to ../shared (the plain helpers
are in ``helpers.py``)."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAMILIES, SHARED, make_tiny_model  # noqa: F401  (re-exported for fixtures)

warnings.filterwarnings("ignore", category=FutureWarning)
# Tests never reach the network: the hub is offline for transformers, huggingface_hub and the CLI's model checks.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(family):
    return make_tiny_model(family)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared is absent (it exists only in the project's workplace)")
    return SHARED


@pytest.fixture
def stories_path(shared_dir) -> Path:
    path = shared_dir / "models" / "stories260K"
    if not path.exists():
        pytest.skip("../shared/models/stories260K is absent")
    return path


def pytest_collection_modifyitems(items):
    """Notebook runs (nbmake, collected from notebooks/): one retry for a notebook whose kernel stops answering.

    Once, in a fresh clone, nbclient waited forever on an idle kernel after a notebook's cells had run (the same
    notebooks then passed in 2 minutes). A notebook takes at most about a minute here, so a hang is cut at the nbmake
    timeout (pyproject) and the notebook is run once more; a notebook that fails twice fails the run.
    """
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.flaky(reruns=1))
