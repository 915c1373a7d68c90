"""The retrieval-vs-random experiment: detect a model's retrieval heads (or take given ones), mask them, and compare
NIAH success with the same number of random heads masked. THE function for it: the demo, the figures, the
real-model study and the organism checks call :func:`retrieval_vs_random`.

The table is ``measure.outcomes.masking_outcomes``' (one row per mode x condition x sample, tidy): conditions
``unmasked``, ``retrieval`` and ``random#SEED`` (any heads outside the retrieval set) and/or ``matched#SEED`` (as many
heads in each layer as the retrieval set has there), for each masking mode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from retmask_interp.core.io import InputError
from retmask_interp.core.models import as_model
from retmask_interp.core.notation import MASK_MODES
from retmask_interp.heads.scores import Head, HeadScores

__all__ = ["CONTROLS", "ExperimentConfig", "RetrievalVsRandom", "grid_mean_values", "retrieval_vs_random"]

log = logging.getLogger(__name__)

CONTROLS = ("random", "matched")
MODES = MASK_MODES  # core.notation


@dataclass
class ExperimentConfig:
    """Settings of :func:`retrieval_vs_random`.

    ``threshold``: the retrieval heads are those scoring >= it; ``k``: or the top ``k`` (give one of the two).
    ``modes``: masking modes (``zero``, ``uniform``, ``mean``). ``seeds``: random control sets per control kind,
    seeded ``seed``, ``seed + 1``, ...; ``controls``: ``random`` (heads anywhere outside the retrieval set) and/or
    ``matched`` (the same number of heads per layer). Decoding: greedy, ``max_new_tokens``, NIAH success is
    ROUGE-1 recall > ``rouge_threshold``; the answer is also scored teacher-forced (``answer_logprob``, ...) from
    the same prefill. ``detect_batch_size``: detection's batch, where heads are detected.
    """

    threshold: float | None = 0.1
    k: int | None = None
    modes: tuple[str, ...] = ("zero",)
    seeds: int = 5
    seed: int = 0
    controls: tuple[str, ...] = ("random",)
    max_new_tokens: int = 24
    batch_size: int | None = None  # None: planned from free GPU memory (8 on the CPU)
    rouge_threshold: float = 0.5
    detect_batch_size: int = 16

    def __post_init__(self) -> None:
        if (self.threshold is None) == (self.k is None):
            raise InputError(
                f"give exactly one of threshold (heads scoring >= it) and k (the top k heads); "
                f"got threshold={self.threshold}, k={self.k}"
            )
        if self.threshold is not None and not (self.threshold == self.threshold and 0 <= self.threshold <= 1):
            raise InputError(f"threshold must be a retrieval score in [0, 1], got {self.threshold}")
        if self.k is not None and self.k < 1:
            raise InputError(f"k must be >= 1 (heads to mask), got {self.k}")
        if isinstance(self.modes, str):
            self.modes = (self.modes,)
        bad = [m for m in self.modes if m not in MODES]
        if not self.modes or bad:
            raise InputError(
                f"unknown masking mode(s) {bad or '(none)'}; use one or more of {', '.join(MODES)}"
            )
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise InputError(f"unknown control kind(s) {bad}; use random and/or matched")
        if self.seeds < 0:
            raise InputError(f"seeds must be >= 0 (random control sets), got {self.seeds}")
        for name in ("max_new_tokens", "batch_size", "detect_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.rouge_threshold < 1:
            raise InputError(f"rouge_threshold must be in [0, 1), got {self.rouge_threshold}")


@dataclass
class RetrievalVsRandom:
    """What :func:`retrieval_vs_random` found. ``heads``: the retrieval scores (``None`` where a plain head list was
    given); ``retrieval``: the heads masked; ``conditions``: condition name -> heads; ``table``: one row per mode x
    condition x sample (``mode``, ``condition``, ``kind``, ``seed``, ``n_heads``, ``sample_id``, grid coordinates,
    ``success``, ``rouge``, ``generated``, teacher-forced scores)."""

    heads: HeadScores | None
    retrieval: list[Head]
    conditions: dict[str, list[Head]]
    table: pd.DataFrame
    config: ExperimentConfig = field(default_factory=ExperimentConfig)

    def success(self, mode: str | None = None) -> dict[str, float]:
        """Mean NIAH success per condition kind (``unmasked``, ``retrieval``, ``random``, ``matched``; random kinds
        averaged over their seeds), for ``mode`` (default: the first)."""
        df = self.table[self.table["mode"] == (mode or self.config.modes[0])]
        per_condition = df.groupby(["kind", "condition"], sort=False)["success"].mean()
        return {kind: float(v.mean()) for kind, v in per_condition.groupby(level=0, sort=False)}

    def per_seed(self, kind: str = "random", mode: str | None = None) -> list[float]:
        """Mean NIAH success of each control set of ``kind``, in seed order."""
        df = self.table[(self.table["mode"] == (mode or self.config.modes[0])) & (self.table["kind"] == kind)]
        return [float(v) for _, v in df.groupby("seed")["success"].mean().sort_index().items()]

    def summary(self, metrics: Sequence[str] = ("success",)) -> pd.DataFrame:
        """Mean and bootstrap 95% interval per mode x kind (``measure.outcomes.summarize_outcomes``)."""
        from retmask_interp.measure.outcomes import summarize_outcomes

        return summarize_outcomes(self.table, by=("mode", "kind"), metrics=tuple(metrics))

    def __repr__(self) -> str:
        acc = ", ".join(f"{k} {v:.3f}" for k, v in self.success().items())
        return (
            f"RetrievalVsRandom({len(self.retrieval)} retrieval heads, {len(self.conditions)} conditions x "
            f"{self.table['sample_id'].nunique() if len(self.table) else 0} samples x {len(self.config.modes)} "
            f"mode(s); NIAH success ({self.config.modes[0]}): {acc})"
        )


def grid_mean_values(model, samples: Sequence[Any]) -> torch.Tensor:
    """Mean head outputs for mode ``mean``, over the shortest samples of the grid (one equal-length batch of at
    most 8)."""
    from retmask_interp.interventions.masking import mean_head_outputs

    rm = as_model(model)
    n = min(len(s.input_ids) for s in samples)
    ref = [s.input_ids for s in samples if len(s.input_ids) == n][:8]
    return mean_head_outputs(rm, torch.tensor(ref))


def _conditions(rm, retrieval: list[Head], config: ExperimentConfig) -> dict[str, list[Head]]:
    from retmask_interp.measure.outcomes import random_condition_sets

    if not retrieval:
        return {"unmasked": []}
    conds: dict[str, list[Head]] = {"unmasked": [], "retrieval": retrieval}
    for kind in config.controls:
        try:
            sets = random_condition_sets(
                rm,
                retrieval,
                n_seeds=config.seeds,
                seed=config.seed,
                match_per_layer=kind == "matched",
                unmasked=False,
            )
        except ValueError as err:  # a layer whose heads are all retrieval heads has no matched control
            log.warning("no %s control: %s", kind, err)
            continue
        conds |= {
            name.replace("random#", f"{kind}#"): v for name, v in sets.items() if name.startswith("random#")
        }
    return conds


def retrieval_vs_random(
    model,
    grid: Sequence[Any],
    heads: HeadScores | Iterable[Head | str] | None = None,
    config: ExperimentConfig | None = None,
    *,
    samples_path: str | Path | None = None,
    params: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
) -> RetrievalVsRandom:
    """Mask the retrieval heads of ``model`` and as many random heads, and measure NIAH success on ``grid``.

    ``heads``: ``None`` (detect them on ``grid``: ``measure.detect.detect_heads``, resumable through
    ``samples_path``, ``params`` recorded with the head list), a :class:`HeadScores` (the heads over
    ``config.threshold`` or its top ``config.k`` are masked) or a list of heads (masked as given). Random sets are
    drawn from outside the retrieval heads (``interventions.controls.random_controls``). ``checkpoint_dir``: each
    mode's finished conditions are kept in ``MODE.partial.jsonl`` there, and a re-run reads them back.
    ``mean_values``: mode ``mean``'s per-head means (default: :func:`grid_mean_values` over ``grid``).
    """
    from retmask_interp.measure.outcomes import masking_outcomes

    config = config or ExperimentConfig()
    rm = as_model(model)
    if not len(grid):
        raise InputError(
            "the NIAH grid is empty: build one with rmi.niah_grid(model, lengths=..., depths=...)"
        )
    hs: HeadScores | None
    if heads is None:
        from retmask_interp.measure.detect import DetectConfig, detect_heads

        log.info("detection on %d NIAH samples", len(grid))
        det = DetectConfig(
            max_new_tokens=config.max_new_tokens,
            batch_size=config.detect_batch_size,
            rouge_threshold=config.rouge_threshold,
        )
        hs = detect_heads(rm, list(grid), det, samples_path=samples_path, progress=progress, params=params)
        if hs is None:  # only the worker ranks of a sharded (torchrun) run get None
            raise RuntimeError(
                "detection returned no head list: a worker rank of a sharded run has none to mask"
            )
    elif isinstance(heads, HeadScores):
        hs = heads
    else:
        hs = None
    if hs is not None:
        retrieval = hs.select(top_k=config.k, threshold=config.threshold)
    else:
        retrieval = rm.check_heads(heads or [])
    if not retrieval:
        log.warning(
            "no retrieval heads (%s): nothing to mask, only the unmasked condition is measured",
            f"score >= {config.threshold}" if config.k is None else f"top {config.k}",
        )
    conditions = _conditions(rm, retrieval, config)
    if "mean" in config.modes and mean_values is None:
        mean_values = grid_mean_values(rm, grid)
    parts = []
    for mode in config.modes:
        log.info("NIAH, mode %s: %d conditions x %d samples", mode, len(conditions), len(grid))
        ckpt = Path(checkpoint_dir) / f"{mode}.partial.jsonl" if checkpoint_dir is not None else None
        df = masking_outcomes(
            rm,
            list(grid),
            conditions,
            mode=mode,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            rouge_threshold=config.rouge_threshold,
            mean_values=mean_values if mode == "mean" else None,
            progress=progress,
            checkpoint=ckpt,
        )
        parts.append(df.assign(mode=mode))
    table = pd.concat(parts, ignore_index=True)
    return RetrievalVsRandom(hs, retrieval, conditions, table, config)
