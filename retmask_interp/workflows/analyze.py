"""``retmask analyze``: organisation metrics and figures for several head-list files."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retmask_interp.analysis.metrics import metrics_table, organization_metrics, to_markdown

log = logging.getLogger(__name__)


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def analyze_files(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    formats: Sequence[str] = ("html", "png"),
    load_kwargs: Mapping[str, Any] | None = None,
):
    """Metrics table and figures for several head lists.

    Reads each file with ``heads.formats.load_any_head_list`` (``load_kwargs`` passed on, e.g. ``group_size`` for
    DuoAttention TSVs) and writes, under ``out_dir``: ``metrics.csv``, ``metrics.md``, ``metrics.json`` (all
    metrics including layer profiles, plus the source files) and the figures ``heatmaps``, ``sorted_scores``,
    ``metrics`` in each of ``formats``. Refuses to overwrite an existing ``metrics.csv`` unless ``overwrite``.
    Returns the metrics table.
    """
    from retmask_interp.analysis import plots as figures
    from retmask_interp.analysis.export import check_figure_formats, save_figure, static_export_session
    from retmask_interp.core.io import atomic_write_json, atomic_write_text, refuse_overwrite
    from retmask_interp.heads.formats import load_any_head_list

    if not paths:
        raise ValueError("give at least one head-list file to analyse")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} files; give one label per file")
    out_dir = Path(out_dir)
    formats = check_figure_formats(formats)  # every check before the first file is written
    refuse_overwrite(out_dir / "metrics.csv", overwrite, "analysis")
    for stem in ("heatmaps", "sorted_scores", "metrics"):
        for fmt in formats:
            refuse_overwrite(out_dir / f"{stem}.{fmt}", overwrite, "figure")
    loaded = [load_any_head_list(p, **dict(load_kwargs or {})) for p in paths]
    names = list(labels) if labels is not None else [hs.model or Path(p).stem for hs, p in zip(loaded, paths)]
    names = _unique_labels(names)
    named = dict(zip(names, loaded))
    df = metrics_table(named)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.csv", df.to_csv())
    atomic_write_text(out_dir / "metrics.md", to_markdown(df))
    full = {
        name: {"source": str(path), **organization_metrics(hs)}
        for (name, hs), path in zip(named.items(), paths)
    }
    atomic_write_json(out_dir / "metrics.json", full)
    figs = {
        "heatmaps": figures.heatmaps_side_by_side(named),
        "sorted_scores": figures.sorted_score_curves(named),
        "metrics": figures.metrics_chart(df),
    }
    static = any(f.lower().lstrip(".") != "html" for f in formats)
    with static_export_session() if static else contextlib.nullcontext():
        for stem, fig in figs.items():
            save_figure(fig, out_dir / stem, formats=formats, overwrite=overwrite)
    log.info("wrote metrics and %d figures for %d models to %s", len(figs), len(named), out_dir)
    return df
