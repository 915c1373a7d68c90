"""The real-model study's detection (stage ``detect/TAG`` per haystack x style x dtype): Wu et al.'s copy-paste
detection on the condition's NIAH grid, a samples JSONL (detection resumes from it sample by sample) and a head
list; and what is read off the head lists: the stability of each ranking against the primary one, and the
organisation of every list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.real_models.config import StudyConfig, grid_lengths, tag
from retmask_interp.workflows.studies.real_models.grid import build_samples

__all__ = ["detection_settings", "organisation", "stability", "stage_detection"]

log = logging.getLogger(__name__)


def detection_settings(cfg: StudyConfig, haystack: str, style: str, dtype: str) -> dict[str, Any]:
    """What a detection condition's head list depends on."""
    keys = ("model", "model_name", "device", "grid", "min_length", "max_length", "num_lengths", "num_depths",
            "needles", "max_new_tokens", "batch_size")  # fmt: skip
    return {k: getattr(cfg, k) for k in keys} | {"haystack": haystack, "style": style, "dtype": dtype}


def stage_detection(
    st: Stages, cfg: StudyConfig, haystack: str, style: str, dtype: str, model: Callable[[str], Any]
):
    """Detection of one condition into ``detect/TAG.samples.jsonl`` and ``detect/TAG.heads.json``; returns the head
    list (read back when the stage is finished: then no model is loaded)."""
    from retmask_interp.heads.scores import load_head_scores, save_head_scores
    from retmask_interp.measure.detect import DetectConfig, detect_heads

    name = tag(haystack, style, dtype)
    heads_path = f"detect/{name}.heads.json"

    def run(ctx) -> dict:
        rm = model(dtype)
        samples = build_samples(rm, cfg, haystack, style)
        log.info("detection %s: %d samples", name, len(samples))
        det = DetectConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size or 1)
        params = {
            "haystack": haystack,
            "style": style,
            "dtype": dtype,
            "lengths": grid_lengths(cfg),
            "num_depths": cfg.num_depths,
            "needles": cfg.needles,
            "grid": cfg.grid,
            "stop": det.stop,
            "rouge": det.rouge,
            "workflow": "retmask_interp.workflows.studies.real_models (retmask study real-model)",
        }
        ctx.path("detect").mkdir(parents=True, exist_ok=True)
        hs = detect_heads(
            rm, samples, det, samples_path=ctx.path("detect", f"{name}.samples.jsonl"), progress=cfg.progress,
            params=params,
        )  # fmt: skip
        if cfg.model_name:
            hs.model = cfg.model_name
        save_head_scores(hs, ctx.path(heads_path), overwrite=True)
        return {"heads": heads_path, "num_samples": hs.num_samples, "num_counted": hs.num_counted}

    st.run(f"detect/{name}", detection_settings(cfg, haystack, style, dtype), run, outputs=[heads_path])
    return load_head_scores(st.root / heads_path)


def stability(primary, others: dict[str, Any], ks=(5, 10, 20)) -> list[dict[str, Any]]:
    """``agreement`` of every other condition's ranking with the primary one's (Spearman, top-k overlap)."""
    from retmask_interp.analysis.metrics import agreement

    return [{"condition": name} | agreement(primary, hs, k=ks) for name, hs in others.items()]


def organisation(named: dict[str, Any]) -> dict[str, Any]:
    """``analysis.metrics.organization_metrics`` of every detection condition's head list."""
    from retmask_interp.analysis.metrics import organization_metrics

    return {name: organization_metrics(hs) for name, hs in named.items()}
