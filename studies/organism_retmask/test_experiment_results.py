"""The RetMask experiment on the organisms (README.md): every number of its results JSON files that comes from an
evaluation (per task and length means and bootstrap CIs, long-context score, perplexity, paired deltas vs no
training, gains) recomputes from the per-example CSVs committed beside them, with the experiment's own summary code."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import retmask_experiment as experiment  # this folder's script (pytest puts the folder on sys.path)

HERE = Path(__file__).resolve().parent
RUNS = {  # results JSON -> the folder of its evaluation CSVs (run B shares run A's untrained evaluation)
    "experiment_results.json": "run_a",
    "experiment_results_task_prompts.json": "run_b",
}


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)  # numeric columns numeric, as `evaluate` returned them when the JSON was written


def _close(got, want, where: str):
    if isinstance(want, dict):
        assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: {len(got)} rows != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, str):
        assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (
            f"{where}: {got} != {want}"
        )
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("results", sorted(RUNS))
def test_summaries_recompute_from_the_csvs(results):
    data = json.loads((HERE / results).read_text())
    args = SimpleNamespace(bootstrap=data["settings"]["bootstrap"])
    lrs = data["settings"]["lr"]
    folder = HERE / RUNS[results]
    for name, org in data["organisms"].items():
        base = _csv(HERE / "run_a" / f"{name}_eval_none.csv")
        _close(experiment.condition_summary(base, None, args), org["conditions"]["none"], f"{name}.none")
        for i, lr in enumerate(lrs):
            block = org["conditions"] if i == 0 else org["variants"][f"lr={lr:g}"]
            for cond in ("random", "retmask"):
                df = _csv(folder / f"{name}_eval_{cond}_lr{lr:g}.csv")
                want = {k: v for k, v in block[cond].items() if k != "training"}
                _close(experiment.condition_summary(df, base, args), want, f"{name}.{cond}.lr{lr:g}")
            gains = org["gain"] if i == 0 else block["gain"]
            assert gains == {c: block[c]["gain"] for c in ("retmask", "random")}
