"""Every figure of ``figures/``, regenerated from the model organisms and the published score files.

``regenerate_all(out_dir, shared=..., results=...)`` (CLI: ``retmask figures --out figures/ --shared PATH``) runs
the experiments on the organisms (``workflows.experiments``: detection, NIAH with heads masked, the top-k masking
curve), reads the published head scores and the RetMask gains when given (``workflows.published``), and writes
each figure through the one figure writer (``analysis.export.save_figure``) as static images (PNG + SVG by
default) plus HTML for the interactive ones, the numbers behind them under ``data/`` (CSV), ``manifest.json`` and
``index.md`` (one line per figure). Greedy decoding, fixed seeds and sorted inputs make the output the same on
every run on the same kind of machine.

One function per figure, each returning a plotly ``Figure`` (see :data:`FIGURES` for what each shows):
:func:`fig_heatmaps`, :func:`fig_concentration_curves`, :func:`fig_concentration_metrics`,
:func:`fig_niah_masking`, :func:`fig_topk_masking`, :func:`fig_duo_agreement`, :func:`fig_gain_vs_concentration`.
The experiments' and readers' names used with the figures (``FigureConfig``, ``niah_samples``, ``run_model``,
``load_saved_results``, ``published_head_scores``, ``duo_pairs``, ``load_gain_results``) are importable from here
too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from retmask_interp.core.io import InputError, atomic_write_json, atomic_write_text, refuse_overwrite
from retmask_interp.heads.scores import HeadScores
from retmask_interp.workflows.experiments import (
    FigureConfig,
    ModelResults,
    default_models,
    load_results,
    load_saved_results,
    niah_samples,
    run_model,
    save_results,
    slug,
)
from retmask_interp.workflows.published import _data_root, duo_pairs, load_gain_results, published_head_scores

__all__ = [
    "FIGURES",
    "INTERACTIVE",
    "FigureConfig",
    "ModelResults",
    "niah_samples",
    "run_model",
    "published_head_scores",
    "duo_pairs",
    "load_gain_results",
    "load_saved_results",
    "fig_heatmaps",
    "fig_concentration_curves",
    "fig_concentration_metrics",
    "fig_niah_masking",
    "fig_topk_masking",
    "fig_duo_agreement",
    "fig_gain_vs_concentration",
    "render_figures",
    "regenerate_all",
]

log = logging.getLogger(__name__)

# stem (a trailing "_" = one figure per model) -> what the figure shows; INTERACTIVE ones also get HTML
FIGURES: dict[str, str] = {
    "heatmaps_organisms": "retrieval score of every head (layer x head) of each organism; squares: >= threshold",
    "heatmaps_wu2024": "published retrieval scores of Wu et al.'s 7 models, one panel each",
    "heatmaps_retmask2026": "published retrieval scores of the RetMask paper's 3 models",
    "concentration_curves": "each model's head scores sorted (left) and the cumulative share of retrieval mass",
    "concentration_metrics": "concentration metrics (Gini, Hoyer, top-10 share, entropy) per model",
    "niah_masking_": "NIAH success by length x depth: unmasked, retrieval heads masked, as many random heads",
    "topk_masking": "NIAH success against the number k of masked heads: top-k retrieval heads vs k random heads",
    "duo_agreement_": "retrieval scores vs DuoAttention gates of one model, per KV head, and top-k overlap",
    "gain_vs_concentration": "RetMask gain against the concentration (Gini) of the retrieval scores",
    "heatmaps_real_models": "retrieval scores of the real pretrained models (studies/real_models/real_model_study.py), one panel each",
    "topk_masking_real_models": "the real models' NIAH success against k: top-k retrieval heads vs k random heads",
}
INTERACTIVE = ("heatmaps_", "duo_agreement_")


def _describe(stem: str) -> str:
    return next((v for k, v in FIGURES.items() if stem == k or (k[-1] == "_" and stem.startswith(k))), "")


# -------------------------------------------------------------------------------------------- figures
def fig_heatmaps(
    named_scores: Mapping[str, HeadScores], *, threshold: float | None = 0.1, title: str | None = None
):
    """Layer x head heatmaps of retrieval scores, one panel per model, on one colour scale."""
    from retmask_interp.analysis.plots import heatmaps_side_by_side

    return heatmaps_side_by_side(named_scores, threshold=threshold, title=title)


def fig_concentration_curves(named_scores: Mapping[str, HeadScores]):
    """Sorted scores and cumulative share of retrieval mass per model (steeper = more concentrated)."""
    from retmask_interp.analysis.plots import sorted_score_curves

    return sorted_score_curves(named_scores, title="How concentrated are the retrieval scores?")


def fig_concentration_metrics(named_scores: Mapping[str, HeadScores]):
    """Concentration metrics per model (``analysis.metrics.metrics_table``) as grouped bars."""
    from retmask_interp.analysis.metrics import metrics_table
    from retmask_interp.analysis.plots import metrics_chart

    return metrics_chart(metrics_table(named_scores))


def fig_niah_masking(niah_df, *, name: str = ""):
    """NIAH success grids side by side (``measure.outcomes.masking_outcomes`` rows): unmasked, retrieval heads masked,
    random heads masked (seeds pooled)."""
    from retmask_interp.analysis.plots import niah_grids

    grids = {}
    for kind in ("unmasked", "retrieval", "random"):
        part = niah_df[niah_df["kind"] == kind]
        if not len(part):
            continue
        n, seeds = int(part["n_heads"].iloc[0]), part["seed"].nunique()
        label = {
            "unmasked": "unmasked",
            "retrieval": f"{n} retrieval heads masked",
            "random": f"{n} random heads masked ({seeds} seed{'s' * (seeds > 1)})",
        }[kind]
        grids[label] = part
    return niah_grids(grids, title=f"Needle in a haystack: {name}" if name else None)


def fig_topk_masking(curves: Mapping[str, Any]):
    """NIAH success against k (``{model: effects.topk_curve(...)}``), with 95 % bootstrap intervals."""
    import pandas as pd

    from retmask_interp.analysis.plots import topk_masking_curve

    parts = []
    for model, df in curves.items():
        label = {"retrieval": f"{model}: top-k retrieval heads", "random": f"{model}: k random heads"}
        parts.append(df.assign(kind=df["kind"].map(label)))
    title = "Masking the top-k retrieval heads vs k random heads"
    return topk_masking_curve(pd.concat(parts, ignore_index=True), title=title)


def fig_duo_agreement(
    retrieval: HeadScores, duo: HeadScores, *, label: str = "", k: Sequence[int] = (5, 10, 20)
):
    """Per KV head: retrieval score (max over the group) against DuoAttention's gate (left); right, for each k:
    Jaccard overlap of the two top-k sets, and the share of the top-k retrieval heads whose gate reaches
    DuoAttention's k-th highest gate (robust to the many gates tied at 1)."""
    import plotly.graph_objects as go

    from retmask_interp.analysis.metrics import agreement
    from retmask_interp.analysis.plots import agreement_figure

    stats = agreement(retrieval.matrix(), duo.matrix(), k=k)
    k = [kk for kk in k if f"top{kk}_a_in_b" in stats]
    title = f"{label or retrieval.model}: retrieval score vs DuoAttention gate, per KV head<br>"
    title += f"<sup>Spearman {stats['spearman']:.2f}</sup>"
    names = ("retrieval score (Wu et al., max over the group)", "DuoAttention gate")
    fig = agreement_figure(retrieval, duo, names=names, k=k, title=title)
    fig.add_trace(
        go.Bar(
            x=[f"top-{kk}" for kk in k],
            y=[float(stats[f"top{kk}_a_in_b"]) for kk in k],
            name="top-k retrieval heads with a top-k gate (ties included)",
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(title_text="share", row=1, col=2)
    fig.update_layout(barmode="group", width=1100, height=520, legend={"orientation": "h", "y": -0.2})
    return fig


def fig_gain_vs_concentration(gains, *, x: str = "gini"):
    """Gain from training (``gain``, with ``ci_low`` / ``ci_high`` error bars when given) against a concentration
    metric (``x``): one labelled point per model and condition (RetMask, and controls such as random-head DPO)."""

    from retmask_interp.analysis.plots import gain_vs_concentration

    conds = list(dict.fromkeys(gains["condition"]))
    conds = sorted(conds, key=lambda c: c != "retmask")  # RetMask first
    fig: Any = None
    for cond in conds:
        part = gains[gains["condition"] == cond]
        one = gain_vs_concentration(part, x=x, y="gain", title="")
        trace = one.data[0].update(name="RetMask DPO" if cond == "retmask" else f"{cond} (control)")
        if {"ci_low", "ci_high"} <= set(part.columns) and part["ci_low"].notna().all():
            trace.error_y = {
                "type": "data",
                "symmetric": False,
                "array": (part["ci_high"] - part["gain"]).tolist(),
                "arrayminus": (part["gain"] - part["ci_low"]).tolist(),
            }
        fig = one if fig is None else fig.add_trace(trace)
    if fig is None:
        raise ValueError("no gains to plot (the table has no rows)")
    fig.add_hline(y=0, line={"color": "gray", "width": 1})
    lo, hi = float(gains[x].min()), float(gains[x].max())  # a wide x range: near-equal models look equal
    fig.update_xaxes(range=[max(0.0, lo - 0.1), min(1.0, hi + 0.1)] if x == "gini" else None)
    fig.update_layout(
        title=f"Gain from training vs concentration of the retrieval scores ({x})",
        xaxis_title=x,
        yaxis_title="gain in long-context score (95 % CI)",
        showlegend=True,
    )
    return fig


# -------------------------------------------------------------------------------------------- all of them
def _with_concentration(gains, named: Mapping[str, HeadScores], x: str):
    """Fill the ``x`` metric of each gain record from the head list of the same name (case-insensitive) when the
    record has none."""
    import pandas as pd

    from retmask_interp.analysis.metrics import organization_metrics

    by_name = {k.lower(): v for k, v in named.items()}
    gains = gains.copy()
    if x not in gains.columns:
        gains[x] = np.nan
    for i, row in gains.iterrows():
        hs = by_name.get(str(row["model"]).lower())
        if pd.isna(row[x]) and hs is not None:
            gains.loc[i, x] = organization_metrics(hs)[x]
    return gains


def render_figures(
    results: Mapping[str, ModelResults],
    *,
    published: Mapping[str, Mapping[str, HeadScores]] | None = None,
    duo: Mapping[str, tuple[HeadScores, HeadScores]] | None = None,
    gains=None,
    threshold: float = 0.1,
    real: Mapping[str, ModelResults] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Every figure from the experiments' results and the published data: ``({stem: Figure}, notes)``, where
    the notes say which figures were skipped and why. ``real``: real-model studies
    (``workflows.studies.real_models.load_study_results``), whose ``niah`` / ``topk`` may be ``None``."""
    figs: dict[str, Any] = {}
    notes: list[str] = []
    published = published or {}
    real = real or {}
    organisms = {f"organism: {name}": r.heads for name, r in results.items()}
    if organisms:
        figs["heatmaps_organisms"] = fig_heatmaps(
            organisms, threshold=threshold, title="Retrieval scores of the organisms"
        )
    else:
        notes.append("no organism results: organism heatmaps, NIAH masking and top-k figures skipped")
    for group, named in published.items():
        figs[f"heatmaps_{slug(group)}"] = fig_heatmaps(
            named, threshold=threshold, title=f"Published retrieval scores ({group})"
        )
    if real:
        figs["heatmaps_real_models"] = fig_heatmaps(
            {name: r.heads for name, r in real.items()},
            threshold=threshold,
            title="Retrieval scores of real pretrained models",
        )
    everything = dict(organisms)
    for named in published.values():
        everything.update(named)
    everything.update({name: r.heads for name, r in real.items()})
    if everything:
        figs["concentration_curves"] = fig_concentration_curves(everything)
        figs["concentration_metrics"] = fig_concentration_metrics(everything)
    if not published:
        notes.append(
            "no published data path: published heatmaps, cross-model comparison and DuoAttention skipped"
        )
    for name, r in results.items():
        figs[f"niah_masking_{slug(name)}"] = fig_niah_masking(r.niah, name=f"organism {name}")
    if results:
        figs["topk_masking"] = fig_topk_masking({name: r.topk for name, r in results.items()})
    for name, r in real.items():
        if r.niah is not None:
            figs[f"niah_masking_{slug(name)}"] = fig_niah_masking(r.niah, name=name)
        else:
            notes.append(f"{name}: the study has no masking outcomes yet: its NIAH masking figure is skipped")
    real_curves = {name: r.topk for name, r in real.items() if r.topk is not None}
    if real_curves:
        figs["topk_masking_real_models"] = fig_topk_masking(real_curves)
    for label, (kv, gates) in (duo or {}).items():
        figs[f"duo_agreement_{slug(label)}"] = fig_duo_agreement(kv, gates, label=label)
    if gains is None:
        notes.append(
            "no RetMask results JSON (studies/organism_retmask/*.json with per-model gains): gain-vs-concentration skipped"
        )
    else:
        named = {name: r.heads for name, r in results.items()} | {
            k: v for named in published.values() for k, v in named.items()
        }
        named |= {name: r.heads for name, r in real.items()}
        filled = _with_concentration(gains, named, "gini")
        usable = filled.dropna(subset=["gini", "gain"])
        if len(usable):
            figs["gain_vs_concentration"] = fig_gain_vs_concentration(usable)
        else:
            notes.append(
                "RetMask results name no model with a known head list: gain-vs-concentration skipped"
            )
    return figs, notes


def regenerate_all(
    out_dir: str | Path,
    *,
    shared: str | Path | None = None,
    results: str | Path | None = None,
    config: FigureConfig | None = None,
    models: Mapping[str, Any] | None = None,
    reuse_data: bool | str | Path = False,
    progress: bool = False,
    overwrite: bool = False,
    real_studies: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Regenerate every figure into ``out_dir``; returns the manifest (also in ``out_dir/manifest.json``).

    ``models``: ``{name: model}`` (a ``RetModel``, HF model, path, or a callable returning one); default: the
    organisms of ``config`` that are installed. ``shared``: the published data path (``.../shared/data``);
    ``None`` or absent = organisms only. ``results``: the RetMask experiment's gains (file or directory, see
    :func:`load_gain_results`). ``reuse_data``: take a model's numbers from ``out_dir/data`` (or from the directory
    given) when they were made with the same settings and weights: only re-draw. ``real_studies``: directories of
    ``studies/real_models/real_model_study.py`` (e.g. ``studies/real_models/smollm2``), re-drawn from their files (no model is
    run): a heatmap panel, NIAH masking grids, a top-k figure, and a place in the metrics. An ``out_dir`` that already
    holds figures (``manifest.json`` or ``index.md``) is refused unless ``overwrite`` (then its figure files are
    replaced; the output is deterministic).
    """
    from retmask_interp.analysis.export import save_figure, static_export_session
    from retmask_interp.core.models import load_model

    config = config or FigureConfig()
    out, key = Path(out_dir), config.experiment_key()
    for name in ("manifest.json", "index.md"):  # refuse before hours of experiments, not after
        refuse_overwrite(out / name, overwrite, "figure index")
    if shared is not None:  # given, so it must be usable (a file or an empty folder is a mistake, not a note)
        try:
            _data_root(shared)
        except FileNotFoundError as err:
            raise InputError(f"shared data {shared}: {err}") from None
    from retmask_interp.workflows.studies.real_models import load_study_results

    real: dict[str, Any] = {}
    where: dict[str, Path] = {}
    for study_dir in real_studies:  # files only; bad ones fail here
        r = load_study_results(study_dir)
        if r.name in real:
            raise InputError(
                f"real-model studies {where[r.name]} and {study_dir} are both of {r.name!r}; their figures would "
                "overwrite each other: pass one of them (--real-study DIR)"
            )
        real[r.name], where[r.name] = r, Path(study_dir)
    data = out / "data"
    saved = Path(reuse_data) if isinstance(reuse_data, (str, Path)) else data
    notes: list[str] = []
    keys: dict[str, str] = {}
    if models is None:
        models, keys, notes = default_models(config)
    computed: dict[str, ModelResults] = {}
    for name, model in models.items():
        mkey = keys.get(name, key)
        r = load_results(name, saved, mkey) if reuse_data is not False else None
        if r is None:
            if callable(model) and not hasattr(model, "forward"):
                model = model()
            if isinstance(model, (str, Path)):
                model = load_model(model, device=config.device)
            r = run_model(model, config, name=name, progress=progress)
        save_results(r, data, mkey)
        computed[name] = r
    published, duo = {}, {}
    if shared is not None:
        try:
            published, duo = published_head_scores(shared), duo_pairs(shared)
        except FileNotFoundError as err:
            notes.append(f"published data not found ({err}); organisms only")
            log.warning("%s", notes[-1])
    gains = load_gain_results(results)
    if gains is not None and "weights_sha256" in gains:  # were the gains measured on the installed weights?
        for name, sha in gains.groupby("model")["weights_sha256"].first().items():
            if name in keys and isinstance(sha, str) and not keys[name].endswith(sha[:12]):
                notes.append(
                    f"the RetMask gains of {name!r} were measured on other weights than the installed ones"
                )
    figs, more = render_figures(
        computed, published=published, duo=duo, gains=gains, threshold=config.threshold, real=real
    )
    notes += more
    for note in notes:
        log.info("note: %s", note)
    if not figs:  # nothing to draw: write no index, so that the corrected re-run is not refused as finished
        raise InputError(
            "no figure could be made: "
            + ("; ".join(notes) or "no organism, published data or study was given")
            + "; give organisms (--organisms), published data (--shared) or a study (--real-study)"
        )
    if figs and any(out.glob("*.png")):
        log.info("replacing the figures in %s", out)
    entries = []
    static = any(f.lower().lstrip(".") != "html" for f in config.formats)
    with static_export_session() if static else contextlib.nullcontext():
        for stem, fig in figs.items():
            interactive = stem.startswith(INTERACTIVE) or "html" in config.formats
            html = config.html if interactive else "none"
            formats = [f for f in config.formats if f.lower().lstrip(".") != "html"]
            formats += ["html"] if html != "none" else []
            page = html if html != "none" else "inline"  # (no HTML file is written then)
            files = save_figure(
                fig, out / stem, formats=formats, overwrite=True, scale=config.scale, html=page
            )
            entries.append(
                {"stem": stem, "description": _describe(stem), "files": sorted(p.name for p in files)}
            )
    named = {f"organism: {n}": r.heads for n, r in computed.items()}
    named |= {k: v for group in published.values() for k, v in group.items()}
    named |= {name: r.heads for name, r in real.items()}
    if named:
        from retmask_interp.analysis.metrics import metrics_table, to_markdown

        table = metrics_table(named)
        atomic_write_text(data / "metrics.csv", table.to_csv())
        atomic_write_text(data / "metrics.md", to_markdown(table))
    manifest = {
        "figures": entries,
        "notes": notes,
        "models": list(computed),
        "real_models": {name: str(p) for name, p in zip(real, real_studies)},
        "published": {g: sorted(m) for g, m in published.items()},
        "gains_source": None if gains is None else gains.attrs.get("source"),
        "experiment_key": key,
        "config": asdict(config),
    }
    atomic_write_json(out / "manifest.json", manifest)
    atomic_write_text(out / "index.md", _index(manifest))
    return manifest


def _index(manifest: Mapping[str, Any]) -> str:
    lines = [
        "# Figures",
        "",
        "Regenerate with `retmask figures --out figures/ --shared ../shared/data --overwrite`.",
        "",
    ]
    lines += ["| figure | what it shows |", "|---|---|"]
    for e in manifest["figures"]:
        png = next((f for f in e["files"] if f.endswith(".png")), e["files"][0] if e["files"] else e["stem"])
        lines.append(f"| [{e['stem']}]({png}) | {e['description']} |")
    if manifest["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in manifest["notes"]]
    return "\n".join(lines) + "\n"
