"""``retmask pairs``, ``retmask train``, ``retmask retmask`` (pairs then training), ``retmask evaluate``,
``retmask compare``: RetMask on the command line, a thin layer over ``pairs``, ``training`` and ``evaluation``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from retmask_interp._cli.detect import add_model_args, check_model_args, load_from_args
from retmask_interp._cli.options import add_config_arguments, config_from_args
from retmask_interp._cli.validate import (
    check_writable,
    finite_float,
    lock_outputs,
    nonnegative_int,
    positive_int,
    seed_int,
)

log = logging.getLogger(__name__)


# -- shared arguments --------------------------------------------------------------------------------------------
def _head_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--heads", required=required, metavar="FILE", help="head list (ours, Wu et al.'s, CSV, ...)"
    )
    sel = p.add_mutually_exclusive_group(required=required)
    sel.add_argument("--top-k", type=nonnegative_int, metavar="K", help="mask the K highest-scoring heads")
    sel.add_argument(
        "--threshold", type=finite_float, metavar="T", help="mask every head with mean score >= T"
    )
    p.add_argument("--mode", default="zero", choices=["zero", "uniform"], help="masking mode (zero: RetMask)")


def _prompt_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", metavar="FILE", help="JSONL with one prompt per line")
    src.add_argument(
        "--builtin-prompts", type=positive_int, metavar="N", help="N built-in short chat prompts"
    )
    p.add_argument("--prompt-column", default="prompt", help="field of the prompt in --prompts (prompt)")
    p.add_argument("--limit", type=positive_int, default=None, help="use the first N prompts only")
    from retmask_interp.retmask.pairs import PairsConfig

    g = p.add_argument_group("sampling (both sides alike; defaults: the RetMask paper)")
    add_config_arguments(g, PairsConfig, skip=("mode",), defaults=True)


def _train_args(p: argparse.ArgumentParser) -> None:
    from retmask_interp.retmask.training import DPOSettings

    g = p.add_argument_group("DPO (defaults: the RetMask paper)")
    add_config_arguments(g, DPOSettings, helps={"learning_rate": "learning rate (LoRA: 5e-5)"})
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")


def _heads(args, rm) -> list[tuple[int, int]]:
    from retmask_interp.heads.formats import check_head_list_matches, load_any_head_list

    hs = load_any_head_list(args.heads, geometry=rm.geometry)
    check_head_list_matches(hs, rm)
    heads = hs.select(top_k=args.top_k, threshold=args.threshold)
    if not heads:
        raise ValueError(f"no head of {args.heads} passes the selection; lower --threshold or use --top-k")
    log.info("masking %d heads (%s)", len(heads), args.mode)
    return heads


def _prompts(args):
    from retmask_interp.retmask.pairs import builtin_prompts, load_prompts

    if args.prompts:
        return load_prompts(args.prompts, column=args.prompt_column, limit=args.limit)
    return load_prompts(builtin_prompts(args.builtin_prompts, seed=args.seed)[: args.limit])


def _pairs_config(args):
    from retmask_interp.retmask.pairs import PairsConfig

    return config_from_args(PairsConfig, args)


def _dpo_settings(args):
    from retmask_interp.retmask.training import DPOSettings

    lr = args.learning_rate if args.learning_rate is not None else (5e-5 if args.lora else 5e-7)
    return config_from_args(DPOSettings, args, learning_rate=lr)


# -- parsers -----------------------------------------------------------------------------------------------------
def register(sub) -> None:
    p = sub.add_parser(
        "pairs",
        help="RetMask preference pairs: normal (chosen) vs retrieval-heads-masked (rejected) responses",
        description="Sample one response per prompt from MODEL and from MODEL with the chosen heads masked "
        "(same sampling settings and seeds), drop empty or identical pairs, write JSONL for TRL's DPO plus "
        "OUT.stats.json. Resumable: re-running continues an interrupted file.",
    )
    add_model_args(p, default=None)
    _head_args(p)
    _prompt_args(p)
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="pairs JSONL to write")
    p.add_argument("--overwrite", action="store_true", help="replace a finished pairs file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run_pairs)

    p = sub.add_parser(
        "train",
        help="DPO on a pairs file (TRL; full fine-tuning or --lora)",
        description="Train MODEL with DPO on --pairs and save the model, tokenizer and training_summary.json "
        "to --out. Several GPUs: run under `accelerate launch` (see retmask_interp.retmask.training).",
    )
    add_model_args(p, default=None, dtype="float32")
    p.add_argument("--pairs", required=True, type=Path, metavar="FILE", help="pairs JSONL (retmask pairs)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output model directory")
    _train_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in DIR")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "retmask",
        help="the whole method: pairs with the heads masked, then DPO (DIR/pairs.jsonl, DIR/model)",
        description="`retmask pairs` into DIR/pairs.jsonl (reused when finished), then `retmask train` into "
        "DIR/model. Large models: run the two steps separately (pairs in bf16 or with vLLM, training under "
        "DeepSpeed).",
    )
    add_model_args(p, default=None, dtype="float32")
    _head_args(p)
    _prompt_args(p)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    _train_args(p)
    p.add_argument("--overwrite", action="store_true", help="redo pairs and training in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run_retmask)

    p = sub.add_parser(
        "evaluate",
        help="long-context suite (recall, RAG, re-ranking, citations, perplexity) at chosen lengths",
        description="Generate the suite's examples at every --lengths, decode greedily, score, and write one "
        "row per example to --out (.csv or .jsonl) and the means with bootstrap CIs to OUT.summary.csv.",
    )
    add_model_args(p, default=None)
    p.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="per-example results (.csv/.jsonl)"
    )
    p.add_argument(
        "--tasks", nargs="+", default=None, help="niah multi_needle json_kv rag_qa rerank cite text"
    )
    p.add_argument("--lengths", type=positive_int, nargs="+", default=[1024, 2048], help="context lengths")
    p.add_argument(
        "--length-unit", choices=["tokens", "words"], default="tokens", help="what --lengths count"
    )
    p.add_argument(
        "--ppl-length",
        type=nonnegative_int,
        default=512,
        help="length of the perplexity texts (0: --lengths)",
    )
    p.add_argument("--n-per-cell", type=positive_int, default=20, help="examples per task and length")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the generated examples")
    p.add_argument("--batch-size", type=positive_int, default=4, help="examples decoded together")
    _head_args(p, required=False)
    p.add_argument("--overwrite", action="store_true", help="replace a finished --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "compare",
        help="paired before/after table of two `retmask evaluate` results",
        description="Pair the examples of two `retmask evaluate` CSVs (before and after training) and print the "
        "mean change per task and length with a 95 %% paired bootstrap interval.",
    )
    p.add_argument("before", type=Path, metavar="BEFORE", help="`retmask evaluate` CSV of the model before")
    p.add_argument("after", type=Path, metavar="AFTER", help="`retmask evaluate` CSV of the model after")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the table as CSV")
    p.add_argument("--by", nargs="+", default=["task", "length"], help="grouping columns")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run_compare)


# -- commands ----------------------------------------------------------------------------------------------------
def run_pairs(args) -> int:
    from retmask_interp.retmask.pairs import make_pairs, pair_paths

    paths = pair_paths(args.out)
    for path in (paths.pairs, paths.dropped, paths.stats):
        check_writable(path, "pairs output (--out)")
    lock_outputs(args, paths.pairs, what="pairs file")
    check_model_args(args)
    prompts = _prompts(args)  # read (strictly) before the model is loaded
    rm = load_from_args(args)
    stats = make_pairs(
        rm,
        prompts,
        _heads(args, rm),
        args.out,
        config=_pairs_config(args),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    log.info(
        "kept %d of %d pairs (dropped: %s) -> %s", stats.kept, stats.total_prompts, stats.dropped, args.out
    )
    return 0


def _main_process() -> bool:
    """Not a secondary rank of ``accelerate launch`` / torchrun (the main process holds the run lock for all)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _launcher_device(args) -> None:
    """Under ``accelerate launch`` / torchrun (WORLD_SIZE > 1), ``--device auto`` is this rank's own GPU.

    Otherwise ``load_model`` would put every rank's model on GPU 0 or, with several GPUs visible, spread it over all
    of them (``device_map="auto"``), which data-parallel training cannot take.
    """
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or args.device != "auto":
        return
    import torch

    args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"


