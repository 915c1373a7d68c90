"""A prompt's sampled pair depends only on the run seed and the prompt (issue 28): resuming `retmask pairs` with
another --batch-size or with more --builtin-prompts gives exactly the pairs of an uninterrupted run."""

from __future__ import annotations

import json

import pytest

from retmask_interp.cli import main
from retmask_interp.core.io import InputError
from retmask_interp.heads.scores import HeadScores
from retmask_interp.retmask.pairs import pair_paths


@pytest.fixture(autouse=True)
def _organism():
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")


def _run(tmp_path, out, n, batch, *extra):
    heads = tmp_path / "heads.json"
    if not heads.exists():
        HeadScores.from_matrix([[float(8 * layer + h) for h in range(8)] for layer in range(6)]).save(heads)
    argv = ["-q", "pairs", "organism", "--heads", heads, "--top-k", "6", "--builtin-prompts", n,
            "--max-new-tokens", "6", "--batch-size", batch, "--device", "cpu", "--no-progress",
            "--out", tmp_path / out, *extra]  # fmt: skip
    return main([str(a) for a in argv])


def _records(tmp_path, stem):
    recs = []
    paths = pair_paths(tmp_path / f"{stem}.jsonl")
    for path in (paths.pairs, paths.dropped):
        recs += [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return sorted(recs, key=lambda r: r["prompt_index"])


def test_resume_with_other_batch_size_and_more_prompts_equals_a_clean_run(tmp_path):
    assert _run(tmp_path, "clean.jsonl", 10, 2) == 0
    clean = _records(tmp_path, "clean")
    assert [r["prompt_index"] for r in clean] == list(range(10))
    assert _run(tmp_path, "resumed.jsonl", 8, 4) == 0
    pair_paths(tmp_path / "resumed.jsonl").stats.unlink()  # interrupted after 8 prompts
    assert _run(tmp_path, "resumed.jsonl", 10, 2) == 0  # 8 -> 10 prompts, batch size 4 -> 2
    resumed = _records(tmp_path, "resumed")
    assert resumed == clean  # 8 prompts sampled in batches of 4, 2 in batches of 2: the clean run's pairs
    assert sum(r["chosen"] != r["rejected"] for r in clean) >= 3  # the pairs are not trivially equal
    assert len({json.dumps(r["chosen"]) for r in clean}) >= 5  # sampling, not one answer


def test_resume_with_another_mode_names_the_mode(tmp_path, capsys):
    from retmask_interp.retmask.pairs import pairs_from_responses

    out = tmp_path / "p.jsonl"
    kw = dict(heads=[(0, 0)], seed=3, format="plain")
    pairs_from_responses(["x", "y"], ["a", "b"], ["c", "d"], out, mode="zero", **kw)
    pair_paths(out).stats.unlink()
    with pytest.raises(InputError, match=r"other the masking mode \(mode was 'zero', now 'uniform'\)"):
        pairs_from_responses(["x", "y"], ["a", "b"], ["c", "d"], out, mode="uniform", **kw)
