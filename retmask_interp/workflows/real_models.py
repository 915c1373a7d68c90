"""The real-model study (``studies/real_models/real_model_study.py``): retrieval heads of one pretrained model, end to end.

Stages, each written atomically into the output directory and skipped on a re-run when its result file exists
(``overwrite=True`` recomputes):

1. ``detection``: Wu et al.'s copy-paste detection on a NIAH grid within the model's window, for every haystack x
   prompt style in the primary dtype and for every other dtype on the primary haystack and style; per condition a
   samples JSONL (detection resumes from it sample by sample) and a head list. The counted-sample rate and the
   stability of the ranking against the primary condition (``analysis.metrics.agreement``: Spearman, top-k
   overlap). The primary condition's head list is ``heads.json`` (our format, with provenance).
2. ``masking``: NIAH success (``measure.outcomes.masking_outcomes``) unmasked, with the retrieval heads (score
   >= threshold) masked, with as many random non-retrieval heads (``seeds`` seeds) and as many per-layer-matched
   random heads, for every masking mode, with 95% confidence intervals (``summarize_outcomes``).
3. ``topk``: the top-k curve against k random heads (``measure.outcomes.topk_curve``).
4. ``attention``: which heads compensate when the retrieval heads are masked (``measure.attention.compensation``)
   and every (or the top-n) head's single-head masking effect against its retrieval score.
5. ``organisation``: ``analysis.metrics.organization_metrics`` of every detection condition's head list.

``summary.json`` and ``summary.md`` are rebuilt from the stage files at the end of every run. The resolved
configuration is kept in ``config.json``; a re-run with different parameters into the same directory is refused
(results of different settings are never mixed) unless ``overwrite=True``, which starts the directory afresh.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json, atomic_write_text

__all__ = [
    "GRIDS",
    "StudyConfig",
    "StudyConfigError",
    "detection_conditions",
    "load_study_results",
    "resolve_config",
    "run_study",
    "stage_attention",
    "stage_detection",
    "stage_masking",
    "stage_organisation",
    "stage_topk",
    "write_summary",
]

log = logging.getLogger(__name__)

STAGES = ("detection", "masking", "topk", "attention", "organisation")
MODES = ("zero", "uniform", "mean")

# Grid presets: lengths (tokens, linspace lo..hi, hi capped by the model's window), depths, needles, seeds.
GRIDS: dict[str, dict[str, Any]] = {
    # Wu et al.'s grid within the window, sized for a GPU: SmolLM2 1K-8K, Gemma-3 1K-32K.
    "full": {
        "min_length": 1000,
        "max_length": None,  # the model's window (minus room for the answer)
        "num_lengths": 8,
        "num_depths": 5,
        "needles": 3,
        "seeds": 10,
        "topk_seeds": 5,
        "ks": [1, 2, 4, 8, 16, 32],
        "masking_samples": 48,
        "attention_samples": 24,
        "single_heads": None,  # every head
        "batch_size": 16,
        "masking_batch_size": 48,  # one batch per condition on a GPU (48 x 8K tokens of SmolLM2: ~9 GB of KV)
    },
    # A CPU check of the whole pipeline: a few short lengths, 3 depths, 2 needles, few seeds.
    "small": {
        "min_length": 500,
        "max_length": 1000,
        "num_lengths": 2,
        "num_depths": 3,
        "needles": 2,
        "seeds": 2,
        "topk_seeds": 2,
        "ks": [1, 4, 16],
        "masking_samples": 6,
        "attention_samples": 4,
        "single_heads": 6,
        "batch_size": 8,
        "masking_batch_size": 8,
    },
}


class StudyConfigError(ValueError):
    """A study configuration that is invalid, or that differs from the one an output directory was made with."""


@dataclass
class StudyConfig:
    """Parameters of one study. ``None`` fields are filled by ``resolve_config`` from the ``grid`` preset and the
    model (window, chat template, device)."""

    model: str = "smollm2-135m-instruct"  # registry name, .gguf path or HF directory
    model_name: str | None = None  # name recorded in the head lists (default: the model argument)
    grid: str = "full"  # "full" | "small"
    haystacks: list[str] = field(default_factory=lambda: ["synthetic:0"])  # first = primary
    styles: list[str] | None = None  # chat models: ["chat"]; base models: ["continuation", "qa"]
    dtypes: list[str] | None = None  # GPU: ["bfloat16", "float32"]; CPU: ["float32"]; first = primary
    device: str = "auto"
    min_length: int | None = None
    max_length: int | None = None
    num_lengths: int | None = None
    num_depths: int | None = None
    needles: int | None = None
    max_new_tokens: int = 32
    batch_size: int | None = None  # detection
    masking_batch_size: int | None = None  # the masking, top-k and attention stages
    threshold: float = 0.1
    modes: list[str] = field(default_factory=lambda: list(MODES))
    seeds: int | None = None
    topk_seeds: int | None = None
    ks: list[int] | None = None
    masking_samples: int | None = None  # masking / top-k on an evenly spread subset of the primary grid
    attention_samples: int | None = None
    single_heads: int | None = None  # single-head effects of the top-n heads; None in the preset = every head
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    overwrite: bool = False
    progress: bool = False


def _fill(cfg: StudyConfig, name: str, value: Any) -> None:
    if getattr(cfg, name) is None:
        setattr(cfg, name, value)


def resolve_config(
    config: StudyConfig, *, max_context: int | None = None, chat: bool = True, cuda: bool = False
) -> StudyConfig:
    """A copy of ``config`` with the preset's and the model's defaults filled in, validated (``StudyConfigError``).

    ``max_context``: the model's window (lengths are capped to it, leaving room for the answer); ``chat``: the
    tokenizer has a chat template; ``cuda``: the study runs on a GPU (bf16 and fp32 detection; CPU: fp32 only)."""
    if config.grid not in GRIDS:
        raise StudyConfigError(f"unknown grid {config.grid!r}; use one of {sorted(GRIDS)}")
    cfg = StudyConfig(**asdict(config))
    preset = GRIDS[cfg.grid]
    for key, value in preset.items():
        if key == "max_length":
            continue
        if key == "single_heads":
            continue
        _fill(cfg, key, value)
    window_cap = max_context - 2 * cfg.max_new_tokens - 64 if max_context else None
    hi = cfg.max_length or preset["max_length"] or window_cap or 8000
    if window_cap:
        hi = min(hi, window_cap)
    # round a window-derived top length down to a multiple of 1000 (8192 -> 8000, 32768 -> 32000)
    cfg.max_length = int(hi if hi < 2000 or cfg.max_length else hi // 1000 * 1000)
    if cfg.single_heads is None and cfg.grid == "small":
        cfg.single_heads = preset["single_heads"]
    _fill(cfg, "styles", ["chat"] if chat else ["continuation", "qa"])
    _fill(cfg, "dtypes", ["bfloat16", "float32"] if cuda else ["float32"])
    assert cfg.styles is not None and cfg.dtypes is not None and cfg.ks is not None
    errors = []
    if not cfg.haystacks:
        errors.append("haystacks is empty")
    if len(set(cfg.haystacks)) != len(cfg.haystacks):
        errors.append(f"haystacks has duplicates: {cfg.haystacks}")
    bad_styles = [s for s in cfg.styles if s not in ("chat", "qa", "continuation")]
    if bad_styles:
        errors.append(f"unknown prompt styles {bad_styles}; use chat, qa or continuation")
    if "chat" in cfg.styles and not chat:
        errors.append(
            "style 'chat' needs a tokenizer with a chat template (a base model: use qa/continuation)"
        )
    bad_dtypes = [d for d in cfg.dtypes if d not in ("bfloat16", "float16", "float32")]
    if bad_dtypes:
        errors.append(f"unknown dtypes {bad_dtypes}; use bfloat16, float16 or float32")
    runs_model = bool({"detection", "masking", "topk", "attention"} & set(cfg.stages))
    if not cuda and runs_model and any(d != "float32" for d in cfg.dtypes):
        errors.append(
            f"dtypes {cfg.dtypes} need a GPU; on CPU the study runs in float32 only "
            "(--stage organisation alone re-reads a GPU study's results on any machine)"
        )
    bad_modes = [m for m in cfg.modes if m not in MODES]
    if bad_modes or not cfg.modes:
        errors.append(f"unknown or no masking modes {bad_modes or cfg.modes}; use {list(MODES)}")
    bad_stages = [s for s in cfg.stages if s not in STAGES]
    if bad_stages:
        errors.append(f"unknown stages {bad_stages}; use {list(STAGES)}")
    assert cfg.min_length is not None and cfg.num_lengths is not None and cfg.num_depths is not None
    if cfg.min_length <= 0 or cfg.min_length > cfg.max_length:
        errors.append(f"lengths {cfg.min_length}..{cfg.max_length} are empty or not positive")
    for name in (
        "num_lengths",
        "num_depths",
        "needles",
        "max_new_tokens",
        "batch_size",
        "masking_batch_size",
    ):
        if getattr(cfg, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("seeds", "topk_seeds", "masking_samples", "attention_samples"):
        if getattr(cfg, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.single_heads is not None and cfg.single_heads < 1:
        errors.append(f"single_heads must be >= 1 (or None for every head), got {cfg.single_heads}")
    if not cfg.ks or min(cfg.ks) < 1:
        errors.append(f"ks must be positive, got {cfg.ks}")
    if not 0 < cfg.threshold <= 1:
        errors.append(f"threshold must be in (0, 1], got {cfg.threshold}")
    if errors:
        raise StudyConfigError("invalid study configuration: " + "; ".join(errors))
    return cfg


def _fingerprint(cfg: StudyConfig) -> dict[str, Any]:
    """The parameters that determine the results (not where they go or how chatty the run is)."""
    out = {k: v for k, v in asdict(cfg).items() if k not in ("overwrite", "progress", "stages")}
    return out | {"subset_rule": SUBSET_RULE}


def _check_config(out: Path, cfg: StudyConfig) -> None:
    """Refuse an output directory made with other parameters; with ``overwrite`` start it afresh."""
    path = out / "config.json"
    current = _fingerprint(cfg)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if cfg.overwrite:
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif old != current:
            diff = {k: (old.get(k), v) for k, v in current.items() if old.get(k) != v}
            raise StudyConfigError(
                f"{out} holds a study with other parameters (old, new): {diff}. Use another output directory "
                "or overwrite=True (--overwrite) to start it afresh."
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, current)


def _write_csv(df, path: Path) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _tag(haystack: str, style: str, dtype: str) -> str:
    hay = (
        haystack.replace(":", "-") if haystack.startswith("synthetic") else Path(haystack).name or "haystack"
    )
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in hay)
    return f"{safe}.{style}.{dtype}"


def detection_conditions(cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(haystack, style, dtype) of every detection run; the first is the primary one (masking etc. use it):
    every haystack x style in the primary dtype, and every other dtype on the primary haystack and style."""
    assert cfg.styles and cfg.dtypes
    primary = cfg.dtypes[0]
    out = [(h, s, primary) for h in cfg.haystacks for s in cfg.styles]
    out += [(cfg.haystacks[0], cfg.styles[0], d) for d in cfg.dtypes[1:]]
    return out


