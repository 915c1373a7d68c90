"""``retmask study retmask`` and ``retmask study real-model``: the studies as commands, their options generated
from their config dataclasses (``_cli.options``). Each runs (or resumes) a study into one output directory."""

from __future__ import annotations

import argparse
import json
import sys

from retmask_interp._cli.options import add_config_arguments, config_from_args


def register(sub) -> None:
    from retmask_interp.workflows.studies.real_models.config import StudyConfig as RealConfig
    from retmask_interp.workflows.studies.retmask.config import PRESETS, STAGES
    from retmask_interp.workflows.studies.retmask.config import StudyConfig as RetMaskConfig

    p = sub.add_parser(
        "study",
        help="run or resume a whole study (real-model, retmask) into one directory",
        description="Run a study's stages in order into one directory; a re-run resumes, skipping finished "
        "stages and refusing changed settings by name (retmask study STUDY --help for its options).",
    )
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)

    s = studies.add_parser(
        "retmask",
        help="RetMask on a real instruct model: prompts, pairs, DPO (lr sweep, seeds), evaluation, report",
        description="Prompts -> pairs -> DPO (lr sweep, seeds) -> evaluation -> scores.csv, tables.json and a "
        "README in --report-dir, as resumable stages in --out (retmask_interp.workflows.studies.retmask). A "
        "finished stage is skipped; a stage whose settings changed is refused naming the setting. --preset tiny "
        "is the CPU proof; any option given overrides the preset.",
    )
    s.add_argument("--preset", choices=sorted(PRESETS), default="full", help="(default: full)")
    s.add_argument(
        "--until", choices=STAGES, default="report", help="stop after this stage (default: report)"
    )
    add_config_arguments(s, RetMaskConfig)
    s.set_defaults(func=run_retmask)

    s = studies.add_parser(
        "real-model",
        help="retrieval heads of one pretrained model: detection, masking, top-k, attention, organisation",
        description="Detection on a NIAH grid within the model's window (every haystack x style, every dtype), "
        "masking against random heads in every mode, the top-k curve, compensation and single-head effects, "
        "organisation; resumable stages in --out (retmask_interp.workflows.studies.real_models). Options left "
        "unset come from the --grid preset and the model.",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (resumable)")
    add_config_arguments(s, RealConfig)
    s.set_defaults(func=run_real_model)


def run_retmask(args: argparse.Namespace) -> int:
    from retmask_interp.workflows.studies.retmask import PRESETS, StudyConfig, run_study

    config = config_from_args(StudyConfig, args, PRESETS[args.preset])
    res = run_study(config, until=args.until)
    summary = {k: res[k] for k in ("prompts", "chosen_lr", "report") if k in res}
    sys.stdout.write(json.dumps(summary, indent=1, default=str) + "\n")
    return 0


def run_real_model(args: argparse.Namespace) -> int:
    from retmask_interp.workflows.studies.real_models import StudyConfig, run_study

    summary = run_study(args.out, config_from_args(StudyConfig, args))
    out = {k: summary[k] for k in ("model", "primary_condition", "detection")}
    sys.stdout.write(json.dumps(out, indent=1) + f"\nsummary: {args.out}/summary.md\n")
    return 0