def run_train(args) -> int:
    from retmask_interp.retmask.training import load_pairs_dataset, train_dpo

    check_writable(args.out / "training_summary.json", "training output (--out)")
    lock_outputs(args, args.out if _main_process() else None, what="training output")
    check_model_args(args)
    _launcher_device(args)
    load_pairs_dataset(args.pairs)  # a bad pairs file fails here, before the model is loaded
    rm = load_from_args(args)
    summary = train_dpo(
        rm, None, args.pairs, args.out, _dpo_settings(args), overwrite=args.overwrite, resume=args.resume
    )
    log.info("trained %d steps on %d pairs -> %s", summary["optimizer_steps"], summary["num_pairs"], args.out)
    return 0


def run_retmask(args) -> int:
    from retmask_interp.retmask.pairs import make_pairs, pair_paths
    from retmask_interp.retmask.training import train_dpo

    pairs = args.out / "pairs.jsonl"
    check_writable(pairs, "pairs output (--out)")
    lock_outputs(args, args.out if _main_process() else None, what="RetMask output")
    check_model_args(args)
    fresh = args.overwrite or not pair_paths(pairs).stats.exists()
    prompts = _prompts(args) if fresh else None  # read (strictly) before the model is loaded
    rm = load_from_args(args)
    if fresh:
        make_pairs(
            rm,
            prompts,
            _heads(args, rm),
            pairs,
            config=_pairs_config(args),
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    else:
        log.info("reusing the finished pairs in %s", pairs)
    summary = train_dpo(
        rm, None, pairs, args.out / "model", _dpo_settings(args), overwrite=args.overwrite, resume=args.resume
    )
    log.info("RetMask done: %d steps -> %s", summary["optimizer_steps"], args.out / "model")
    return 0


def _write_table(df, path: Path, overwrite: bool) -> None:
    from retmask_interp.core.io import atomic_write_text, refuse_overwrite

    refuse_overwrite(path, overwrite, "table")
    if path.suffix.lower() in (".jsonl", ".json"):
        atomic_write_text(path, df.to_json(orient="records", lines=True))
    else:
        atomic_write_text(path, df.to_csv(index=False))


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with `retmask evaluate`")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the table written by `retmask evaluate --out`")
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        raise ValueError(
            f"{path} is not a table of `retmask evaluate` ({str(err).splitlines()[0]}); give the file written by "
            "`retmask evaluate --out`"
        ) from None