def grid_lengths(cfg: StudyConfig) -> list[int]:
    from retmask_interp.data.niah import linspace_lengths

    assert cfg.min_length and cfg.max_length and cfg.num_lengths
    if cfg.num_lengths == 1:
        return [cfg.max_length]
    return sorted(set(linspace_lengths(cfg.min_length, cfg.max_length, cfg.num_lengths)))


def build_samples(rm, cfg: StudyConfig, haystack: str, style: str) -> list:
    """The NIAH grid of one haystack and prompt style (``data.niah.niah_grid``; the package's needles)."""
    from retmask_interp.data.niah import niah_grid

    assert cfg.needles and cfg.num_depths
    return niah_grid(
        rm,
        grid_lengths(cfg),
        cfg.num_depths,
        cfg.needles,
        needle_set="default",
        haystack=haystack,
        style=style,
    )


# How the masking / attention subsets are drawn; part of a study's fingerprint, so that a directory whose
# subsets were drawn by an earlier rule is never resumed with another (results of different samples never mix).
# (Before "balanced": evenly spaced indices of the needle-major grid, which with 5 depths took only 2 of them.)
SUBSET_RULE = "balanced"


def _strata(sample) -> tuple | None:
    """(length, depth, needle) of a NIAH sample (``data.niah.NIAHSample``), or None for other items."""
    needle = "needle_index" if hasattr(sample, "needle_index") else "needle"
    keys = ("context_length", "depth", needle)
    if not all(hasattr(sample, k) for k in keys):
        return None
    return tuple(str(getattr(sample, k)) for k in keys)


