"""The demo on the embedded organism, on a tiny grid: files, summary, and numbers that agree with each other."""

from __future__ import annotations

import json

import pytest

from retmask_interp.heads.scores import load_head_scores
from retmask_interp.organism import available_organisms
from retmask_interp.workflows.demo import DemoConfig, run_demo

pytestmark = pytest.mark.skipif(
    "concentrated" not in available_organisms(), reason="organism weights missing"
)


def test_demo_on_organism(tmp_path):
    cfg = DemoConfig(lengths=[300, 500], num_depths=2, num_needles=2, seeds=2, progress=False)
    summary = run_demo(tmp_path, cfg)
    for name in (
        "heads.json",
        "summary.json",
        "report.md",
        "heatmap.html",
        "niah_grids.html",
        "niah_outcomes.csv",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "summary.json").read_text())
    acc = saved["niah_accuracy"]
    assert set(acc) == {"normal", "retrieval_masked", "random_masked"}
    hs = load_head_scores(tmp_path / "heads.json")
    # the organism retrieves; masking its retrieval heads breaks that, and as many random heads break it less
    assert acc["normal"] >= 0.5
    assert acc["retrieval_masked"] < acc["normal"]
    assert acc["retrieval_masked"] < acc["random_masked"]
    assert saved["retrieval_heads"] == [list(h) for h in hs.above(0.1)]
    for control in saved["random_heads"]:
        assert not {tuple(h) for h in control} & {tuple(h) for h in saved["retrieval_heads"]}
    assert "NIAH success" in summary["table"]
    # a finished demo is not overwritten silently
    with pytest.raises(FileExistsError):
        run_demo(tmp_path, cfg)


def test_demo_lengths_fit_the_organisms_training_length():
    """``organism:NAME`` gets the organism grid (the organisms train on 2048-token sequences; their config allows
    4096), not the 500-4000-token grid of real models."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from retmask_interp.core.models import organism_path
    from retmask_interp.workflows.demo import _samples

    tok = AutoTokenizer.from_pretrained(str(organism_path("distributed")))
    rm = SimpleNamespace(tokenizer=tok, max_context=4096)
    for model in ("organism", "organism:distributed"):
        samples = _samples(rm, DemoConfig(model=model, num_depths=1, num_needles=1))
        lengths = sorted({s.context_length for s in samples})
        assert lengths and max(lengths) <= 2048, (model, lengths)
