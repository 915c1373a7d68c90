"""The real-model study (issue 9): retrieval heads of one pretrained model, end to end, as resumable stages
(``core.stages``) in one output directory.

1. ``detection``: Wu et al.'s copy-paste detection on a NIAH grid within the model's window, for every haystack x
   prompt style in the primary dtype and for every other dtype on the primary haystack and style; per condition a
   samples JSONL and a head list. The stability of each ranking against the primary one (``analysis.metrics.
   agreement``); the primary head list is ``heads.json``.
2. ``masking``: NIAH success unmasked, with the retrieval heads (score >= threshold) masked, with as many random
   non-retrieval heads (``seeds`` seeds) and as many per-layer-matched random heads, for every masking mode, with
   95% confidence intervals.
3. ``topk``: the top-k curve against k random heads.
4. ``attention``: which heads compensate when the retrieval heads are masked, and every (or the top-n) head's
   single-head masking effect against its retrieval score.
5. ``organisation``: ``analysis.metrics.organization_metrics`` of every detection condition's head list.

``config`` (settings, grid presets), ``grid`` (the NIAH grid, spread subsets), ``detection``, ``masking`` (masking,
top-k, attention), ``summary`` (``summary.{json,md}``, ``load_study_results``), ``run`` (the order of the stages).
Command line: ``retmask study real-model --help``.
"""

from retmask_interp.core.stages import StageMismatch
from retmask_interp.workflows.studies.real_models.config import (
    GRIDS,
    MODES,
    STAGES,
    StudyConfig,
    StudyConfigError,
    detection_conditions,
    resolve_config,
    tag,
)
from retmask_interp.workflows.studies.real_models.detection import organisation, stability
from retmask_interp.workflows.studies.real_models.grid import spread_subset
from retmask_interp.workflows.studies.real_models.run import run_study
from retmask_interp.workflows.studies.real_models.summary import load_study_results, write_summary

__all__ = [
    "GRIDS",
    "MODES",
    "STAGES",
    "StageMismatch",
    "StudyConfig",
    "StudyConfigError",
    "detection_conditions",
    "load_study_results",
    "organisation",
    "resolve_config",
    "run_study",
    "spread_subset",
    "stability",
    "tag",
    "write_summary",
]
