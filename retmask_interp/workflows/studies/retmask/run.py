"""The RetMask study from the prompt set to the report, as one resumable run (``run_study``).

Stages (``core.stages``; markers in ``<out>/stages``): ``prompts`` and ``heads`` (``inputs``), ``responses/*`` and
``pairs/*`` (``sampling``), ``reference`` and ``train/*`` (``training``: the lr sweep on the ``retmask`` pairs, the
held-out criterion, then every condition and seed at the chosen lr), ``eval/*`` (``evaluation``: the untrained
model and each final run right after its training, so a lost machine costs at most one run's weights), and the
report (``report``, always redone). A finished stage is skipped; one whose settings (or an upstream stage's) changed
is refused naming the setting (``core.stages.StageMismatch``).

Devices: sampling and evaluation run in ``eval_dtype`` (``auto``: bf16 on a GPU, float32 on the CPU); DPO trains
float32 weights with bf16 autocast on a GPU (``training.train_dpo``: bf16 weights would lose lr-1e-6 updates).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import STAGES, StudyConfig
from retmask_interp.workflows.studies.retmask.evaluation import check_eval_fits, eval_run
from retmask_interp.workflows.studies.retmask.inputs import stage_heads, stage_prompts
from retmask_interp.workflows.studies.retmask.models import load
from retmask_interp.workflows.studies.retmask.report import write_report
from retmask_interp.workflows.studies.retmask.sampling import stage_pairs, stage_responses
from retmask_interp.workflows.studies.retmask.training import (
    choose_lr,
    dpo_rows,
    run_name,
    stage_reference,
    train_run,
)

__all__ = ["remove_run", "run_study"]

log = logging.getLogger(__name__)


def run_study(config: StudyConfig, *, until: str = "report") -> dict:
    """Run (or resume) every stage up to and including ``until`` (one of ``STAGES``); returns what was made."""
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}")
    st = Stages(config.out)
    st.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(st.root / "config.last.json", dataclasses.asdict(config))
    stop = STAGES.index(until)
    res: dict[str, Any] = {"prompts": stage_prompts(config, st)}
    if stop < 1:
        return res
    cache: dict[str, Any] = {}

    def model():
        if "rm" not in cache:
            cache["rm"] = load(config)
        return cache["rm"]

    heads = res["heads"] = stage_heads(config, st)
    if stop < 2:
        return res
    res["responses"] = stage_responses(config, st, heads, model)
    if stop < 3:
        return res
    res["pairs"] = stage_pairs(config, st, heads, model)
    cache.clear()
    if stop < 4:
        return res
    reference = stage_reference(config, st)
    sweep = [train_run(config, st, "retmask", lr, config.sweep_seed, reference) for lr in config.lrs]
    lr, sweep_rows = choose_lr(sweep, reference["ppl"], config.max_ppl_increase)
    atomic_write_json(
        st.root / "lr_choice.json", {"chosen_lr": lr, "sweep": sweep_rows, "base_ppl": reference["ppl"]}
    )
    final = config.final_runs()
    if stop < 5:
        runs = [train_run(config, st, c, lr, s, reference) for c, s in final]
        return res | {"chosen_lr": lr, "lr_sweep": sweep_rows, "dpo": dpo_rows(sweep, runs)}
    # each final run is evaluated as soon as it is trained: weights live on one machine for one unit at most
    names = ["none"]
    if not st.done("eval/none"):
        res["longest_prompts"] = check_eval_fits(load(config), config)
    eval_run(config, st, "none", "none", -1, 0.0, None)
    runs = []
    for c, s in final:
        runs.append(train_run(config, st, c, lr, s, reference, need_weights=True))
        name = run_name(c, lr, s)
        eval_run(config, st, name, c, s, lr, str(st.root / "train" / name))
        names.append(name)
    res |= {"chosen_lr": lr, "lr_sweep": sweep_rows, "dpo": dpo_rows(sweep, runs)}
    if stop < 6:
        return res
    if config.only:
        log.info(
            "only %s: the report waits for a run without --only once every final run is evaluated",
            config.only,
        )
        return res
    extra = {k: res[k] for k in ("chosen_lr", "lr_sweep", "dpo", "pairs", "heads")}
    res["report"] = write_report(config, st, names, extra)
    return res


def remove_run(out: str | Path, name: str) -> None:
    """Forget a stage and delete what it made under its name, to redo it: ``remove_run(out, "train/retmask_lr5e-06_s0")``."""
    Stages(out).remove(name, name)
