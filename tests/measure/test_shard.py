"""Sharded detection: two processes (gloo) give the same head list as one process, each rank scoring whole prompt
lengths of equal token load (``shard_order``, the plan of ``benchmarks/multi_gpu_detect.py``, now in the package)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest (spawned ranks import it)
from helpers import NiahSample, WordTokenizer, script_module  # noqa: E402

from retmask_interp.measure.detect import shard_order  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "multi_gpu_detect.py"


def _setup(lengths: int = 3, n: int = 7):
    """``n`` samples whose prompt lengths cycle through ``lengths`` values (20, 21, ...)."""
    from helpers import make_tiny_model

    from retmask_interp.core.models import as_model
    from retmask_interp.measure.detect import DetectConfig

    rm = as_model(make_tiny_model("llama", vocab_size=8), WordTokenizer())
    g = torch.Generator().manual_seed(0)
    samples = [
        NiahSample(
            f"s{i}",
            torch.randint(0, 6, (20 + i % lengths,), generator=g).tolist(),
            (2, 15),
            {"real_needle": "t1"},
        )
        for i in range(n)
    ]
    return rm, samples, DetectConfig(max_new_tokens=5, rouge_threshold=0)


def _worker(rank, world, init_file, samples_path, out_path, lengths=3, n=7):
    from retmask_interp.measure.detect import detect_heads

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rm, samples, cfg = _setup(lengths, n)
        hs = detect_heads(rm, samples, cfg, samples_path=samples_path, progress=False, shard=(rank, world),
                          barrier=dist.barrier)  # fmt: skip
        hs.save(out_path if rank == 0 else out_path + f".rank{rank}.json")  # every rank gets the merged list
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_ranks_equal_one_process(tmp_path):
    from retmask_interp.heads.scores import load_head_scores
    from retmask_interp.measure.detect import detect_heads, shard_path

    samples_path = tmp_path / "samples.jsonl"
    out = tmp_path / "heads.json"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(samples_path), str(out)), nprocs=2, join=True)
    merged = load_head_scores(out)
    assert load_head_scores(str(out) + ".rank1.json").scores == merged.scores
    rm, samples, cfg = _setup()
    single = detect_heads(rm, samples, cfg, progress=False)
    assert merged.num_samples == single.num_samples == 7
    for head, score in single.scores.items():
        assert merged.scores[head] == pytest.approx(score, abs=1e-6)
    assert sum(single.scores.values()) > 0
    # each rank wrote only its own slice
    assert len(shard_path(samples_path, 0, 2).read_text().splitlines()) == 4
    assert len(shard_path(samples_path, 1, 2).read_text().splitlines()) == 3


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_ranks_score_whole_lengths_of_equal_tokens(tmp_path):
    """4 prompt lengths (20-23 tokens) x 2 samples: under ``shard=(rank, 2)`` (what ``torchrun ... retmask detect``
    passes) rank 0 scores lengths 20 and 23, rank 1 lengths 21 and 22: whole lengths, 86 tokens each; the merged
    list is the one-process list."""
    from retmask_interp.heads.scores import load_head_scores
    from retmask_interp.measure.detect import detect_heads, load_sample_results, shard_path

    samples_path = tmp_path / "samples.jsonl"
    out = tmp_path / "heads.json"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(
        _worker, args=(2, str(tmp_path / "init"), str(samples_path), str(out), 4, 8), nprocs=2, join=True
    )
    rm, samples, cfg = _setup(4, 8)
    by_id = {s.sample_id: s for s in samples}
    shards = [[r.sample_id for r in load_sample_results(shard_path(samples_path, k, 2))] for k in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(by_id)  # every sample once
    plan = shard_order(samples, 2)
    for k in range(2):
        assert sorted(shards[k]) == sorted(s.sample_id for s in plan[k::2])
    lengths = [sorted({len(by_id[i].input_ids) for i in shard}) for shard in shards]
    assert lengths == [[20, 23], [21, 22]]
    assert [sum(len(by_id[i].input_ids) for i in shard) for shard in shards] == [86, 86]
    single = detect_heads(rm, samples, cfg, progress=False)
    merged = load_head_scores(out)
    assert merged.num_samples == single.num_samples == 8
    for head, score in single.scores.items():
        assert merged.scores[head] == pytest.approx(score, abs=1e-6)


def _benchmark_shard_order(samples, world=2):
    """The order ``benchmarks/multi_gpu_detect.py`` planned before it moved to ``measure.detect.shard_order``
    (verbatim but for names): the reference."""
    groups = {}
    for s in samples:
        groups.setdefault(len(s.input_ids), []).append(s)
    sizes = {len(v) for v in groups.values()}
    if world <= 1 or len(groups) % world or len(sizes) != 1:
        return list(samples)
    ranks = [[] for _ in range(world)]
    for i, group in enumerate(groups.values()):
        block, pos = divmod(i, world)
        ranks[pos if block % 2 == 0 else world - 1 - pos].extend(group)
    return [ranks[r][k] for k in range(len(ranks[0])) for r in range(world)]


def test_shard_order_is_the_benchmarks_plan_whole_lengths_of_equal_tokens():
    with script_module(BENCH, "multi_gpu_detect_bench") as bench:
        grid = bench.build_grid(512, 300)  # the benchmark's --tiny grid: 20 lengths x 3 needles x 10 depths
    assert len(grid) == 600 and len({s.sample_id for s in grid}) == 600
    ordered = shard_order(grid, 2)
    assert [s.sample_id for s in ordered] == [s.sample_id for s in _benchmark_shard_order(grid, 2)]
    assert sorted(s.sample_id for s in ordered) == sorted(s.sample_id for s in grid)  # every sample once
    shards = [ordered[r::2] for r in range(2)]
    lengths = [{len(s.input_ids) for s in shard} for shard in shards]
    assert not lengths[0] & lengths[1] and len(lengths[0]) == len(lengths[1]) == 10
    assert sum(len(s.input_ids) for s in shards[0]) == sum(len(s.input_ids) for s in shards[1])
    for shard in shards:  # each length whole (30 samples) and in grid order
        for length in {len(s.input_ids) for s in shard}:
            mine = [s.sample_id for s in shard if len(s.input_ids) == length]
            assert mine == [s.sample_id for s in grid if len(s.input_ids) == length]
    assert shard_order(grid[:90], 2) == grid[:90]  # 3 lengths cannot be dealt to 2 ranks: unchanged
    # 4 ranks: 5 whole lengths each; 20 lengths are not a multiple of 2 x 4, so the last block of 4 lengths
    # (255-300 tokens, 15 apart, 30 samples each) leaves rank r 15 x 30 tokens above rank r-1: 2 % apart
    four = shard_order(grid, 4)
    assert sorted(s.sample_id for s in four) == sorted(s.sample_id for s in grid)
    sets = [{len(s.input_ids) for s in four[r::4]} for r in range(4)]
    assert all(len(x) == 5 for x in sets) and len(set().union(*sets)) == 20
    loads = [sum(len(s.input_ids) for s in four[r::4]) for r in range(4)]
    assert loads == [loads[0] + r * 15 * 30 for r in range(4)], loads
    # lengths in any order are dealt as if sorted: shortest first
    assert [s.sample_id for s in shard_order(grid[::-1], 2)] == [
        s.sample_id for s in _benchmark_shard_order(sorted(grid[::-1], key=lambda s: len(s.input_ids)), 2)
    ]
