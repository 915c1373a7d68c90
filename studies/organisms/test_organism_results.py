"""The organisms' verification files (``train_logs/<name>_verify_gpu.json``, the model card's numbers, written by
``verify_organism.py``): the retrieval heads they record are the ones that matter on a held-out grid of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retmask_interp import organism
from retmask_interp.data.niah import build_grid, load_haystack
from retmask_interp.data.synthetic import make_needles
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
    needles = make_needles(2, seed=99, split="eval")
    hay = load_haystack("synthetic:5", num_words=2000)
    samples = build_grid(rm.tokenizer, hay, needles, [300, 900], [0, 50, 100], "chat", repeat_haystack=True)

    def acc(heads):
        rows = niah_outcomes(rm, samples, heads, max_new_tokens=24, batch_size=6)
        return sum(r["success"] for r in rows) / len(rows)

    plain = acc([])
    assert plain >= 0.8  # 0.99-1.0 on the model card's 120-prompt grid
    assert acc(heads) <= plain - 0.5