def spread_subset(samples: list, n: int) -> list:
    """``n`` samples spread over the grid: NIAH samples are picked one at a time, each time the one whose length,
    depth and needle (and length x depth cell) have been picked least so far, ties broken by grid order, so every
    length, depth and needle is represented as evenly as ``n`` allows. Other items: evenly spaced. Grid order kept.
    """
    if n >= len(samples):
        return list(samples)
    strata = [_strata(s) for s in samples]
    if any(k is None for k in strata):
        step = len(samples) / n
        return [samples[int(i * step)] for i in range(n)]
    from collections import Counter

    counts: list[Counter] = [Counter() for _ in range(3)]
    cells: Counter = Counter()
    left = set(range(len(samples)))
    chosen = []

    def load(i: int) -> tuple[int, int, int]:  # picked-so-far counts of i's strata, then grid order
        k = strata[i]
        assert k is not None
        return sum(counts[a][k[a]] for a in range(3)), cells[k[:2]], i

    for _ in range(n):
        best = min(left, key=load)
        left.remove(best)
        chosen.append(best)
        k = strata[best]
        assert k is not None
        for a in range(3):
            counts[a][k[a]] += 1
        cells[k[:2]] += 1
    return [samples[i] for i in sorted(chosen)]


# ------------------------------------------------------------------------------------------------------ stages
def _detected(out: Path, tag: str):
    """The head list of a finished detection condition (``detect/TAG.heads.json``), or ``None``."""
    from retmask_interp.heads.scores import load_head_scores

    path = out / "detect" / f"{tag}.heads.json"
    if not path.exists():
        return None
    log.info("detection %s: done (%s)", tag, path)
    return load_head_scores(path)


