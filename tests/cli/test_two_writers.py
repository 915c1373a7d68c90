"""Two writers never corrupt a run (issue 28): two `retmask detect` (and two `retmask pairs`) processes started at
once on the same outputs: one is refused at start naming the other process, the other's result equals a clean run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retmask_interp.cli import main
from retmask_interp.heads.scores import HeadScores, load_head_scores

REPO = Path(__file__).resolve().parents[2]
DETECT = ["detect", "--model", "organism", "--lengths", "200", "--num-depths", "2", "--max-new-tokens", "6",
          "--no-progress", "--device", "cpu"]  # fmt: skip


def _retmask(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "retmask_interp.cli", "-q", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(autouse=True)
def _organism():
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")


def _race(args) -> tuple[subprocess.Popen, str]:
    """Start two processes of ``retmask ARGS`` together: (the one that ran, the other's stderr)."""
    procs = [_retmask(*args), _retmask(*args)]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], errs
    winner = next(i for i, p in enumerate(procs) if p.returncode == 0)
    loser_err = errs[1 - winner]
    assert len(loser_err.strip().splitlines()) == 1, loser_err  # one line, no traceback
    assert f"is being written by process {procs[winner].pid} (" in loser_err, loser_err
    assert "still running" in loser_err
    return procs[winner], loser_err


def test_two_detects_on_the_same_output(tmp_path):
    out = tmp_path / "race.json"
    _race([*DETECT, "--out", out])
    samples = tmp_path / "race.json.samples.jsonl"
    ids = [json.loads(line)["sample_id"] for line in samples.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12  # each sample scored once
    assert main([*map(str, DETECT), "--out", str(tmp_path / "clean.json")]) == 0
    a, b = load_head_scores(out), load_head_scores(tmp_path / "clean.json")
    assert a.scores == b.scores and a.per_sample == b.per_sample
    assert not list(tmp_path.glob(".*.lock"))  # the finished run removed its lock


def test_two_pairs_on_the_same_output(tmp_path):
    heads = tmp_path / "heads.json"
    HeadScores.from_matrix([[float(8 * layer + h) for h in range(8)] for layer in range(6)]).save(heads)
    args = ["pairs", "--model", "organism", "--heads", heads, "--top-k", "6", "--builtin-prompts", "4",
            "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu", "--no-progress"]  # fmt: skip
    _race([*args, "--out", tmp_path / "race.jsonl"])
    assert main([*map(str, args), "--out", str(tmp_path / "clean.jsonl")]) == 0
    for suffix in (".jsonl", ".dropped.jsonl"):
        race, clean = tmp_path / f"race{suffix}", tmp_path / f"clean{suffix}"
        assert (race.read_text() if race.exists() else "") == (clean.read_text() if clean.exists() else "")
    stats, clean = (json.loads((tmp_path / f"{s}.stats.json").read_text()) for s in ("race", "clean"))
    for key in ("pairs_path", "dropped_path"):
        assert Path(stats.pop(key)).name.replace("race", "clean") == Path(clean.pop(key)).name
    assert stats == clean
