"""``retmask analyze`` (metrics table + figures of head lists) and ``retmask export-masked`` (ablated checkpoint)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from retmask_interp._cli.detect import add_model_option
from retmask_interp._cli.validate import finite_float, nonnegative_int, positive_int

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="concentration metrics and figures of one or more head lists",
        description="Write metrics.csv / metrics.md / metrics.json and heatmap, sorted-score and metric figures "
        "for head lists in any supported format (.json ours or Wu et al.'s, .tsv DuoAttention, .yaml QRHead, "
        ".csv layer,head,score).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="head-list files")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--labels", nargs="+", metavar="NAME", help="one name per file (default: the model names)")
    p.add_argument(
        "--formats",
        nargs="+",
        default=["html", "png"],
        metavar="FMT",
        help="figure formats (default: html png)",
    )
    p.add_argument(
        "--group-size",
        type=positive_int,
        metavar="N",
        help="query heads per KV head, to expand DuoAttention per-KV-head gates (e.g. 4 for Mistral-7B)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing analysis in DIR")
    p.set_defaults(func=run_analyze)

    p = sub.add_parser(
        "export-masked",
        help="write the RetMask ablated model (retrieval heads' o_proj columns zeroed) as a HF checkpoint",
        description="Load MODEL, zero the output-projection columns of the chosen heads in a copy, and save it "
        "with its tokenizer (safetensors, loadable by transformers / vLLM) plus retmask_heads.json.",
    )
    add_model_option(p, default=None)
    p.add_argument("--heads", required=True, metavar="FILE", help="head list (any supported format)")
    sel = p.add_mutually_exclusive_group(required=True)
    sel.add_argument("--top-k", type=nonnegative_int, metavar="K", help="mask the K highest-scoring heads")
    sel.add_argument(
        "--threshold", type=finite_float, metavar="T", help="mask every head with mean score >= T"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output checkpoint directory")
    p.add_argument(
        "--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--revision", help="hub revision of MODEL")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export in DIR")
    p.set_defaults(func=run_export_masked)


def run_analyze(args: argparse.Namespace) -> int:
    from retmask_interp._cli.validate import check_writable, lock_outputs
    from retmask_interp.analysis.metrics import to_markdown
    from retmask_interp.workflows.analyze import analyze_files

    check_writable(Path(args.out) / "metrics.csv", "analysis directory (--out)")
    lock_outputs(args, args.out, what="analysis directory")
    if not args.verbose:  # kaleido's browser driver logs every start and stop at INFO
        for name in ("kaleido", "choreographer"):
            logging.getLogger(name).setLevel(logging.WARNING)
    df = analyze_files(
        args.files,
        args.out,
        labels=args.labels,
        overwrite=args.overwrite,
        formats=tuple(args.formats),
        load_kwargs={"group_size": args.group_size},
    )
    cols = [
        c for c in ("n_heads", "gini", "hoyer", "normalized_entropy", "top10_share", "n_ge_0.1") if c in df
    ]
    log.info("metrics written to %s\n%s", args.out, to_markdown(df[cols]))
    return 0


def run_export_masked(args: argparse.Namespace) -> int:
    from retmask_interp._cli.validate import check_device, check_model_source, check_writable, lock_outputs
    from retmask_interp.core.models import load_model
    from retmask_interp.heads.formats import check_head_list_matches, load_any_head_list
    from retmask_interp.interventions.weights import export_masked

    check_writable(Path(args.out) / "config.json", "export directory (--out)")
    lock_outputs(args, args.out, what="export directory")
    check_device(args.device)
    check_model_source(args.model, args.revision)
    rm = load_model(args.model, dtype=args.dtype, device=args.device, revision=args.revision)
    hs = load_any_head_list(args.heads, geometry=rm.geometry)
    check_head_list_matches(hs, rm)
    heads = hs.select(top_k=args.top_k, threshold=args.threshold)
    provenance = {
        "command": "retmask export-masked",
        "heads_file": str(args.heads),
        "head_list_model": hs.model,
        "head_list_method": hs.method,
        "selection": {"top_k": args.top_k, "threshold": args.threshold},
        "scores": {f"{layer}-{head}": hs.scores.get((layer, head), 0.0) for layer, head in heads},
    }
    out = export_masked(rm, heads, args.out, provenance=provenance, overwrite=args.overwrite)
    log.info("masked %d heads of %s; checkpoint in %s", len(heads), rm.name, out)
    return 0
