"""``retmask detect``, ``retmask heads``, ``retmask demo``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from retmask_interp._cli.options import add_config_arguments, config_from_args
from retmask_interp._cli.validate import (
    check_device,
    check_model_source,
    check_writable,
    finite_float,
    json_object,
    lock_outputs,
    nonnegative_int,
    percent,
    positive_int,
)
from retmask_interp.core.architectures import ATTN_IMPLEMENTATIONS  # light: no torch


def model_help(default: str | None = None, *, tail: bool = True) -> str:
    """The help of --model in every command: what names a model, with the real models the package installs (and
    the default, unless ``tail`` is off: a generated option adds its own)."""
    from retmask_interp.core.real_models import real_model_names

    names = ", ".join(real_model_names())
    end = (f" (default {default})" if default else " (required)") if tail else ""
    return (
        "hub name, local path, .gguf file, 'organism' or 'organism:distributed' (the embedded organisms), or a "
        f"real model the package installs (scripts/setup.sh): {names}{end}"
    )


class _PositionalModel(argparse.Action):
    """The deprecated positional MODEL: sets ``model`` too, unless --model was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            return
        namespace.model_positional = values
        if getattr(namespace, "model_given", None) is None:
            namespace.model = values


class _ModelOption(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        namespace.model = namespace.model_given = values


def add_model_option(p: argparse.ArgumentParser, default: str | None = "organism") -> None:
    """``--model NAME``, the one way every command takes its model; the old positional MODEL still works, with a
    deprecation message (``resolve_model_option``, called by ``cli.main``)."""
    p.add_argument(
        "model_positional", nargs="?", default=None, metavar="MODEL", action=_PositionalModel,
        help="deprecated: use --model",
    )  # fmt: skip
    p.add_argument("--model", default=default, metavar="NAME", action=_ModelOption, help=model_help(default))
    p.set_defaults(model_given=None)


def resolve_model_option(args, command: str) -> None:
    """The deprecated positional MODEL gets a message on stderr; an error when it and --model disagree, or when a
    command that needs a model got none."""
    if not hasattr(args, "model_positional"):
        return
    positional, given = args.model_positional, args.model_given
    if positional is not None:
        if given is not None and given != positional:
            raise ValueError(
                f"the model is given twice ({positional!r} and --model {given!r}); give --model only"
            )
        print(
            f"retmask {command}: giving the model as a positional argument is deprecated; use --model {positional}",
            file=sys.stderr,
        )
        args.model = positional
    if args.model is None:
        raise ValueError(f"retmask {command} needs a model: --model NAME (see retmask {command} --help)")


def add_model_args(p: argparse.ArgumentParser, default: str | None = "organism", dtype: str = "auto") -> None:
    """--model (the old positional MODEL still works, deprecated), --device, --dtype, --revision,
    --attn-implementation; see load_from_args."""
    add_model_option(p, default)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: a GPU if there is one)")
    p.add_argument(
        "--dtype",
        default=dtype,
        help=f"auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16 ({dtype})",
    )
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument(
        "--attn-implementation",
        default=None,
        choices=ATTN_IMPLEMENTATIONS,
        help="sdpa (default), eager, flash_attention_2, ...",
    )


def add_grid_args(p: argparse.ArgumentParser, *, lengths=(0, 5000, 20), depths: int = 10) -> None:
    g = p.add_argument_group("NIAH grid")
    g.add_argument(
        "--haystack",
        default=["synthetic"],
        help="a .txt file, a directory of .txt files, or "
        "'synthetic[:SEED]' (built-in generator); several paths = one per needle (default: synthetic)",
        nargs="+",
    )
    g.add_argument(
        "--needles", default=None, help="needles JSONL (needle, question, real_needle); default: ours"
    )
    g.add_argument(
        "--lengths",
        type=positive_int,
        nargs="+",
        default=None,
        help="total prompt lengths in tokens (overrides --min/--max/--num-lengths)",
    )
    g.add_argument("--min-length", type=nonnegative_int, default=lengths[0], help="shortest prompt in tokens")
    g.add_argument("--max-length", type=nonnegative_int, default=lengths[1], help="longest prompt in tokens")
    g.add_argument(
        "--num-lengths", type=positive_int, default=lengths[2], help="lengths evenly spaced from min to max"
    )
    g.add_argument("--depths", type=percent, nargs="+", default=None, help="needle depths in percent")
    g.add_argument(
        "--num-depths", type=positive_int, default=depths, help="round(linspace(0, 100, N)) depths (Wu: 10)"
    )
    g.add_argument(
        "--prompt-style",
        choices=["chat", "qa", "continuation"],
        default="chat",
        help="chat: the chat template (instruct models); qa or continuation: base models",
    )
    g.add_argument(
        "--chat-template-kwargs",
        type=json_object,
        default=None,
        metavar="JSON",
        help="extra chat-template arguments, e.g. '{\"enable_thinking\": false}' for Qwen3",
    )
    g.add_argument(
        "--allow-overflow", action="store_true", help="allow prompts longer than the model's window"
    )
    g.add_argument("--repeat-haystack", action="store_true", help="repeat a haystack that is too short")


