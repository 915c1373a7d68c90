"""Measure an organism's acceptance numbers with the package's own pipeline (niah -> detect -> masking).

    python studies/organisms/verify_organism.py --organism concentrated --out studies/organisms/train_logs/concentrated_verify.json
    python studies/organisms/verify_organism.py --model runs/some_checkpoint --out /tmp/verify.json

Held-out grid: eval-split needles (``make_needles(N, seed, split="eval")``: words, names and codes never seen in
training) in an eval-split synthetic haystack, chat template, lengths inside the trained 2048 tokens, Wu depths.
Reports NIAH success (detection's success filter: ROUGE-1 recall > 0.5), every head's retrieval score, NIAH success
with the retrieval heads (score >= threshold) masked in ``zero`` mode, and with as many random non-retrieval heads
masked for several seeds (``controls.random_controls``), plus the organisation metrics of the 48 scores.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from retmask_interp.core.io import atomic_write_json, refuse_overwrite
from retmask_interp.core.models import load_model
from retmask_interp.workflows.organism_check import CheckConfig, organism_check


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--organism", help="a shipped organism: concentrated or distributed")
    src.add_argument("--model", help="a model directory (e.g. a training run's output)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--needles", type=int, default=6)
    ap.add_argument("--needle-seed", type=int, default=2024)
    ap.add_argument(
        "--haystack", default="synthetic:11", help="haystack spec (synthetic ones are eval split)"
    )
    ap.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 1500, 2000])
    ap.add_argument("--depths", type=int, default=5, help="number of Wu depths")
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=5, help="random-head control seeds")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--overwrite", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    refuse_overwrite(out, args.overwrite, "verification")
    t0 = time.time()
    rm = load_model(
        f"organism:{args.organism}" if args.organism else args.model, device=args.device, dtype="float32"
    )
    cfg = CheckConfig(
        needles=args.needles,
        needle_seed=args.needle_seed,
        haystack=args.haystack,
        lengths=tuple(args.lengths),
        depths=args.depths,
        threshold=args.threshold,
        seeds=args.seeds,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    result = organism_check(rm, cfg)
    result["command"] = "python studies/organisms/verify_organism.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result["wall_s"] = round(time.time() - t0, 1)
    atomic_write_json(out, result)
    logging.getLogger("verify").info(
        "NIAH %.3f | heads >= 0.3: %d | masked retrieval %.3f | random mean %s | wrote %s",
        result["niah_success"],
        result["heads_ge_0.3"],
        result["masked_retrieval_success"],
        result["masked_random_drop_mean"],
        out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
