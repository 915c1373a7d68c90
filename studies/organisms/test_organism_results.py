"""The organisms' verification files (``train_logs/<name>_verify_gpu.json``, the model card's numbers, written by
``verify_organism.py``): the retrieval heads they record are the ones that matter on a held-out grid of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retmask_interp import organism
from retmask_interp.data.niah import niah_grid
from retmask_interp.measure.outcomes import niah_outcomes

LOGS = Path(__file__).resolve().parent / "train_logs"


@pytest.mark.slow
@pytest.mark.parametrize("name", organism.ORGANISMS)
def test_organism_retrieval_heads_matter(name):
    """Held-out needles are retrieved, and masking the recorded retrieval heads removes retrieval."""
    if name not in organism.available_organisms():
        pytest.skip(f"weights of {name!r} are not in this checkout")
    record = LOGS / f"{name}_verify_gpu.json"
    heads = [tuple(h) for h in json.loads(record.read_text())["retrieval_heads"]]
    assert len(heads) >= 3

    rm = organism.load_organism(name)
    samples = niah_grid(
        rm,
        [300, 900],
        [0, 50, 100],
        2,
        needle_set="eval",
        needle_seed=99,
        haystack="synthetic:5",
        style="chat",
    )

    def acc(heads):
        rows = niah_outcomes(rm, samples, heads, max_new_tokens=24, batch_size=6)
        return sum(r["success"] for r in rows) / len(rows)

    plain = acc([])
    assert plain >= 0.8  # 0.99-1.0 on the model card's 120-prompt grid
    assert acc(heads) <= plain - 0.5