def stage_detection(rm, cfg: StudyConfig, out: Path, haystack: str, style: str, dtype: str):
    """Detection of one condition into ``detect/TAG.samples.jsonl`` and ``detect/TAG.heads.json``; an existing
    head list is loaded instead (``_detected``; the samples file makes an interrupted run resume)."""
    from retmask_interp.heads.scores import save_head_scores
    from retmask_interp.measure.detect import DetectConfig, detect_heads

    tag = _tag(haystack, style, dtype)
    done = _detected(out, tag)
    if done is not None:
        return done
    heads_path = out / "detect" / f"{tag}.heads.json"
    heads_path.parent.mkdir(parents=True, exist_ok=True)
    samples = build_samples(rm, cfg, haystack, style)
    log.info("detection %s: %d samples", tag, len(samples))
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
        "workflow": "retmask_interp.workflows.real_models (studies/real_models/real_model_study.py)",
    }
    hs = detect_heads(
        rm,
        samples,
        det,
        samples_path=out / "detect" / f"{tag}.samples.jsonl",
        progress=cfg.progress,
        params=params,
    )
    if cfg.model_name:
        hs.model = cfg.model_name
    save_head_scores(hs, heads_path, overwrite=True)
    return hs


def stability(primary, others: dict[str, Any], ks=(5, 10, 20)) -> list[dict[str, Any]]:
    """``agreement`` of every other condition's ranking with the primary one's (Spearman, top-k overlap)."""
    from retmask_interp.analysis.metrics import agreement

    return [{"condition": name} | agreement(primary, hs, k=ks) for name, hs in others.items()]


