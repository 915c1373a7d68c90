"""The head lists shipped with the package are the lists that the committed real-model runs produced (issue 27):
``retmask_interp/data/heads/<model>.json`` equals ``studies/real_models/<run>/heads.json`` file for file. The list
that the 2026-12-03 RetMask run used (the shipped SmolLM2 list until 2026-12-07, from an uncommitted detection run)
is kept beside that run, and has the same 17 heads >= 0.1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = {"smollm2-135m-instruct": "smollm2", "gemma-3-270m": "gemma3"}


@pytest.mark.parametrize("model", sorted(RUNS))
def test_shipped_list_is_the_committed_runs(model):
    shipped = REPO / "retmask_interp" / "data" / "heads" / f"{model}.json"
    run = REPO / "studies" / "real_models" / RUNS[model] / "heads.json"
    assert shipped.read_bytes() == run.read_bytes()


def test_the_retmask_runs_list_is_kept_and_selects_the_same_heads():
    old = REPO / "studies" / "smollm2_retmask" / "heads_2026-11-28.json"
    # the sha256 its stage markers recorded (studies/smollm2_retmask/run_state.tar.gz, stages/heads.json)
    assert hashlib.sha256(old.read_bytes()).hexdigest().startswith("14172901211a2d5d")
    a = json.loads(old.read_text())["scores"]
    b = json.loads((REPO / "studies/real_models/smollm2/heads.json").read_text())["scores"]
    top = {k for k, v in a.items() if v >= 0.1}
    assert len(top) == 17 and top == {k for k, v in b.items() if v >= 0.1}