def run_evaluate(args) -> int:
    from retmask_interp.core.io import refuse_overwrite
    from retmask_interp.retmask.evaluation import DEFAULT_TASKS, evaluate, summarize

    summary_path = args.out.with_name(args.out.stem + ".summary.csv")
    check_writable(args.out, "evaluation results (--out)")  # first: a directory is named as such
    refuse_overwrite(args.out, args.overwrite, "evaluation")  # check before hours of decoding
    refuse_overwrite(summary_path, args.overwrite, "evaluation summary (another run's?)")
    lock_outputs(args, args.out, what="evaluation results")
    if not args.heads and (args.top_k is not None or args.threshold is not None):
        raise ValueError("--top-k / --threshold need --heads")
    check_model_args(args)
    rm = load_from_args(args)
    heads = _heads(args, rm) if args.heads else ()
    df = evaluate(
        rm,
        tasks=args.tasks or DEFAULT_TASKS,
        lengths=args.lengths,
        n_per_cell=args.n_per_cell,
        seed=args.seed,
        batch_size=args.batch_size,
        length_unit=args.length_unit,
        ppl_length=args.ppl_length or None,
        heads=heads,
        mode=args.mode,
        progress=not args.no_progress,
    )
    _write_table(df, args.out, args.overwrite)
    _write_table(summarize(df), summary_path, args.overwrite)
    log.info("%d examples -> %s (means: %s)", len(df), args.out, summary_path)
    return 0


def run_compare(args) -> int:
    from retmask_interp.retmask.evaluation import compare

    before, after = _read_table(args.before), _read_table(args.after)
    for path, df in ((args.before, before), (args.after, after)):
        cols = {str(c) for c in df.columns}
        lacking = sorted({"task", "length", "index", "score"} - cols)
        if lacking:
            raise ValueError(
                f"{path} lacks the columns {lacking} (it has {sorted(cols)}): compare needs two tables "
                "written by `retmask evaluate --out`"
            )
        unknown = [c for c in args.by if c not in cols]
        if unknown:
            raise ValueError(
                f"--by {' '.join(unknown)}: no such column in {path}; its columns: {sorted(cols)}"
            )
    if args.out:
        check_writable(args.out, "comparison table (--out)")
        from retmask_interp.core.io import refuse_overwrite

        refuse_overwrite(args.out, args.overwrite, "table")
    table = compare(before, after, by=args.by)
    if args.out:
        _write_table(table, args.out, args.overwrite)
    else:
        import sys

        sys.stdout.write(table.to_string(index=False) + "\n")
    return 0
