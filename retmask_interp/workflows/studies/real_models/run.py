"""The real-model study's order of stages (``run_study``) and the loading of its model.

Stages (``core.stages``, markers in ``<out>/stages``): ``detect/TAG`` for every detection condition (primary dtype
first; ``detection``), ``masking/MODE`` and ``masking/summary``, ``topk``, ``attention/compensation`` and
``attention/single_heads`` (``masking``), all on the primary condition's grid and head list, on which they depend:
a new primary head list invalidates them. ``heads.json`` (the primary list), ``stability.json``,
``organisation.json`` and ``summary.{json,md}`` are rebuilt from the stage files at the end of every run.
``config.json`` keeps the resolved settings (``load_study_results`` reads it).

A finished stage is skipped; one whose settings changed is refused naming the setting (``StageMismatch``);
``overwrite=True`` starts the directory afresh. A directory made before the stage runner (``config.json``, no
``stages/``) is resumed when its settings are this run's: its finished result files are adopted as finished stages.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json, settings_diff
from retmask_interp.core.stages import StageMismatch, Stages
from retmask_interp.workflows.studies.real_models.config import (
    StudyConfig,
    detection_conditions,
    fingerprint,
    resolve_config,
    tag,
)
from retmask_interp.workflows.studies.real_models.detection import organisation, stability, stage_detection
from retmask_interp.workflows.studies.real_models.grid import build_samples, spread_subset
from retmask_interp.workflows.studies.real_models.masking import stage_attention, stage_masking, stage_topk
from retmask_interp.workflows.studies.real_models.summary import write_summary

__all__ = ["load", "probe_model", "run_study"]

log = logging.getLogger(__name__)


def load(cfg: StudyConfig, dtype: str):
    from retmask_interp.core.models import load_model

    rm = load_model(cfg.model, device=cfg.device, dtype=dtype)
    if cfg.model_name:
        rm.name = cfg.model_name
    return rm


def probe_model(cfg: StudyConfig):
    """Window, chat template and device of the model, from its config and tokenizer (no weights loaded)."""
    from transformers import AutoConfig, AutoTokenizer

    from retmask_interp.core.models import resolve_device

    if str(cfg.model).startswith("organism"):
        from retmask_interp.core.models import load_model

        rm = load_model(cfg.model, device="cpu")
        return rm.max_context, bool(getattr(rm.tokenizer, "chat_template", None)), False
    from retmask_interp.core.real_models import resolve_real_model

    path = resolve_real_model(cfg.model) or cfg.model
    conf = AutoConfig.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    window = getattr(conf, "max_position_embeddings", None)
    cuda = resolve_device(cfg.device).type == "cuda"
    return window, bool(getattr(tok, "chat_template", None)), cuda


def _open(out: Path, cfg: StudyConfig) -> Stages:
    """The directory's stages: emptied first with ``overwrite``; one made before the stage runner is adopted when
    its ``config.json`` holds this run's settings and refused, naming them, when not."""
    if cfg.overwrite and out.exists():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    old = out / "config.json"
    legacy = old.exists() and not (out / "stages").exists()
    if legacy:
        before = json.loads(old.read_text(encoding="utf-8"))
        if before != fingerprint(cfg):
            raise StageMismatch(
                f"{out} holds a study made before the stage runner with other settings "
                f"({settings_diff(before, fingerprint(cfg))}); use another output directory or overwrite=True "
                "(--overwrite) to start it afresh"
            )
    out.mkdir(parents=True, exist_ok=True)
    if not old.exists():  # rewritten at the end of a run: a run refused on the way leaves it as it was
        atomic_write_json(old, fingerprint(cfg))
    return Stages(out, adopt=legacy)


def run_study(out_dir: str | Path, config: StudyConfig | None = None, *, probe=None) -> dict[str, Any]:
    """Run (or resume) the study into ``out_dir``; returns the summary (also ``summary.json`` / ``summary.md``).

    ``probe`` (tests): a function ``config -> (max_context, chat, cuda)`` replacing the model probe."""
    config = config or StudyConfig()
    max_context, chat, cuda = (probe or probe_model)(config)
    cfg = resolve_config(config, max_context=max_context, chat=chat, cuda=cuda)
    out = Path(out_dir)
    st = _open(out, cfg)
    conditions = detection_conditions(cfg)
    primary = conditions[0]
    ptag = tag(*primary)
    rms: dict[str, Any] = {}

    def model(dtype: str):
        if dtype not in rms:
            rms.clear()  # one model in memory at a time
            rms[dtype] = load(cfg, dtype)
        return rms[dtype]

    named: dict[str, Any] = {}

    def detect(conds) -> None:
        for c in conds:
            if "detection" in cfg.stages:
                hay, style, dtype = c
                named[tag(*c)] = stage_detection(st, cfg, hay, style, dtype, model)
            elif st.done(f"detect/{tag(*c)}"):
                from retmask_interp.heads.scores import load_head_scores

                named[tag(*c)] = load_head_scores(out / "detect" / f"{tag(*c)}.heads.json")

    # primary-dtype conditions first (masking etc. run in the primary dtype), the other dtypes last
    detect([c for c in conditions if c[2] == primary[2]])
    if ptag not in named:
        raise RuntimeError(
            f"the primary detection {ptag} has no head list in {out / 'detect'}; run detection"
        )
    hs = named[ptag]
    from retmask_interp.heads.scores import save_head_scores

    save_head_scores(hs, out / "heads.json", overwrite=True)  # the primary list, as detected
    retrieval = hs.above(cfg.threshold)
    grid: list = []

    def samples(n: int):
        def subset() -> list:
            if not grid:
                grid.extend(build_samples(model(primary[2]), cfg, primary[0], primary[1]))
            return spread_subset(grid, n)

        return subset

    after = {"detection": f"detect/{ptag}"}

    def rm():
        return model(primary[2])

    assert cfg.masking_samples and cfg.attention_samples
    if "masking" in cfg.stages:
        if retrieval:
            stage_masking(st, cfg, rm, samples(cfg.masking_samples), retrieval, after)
        else:
            log.warning("no head scores >= %s: masking skipped", cfg.threshold)
    if "topk" in cfg.stages:
        stage_topk(st, cfg, rm, samples(cfg.masking_samples), hs, after)
    if "attention" in cfg.stages:
        stage_attention(st, cfg, rm, samples(cfg.attention_samples), hs, retrieval, after)
    detect([c for c in conditions if c[2] != primary[2]])
    rms.clear()
    if len(named) > 1:
        others = {k: v for k, v in named.items() if k != ptag}
        atomic_write_json(out / "stability.json", {"primary": ptag, "pairs": stability(hs, others)})
    if "organisation" in cfg.stages:
        atomic_write_json(out / "organisation.json", organisation(named))
    atomic_write_json(out / "config.json", fingerprint(cfg))
    return write_summary(out, cfg, named, st.timings())
