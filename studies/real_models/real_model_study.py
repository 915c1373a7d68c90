#!/usr/bin/env python3
"""The real-model study: detection, masking, top-k curve, attention effects and organisation of one model.

A thin command line over ``retmask_interp.workflows.real_models`` (the stages, their files and resumability are
documented there). Examples::

    # SmolLM2 on a GPU: Wu's grid 1K-8K, essay + synthetic haystacks, chat style, bf16 and fp32 detection
    python3 studies/real_models/real_model_study.py --model smollm2-135m-instruct \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/smollm2

    # the same pipeline on 2 CPU cores in about 10 minutes (a few short lengths, 3 depths, 2 needles)
    python3 studies/real_models/real_model_study.py --model smollm2-135m-instruct --grid small \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/smollm2-small

    # Gemma-3 (base model: qa and continuation styles), a small CPU grid beyond its 512-token sliding window
    python3 studies/real_models/real_model_study.py --model gemma-3-270m --grid small --min-length 1000 --max-length 2000 \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/gemma3-small

A re-run into the same directory resumes (finished stages are skipped); changed parameters are refused unless
``--overwrite`` (which starts the directory afresh).
"""

from __future__ import annotations

import argparse
import json
import logging

from retmask_interp.workflows.real_models import GRIDS, MODES, STAGES, StudyConfig, run_study


def parse_args(argv=None) -> tuple[str, StudyConfig]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="smollm2-135m-instruct", help="registry name, .gguf path or HF directory"
    )
    p.add_argument("--model-name", help="name recorded in the head lists (e.g. when --model is a .gguf path)")
    p.add_argument("--out", required=True, help="output directory (resumable)")
    p.add_argument("--grid", choices=sorted(GRIDS), default="full")
    p.add_argument(
        "--haystack", action="append", help="haystack (path, synthetic:SEED); repeat; first = primary"
    )
    p.add_argument("--style", action="append", choices=["chat", "qa", "continuation"], help="repeatable")
    p.add_argument("--dtype", action="append", choices=["bfloat16", "float16", "float32"], help="repeatable")
    p.add_argument("--device", default="auto")
    p.add_argument("--min-length", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--num-lengths", type=int)
    p.add_argument("--num-depths", type=int)
    p.add_argument("--needles", type=int, help="how many of the package's needles")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, help="detection batch size")
    p.add_argument(
        "--masking-batch-size", type=int, help="batch size of the masking, top-k and attention stages"
    )
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--mode", action="append", choices=list(MODES), help="masking modes (default: all)")
    p.add_argument("--seeds", type=int, help="random / matched control seeds of the masking stage")
    p.add_argument("--topk-seeds", type=int)
    p.add_argument("--ks", type=int, nargs="+")
    p.add_argument("--masking-samples", type=int, help="masking and top-k on this many grid samples")
    p.add_argument("--attention-samples", type=int)
    p.add_argument("--single-heads", type=int, help="single-head effects of the top-n heads (default: all)")
    p.add_argument("--stage", action="append", choices=list(STAGES), help="run only these stages")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    cfg = StudyConfig(
        model=a.model,
        model_name=a.model_name,
        grid=a.grid,
        haystacks=a.haystack or ["synthetic:0"],
        styles=a.style,
        dtypes=a.dtype,
        device=a.device,
        min_length=a.min_length,
        max_length=a.max_length,
        num_lengths=a.num_lengths,
        num_depths=a.num_depths,
        needles=a.needles,
        max_new_tokens=a.max_new_tokens,
        batch_size=a.batch_size,
        masking_batch_size=a.masking_batch_size,
        threshold=a.threshold,
        modes=a.mode or list(MODES),
        seeds=a.seeds,
        topk_seeds=a.topk_seeds,
        ks=a.ks,
        masking_samples=a.masking_samples,
        attention_samples=a.attention_samples,
        single_heads=a.single_heads,
        stages=a.stage or list(STAGES),
        overwrite=a.overwrite,
        progress=a.progress,
    )
    return a.out, cfg


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out, cfg = parse_args(argv)
    summary = run_study(out, cfg)
    print(json.dumps({k: summary[k] for k in ("model", "primary_condition", "detection")}, indent=1))
    print(f"summary: {out}/summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