def stage_masking(
    rm, cfg: StudyConfig, samples: list, retrieval: list, out: Path | None = None
) -> tuple[Any, Any]:
    """Per-sample outcomes of every mode x condition (unmasked, retrieval, random#i, matched#i:
    ``measure.experiment.retrieval_vs_random``) and their summary (mean and 95% CI per mode x kind). With ``out``,
    each mode's outcomes are kept in ``out/masking/MODE.csv`` as soon as they are done, and a re-run reads them
    instead of recomputing; within a mode, finished conditions are kept in ``MODE.partial.jsonl`` until the mode
    is done."""
    import pandas as pd

    from retmask_interp.measure.experiment import ExperimentConfig, grid_mean_values, retrieval_vs_random
    from retmask_interp.measure.outcomes import summarize_outcomes

    assert cfg.seeds
    mean_values = grid_mean_values(rm, samples) if "mean" in cfg.modes else None
    parts = []
    for mode in cfg.modes:
        part = out / "masking" / f"{mode}.csv" if out is not None else None
        if part is not None and part.exists():
            log.info("masking, mode %s: done (%s)", mode, part)
            parts.append(_read_csv(part))
            continue
        exp = ExperimentConfig(
            modes=(mode,),
            seeds=cfg.seeds,
            controls=("random", "matched"),
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.masking_batch_size or 8,
        )
        partial = _partial(part)
        run = retrieval_vs_random(
            rm,
            samples,
            retrieval,
            exp,
            checkpoint_dir=partial.parent if partial is not None else None,
            mean_values=mean_values,
            progress=cfg.progress,
        )
        df = run.table
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(df, part)
        _done_with(partial)
        parts.append(df)
    outcomes = pd.concat(parts, ignore_index=True)
    summary = summarize_outcomes(
        outcomes, by=("mode", "kind"), metrics=("success", "rouge", "answer_logprob")
    )
    return outcomes, summary


def _partial(result: Path | None) -> Path | None:
    """Where a stage keeps its finished units (``measure``'s ``checkpoint``) until ``result`` is written."""
    return None if result is None else result.with_name(result.name.split(".")[0] + ".partial.jsonl")


def _done_with(partial: Path | None) -> None:
    """Remove a stage's checkpoint once its result file is written (the file holds the same rows)."""
    if partial is not None:
        partial.unlink(missing_ok=True)


def stage_topk(rm, cfg: StudyConfig, samples: list, hs, out: Path | None = None) -> tuple[Any, Any]:
    """The top-k curve (zero mode); with ``out``, finished conditions are kept in ``topk_outcomes.partial.jsonl``
    until the curve is written, so that an interrupted run resumes."""
    from retmask_interp.measure.outcomes import topk_curve

    assert cfg.ks and cfg.topk_seeds
    n_heads = rm.geometry.num_layers * rm.geometry.num_heads
    ks = [0] + [k for k in cfg.ks if k <= n_heads]
    return topk_curve(
        rm,
        samples,
        hs,
        ks,
        n_random=cfg.topk_seeds,
        return_outcomes=True,
        mode="zero",
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.masking_batch_size or 8,
        checkpoint=_partial(out / "topk_outcomes.csv") if out is not None else None,
    )


def stage_attention(
    rm, cfg: StudyConfig, samples: list, hs, retrieval: list, out: Path | None = None
) -> tuple[Any, Any]:
    """Compensation when the retrieval heads are masked (zero mode) and single-head effects vs score; with
    ``out``, ``compensation.csv`` is written as soon as it is done (and read back by a re-run) and finished heads
    are kept in ``single_head_effects.partial.jsonl`` until the table is written."""
    from retmask_interp.measure.attention import compensation, single_head_effects

    comp_path = out / "compensation.csv" if out is not None else None
    if comp_path is not None and comp_path.exists():  # kept by a run cut during the single heads
        log.info("compensation: done (%s)", comp_path)
        comp = _read_csv(comp_path)
    else:
        comp = compensation(rm, samples, retrieval, mode="zero", batch_size=cfg.masking_batch_size or 8)
        if comp_path is not None:
            _write_csv(comp, comp_path)
    single = single_head_effects(
        rm,
        samples,
        hs,
        cfg.single_heads,
        batch_size=cfg.masking_batch_size or 8,
        checkpoint=_partial(out / "single_head_effects.csv") if out is not None else None,
    )
    return comp, single


def stage_organisation(named: dict[str, Any]) -> dict[str, Any]:
    from retmask_interp.analysis.metrics import organization_metrics

    return {name: organization_metrics(hs) for name, hs in named.items()}


# ------------------------------------------------------------------------------------------------------ driver
def _load(cfg: StudyConfig, dtype: str):
    from retmask_interp.core.models import load_model

    rm = load_model(cfg.model, device=cfg.device, dtype=dtype)
    if cfg.model_name:
        rm.name = cfg.model_name
    return rm


