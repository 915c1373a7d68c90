"""benchmarks/multi_gpu_detect.py on the CPU: one process in-process with --tiny (a small grid), its files, the
comparison of two runs and of a file with itself; detection without a tokenizer, which it relies on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from helpers import script_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "multi_gpu_detect.py"
# a small grid: 4 lengths (30-120 tokens) x 1 needle x 3 depths = 12 samples, 6 new tokens
SMALL = ["--tiny", "--max-length", "120", "--num-lengths", "4", "--needles", "1", "--depths", "3",
         "--new-tokens", "6", "--batch-size", "3", "--no-progress"]  # fmt: skip
BUDGET_S = 60


@pytest.fixture(scope="module")
def bench():
    with script_module(BENCH, "multi_gpu_detect_bench") as module:
        yield module


def _skip_if_slow(bench) -> None:
    """Two runs cost about two model builds and 2 x 4 batches of 6 steps; skip when a probe of one build and one
    batch says that would exceed the budget (a loaded machine)."""
    from retmask_interp.measure.detect import copy_paste_scores_batch

    t0 = time.perf_counter()
    model = bench.build(bench.TINY, torch.device("cpu"), torch.float32)
    build_s = time.perf_counter() - t0
    grid = bench.build_grid(model.config.vocab_size, 120, 4, 1, 3)[:3]
    t1 = time.perf_counter()
    copy_paste_scores_batch(
        model, [s.input_ids for s in grid], [s.answer_span for s in grid], 6, eos_token_ids=[]
    )
    batch_s = time.perf_counter() - t1
    estimate = 2 * (build_s + 5 * batch_s)
    if estimate > BUDGET_S:
        pytest.skip(f"this machine would take about {estimate:.0f} s (> {BUDGET_S} s) for the benchmark test")


def test_one_process_writes_heads_and_timing_and_compares(bench, tmp_path, monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    _skip_if_slow(bench)
    threads = torch.get_num_threads()
    first = tmp_path / "one"
    timing = bench.main([*SMALL, "--out", str(first)])
    assert torch.get_num_threads() == threads  # main restores the thread count it changed
    for name in ("heads.json", "timing.json", "samples.jsonl", "rank0-of-1.json"):
        assert (first / name).is_file(), name
    on_disk = json.loads((first / "timing.json").read_text())
    assert on_disk["world_size"] == timing["world_size"] == 1
    assert on_disk["samples"] == 12 and on_disk["samples_per_s"] > 0 and on_disk["wall_s"] > 0
    assert len((first / "samples.jsonl").read_text().splitlines()) == 12

    # a second run compared with the first: the same scores, and a throughput ratio from the first's timing.json
    second = tmp_path / "two"
    timing2 = bench.main([*SMALL, "--out", str(second), "--compare", str(first / "heads.json")])
    cmp = timing2["compare"]
    assert cmp["equal"] is True and cmp["max_abs_diff"] == 0.0 and cmp["equal_top"] is True
    assert cmp["samples"] == [12, 12] and cmp["throughput_ratio"] > 0
    assert json.loads((second / "compare.json").read_text())["equal"] is True

    # a file with itself is equal; a changed score is not
    heads = first / "heads.json"
    assert bench.compare_heads(heads, heads)["equal"] is True
    from retmask_interp.heads.scores import load_head_scores

    hs = load_head_scores(heads)
    hs.scores[(0, 0)] = hs.scores.get((0, 0), 0.0) + 0.01
    hs.save(tmp_path / "changed.json")
    diff = bench.compare_heads(heads, tmp_path / "changed.json")
    assert diff["equal"] is False and diff["max_abs_diff"] == pytest.approx(0.01)


def test_detection_without_a_tokenizer_only_with_the_filter_off_and_eos_stop():
    from helpers import NiahSample, make_tiny_model

    from retmask_interp.core.models import as_model
    from retmask_interp.measure.detect import DetectConfig, detect_heads

    rm = as_model(make_tiny_model("llama"))
    assert rm.tokenizer is None
    samples = [NiahSample("a", list(range(1, 13)), (2, 6), {"real_needle": "x"})]
    for config in (DetectConfig(max_new_tokens=2), DetectConfig(max_new_tokens=2, rouge_threshold=0)):
        with pytest.raises(ValueError, match="needs the model's tokenizer"):
            detect_heads(rm, samples, config, progress=False)
    hs = detect_heads(
        rm, samples, DetectConfig(max_new_tokens=2, rouge_threshold=0, stop="eos"), progress=False
    )
    assert hs is not None and hs.num_counted == hs.num_samples == 1
