"""The experiments behind the figures: the NIAH grid, one model's detection / masking / top-k runs, and the cache
of their numbers.

:class:`FigureConfig` (sizes and settings), :func:`niah_samples` (the held-out NIAH grid), :func:`run_model`
(-> :class:`ModelResults`), and the results cache under ``<out>/data`` keyed by the settings and the weights
(:func:`save_results`, :func:`load_results`, :func:`load_saved_results`, :func:`default_models`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retmask_interp.core.io import InputError, atomic_write_json, atomic_write_text
from retmask_interp.core.options import option
from retmask_interp.core.ranges import (
    FINITE,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
    check_fields,
)
from retmask_interp.heads.scores import Head, HeadScores

__all__ = [
    "FigureConfig",
    "ModelResults",
    "default_models",
    "load_results",
    "load_saved_results",
    "niah_samples",
    "run_model",
    "save_results",
    "slug",
]

log = logging.getLogger(__name__)


@dataclass
class FigureConfig:
    """Sizes and settings of the experiments and of the files. The defaults make the committed ``figures/``
    (several minutes per organism on 2 CPU cores); :meth:`quick` is a smaller run for notebooks and tests.

    NIAH grid: ``lengths`` (prompt tokens) x ``num_depths`` depths x ``num_needles`` held-out needles
    (``needles="synthetic"``: the organisms' eval-split needles; ``"default"``: the package's needles) in a
    synthetic haystack; the organisms retrieve some needle kinds and not others, and only retrieved samples are
    scored. ``threshold``: retrieval heads score >= it. ``topk``: numbers of heads masked for the top-k curve;
    ``seeds``: random-head sets per condition. ``html``: ``"cdn"`` (small files that load plotly.js from its CDN),
    ``"inline"`` (self-contained, ~4 MB each) or ``"none"``.
    """

    organisms: tuple[str, ...] = ("concentrated", "distributed")
    lengths: list[int] = option(range=POSITIVE_INT, factory=lambda: [300, 700, 1100, 1500])
    num_depths: int = option(4, range=POSITIVE_INT)
    num_needles: int = option(5, range=POSITIVE_INT)
    needles: str = "synthetic"
    max_new_tokens: int = option(24, range=POSITIVE_INT)
    rouge_threshold: float = option(0.5, range=UNIT_INTERVAL)
    batch_size: int = option(8, range=POSITIVE_INT)
    threshold: float = option(0.1, range=FINITE)
    topk: list[int] = option(range=NONNEGATIVE_INT, factory=lambda: [1, 2, 4, 8])
    seeds: int = option(2, range=POSITIVE_INT)
    mask_mode: str = "zero"
    device: str = "cpu"
    formats: tuple[str, ...] = ("png", "svg")
    html: str = "cdn"
    scale: float = option(2.0, range=POSITIVE)

    def __post_init__(self) -> None:
        from retmask_interp.analysis.export import check_figure_formats

        check_fields(self)
        formats = check_figure_formats(self.formats)
        if self.html not in ("cdn", "inline", "none"):
            raise InputError(f"html must be cdn, inline or none, got {self.html!r} (CLI: --html)")
        if set(formats) == {"html"} and self.html == "none":
            raise InputError(
                "formats html with html none asks for no file at all: pass --html cdn or inline, or a static "
                "format (--formats png svg)"
            )

    @classmethod
    def quick(cls, **overrides) -> FigureConfig:
        """A small run (about a minute per organism on 2 CPU cores): 2 lengths x 3 depths x 4 needles."""
        base: dict[str, Any] = dict(lengths=[300, 700], num_depths=3, num_needles=4, topk=[2, 4, 8], seeds=1)
        return cls(**(base | overrides))

    def experiment_key(self) -> str:
        """Hash of the settings that change the numbers (not the file formats)."""
        from retmask_interp.measure.detect import DetectConfig

        keys = asdict(self)
        for k in ("organisms", "device", "formats", "html", "scale", "batch_size"):
            keys.pop(k)
        # the package's NIAH semantics (decode stop, ROUGE scorer) change the numbers too: data made under other
        # defaults (before Wu's newline stop and rouge-score became them) is not reused
        det = DetectConfig()
        keys["semantics"] = {"stop": det.stop, "rouge": det.rouge}
        return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ModelResults:
    """One model's experiments. ``heads``: its retrieval scores; ``retrieval``: the heads scoring >= threshold;
    ``niah``: ``measure.outcomes.masking_outcomes`` rows (one per condition x sample; kinds ``unmasked``, ``retrieval``,
    ``random`` with seeds); ``topk``: ``measure.outcomes.topk_curve`` (``k, kind, success, ci_low, ci_high, ...``)."""

    name: str
    heads: HeadScores
    niah: Any
    topk: Any
    retrieval: list[Head]


def niah_samples(rm, config: FigureConfig | None = None) -> list:
    """The held-out NIAH grid of ``config`` for model ``rm`` (``data.niah.niah_grid``; lengths over its window
    dropped)."""
    from retmask_interp.data.niah import niah_grid

    config = config or FigureConfig()
    sets = {"synthetic": "eval", "default": "default"}
    if config.needles not in sets:
        raise ValueError(f"needles must be 'synthetic' or 'default', got {config.needles!r}")
    return niah_grid(
        rm,
        config.lengths,
        config.num_depths,
        config.num_needles,
        needle_set=sets[config.needles],
        drop_long=True,
    )


def run_model(
    model,
    config: FigureConfig | None = None,
    *,
    name: str = "",
    head_scores: HeadScores | None = None,
    progress: bool = False,
) -> ModelResults:
    """Detect ``model``'s retrieval heads on the NIAH grid (or take ``head_scores``, e.g. a published list),
    then measure NIAH success (greedy generation, heads masked at every step) unmasked, with the retrieval heads
    (score >= threshold) masked and with as many random other heads masked (``seeds`` sets), and along the top-k
    curve (``measure.outcomes.topk_curve``)."""
    from retmask_interp.core.models import as_model
    from retmask_interp.measure.experiment import ExperimentConfig, retrieval_vs_random
    from retmask_interp.measure.outcomes import topk_curve

    config = config or FigureConfig()
    rm = as_model(model)
    name = name or rm.name
    samples = niah_samples(rm, config)
    exp = ExperimentConfig(
        threshold=config.threshold,
        modes=(config.mask_mode,),
        seeds=config.seeds,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        detect_batch_size=config.batch_size,
        rouge_threshold=config.rouge_threshold,
    )
    if head_scores is None:
        log.info("%s: detection on %d NIAH samples, then masking", name, len(samples))
    run = retrieval_vs_random(
        rm, samples, head_scores, exp, params={"grid": "paper_figures"}, progress=progress
    )
    hs, retrieval, niah = run.heads, run.retrieval, run.table.drop(columns=["mode"])
    assert hs is not None  # detected or given as HeadScores
    if head_scores is None:
        hs.model = name
    kw: dict[str, Any] = dict(
        mode=config.mask_mode,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        rouge_threshold=config.rouge_threshold,
    )
    n_heads = rm.geometry.num_layers * rm.geometry.num_heads
    ks = sorted({0, *[k for k in config.topk if 0 < k < n_heads]})
    log.info("%s: top-k masking curve, k in %s", name, ks)
    curve = topk_curve(rm, samples, hs, ks, n_random=config.seeds, seed=0, **kw)
    return ModelResults(name, hs, niah.drop(columns=["heads"], errors="ignore"), curve, retrieval)


def slug(name: str) -> str:
    """``name`` as a file-name part (letters, digits, ``.`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "model"


def save_results(r: ModelResults, data: Path, key: str) -> None:
    from retmask_interp.heads.formats import export_head_list

    stem = slug(r.name)
    export_head_list(r.heads, data / f"heads_{stem}.csv", format="csv", overwrite=True)
    atomic_write_text(data / f"niah_{stem}.csv", r.niah.to_csv(index=False))
    atomic_write_text(data / f"topk_{stem}.csv", r.topk.to_csv(index=False))
    atomic_write_json(
        data / f"results_{stem}.json",
        {
            "model": r.name,
            "experiment_key": key,
            "geometry": [r.heads.num_layers, r.heads.num_heads],
            "retrieval_heads": [list(h) for h in r.retrieval],
        },
    )


def load_results(name: str, data: Path, key: str) -> ModelResults | None:
    import pandas as pd

    from retmask_interp.heads.formats import load_csv_heads

    stem = slug(name)
    paths = [
        data / f"{kind}_{stem}.{ext}"
        for kind, ext in (("results", "json"), ("heads", "csv"), ("niah", "csv"), ("topk", "csv"))
    ]
    if not all(p.exists() for p in paths):
        return None
    meta = json.loads(paths[0].read_text(encoding="utf-8"))
    if meta.get("experiment_key") != key:
        log.info("%s: the saved numbers were made with other settings or weights; recomputing", name)
        return None
    hs = load_csv_heads(paths[1], num_layers=meta["geometry"][0], num_heads=meta["geometry"][1])
    hs.model = name
    retrieval = [tuple(h) for h in meta["retrieval_heads"]]
    read = dict(float_precision="round_trip", keep_default_na=False, na_values=[""])  # exact round trip
    return ModelResults(name, hs, pd.read_csv(paths[2], **read), pd.read_csv(paths[3], **read), retrieval)


def default_models(config: FigureConfig) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The installed organisms of ``config`` (loaded lazily), the key of each one's saved numbers (settings and
    a fingerprint of its weights), and notes on the missing ones."""
    from retmask_interp.organism import ORGANISMS, available_organisms, load_organism, organism_path

    unknown = [name for name in config.organisms if name not in ORGANISMS]
    if unknown:
        raise ValueError(
            f"unknown organism{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(ORGANISMS)}"
        )
    present = set(available_organisms())
    models, keys, notes = {}, {}, []
    for name in config.organisms:
        if name in present:
            models[name] = lambda name=name: load_organism(name, device=config.device)
            weights = hashlib.sha256((organism_path(name) / "model.safetensors").read_bytes()).hexdigest()
            keys[name] = f"{config.experiment_key()}-{weights[:12]}"
        else:
            notes.append(f"organism {name!r}: weights not installed, skipped")
    return models, keys, notes


def load_saved_results(data_dir: str | Path, config: FigureConfig | None = None) -> dict[str, ModelResults]:
    """The organisms' numbers saved under ``data_dir`` (e.g. the committed ``figures/data``) that were made with
    ``config``'s settings and the installed weights, as ``{organism: ModelResults}`` (stale or missing: left out)."""
    _, keys, _ = default_models(config or FigureConfig())
    loaded = {name: load_results(name, Path(data_dir), key) for name, key in keys.items()}
    return {name: r for name, r in loaded.items() if r is not None}