def _probe(cfg: StudyConfig):
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


def run_study(out_dir: str | Path, config: StudyConfig | None = None, *, probe=None) -> dict[str, Any]:
    """Run (or resume) the study into ``out_dir``; returns the summary (also ``summary.json`` / ``summary.md``).

    ``probe`` (tests): a function ``config -> (max_context, chat, cuda)`` replacing the model probe."""
    config = config or StudyConfig()
    max_context, chat, cuda = (probe or _probe)(config)
    cfg = resolve_config(config, max_context=max_context, chat=chat, cuda=cuda)
    out = Path(out_dir)
    _check_config(out, cfg)
    timings: dict[str, float] = _read_json(out / "timings.json") or {}
    conditions = detection_conditions(cfg)
    primary = conditions[0]
    assert cfg.dtypes
    rms: dict[str, Any] = {}

    def model(dtype: str):
        if dtype not in rms:
            rms.clear()  # one model in memory at a time
            rms[dtype] = _load(cfg, dtype)
        return rms[dtype]

    def timed(name: str, fn):
        t0 = time.perf_counter()
        res = fn()
        # re-read: processes running other stages of this study side by side write the same file
        timings.update(_read_json(out / "timings.json") or {})
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        atomic_write_json(out / "timings.json", timings)
        return res

    def detect(hay: str, style: str, dtype: str):
        """One detection condition: a finished one is read back (no model load, its time not counted again)."""
        tag = _tag(hay, style, dtype)
        done = _detected(out, tag)
        if done is not None:
            return done
        return timed(f"detection:{tag}", lambda: stage_detection(model(dtype), cfg, out, hay, style, dtype))

    named: dict[str, Any] = {}
    # primary-dtype conditions first (masking etc. run in the primary dtype), the other dtypes last
    first = [c for c in conditions if c[2] == primary[2]]
    later = [c for c in conditions if c[2] != primary[2]]
    if "detection" in cfg.stages:
        for hay, style, dtype in first:
            named[_tag(hay, style, dtype)] = detect(hay, style, dtype)
    else:
        for c in conditions:
            done = _detected(out, _tag(*c))
            if done is not None:
                named[_tag(*c)] = done
    ptag = _tag(*primary)
    if ptag not in named:
        raise RuntimeError(
            f"the primary detection {ptag} has no head list in {out / 'detect'}; run detection"
        )
    hs = named[ptag]
    if cfg.overwrite or not (out / "heads.json").exists():
        from retmask_interp.heads.scores import save_head_scores

        save_head_scores(hs, out / "heads.json", overwrite=True)
    retrieval = hs.above(cfg.threshold)
    need_samples = any(s in cfg.stages for s in ("masking", "topk", "attention"))
    samples = build_samples(model(primary[2]), cfg, primary[0], primary[1]) if need_samples else []
    assert cfg.masking_samples and cfg.attention_samples
    msamples = spread_subset(samples, cfg.masking_samples)
    if "masking" in cfg.stages and not (out / "masking_summary.csv").exists():
        if retrieval:
            outcomes, summary = timed(
                "masking", lambda: stage_masking(model(primary[2]), cfg, msamples, retrieval, out)
            )
            _write_csv(outcomes, out / "masking_outcomes.csv")
            _write_csv(summary, out / "masking_summary.csv")
        else:
            log.warning("no head scores >= %s: masking skipped", cfg.threshold)
    if "topk" in cfg.stages and not (out / "topk_curve.csv").exists():
        curve, outcomes = timed("topk", lambda: stage_topk(model(primary[2]), cfg, msamples, hs, out))
        _write_csv(outcomes, out / "topk_outcomes.csv")
        _write_csv(curve, out / "topk_curve.csv")
        _done_with(_partial(out / "topk_outcomes.csv"))
    if "attention" in cfg.stages and not (out / "single_head_effects.csv").exists():
        asamples = spread_subset(samples, cfg.attention_samples)
        comp, single = timed(
            "attention", lambda: stage_attention(model(primary[2]), cfg, asamples, hs, retrieval, out)
        )
        _write_csv(single, out / "single_head_effects.csv")  # compensation.csv: written by the stage
        atomic_write_json(
            out / "single_head_effects.json",
            {
                "spearman_score_effect": single.attrs.get("spearman"),
                **single.attrs,
                "n_samples": len(asamples),
            },
        )
        _done_with(_partial(out / "single_head_effects.csv"))
    if "detection" in cfg.stages:
        for hay, style, dtype in later:
            named[_tag(hay, style, dtype)] = detect(hay, style, dtype)
    rms.clear()
    if len(named) > 1:
        others = {k: v for k, v in named.items() if k != ptag}
        atomic_write_json(out / "stability.json", {"primary": ptag, "pairs": stability(hs, others)})
    if "organisation" in cfg.stages:
        atomic_write_json(out / "organisation.json", stage_organisation(named))
    return write_summary(out, cfg, named)


