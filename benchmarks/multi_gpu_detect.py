"""Sharded detection throughput: the 600-sample grid of ``gpu_detect.py`` through ``detect_heads`` on 1 or N GPUs.

What runs: the model of ``gpu_detect.py`` (``build(LLAMA_8B, ...)``: Llama-3.1-8B shape, random weights, seed 0,
bf16, sdpa) on ``cuda:LOCAL_RANK``, and its grid section's samples (3 needles x 20 lengths 250-5000 x 10 depths,
random token ids from a generator seeded 0, answer span 32 tokens at the depth), scored by
``retmask_interp.measure.detect.detect_heads`` with ``shard=(rank, world)``: each rank scores its slice into
``OUT/samples.rank{r}-of-{n}.jsonl`` (one process: ``OUT/samples.jsonl``), rank 0 merges the files into
``OUT/heads.json``. Every run starts fresh: this script deletes its own samples files first (a resumed shard would
time nothing).

No tokenizer. Random ids have no tokenizer and random weights never pass the ROUGE filter, so the run uses
``DetectConfig(rouge_threshold=0, stop="eos")`` and the model's EOS ids are cleared: every sample counts, every
sample decodes ``--new-tokens`` steps, as ``gpu_detect.py``'s grid does (``copy_paste_scores_batch(...,
eos_token_ids=[])``). ``score_samples`` refused a model without a tokenizer; it now accepts one for exactly that
configuration (nothing is decoded: ``generated_text`` is empty and ``rouge`` None) and still refuses it for a ROUGE
filter or the newline stop, which need the tokenizer. No stand-in tokenizer is used.

Sharding plan: ``retmask_interp.measure.detect.shard_order``, which ``detect_heads`` (and so ``torchrun ... retmask
detect``) uses for ``shard=(rank, world)``: rank r scores ``shard_order(samples, world)[r::world]``, whole lengths
dealt to the ranks in a snake (with 2 ranks: lengths 1 4 5 8 ... to rank 0, 2 3 6 7 ... to rank 1), so each rank
gets whole lengths (all 30 samples of a length, one batch of 30 as in the one-process run) and the same number of
tokens. The 2-process run computes exactly the batches of the one-process run, and its merged head list (merged in
grid order) must equal the one-process list bit for bit (``--compare``). One process batches by length whatever the
order.

Timing. Each rank builds the model, scores one warm-up batch (the first batch of its own shard, 4 new tokens, not
written), then all ranks meet at a barrier and the clock starts. ``wall_s`` (rank 0) runs until ``detect_heads``
returns on rank 0, so it holds the slowest rank, the barrier and the merge of the shard files; each rank's own
``scoring_s`` ends when it enters the merge barrier. ``OUT/timing.json``: world size, samples, wall seconds,
samples/s, per-rank times and peak memory, versions. Under torchrun the ranks meet through NCCL (gloo on the CPU),
as ``retmask detect`` does.

``--compare OTHER/heads.json`` (rank 0, after the run): loads both head lists and reports whether their score
matrices are equal (max abs difference, same top-20 heads, same sample counts) into ``OUT/compare.json``; when
``OTHER/timing.json`` exists it also reports the throughput ratio (this run's samples/s over the other's). The exit
status is 3 when the lists differ.

GPU (2 H200s; the whole protocol is ``benchmarks/multi_gpu.sh``):
  python benchmarks/multi_gpu_detect.py --out /tmp/m1
  torchrun --nproc-per-node 2 benchmarks/multi_gpu_detect.py --out /tmp/m2 --compare /tmp/m1/heads.json
CPU proof (TINY config in float32, lengths up to 300; one torch thread per process, as torchrun sets for each rank:
on the shared 2-core machine, busy with other jobs, the one-process tiny run took 97.6 s with 2 threads, 6.7 s with 1):
  python benchmarks/multi_gpu_detect.py --tiny --out /tmp/m1
  torchrun --nproc-per-node 2 benchmarks/multi_gpu_detect.py --tiny --out /tmp/m2 --compare /tmp/m1/heads.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository (retmask_interp)
sys.path.insert(0, str(HERE))  # gpu_detect (the model)

from gpu_detect import LLAMA_8B, TINY, build  # noqa: E402

from benchmarks.timing import sync  # noqa: E402
from retmask_interp.core.models import as_model  # noqa: E402
from retmask_interp.measure.detect import (  # noqa: E402
    DetectConfig,
    copy_paste_scores_batch,
    detect_heads,
    model_identity,
    shard_order,
    shard_path,
)

SPAN = 32  # answer span length, as gpu_detect's grid


@dataclass
class GridSample:
    """A NIAH-like sample of random token ids: the fields ``detect_heads`` reads, and the grid's coordinates
    (``context_length``, ``depth``, ``needle_index``: recorded as each sample's meta)."""

    sample_id: str
    input_ids: list
    answer_span: tuple
    needle: dict
    needle_index: int
    context_length: int
    depth: float


def log(msg: str, rank: int = 0) -> None:
    print(f"[rank {rank}] {msg}" if rank else msg, flush=True)


def grid_lengths(max_length: int, num_lengths: int) -> list[int]:
    import numpy as np

    return [int(x) for x in np.round(np.linspace(max_length / num_lengths, max_length, num_lengths))]


def build_grid(
    vocab_size: int, max_length: int = 5000, num_lengths: int = 20, needles: int = 3, depths: int = 10
) -> list[GridSample]:
    """``gpu_detect.section_grid``'s samples (same ids and spans with the default sizes), in grid order
    (length, needle, depth)."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    out = []
    for length in grid_lengths(max_length, num_lengths):
        for needle in range(needles):
            for depth in np.round(np.linspace(0, 100, depths)):
                ids = torch.randint(0, vocab_size, (length,), generator=g)
                s = int((length - 40) * depth / 100) if length > 40 else 0
                out.append(
                    GridSample(
                        sample_id=f"L{length}-n{needle}-d{int(depth)}",
                        input_ids=ids.tolist(),
                        answer_span=(s, min(s + SPAN, length)),
                        needle={"needle": f"random ids {needle}", "real_needle": None},
                        needle_index=needle,
                        context_length=length,
                        depth=float(depth),
                    )
                )
    return out


def setup_distributed(device_arg: str):
    """(rank, world, device, barrier, finish) from torchrun's environment; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device_arg)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return 0, 1, device, (lambda: None), (lambda: None)
    import torch.distributed as dist

    if device.type == "cuda":
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device, dist.barrier, dist.destroy_process_group


def compare_heads(path_a: str | Path, path_b: str | Path, top: int = 20) -> dict:
    """Whether two head lists hold the same scores: max abs difference of the score matrices, the same top-``top``
    heads in the same order, the same numbers of samples and counted samples."""
    import numpy as np

    from retmask_interp.heads.scores import load_head_scores

    a, b = load_head_scores(path_a), load_head_scores(path_b)
    out: dict = {"a": str(path_a), "b": str(path_b), "top": top}
    if (a.num_layers, a.num_heads) != (b.num_layers, b.num_heads):
        out.update(
            equal=False, reason=f"shapes differ: {a.num_layers}x{a.num_heads} vs {b.num_layers}x{b.num_heads}"
        )
        return out
    ma, mb = a.matrix(), b.matrix()
    top_a = [(layer, head) for layer, head, _ in a.ranked()[:top]]
    top_b = [(layer, head) for layer, head, _ in b.ranked()[:top]]
    max_abs = float(np.abs(ma - mb).max())
    out.update(
        max_abs_diff=max_abs,
        equal_top=top_a == top_b,
        samples=[a.num_samples, b.num_samples],
        counted=[a.num_counted, b.num_counted],
        nonzero_heads=[int((ma != 0).sum()), int((mb != 0).sum())],
        top_heads=[list(h) for h in top_a],
    )
    out["equal"] = max_abs == 0.0 and top_a == top_b and a.num_samples == b.num_samples
    out["equal"] = out["equal"] and a.num_counted == b.num_counted
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", type=Path, required=True, help="directory: samples files, heads.json, timing.json"
    )
    ap.add_argument(
        "--tiny", action="store_true", help="the TINY config in float32 on the CPU, lengths up to 300"
    )
    ap.add_argument(
        "--device", default=None, help="cuda (each rank on cuda:LOCAL_RANK; default) or cpu (--tiny)"
    )
    ap.add_argument("--max-length", type=int, default=None, help="longest prompt (5000; --tiny 300)")
    ap.add_argument("--num-lengths", type=int, default=20)
    ap.add_argument("--needles", type=int, default=3)
    ap.add_argument("--depths", type=int, default=10)
    ap.add_argument("--new-tokens", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=30)
    ap.add_argument("--backend", default="auto", choices=["auto", "eager", "static"])
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 with --tiny, else torch's own)",
    )
    ap.add_argument(
        "--compare", type=Path, default=None, help="another run's heads.json to compare with (rank 0)"
    )
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    """Run the benchmark; returns rank 0's timing record (with ``compare`` when asked), ``{}`` on other ranks."""
    args = parse_args(argv)
    if args.compare is not None and not args.compare.is_file():
        raise SystemExit(f"--compare {args.compare}: no such file")
    device_arg = args.device or ("cpu" if args.tiny else "cuda")
    threads_before = torch.get_num_threads()
    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)
    rank, world, device, barrier, finish = setup_distributed(device_arg)
    try:
        return _run(args, rank, world, device, barrier)
    finally:
        finish()
        torch.set_num_threads(threads_before)  # main() may run inside another program (the test)


