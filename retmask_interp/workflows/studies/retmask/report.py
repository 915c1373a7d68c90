"""The RetMask study's report (always redone): ``scores.csv`` (every evaluated model's rows), ``tables.json``
(``retmask.report.study_tables`` of the CSV as written), ``study.json`` and ``README.md`` in ``report_dir``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from retmask_interp.core.io import atomic_write_json, atomic_write_text
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import StudyConfig

__all__ = ["setup_lines", "write_report"]


def setup_lines(config: StudyConfig, extra: dict) -> list[str]:
    """The report's description of the run, from its settings and results."""
    return [
        f"model `{config.model}`, device `{config.device}`; heads `{config.heads}` (score >= {config.head_threshold}): "
        f"{len(extra['heads']['retmask'])} retrieval heads, random control {len(extra['heads']['random'])} heads "
        f"({'per-layer matched' if config.random_layers == 'matched' else 'from layers without retrieval heads'}, "
        f"seed {config.random_seed})",
        f"pairs: temperature {config.temperature}, top-p {config.top_p}, at most {config.max_new_tokens} new tokens, "
        f"zero masking, seed {config.pair_seed} on both sides (self-DPO: {config.pair_seed} vs "
        f"{config.pair_seed + config.self_seed_offset})",
        f"DPO (TRL, full fine-tuning): sigmoid, beta {config.beta}, cosine, warmup 0.1, weight decay 0.1, "
        f"{config.epochs:g} epochs, effective batch {config.effective_batch_size}; lr sweep {list(config.lrs)} "
        f"(seed {config.sweep_seed}) -> lr {extra['chosen_lr']:g}; seeds {list(config.seeds)}",
        f"evaluation: {', '.join(config.tasks)} at {list(config.lengths)} tokens, {config.n_per_cell} examples "
        f"per cell (eval seed {config.eval_seed}); short_qa and ppl_texts",
        "lr criterion: highest held-out DPO reward accuracy on held-out RetMask pairs (ties: margin, smaller lr) "
        f"among lrs whose held-out perplexity rose <= {config.max_ppl_increase:.0%}; long-context scores unused",
    ]


def write_report(config: StudyConfig, st: Stages, eval_names: Sequence[str], extra: dict) -> dict:
    """The report of the evaluated models ``eval_names``; ``extra``: the results the report quotes (chosen_lr,
    lr_sweep, dpo, pairs, heads)."""
    import pandas as pd

    from retmask_interp.retmask.report import markdown_report, read_scores, study_tables, write_scores

    report_dir = Path(config.report_dir) if config.report_dir else st.root / "report"
    df = pd.concat([read_scores(st.root / "eval" / f"{n}.csv") for n in eval_names], ignore_index=True)
    write_scores(df, report_dir / "scores.csv")
    df = read_scores(report_dir / "scores.csv")  # the tables come from the CSV as written
    tables = study_tables(df, n_resamples=config.bootstrap)
    atomic_write_json(report_dir / "tables.json", tables)
    timings = st.timings()
    atomic_write_json(
        report_dir / "study.json", extra | {"timings_s": timings, "config": dataclasses.asdict(config)}
    )
    makeup = (st.root / "prompts" / "makeup.md").read_text(encoding="utf-8")
    text = markdown_report(
        tables,
        title=config.title,
        setup=setup_lines(config, extra),
        lr_sweep=extra["lr_sweep"],
        dpo=extra["dpo"],
        pairs=extra["pairs"],
        prompts=makeup,
        timings={k: v for k, v in timings.items() if "/" not in k},
    )
    atomic_write_text(report_dir / "README.md", text)
    return {"report_dir": str(report_dir), "rows": len(df)}