def load_study_results(out_dir: str | Path, name: str | None = None):
    """A study directory (finished or not) as ``workflows.experiments.ModelResults``, the form the figures take:
    the primary head list, the zero-mode masking outcomes (from ``masking/zero.csv`` while the other modes are not
    done) and the top-k curve (while that stage is unfinished, over the ks whose conditions are all done;
    ``None`` where none is). ``masking_outcomes.csv`` may be gzipped
    (``.csv.gz``), as in ``studies/real_models/``."""
    from retmask_interp.core.io import InputError
    from retmask_interp.heads.scores import load_head_scores
    from retmask_interp.workflows.experiments import ModelResults

    out = Path(out_dir)
    cfg = _read_json(out / "config.json")
    if cfg is None or not (out / "heads.json").exists():
        raise InputError(
            f"{out} is not a real-model study (no config.json / heads.json); make one with "
            "studies/real_models/real_model_study.py --out DIR"
        )
    heads = load_head_scores(out / "heads.json")
    name = name or cfg.get("model_name") or heads.model or out.name
    heads.model = name

    def first(*names):
        return next((out / n for n in names if (out / n).exists()), None)

    niah = topk = None
    # a masking stage cut short keeps each finished mode in masking/MODE.csv: its zero mode is drawn too
    path = first("masking_outcomes.csv", "masking_outcomes.csv.gz", "masking/zero.csv")
    if path is not None:
        df = _read_csv(path)
        niah = df[df["mode"] == "zero"].reset_index(drop=True) if "mode" in df else df
    path = first("topk_curve.csv")
    if path is not None:
        topk = _read_csv(path)
    elif (partial := _partial(out / "topk_outcomes.csv")) is not None and partial.exists():
        # a top-k stage cut short: the ks whose every condition is finished are drawn
        from retmask_interp.measure.outcomes import curve_from_outcomes, finished_topk_outcomes

        done = finished_topk_outcomes(partial, int(cfg.get("topk_seeds") or 5))
        topk = None if done is None else curve_from_outcomes(done)
    return ModelResults(name, heads, niah, topk, heads.above(float(cfg.get("threshold", 0.1))))


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def write_summary(out: Path, cfg: StudyConfig, named: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` and ``summary.md`` from the stage files present in ``out``."""
    ptag = _tag(*detection_conditions(cfg)[0])
    detection = {
        tag: {
            "num_samples": hs.num_samples,
            "num_counted": hs.num_counted,
            "counted_rate": (hs.num_counted / hs.num_samples) if hs.num_samples else None,
            "n_heads_ge_threshold": len(hs.above(cfg.threshold)),
            "top_heads": [[a, b, round(s, 4)] for a, b, s in hs.ranked()[:10]],
        }
        for tag, hs in named.items()
    }
    summary: dict[str, Any] = {
        "model": cfg.model_name or cfg.model,
        "primary_condition": ptag,
        "threshold": cfg.threshold,
        "lengths": grid_lengths(cfg),
        "detection": detection,
        "retrieval_heads": [list(h) for h in named[ptag].above(cfg.threshold)] if ptag in named else [],
        "stability": (_read_json(out / "stability.json") or {}).get("pairs", []),
        "timings_s": _read_json(out / "timings.json") or {},
        "config": _fingerprint(cfg),
    }
    if (out / "masking_summary.csv").exists():
        ms = _read_csv(out / "masking_summary.csv")
        summary["masking"] = [
            {k: (_num(v) if k in ("mean", "ci_low", "ci_high") else v) for k, v in r.items()}
            for r in ms[ms.metric == "success"].to_dict("records")
        ]
    if (out / "topk_curve.csv").exists():
        tc = _read_csv(out / "topk_curve.csv")
        summary["topk"] = tc[["k", "kind", "success", "ci_low", "ci_high", "n_seeds"]].to_dict("records")
    if (out / "single_head_effects.json").exists():
        summary["single_head_effects"] = _read_json(out / "single_head_effects.json")
    if (out / "compensation.csv").exists():
        comp = _read_csv(out / "compensation.csv")
        top = comp[comp.role == "compensates"].head(10)
        summary["compensation"] = {
            "roles": comp.role.value_counts().to_dict(),
            "top_compensating": top[["layer", "head", "delta_span_mass"]].to_dict("records"),
        }
    org = _read_json(out / "organisation.json")
    if org and ptag in org:
        keep = ("n_ge_0.1", "gini", "effective_heads", "top10_share", "span_layer_min", "span_layer_max")
        summary["organisation"] = {k: org[ptag].get(k) for k in keep}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", _markdown(summary))
    return summary


def _f(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _markdown(s: dict[str, Any]) -> str:
    lines = [f"# Real-model study: {s['model']}", "", f"Primary condition: `{s['primary_condition']}`; "
             f"lengths {s['lengths']}; threshold {s['threshold']}.", "", "## Detection", "",
             "| condition | samples | counted | rate | heads >= threshold | top 5 heads |", "|---|---|---|---|---|---|"]  # fmt: skip
    for tag, d in s["detection"].items():
        top = ", ".join(f"{a}.{b} ({v:.2f})" for a, b, v in d["top_heads"][:5])
        lines.append(
            f"| {tag} | {d['num_samples']} | {d['num_counted']} | {_f(d['counted_rate'], '.2f')} | "
            f"{d['n_heads_ge_threshold']} | {top} |"
        )
    if s["stability"]:
        lines += ["", "## Stability against the primary ranking", "",
                  "| condition | Spearman | top-5 overlap | top-10 overlap | top-20 overlap |", "|---|---|---|---|---|"]  # fmt: skip
        for p in s["stability"]:
            lines.append(
                f"| {p['condition']} | {_f(p.get('spearman'))} | {p.get('top5_overlap')} | "
                f"{p.get('top10_overlap')} | {p.get('top20_overlap')} |"
            )
    if "masking" in s:
        lines += ["", "## NIAH success under masking (mean, 95% CI)", "",
                  "| mode | condition | success | CI | samples | seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in s["masking"]:
            lines.append(
                f"| {r['mode']} | {r['kind']} | {_f(r['mean'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                f"{r['n_samples']} | {r['n_seeds']} |"
            )
    if "topk" in s:
        lines += [
            "",
            "## Top-k curve (zero mode)",
            "",
            "| k | kind | success | CI | seeds |",
            "|---|---|---|---|---|",
        ]
        for r in s["topk"]:
            lines.append(
                f"| {r['k']} | {r['kind']} | {_f(r['success'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                f"{r['n_seeds']} |"
            )
    if "single_head_effects" in s:
        e = s["single_head_effects"]
        lines += ["", "## Attention", "", f"Single-head masking effect vs retrieval score: Spearman "
                  f"{_f(e.get('spearman_score_effect'))} (baseline answer log-prob {_f(e.get('baseline_logprob'))}, "
                  f"{e.get('n_samples')} samples)."]  # fmt: skip
    if "compensation" in s:
        c = s["compensation"]
        top = ", ".join(
            f"{r['layer']}.{r['head']} (+{r['delta_span_mass']:.3f})" for r in c["top_compensating"]
        )
        lines += ["", f"Roles when the retrieval heads are masked: {c['roles']}. Top compensating heads "
                  f"(needle-span attention mass up): {top or 'none'}."]  # fmt: skip
    if "organisation" in s:
        lines += ["", "## Organisation (primary)", "", "```", json.dumps(s["organisation"]), "```"]
    lines += ["", "## Timings (s)", "", "```", json.dumps({k: round(v, 1) for k, v in s["timings_s"].items()}),
              "```", ""]  # fmt: skip
    return "\n".join(lines)