def niah_config_from_args(args):
    from retmask_interp.data.niah import NIAHConfig, linspace_lengths, wu_depths

    lengths = args.lengths or linspace_lengths(args.min_length, args.max_length, args.num_lengths)
    depths = args.depths if args.depths is not None else wu_depths(args.num_depths)
    haystack = args.haystack[0] if len(args.haystack) == 1 else list(args.haystack)
    return NIAHConfig(
        haystack=haystack,
        needles=args.needles,
        lengths=lengths,
        depths=depths,
        style=args.prompt_style,
        allow_overflow=args.allow_overflow,
        repeat_haystack=args.repeat_haystack,
        chat_template_kwargs=args.chat_template_kwargs,
    )


def check_model_args(args) -> None:
    """The device and the model name, checked before anything is loaded (see ``_cli.validate``)."""
    check_device(args.device)
    check_model_source(str(args.model), getattr(args, "revision", None))


def load_from_args(args):
    from retmask_interp.core.models import load_model

    check_model_args(args)
    return load_model(
        args.model,
        dtype=args.dtype,
        device=args.device,
        revision=args.revision,
        attn_implementation=args.attn_implementation,
    )


def register(sub) -> None:
    p = sub.add_parser(
        "detect",
        help="retrieval scores of every head on a NIAH grid (Wu et al.)",
        description="Greedy-decode NIAH samples and score every head's copy-paste hits. Resumable: "
        "finished samples go to --save-samples (default OUT.samples.jsonl) as they are scored, and "
        "a re-run continues from there. Under torchrun (WORLD_SIZE > 1) each rank scores a slice of the grid "
        "into its own samples file and rank 0 merges them into OUT.",
    )
    add_model_args(p)
    p.add_argument("--out", required=True, type=Path, help="head list JSON to write")
    add_grid_args(p)
    from retmask_interp.measure.detect import DetectConfig

    add_config_arguments(p.add_argument_group("detection"), DetectConfig)
    p.add_argument(
        "--save-samples",
        type=Path,
        default=None,
        help="per-sample JSONL (token ids, span, generation, ROUGE, hits); default OUT.samples.jsonl",
    )
    p.add_argument("--format", choices=["retmask", "wu"], default="retmask", help="head-file format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing head file and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run_detect)

    h = sub.add_parser(
        "heads",
        help="print the top heads of a head list (ours, Wu's, DuoAttention, CSV, YAML), or convert it (--export)",
        description="Print the top heads of a head list in any supported format, or convert it to another "
        "tool's format with --export PATH (the format from the suffix: .json ours, .tsv DuoAttention, .yaml QRHead, "
        ".csv; --format wu for Wu et al.'s JSON).",
    )
    h.add_argument(
        "file", type=Path, help="a head-list file, or the name of a shipped one (smollm2-135m-instruct)"
    )
    h.add_argument(
        "--top",
        type=nonnegative_int,
        default=None,
        help="rows to print (default: 20, or every head if fewer)",
    )
    h.add_argument("--threshold", type=finite_float, default=None, help="only heads with score >= this")
    h.add_argument(
        "--group-size",
        type=positive_int,
        default=None,
        help="DuoAttention files: query heads per KV head (gates are expanded to query heads)",
    )
    h.add_argument(
        "--num-layers", type=positive_int, default=None, help="the model's layers (files without a shape)"
    )
    h.add_argument("--num-heads", type=positive_int, default=None, help="the model's query heads per layer")
    h.add_argument(
        "--export", type=Path, default=None, metavar="PATH", help="write the list to PATH (see above)"
    )
    h.add_argument(
        "--format",
        choices=["retmask", "wu", "duo", "qrhead", "csv"],
        default=None,
        help="the --export format when the suffix does not say it (wu: Wu et al.'s JSON)",
    )
    h.add_argument(
        "--num-kv-heads", type=positive_int, default=None, help="--export to DuoAttention: KV heads per layer"
    )
    h.add_argument(
        "--top-k", type=positive_int, default=None, help="--export to QRHead: the k best heads only"
    )
    h.add_argument("--overwrite", action="store_true", help="replace an existing --export file")
    h.set_defaults(func=run_heads)

    d = sub.add_parser(
        "demo",
        help="the end-to-end demo on the embedded organism (or --model)",
        description="Detect the retrieval heads of MODEL on a held-out NIAH grid, mask them, and compare NIAH "
        "success unmasked / retrieval heads masked / as many random heads masked; writes the head list, figures, "
        "report.md and summary.json to --out.",
    )
    d.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    from retmask_interp.workflows.demo import DemoConfig

    add_config_arguments(d, DemoConfig, helps={"model": model_help(tail=False)})
    d.set_defaults(func=run_demo)


def _distributed(args) -> tuple[int, int, object]:
    """(rank, world size, barrier) under torchrun / accelerate launch; (0, 1, None) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if args.device == "auto" and torch.cuda.is_available():
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return dist.get_rank(), dist.get_world_size(), dist.barrier


def run_detect(args) -> int:
    from retmask_interp.core.io import refuse_overwrite
    from retmask_interp.heads.scores import save_head_scores
    from retmask_interp.measure.detect import DetectConfig, check_samples_file, detect_heads, shard_path

    check_writable(
        args.out, "head list (--out)"
    )  # first: a directory is named as such, not as a finished run
    refuse_overwrite(args.out, args.overwrite, "head list")
    check_model_args(args)
    rank, world, barrier = _distributed(args)
    samples_path = args.save_samples or args.out.with_name(args.out.name + ".samples.jsonl")
    own_samples = shard_path(samples_path, rank, world) if world > 1 else samples_path
    check_writable(own_samples, "samples file (--save-samples)")
    lock_outputs(args, args.out if rank == 0 else None, own_samples, what="detection output")
    check_samples_file(own_samples)  # never append to, or delete, a file that is not ours
    if args.overwrite:
        own_samples.unlink(missing_ok=True)
    niah = niah_config_from_args(args)
    inputs = niah.check()  # haystack and needles readable: before the model is loaded
    rm = load_from_args(args)
    if rm.tokenizer is None:
        raise ValueError(f"{args.model} has no tokenizer; detection needs one to build NIAH prompts")
    samples = niah.build(rm.tokenizer, max_context=rm.max_context)
    if not samples:
        raise ValueError(
            "the NIAH grid is empty: every length is below the needles' minimum prompt; give longer --lengths "
            "(or --min-length / --max-length)"
        )
    config = config_from_args(DetectConfig, args)
    params = {
        "haystack": niah.haystack,
        "needles": niah.needles or "retmask_interp default",
        "lengths": niah.lengths,
        "depths": niah.depths,
        "prompt_style": niah.style,
    }
    hs = detect_heads(
        rm, samples, config, samples_path=samples_path, progress=not args.no_progress and rank == 0,
        params=params, shard=(rank, world), barrier=barrier, inputs=inputs,
    )  # fmt: skip
    if rank != 0:  # rank 0 writes the merged head list
        return 0
    save_head_scores(hs, args.out, overwrite=args.overwrite, format=args.format)
    rule = (
        f"ROUGE-1 recall > {config.rouge_threshold}"
        if config.rouge_threshold > 0
        else "success filter disabled"
    )
    print(f"{hs.num_counted}/{hs.num_samples} samples counted ({rule})")
    print(format_head_table(hs, top=10))
    print(f"wrote {args.out} (per-sample results: {samples_path})")
    return 0


def load_any(path: Path, **kwargs):
    from retmask_interp.heads.formats import load_any_head_list

    return load_any_head_list(path, **kwargs)


def format_head_table(hs, top: int = 20, threshold: float | None = None) -> str:
    rows = hs.ranked()
    if threshold is not None:
        rows = [r for r in rows if r[2] >= threshold]
    rows = rows[:top]
    lines = [f"{'rank':>4}  {'layer':>5}  {'head':>4}  {'score':>7}"]
    lines += [f"{i + 1:>4}  {layer:>5}  {head:>4}  {s:>7.4f}" for i, (layer, head, s) in enumerate(rows)]
    return "\n".join(lines)


def run_heads(args) -> int:
    hs = load_any(args.file, group_size=args.group_size, num_layers=args.num_layers, num_heads=args.num_heads)
    if args.export is not None:
        from retmask_interp.heads.formats import export_head_list

        path = export_head_list(
            hs, args.export, format=args.format, overwrite=args.overwrite, num_kv_heads=args.num_kv_heads,
            top_k=args.top_k,
        )  # fmt: skip
        print(f"wrote {path} ({hs.num_layers} layers x {hs.num_heads} heads of {hs.model or args.file.name})")
        return 0
    n = hs.num_layers * hs.num_heads
    if args.top is None:  # a default never fails: 20 rows, or every head of a smaller list
        args.top = min(20, n)
    if args.top > n:
        raise ValueError(f"--top {args.top} is more than the {n} heads in {args.file}; use --top {n} or less")
    counted = f", {hs.num_counted} counted samples" if hs.num_counted is not None else ""
    print(
        f"{hs.model or args.file.name}: {hs.num_layers} layers x {hs.num_heads} heads ({hs.method}{counted})"
    )
    for t in (0.1, 0.3):
        print(f"heads with score >= {t}: {len(hs.above(t))}")
    print(format_head_table(hs, args.top, args.threshold))
    return 0


def run_demo(args) -> int:
    from retmask_interp.workflows.demo import DemoConfig
    from retmask_interp.workflows.demo import run_demo as demo

    config = config_from_args(DemoConfig, args)  # a bad value fails here, before anything is locked or loaded
    check_writable(args.out / "summary.json", "demo output (--out)")
    check_device(config.device)
    check_model_source(config.model)  # a misspelt name fails here, not after a minute of hub retries
    lock_outputs(args, args.out, what="demo output")
    summary = demo(args.out, config)
    print(summary["table"], file=sys.stdout)
    return 0
