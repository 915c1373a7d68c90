"""The RetMask study on a real instruct model (issue 13): prompts -> pairs -> DPO (lr sweep, seeds) -> evaluation ->
one score CSV -> tables and a Markdown report, as resumable stages (``core.stages``) in one output directory.

``config`` (settings, presets, conditions), ``inputs`` (prompts, head sets), ``sampling`` (responses, pairs),
``training`` (reference, DPO runs, the lr criterion), ``evaluation``, ``report``, ``run`` (the order of the stages).
Command line: ``retmask study retmask --help``; GPU staging: ``studies/smollm2_retmask/RUNBOOK.md``.
"""

from retmask_interp.core.stages import StageMismatch
from retmask_interp.workflows.studies.retmask.config import (
    CONDITION_SIDES,
    LONG_TASKS,
    PRESETS,
    SIDES,
    STAGES,
    Side,
    StudyConfig,
)
from retmask_interp.workflows.studies.retmask.run import remove_run, run_study
from retmask_interp.workflows.studies.retmask.training import choose_lr, run_name

__all__ = [
    "CONDITION_SIDES",
    "LONG_TASKS",
    "PRESETS",
    "SIDES",
    "STAGES",
    "Side",
    "StageMismatch",
    "StudyConfig",
    "choose_lr",
    "remove_run",
    "run_name",
    "run_study",
]
