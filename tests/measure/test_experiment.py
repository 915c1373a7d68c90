"""retrieval_vs_random: the one retrieval-vs-random experiment, against the plain outcomes it is built from."""

from __future__ import annotations

from collections import Counter

import pytest

import retmask_interp as rmi
from retmask_interp.core.io import InputError
from retmask_interp.measure.experiment import ExperimentConfig, retrieval_vs_random
from retmask_interp.measure.outcomes import niah_outcomes


@pytest.fixture(scope="module")
def organism():
    return rmi.load_model("organism", device="cpu")


@pytest.fixture(scope="module")
def grid(organism):
    return rmi.niah_grid(organism, [300, 500], 2, 2)  # 8 samples


@pytest.fixture(scope="module")
def detected(organism, grid):
    cfg = ExperimentConfig(threshold=0.1, seeds=2, controls=("random", "matched"))
    return retrieval_vs_random(organism, grid, None, cfg)


def test_detected_heads_masked_and_controls_drawn_as_documented(organism, detected):
    run = detected
    assert run.heads is not None and run.retrieval == run.heads.above(0.1) and run.retrieval
    assert list(run.conditions) == ["unmasked", "retrieval", "random#0", "random#1", "matched#0", "matched#1"]
    layers = Counter(layer for layer, _ in run.retrieval)
    for name, heads in run.conditions.items():
        if name.startswith(("random", "matched")):
            assert len(heads) == len(run.retrieval) and not set(heads) & set(run.retrieval)
        if name.startswith("matched"):
            assert Counter(layer for layer, _ in heads) == layers
    assert len(run.table) == len(run.conditions) * 8
    assert set(run.table["kind"]) == {"unmasked", "retrieval", "random", "matched"}


def test_the_table_equals_plain_niah_outcomes_of_each_condition(organism, grid, detected):
    # every condition's rows are what niah_outcomes gives with those heads masked, run on its own
    for name in ("retrieval", "random#1"):
        plain = niah_outcomes(organism, grid, detected.conditions[name], max_new_tokens=24)
        rows = detected.table[detected.table["condition"] == name]
        assert rows["generated"].tolist() == [r["generated"] for r in plain]
        assert rows["success"].tolist() == [r["success"] for r in plain]
    success = detected.success()
    per_seed = detected.per_seed("random")
    assert success["random"] == pytest.approx(sum(per_seed) / len(per_seed))
    # the organism: retrieval heads masked find fewer needles than the unmasked model
    assert success["unmasked"] > success["retrieval"]
    assert "retrieval heads" in repr(detected) and len(repr(detected)) < 300


def test_given_heads_k_and_modes(organism, grid, detected):
    hs = detected.heads
    cfg = ExperimentConfig(threshold=None, k=2, modes=("zero", "uniform"), seeds=1)
    run = retrieval_vs_random(organism, grid[:2], hs, cfg)
    assert run.retrieval == hs.top_k(2)
    assert sorted(set(run.table["mode"])) == ["uniform", "zero"]
    assert len(run.table) == 2 * 3 * 2 and run.table["answer_logprob"].notna().all()
    listed = retrieval_vs_random(organism, grid[:2], [tuple(h) for h in hs.top_k(2)], cfg)
    assert listed.heads is None and sorted(listed.retrieval) == sorted(run.retrieval)
    assert listed.table["success"].tolist() == run.table["success"].tolist()


def test_a_resumed_run_reads_its_checkpoint(organism, grid, tmp_path, monkeypatch):
    cfg = ExperimentConfig(seeds=1)
    heads = [(1, 0), (2, 1)]
    first = retrieval_vs_random(organism, grid[:2], heads, cfg, checkpoint_dir=tmp_path)
    assert (tmp_path / "zero.partial.jsonl").exists()
    import retmask_interp.measure.outcomes as outcomes

    monkeypatch.setattr(outcomes, "niah_outcomes", lambda *a, **k: pytest.fail("a finished condition re-ran"))
    again = retrieval_vs_random(organism, grid[:2], heads, cfg, checkpoint_dir=tmp_path)
    assert again.table["generated"].tolist() == first.table["generated"].tolist()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0.1, k=3), "exactly one of threshold"),
        (dict(threshold=None), "exactly one of threshold"),
        (dict(threshold=float("nan")), r"in \[0, 1\]"),
        (dict(modes=("zero", "blur")), "unknown masking mode"),
        (dict(controls=("nearby",)), "unknown control kind"),
        (dict(seeds=-1), "seeds must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        ExperimentConfig(**kwargs)


def test_an_empty_grid_is_refused(organism):
    with pytest.raises(InputError, match="grid is empty"):
        retrieval_vs_random(organism, [], [(0, 0)])
