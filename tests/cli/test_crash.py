"""Crash safety: `retmask detect` and `retmask pairs` killed with SIGKILL mid-run, then resumed, give exactly the
results of an uninterrupted run, with no duplicate record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retmask_interp.cli import main
from retmask_interp.heads.scores import HeadScores, load_head_scores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _organism():
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")


def _retmask(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "retmask_interp.cli", "-q", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_when(proc: subprocess.Popen, path: Path, n: int, timeout: float = 60) -> None:
    """SIGKILL ``proc`` as soon as ``path`` holds ``n`` lines (mid-run)."""
    end = time.monotonic() + timeout
    while _lines(path) < n:
        assert proc.poll() is None, (
            f"finished or failed before the kill: {proc.stderr.read().decode()[-2000:]}"
        )
        assert time.monotonic() < end, "no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]


DETECT = ["detect", "organism", "--lengths", "200", "--num-depths", "2", "--max-new-tokens", "6",
          "--no-progress", "--device", "cpu"]  # fmt: skip


def test_detect_killed_then_resumed_equals_uninterrupted(tmp_path):
    samples = tmp_path / "killed.samples.jsonl"
    proc = _retmask(*DETECT, "--out", tmp_path / "killed.json", "--save-samples", samples)
    _kill_when(proc, samples, 4)
    assert not (tmp_path / "killed.json").exists()
    _finish(_retmask(*DETECT, "--out", tmp_path / "killed.json", "--save-samples", samples))
    assert main([*map(str, DETECT), "--out", str(tmp_path / "clean.json")]) == 0  # in-process: faster
    ids = [json.loads(line)["sample_id"] for line in samples.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6 * 2  # default needles x depths, no duplicate
    a, b = load_head_scores(tmp_path / "killed.json"), load_head_scores(tmp_path / "clean.json")
    assert a.scores == b.scores and a.per_sample == b.per_sample
    assert (a.num_samples, a.num_counted) == (b.num_samples, b.num_counted)


def test_pairs_killed_then_resumed_equals_uninterrupted(tmp_path):
    heads = tmp_path / "heads.json"
    HeadScores.from_matrix([[float(8 * layer + h) for h in range(8)] for layer in range(6)]).save(heads)
    args = ["pairs", "organism", "--heads", heads, "--top-k", "6", "--builtin-prompts", "6",
            "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu", "--no-progress"]  # fmt: skip
    killed = tmp_path / "killed.jsonl"
    proc = _retmask(*args, "--out", killed)
    dropped = tmp_path / "killed.dropped.jsonl"
    end = time.monotonic() + 60
    while _lines(killed) + _lines(dropped) < 2:  # a few prompts done, others not
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < end
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.stats.json").exists()
    _finish(_retmask(*args, "--out", killed))
    assert main([*map(str, args), "--out", str(tmp_path / "clean.jsonl")]) == 0

    def records(stem):
        recs = []
        for name in (f"{stem}.jsonl", f"{stem}.dropped.jsonl"):
            p = tmp_path / name
            recs += [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []
        return sorted(recs, key=lambda r: r["prompt_index"])

    a, b = records("killed"), records("clean")
    assert [r["prompt_index"] for r in a] == list(range(6))  # each prompt once
    assert a == b
