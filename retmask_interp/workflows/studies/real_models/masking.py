"""The real-model study's interventions on the primary grid: NIAH success with the retrieval heads masked against
as many random (and per-layer matched) heads in every masking mode (stages ``masking/MODE``, ``masking/summary``),
the top-k curve (``topk``), and which heads compensate and what each head's masking costs (``attention/*``).

Each stage keeps its finished conditions (or heads) in a checkpoint (its unit checkpoint; ``masking/MODE.partial.
jsonl`` for a masking mode) until its table is written, so an interrupted stage resumes where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json, atomic_write_text
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.real_models.config import SUBSET_RULE, StudyConfig

__all__ = ["read_csv", "stage_attention", "stage_masking", "stage_topk", "write_csv"]

log = logging.getLogger(__name__)


def write_csv(df, path: Path) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _settings(cfg: StudyConfig, *keys: str) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in ("max_new_tokens", "masking_batch_size", *keys)} | {
        "subset_rule": SUBSET_RULE
    }


def stage_masking(
    st: Stages,
    cfg: StudyConfig,
    rm: Callable[[], Any],
    samples: Callable[[], list],
    retrieval: list,
    after: dict,
) -> None:
    """Per-sample outcomes of every mode x condition (unmasked, retrieval, random#i, matched#i:
    ``measure.experiment.retrieval_vs_random``) in ``masking/MODE.csv`` (a stage per mode), then all of them in
    ``masking_outcomes.csv`` and their summary (mean and 95% CI per mode x kind) in ``masking_summary.csv``."""
    from retmask_interp.measure.experiment import ExperimentConfig, grid_mean_values, retrieval_vs_random
    from retmask_interp.measure.outcomes import summarize_outcomes

    seeds = cfg.seeds
    assert seeds
    base = _settings(cfg, "threshold", "seeds", "masking_samples")
    for mode in cfg.modes:

        def run(ctx, mode=mode) -> dict:
            model, subset = rm(), samples()
            exp = ExperimentConfig(
                modes=(mode,), seeds=seeds, controls=("random", "matched"), max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.masking_batch_size or 8,
            )  # fmt: skip
            # mode mean: the per-head means over the subset, as every mode's conditions see it
            means = grid_mean_values(model, subset) if mode == "mean" else None
            res = retrieval_vs_random(
                model, subset, retrieval, exp, checkpoint_dir=ctx.path("masking"), mean_values=means,
                progress=cfg.progress,
            )  # fmt: skip
            write_csv(res.table, ctx.path("masking", f"{mode}.csv"))
            ctx.path("masking", f"{mode}.partial.jsonl").unlink(
                missing_ok=True
            )  # its rows are in the CSV now
            return {"conditions": len(res.conditions), "samples": len(subset)}

        st.run(f"masking/{mode}", base | {"mode": mode}, run, after=after, outputs=[f"masking/{mode}.csv"])

    def combine(ctx) -> dict:
        import pandas as pd

        outcomes = pd.concat(
            [read_csv(ctx.path("masking", f"{m}.csv")) for m in cfg.modes], ignore_index=True
        )
        summary = summarize_outcomes(
            outcomes, by=("mode", "kind"), metrics=("success", "rouge", "answer_logprob")
        )
        write_csv(outcomes, ctx.path("masking_outcomes.csv"))
        write_csv(summary, ctx.path("masking_summary.csv"))
        return {"rows": len(outcomes)}

    by_mode = {"by_mode": [f"masking/{m}" for m in cfg.modes]}
    outputs = ["masking_outcomes.csv", "masking_summary.csv"]
    st.run("masking/summary", {"modes": list(cfg.modes)}, combine, after=by_mode, outputs=outputs)


def stage_topk(
    st: Stages, cfg: StudyConfig, rm: Callable[[], Any], samples: Callable[[], list], hs, after: dict
) -> None:
    """The top-k curve (zero mode): ``topk_curve.csv`` and its per-sample ``topk_outcomes.csv``."""
    from retmask_interp.measure.outcomes import topk_curve

    def run(ctx) -> dict:
        model = rm()
        assert cfg.ks and cfg.topk_seeds
        n_heads = model.geometry.num_layers * model.geometry.num_heads
        ks = [0] + [k for k in cfg.ks if k <= n_heads]
        curve, outcomes = topk_curve(
            model, samples(), hs, ks, n_random=cfg.topk_seeds, return_outcomes=True, mode="zero",
            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.masking_batch_size or 8, checkpoint=ctx.units_path,
        )  # fmt: skip
        write_csv(outcomes, ctx.path("topk_outcomes.csv"))
        write_csv(curve, ctx.path("topk_curve.csv"))
        return {"ks": ks}

    settings = _settings(cfg, "ks", "topk_seeds", "masking_samples")
    st.run("topk", settings, run, after=after, outputs=["topk_outcomes.csv", "topk_curve.csv"])


def stage_attention(
    st: Stages,
    cfg: StudyConfig,
    rm: Callable[[], Any],
    samples: Callable[[], list],
    hs,
    retrieval: list,
    after: dict,
) -> None:
    """Compensation when the retrieval heads are masked (zero mode; ``compensation.csv``) and each head's
    single-head masking effect against its retrieval score (``single_head_effects.csv`` / ``.json``)."""
    from retmask_interp.measure.attention import compensation, single_head_effects

    def comp(ctx) -> dict:
        df = compensation(rm(), samples(), retrieval, mode="zero", batch_size=cfg.masking_batch_size or 8)
        write_csv(df, ctx.path("compensation.csv"))
        return {"rows": len(df)}

    settings = _settings(cfg, "threshold", "attention_samples")
    st.run("attention/compensation", settings, comp, after=after, outputs=["compensation.csv"])

    def single(ctx) -> dict:
        subset = samples()
        df = single_head_effects(
            rm(),
            subset,
            hs,
            cfg.single_heads,
            batch_size=cfg.masking_batch_size or 8,
            checkpoint=ctx.units_path,
        )
        write_csv(df, ctx.path("single_head_effects.csv"))
        info = {"spearman_score_effect": df.attrs.get("spearman"), **df.attrs, "n_samples": len(subset)}
        atomic_write_json(ctx.path("single_head_effects.json"), info)
        return {"rows": len(df)}

    settings = _settings(cfg, "single_heads", "attention_samples")
    outputs = ["single_head_effects.csv", "single_head_effects.json"]
    st.run("attention/single_heads", settings, single, after=after, outputs=outputs)
