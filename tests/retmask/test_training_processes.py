"""DPO under a multi-process launcher: the process count behind the gradient accumulation, the device of each
rank, the CLI's --logging-steps, and benchmarks/compare_dpo_runs.py (synthetic pairs, side-by-side table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import script_module

from retmask_interp.retmask import training
from retmask_interp.retmask.training import DPOSettings, _dpo_config, load_pairs_dataset

HELPER = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_dpo_runs.py"
LAUNCHER_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_num_processes_from_the_launcher_environment(no_launcher, tmp_path):
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # pragma: no cover - the suite runs without a group
        pytest.skip("a process group is initialised")
    assert training._num_processes() == 1
    no_launcher.setenv("WORLD_SIZE", "2")  # accelerate launch / torchrun, also on the CPU (gloo)
    nproc = training._num_processes()
    assert nproc == 2
    no_launcher.delenv("WORLD_SIZE")
    no_launcher.setenv("OMPI_COMM_WORLD_SIZE", "4")  # mpirun
    assert training._num_processes() == 4
    no_launcher.delenv("OMPI_COMM_WORLD_SIZE")  # (DPOConfig would try to join a process group)
    settings = DPOSettings(effective_batch_size=8, per_device_batch_size=2)
    args, effective = _dpo_config(settings, tmp_path, False, nproc)
    assert args.gradient_accumulation_steps == 2 and effective == 8  # half the one-process accumulation (4)


def _train_args(argv):
    import argparse

    from retmask_interp._cli import training as cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    return parser.parse_args(["train", "organism", "--pairs", "p.jsonl", "--out", "o", *argv])


def test_cli_logging_steps_and_rank_device(no_launcher):
    import torch

    from retmask_interp._cli import training as cli

    args = _train_args(["--logging-steps", "1"])
    assert cli._dpo_settings(args).logging_steps == 1
    assert cli._dpo_settings(_train_args([])).logging_steps == 10

    cli._launcher_device(args)  # one process: --device auto stays auto
    assert args.device == "auto"
    no_launcher.setenv("WORLD_SIZE", "2")
    no_launcher.setenv("LOCAL_RANK", "1")
    no_launcher.setattr(torch.cuda, "is_available", lambda: True)
    cli._launcher_device(args)
    assert args.device == "cuda:1"  # this rank's GPU, not device_map="auto" over both
    args = _train_args([])
    no_launcher.setattr(torch.cuda, "is_available", lambda: False)
    cli._launcher_device(args)
    assert args.device == "cpu"
    args = _train_args(["--device", "cuda:0"])
    cli._launcher_device(args)
    assert args.device == "cuda:0"  # an explicit device is kept


@pytest.fixture(scope="module")
def helper():
    with script_module(HELPER, "compare_dpo_runs") as module:
        yield module


def _summary(nproc, accum, losses, margins):
    history = [
        {"loss": loss, "rewards/margins": m, "rewards/accuracies": 1.0, "step": i + 1}
        for i, (loss, m) in enumerate(zip(losses, margins))
    ]
    history.append({"train_loss": sum(losses) / len(losses), "step": len(losses)})
    return {
        "num_processes": nproc,
        "gradient_accumulation_steps": accum,
        "effective_batch_size": 8,
        "optimizer_steps": len(losses),
        "settings": {"per_device_batch_size": 2},
        "final": training._final_metrics(history),
        "log_history": history,
    }


def test_compare_helper_pairs_and_table(helper, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    assert helper.main(["pairs", str(pairs), "--n", "6"]) == 0
    ds = load_pairs_dataset(pairs)
    assert len(ds) == 6 and not isinstance(ds[0]["prompt"], str)
    again = tmp_path / "again.jsonl"
    helper.main(["pairs", str(again), "--n", "6"])
    assert [json.loads(x)["chosen"] for x in pairs.read_text().splitlines()] == [
        json.loads(x)["chosen"] for x in again.read_text().splitlines()
    ]  # deterministic

    for name, s in (
        ("one", _summary(1, 4, [0.69, 0.5, 0.3], [0.0, 1.0, 2.0])),
        ("two", _summary(2, 2, [0.69, 0.5001, 0.3], [0.0, 1.0, 2.002])),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_summary.json").write_text(json.dumps(s))
    out = tmp_path / "compare.json"
    argv = ["compare", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]
    assert helper.main(argv + ["--table", str(tmp_path / "t.md")]) == 0
    result = json.loads(out.read_text())
    assert result["same_effective_batch"] and result["same_steps"]
    assert result["max_abs_diff"]["loss"] == pytest.approx(1e-4)
    assert result["max_abs_diff"]["rewards/margins"] == pytest.approx(2e-3)
    assert result["runs"]["b"]["gradient_accumulation_steps"] == 2
    text = capsys.readouterr().out
    assert "2 process(es) x per-device batch 2 x accumulation 2 = effective batch 8" in text
    assert text.count("\n| ") == 4  # the header and one row per step (the rule starts with "|-")

    short = _summary(2, 2, [0.69, 0.5], [0.0, 1.0])
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "training_summary.json").write_text(json.dumps(short))
    assert helper.main(["compare", str(tmp_path / "one"), str(tmp_path / "short")]) == 3
