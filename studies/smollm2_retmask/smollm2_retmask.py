"""RetMask on SmolLM2-135M-Instruct (issue 13), from the prompt set to the report, as one resumable command.

    python studies/smollm2_retmask/smollm2_retmask.py --heads studies/smollm2_retmask/heads_2026-11-28.json \\
        --out runs/smollm2_retmask --report-dir studies/smollm2_retmask --device cuda

``--preset tiny`` is the CPU proof (16 prompts, 32 new tokens, one lr, 2 seeds, lengths 512/1024, 3 examples per
cell); ``--preset full`` (default) is the issue's protocol. Any option given overrides the preset. Stages and
their files: ``retmask_interp/workflows/studies/retmask/``; GPU staging: studies/smollm2_retmask/RUNBOOK.md.
A finished stage is skipped; a stage whose settings changed is refused with the setting's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing

from retmask_interp.workflows.studies.retmask import PRESETS, STAGES, StageMismatch, StudyConfig, run_study


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--until", choices=STAGES, default="report", help="stop after this stage")
    hints = typing.get_type_hints(StudyConfig)
    for f in dataclasses.fields(StudyConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kwargs: dict = {"default": None, "help": f"{f.metadata.get('help', '')} (default {f.default!r})"}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs |= {"nargs": "+", "type": typing.get_args(hint)[0]}
        else:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            kwargs["type"] = args[0] if args else hint
        p.add_argument(flag, dest=f.name, **kwargs)
    return p


def config_from_args(argv=None) -> tuple[StudyConfig, str]:
    args = _parser().parse_args(argv)
    values = dict(PRESETS[args.preset])
    values |= {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(StudyConfig)
        if getattr(args, f.name) is not None
    }
    return StudyConfig(**values), args.until


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config, until = config_from_args(argv)
    try:
        res = run_study(config, until=until)
    except StageMismatch as err:
        logging.getLogger("smollm2_retmask").error("%s", err)
        return 2
    summary = {k: res[k] for k in ("prompts", "chosen_lr", "report") if k in res}
    sys.stdout.write(json.dumps(summary, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
