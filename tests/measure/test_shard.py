"""Sharded detection: two processes (gloo) give the same head list as one process."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest (spawned ranks import it)


@dataclass
class _Sample:
    sample_id: str
    input_ids: list
    answer_span: tuple
    needle: dict


class _Tok:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids)


def _setup():
    from conftest import make_tiny_model

    from retmask_interp.core.models import as_model
    from retmask_interp.measure.detect import DetectConfig

    rm = as_model(make_tiny_model("llama", vocab_size=8), _Tok())
    g = torch.Generator().manual_seed(0)
    samples = [
        _Sample(
            f"s{i}", torch.randint(0, 6, (20 + i % 3,), generator=g).tolist(), (2, 15), {"real_needle": "t1"}
        )
        for i in range(7)
    ]
    return rm, samples, DetectConfig(max_new_tokens=5, rouge_threshold=0)


def _worker(rank, world, init_file, samples_path, out_path):
    from retmask_interp.measure.detect import detect_heads

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rm, samples, cfg = _setup()
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