def _run(args, rank: int, world: int, device: torch.device, barrier) -> dict:
    import transformers

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    own_samples = shard_path(samples_path, rank, world) if world > 1 else samples_path
    rank_file = out / f"rank{rank}-of-{world}.json"
    stale = [own_samples, rank_file]
    if rank == 0:
        stale += [out / "heads.json", out / "timing.json", out / "compare.json"]
    for path in stale:  # a fresh run: a resumed shard would time nothing, an old result would mislead
        path.unlink(missing_ok=True)

    t_build = time.perf_counter()
    dtype = torch.float32 if args.tiny else torch.bfloat16
    model = build(TINY if args.tiny else LLAMA_8B, device, dtype)
    model.config.eos_token_id = None  # random weights: no EOS, every sample decodes --new-tokens steps
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = None
    rm = as_model(model)
    assert rm.eos_token_ids() == [], rm.eos_token_ids()
    max_length = args.max_length or (300 if args.tiny else 5000)
    grid = build_grid(model.config.vocab_size, max_length, args.num_lengths, args.needles, args.depths)
    samples = grid
    mine = shard_order(grid, world)[rank::world]  # this rank's shard, as detect_heads takes it
    config = DetectConfig(
        max_new_tokens=args.new_tokens, rouge_threshold=0, stop="eos", batch_size=args.batch_size,
        backend=args.backend,
    )  # fmt: skip
    identity = model_identity(rm)
    build_s = time.perf_counter() - t_build

    # warm-up: the first batch of this rank's shard (its first length), 4 new tokens, nothing written
    t_warm = time.perf_counter()
    first = [s for s in mine if len(s.input_ids) == len(mine[0].input_ids)][: args.batch_size]
    copy_paste_scores_batch(
        rm,
        [s.input_ids for s in first],
        [s.answer_span for s in first],
        4,
        eos_token_ids=[],
        backend=args.backend,
    )
    sync(device)
    warmup_s = time.perf_counter() - t_warm
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lengths = sorted({len(s.input_ids) for s in mine})
    log(f"{len(mine)} samples ({len(lengths)} lengths {lengths[0]}-{lengths[-1]}) on {device}; model built in "
        f"{build_s:.1f}s, warm-up {warmup_s:.1f}s", rank)  # fmt: skip

    barrier()  # every rank built and warmed up: the clock starts together
    t0 = time.perf_counter()
    mark: dict = {}

    def record() -> None:
        sync(device)
        mark["scoring_s"] = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rec = dict(rank=rank, device=str(device), samples=len(mine), lengths=lengths, build_s=build_s,
                   warmup_s=warmup_s, scoring_s=mark["scoring_s"], peak_gib=peak)  # fmt: skip
        rank_file.write_text(json.dumps(rec, indent=1))
        log(f"scored {len(mine)} samples in {mark['scoring_s']:.1f}s", rank)

    def end_of_scoring() -> None:  # detect_heads calls it when this rank's shard is scored, before the merge
        record()
        barrier()

    hs = detect_heads(
        rm, samples, config, samples_path=samples_path, progress=not args.no_progress and rank == 0,
        params={"benchmark": "multi_gpu_detect", "max_length": max_length}, shard=(rank, world),
        barrier=end_of_scoring, inputs={"grid": f"random ids seed 0, max length {max_length}"},
    )  # fmt: skip
    if world == 1:
        record()
    if rank != 0:  # rank 0 writes the merged list
        barrier()  # wait for rank 0's files before the process group goes
        return {}
    wall_s = time.perf_counter() - t0
    hs.save(out / "heads.json", overwrite=True)
    ranks = [json.loads((out / f"rank{r}-of-{world}.json").read_text()) for r in range(world)]
    timing = dict(
        world_size=world,
        samples=len(samples),
        wall_s=wall_s,
        samples_per_s=len(samples) / wall_s,
        merge_s=wall_s - max(r["scoring_s"] for r in ranks),
        ranks=ranks,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        dtype=str(dtype).removeprefix("torch."),
        model="TINY" if args.tiny else "LLAMA_8B shape, random weights, seed 0",
        model_hash=identity["model_hash"],
        max_length=max_length,
        lengths=grid_lengths(max_length, args.num_lengths),
        needles=args.needles,
        depths=args.depths,
        new_tokens=args.new_tokens,
        batch_size=args.batch_size,
        backend=args.backend,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    per_rank = ", ".join(f"{r['scoring_s']:.1f}s" for r in ranks)
    log(f"world {world}: {len(samples)} samples in {wall_s:.1f}s = {timing['samples_per_s']:.2f} samples/s "
        f"(per rank scoring: {per_rank}; merge {timing['merge_s']:.1f}s); "
        f"{hs.num_counted}/{hs.num_samples} counted; wrote {out / 'heads.json'}")  # fmt: skip
    if args.compare is not None:
        cmp = compare_heads(out / "heads.json", args.compare)
        other_timing = args.compare.parent / "timing.json"
        if other_timing.is_file():
            other = json.loads(other_timing.read_text())
            cmp["other_world_size"] = other["world_size"]
            cmp["throughput_ratio"] = timing["samples_per_s"] / other["samples_per_s"]
        (out / "compare.json").write_text(json.dumps(cmp, indent=1))
        timing["compare"] = cmp
        verdict = "EQUAL" if cmp["equal"] else "DIFFERENT"
        log(f"compare with {args.compare}: {verdict} (max abs diff {cmp.get('max_abs_diff')}, same top-{cmp['top']}: "
            f"{cmp.get('equal_top')}, samples {cmp.get('samples')}, nonzero heads {cmp.get('nonzero_heads')})")  # fmt: skip
        if "throughput_ratio" in cmp:
            log(f"throughput ratio (world {world} over world {cmp['other_world_size']}): "
                f"{cmp['throughput_ratio']:.3f}x")  # fmt: skip
    (out / "timing.json").write_text(json.dumps(timing, indent=1))
    barrier()  # the other ranks wait here until rank 0 has written everything
    return timing


if __name__ == "__main__":
    result = main()
    sys.exit(3 if result.get("compare", {}).get("equal") is False else 0)
