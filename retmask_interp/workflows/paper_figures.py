"""Every figure of ``figures/``, regenerated from the model organisms and the published score files.

``regenerate_all(out_dir, shared=..., results=...)`` (CLI: ``retmask figures --out figures/ --shared PATH``) runs
the experiments on the organisms (detection, NIAH with heads masked, the top-k masking curve), reads the
published head scores when a data path is given, and writes each figure as static images (PNG + SVG by default)
plus HTML for the interactive ones, the numbers behind them under ``data/`` (CSV), ``manifest.json`` and
``index.md`` (one line per figure). Greedy decoding, fixed seeds and sorted inputs make the output the same on
every run on the same kind of machine.

One function per figure, each returning a plotly ``Figure`` (see :data:`FIGURES` for what each shows):
:func:`fig_heatmaps`, :func:`fig_concentration_curves`, :func:`fig_concentration_metrics`,
:func:`fig_niah_masking`, :func:`fig_topk_masking`, :func:`fig_duo_agreement`, :func:`fig_gain_vs_concentration`.
The experiments behind them: :func:`niah_samples`, :func:`run_model` (-> :class:`ModelResults`); the published
data: :func:`published_head_scores`, :func:`duo_pairs`; the RetMask experiment's results:
:func:`load_gain_results`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retmask_interp.core.io import atomic_write_json, atomic_write_text
from retmask_interp.heads.scores import Head, HeadScores

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
    "write_figure",
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
}
INTERACTIVE = ("heatmaps_", "duo_agreement_")


def _describe(stem: str) -> str:
    return next((v for k, v in FIGURES.items() if stem == k or (k[-1] == "_" and stem.startswith(k))), "")


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
    lengths: list[int] = field(default_factory=lambda: [300, 700, 1100, 1500])
    num_depths: int = 4
    num_needles: int = 5
    needles: str = "synthetic"
    max_new_tokens: int = 24
    rouge_threshold: float = 0.5
    batch_size: int = 8
    threshold: float = 0.1
    topk: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    seeds: int = 2
    mask_mode: str = "zero"
    device: str = "cpu"
    formats: tuple[str, ...] = ("png", "svg")
    html: str = "cdn"
    scale: float = 2.0

    @classmethod
    def quick(cls, **overrides) -> FigureConfig:
        """A small run (about a minute per organism on 2 CPU cores): 2 lengths x 3 depths x 4 needles."""
        base: dict[str, Any] = dict(lengths=[300, 700], num_depths=3, num_needles=4, topk=[2, 4, 8], seeds=1)
        return cls(**(base | overrides))

    def experiment_key(self) -> str:
        """Hash of the settings that change the numbers (not the file formats)."""
        keys = asdict(self)
        for k in ("organisms", "device", "formats", "html", "scale", "batch_size"):
            keys.pop(k)
        return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ModelResults:
    """One model's experiments. ``heads``: its retrieval scores; ``retrieval``: the heads scoring >= threshold;
    ``niah``: ``effects.masking_outcomes`` rows (one per condition x sample; kinds ``unmasked``, ``retrieval``,
    ``random`` with seeds); ``topk``: ``effects.topk_curve`` (``k, kind, success, ci_low, ci_high, ...``)."""

    name: str
    heads: HeadScores
    niah: Any
    topk: Any
    retrieval: list[Head]


# -------------------------------------------------------------------------------------------- experiments
def niah_samples(rm, config: FigureConfig | None = None) -> list:
    """The held-out NIAH grid of ``config`` for model ``rm`` (chat style when its tokenizer has a template)."""
    from retmask_interp.data.niah import build_grid, default_needles, load_haystack, wu_depths
    from retmask_interp.data.synthetic import make_needles

    config = config or FigureConfig()
    lengths = [n for n in config.lengths if not rm.max_context or n <= rm.max_context]
    if config.needles == "synthetic":
        needles = make_needles(config.num_needles, seed=0, split="eval")
    elif config.needles == "default":
        needles = default_needles()[: config.num_needles]
    else:
        raise ValueError(f"needles must be 'synthetic' or 'default', got {config.needles!r}")
    style = "chat" if getattr(rm.tokenizer, "chat_template", None) else "qa"
    haystack = load_haystack("synthetic:0", num_words=max(lengths) * 2)
    return build_grid(
        rm.tokenizer,
        haystack,
        needles,
        lengths,
        wu_depths(config.num_depths),
        style,
        max_context=rm.max_context,
        repeat_haystack=True,
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
    curve (``effects.topk_curve``)."""
    from retmask_interp.core.models import as_model
    from retmask_interp.measure.detect import DetectConfig, detect_heads
    from retmask_interp.measure.outcomes import masking_outcomes, random_condition_sets, topk_curve

    config = config or FigureConfig()
    rm = as_model(model)
    name = name or rm.name
    samples = niah_samples(rm, config)
    if head_scores is None:
        log.info("%s: detection on %d NIAH samples", name, len(samples))
        det = DetectConfig(
            max_new_tokens=config.max_new_tokens,
            rouge_threshold=config.rouge_threshold,
            batch_size=config.batch_size,
        )
        detected = detect_heads(rm, samples, det, progress=progress, params={"grid": "paper_figures"})
        if detected is None:  # only the worker ranks of a sharded run get None
            raise RuntimeError(f"{name}: detection returned no head list")
        hs = detected
        hs.model = name
    else:
        hs = head_scores
    retrieval = hs.above(config.threshold)
    if retrieval:
        conditions = random_condition_sets(rm, retrieval, n_seeds=config.seeds, seed=0)
    else:
        log.warning("%s: no head scores >= %g; nothing to mask", name, config.threshold)
        conditions = {"unmasked": []}
    kw: dict[str, Any] = dict(
        mode=config.mask_mode,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        rouge_threshold=config.rouge_threshold,
    )
    log.info("%s: NIAH under %d masking conditions", name, len(conditions))
    niah = masking_outcomes(rm, samples, conditions, progress=progress, **kw)
    n_heads = rm.geometry.num_layers * rm.geometry.num_heads
    ks = sorted({0, *[k for k in config.topk if 0 < k < n_heads]})
    log.info("%s: top-k masking curve, k in %s", name, ks)
    curve = topk_curve(rm, samples, hs, ks, n_random=config.seeds, seed=0, **kw)
    return ModelResults(name, hs, niah.drop(columns=["heads"], errors="ignore"), curve, retrieval)


# -------------------------------------------------------------------------------------------- published data
def _data_root(shared: str | Path) -> Path:
    """Accept the data directory itself (holding ``head_scores/``) or its parent (``shared/``)."""
    p = Path(shared).expanduser()
    for cand in (p, p / "data"):
        if (cand / "head_scores").is_dir():
            return cand
    raise FileNotFoundError(
        f"{p} holds no head_scores/ directory; give the published data path (e.g. ../shared/data)"
    )


def published_head_scores(shared: str | Path) -> dict[str, dict[str, HeadScores]]:
    """Published retrieval scores under ``<shared>/head_scores/<group>/*.json`` (Wu et al.'s format), as
    ``{group: {model: HeadScores}}``, groups and models sorted by name."""
    from retmask_interp.heads.scores import load_head_scores

    root = _data_root(shared) / "head_scores"
    out: dict[str, dict[str, HeadScores]] = {}
    for group in sorted(d for d in root.iterdir() if d.is_dir()):
        models = {p.stem: load_head_scores(p) for p in sorted(group.glob("*.json"))}
        if models:
            out[group.name] = models
    return out


# model label -> (score file under head_scores/, DuoAttention model directory under head_patterns/duo_attention/)
DUO_MATCHES = {
    "Llama-3.1-8B-Instruct": ("retmask2026/Llama-3.1-8B-Instruct.json", "Meta-Llama-3.1-8B-Instruct"),
    "Mistral-7B-v0.2": ("wu2024/Mistral-7B-v0.2-hf.json", "Mistral-7B-Instruct-v0.2"),
}


def duo_pairs(shared: str | Path) -> dict[str, tuple[HeadScores, HeadScores]]:
    """For each model with both a published retrieval-score file and DuoAttention gates: ``(retrieval scores
    reduced to KV heads by the max over each group, DuoAttention gates)``, both ``[layers, KV heads]``.
    (Mistral: Wu et al. scored the base v0.2 model, DuoAttention the Instruct v0.2 model.)"""
    from retmask_interp.heads.formats import kv_head_scores, load_duo_attention
    from retmask_interp.heads.scores import load_head_scores

    root = _data_root(shared)
    out = {}
    for label, (score_file, duo_dir) in DUO_MATCHES.items():
        scores, duo = root / "head_scores" / score_file, root / "head_patterns" / "duo_attention" / duo_dir
        if not (scores.exists() and duo.exists()):
            log.info("no %s pair for %s: skipped", "DuoAttention" if scores.exists() else "score file", label)
            continue
        gates = load_duo_attention(duo, group_size=1)
        hs = load_head_scores(scores)
        kv = kv_head_scores(hs, hs.num_heads // gates.num_heads, reduce="max")
        kv.model, gates.model = f"{label} retrieval score", f"{label} DuoAttention gate"
        out[label] = (kv, gates)
    return out


def _gain_records(obj: Any) -> list[dict]:
    """Records ``{"model", "condition", "gain", ...}`` of any accepted shape (see ``load_gain_results``)."""
    if isinstance(obj, Mapping) and isinstance(
        obj.get("organisms"), Mapping
    ):  # scripts/retmask_experiment.py
        rows = []
        for name, org in obj["organisms"].items():
            extra = dict(org.get("metrics") or {}) | {"weights_sha256": org.get("weights_sha256")}
            for cond, res in (org.get("conditions") or {}).items():
                pooled = [r for r in res.get("vs_none_by_task", []) if r.get("task") == "all"]
                ci = {k: pooled[0][k] for k in ("ci_low", "ci_high") if pooled and k in pooled[0]}
                if "gain" in res:
                    rows.append(extra | {"model": name, "condition": cond, "gain": res["gain"]} | ci)
        return rows
    if isinstance(obj, Mapping):
        obj = obj.get("models", obj.get("results"))
    keep = [r for r in obj or [] if isinstance(r, Mapping) and "model" in r and ("gain" in r or "delta" in r)]
    return [{"condition": "retmask", **r, "gain": r.get("gain", r.get("delta"))} for r in keep]


def load_gain_results(path: str | Path | None):
    """The RetMask experiment's gains as a DataFrame ``model, condition, gain[, ci_low, ci_high, gini, ...]``, or
    ``None`` when there are none. ``path``: a JSON file, or a directory whose ``*.json`` files are tried in name
    order (the first holding gains wins). Shapes: the ``organisms`` JSON of ``scripts/retmask_experiment.py``
    (``docs/experiment_results.json``: a row per organism and trained condition, with its metrics and the pooled
    paired-bootstrap CI), or records ``[{"model": ..., "gain": ...}, ...]`` (``delta`` is read as ``gain``;
    ``condition`` defaults to ``retmask``), bare or under a ``models`` / ``results`` key."""
    import pandas as pd

    p = Path(path) if path is not None else None
    files = [] if p is None else sorted(p.glob("*.json")) if p.is_dir() else [p] if p.is_file() else []
    for f in files:
        try:
            records = _gain_records(json.loads(f.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
            continue
        if records:
            log.info("RetMask gains (%d rows) from %s", len(records), f)
            df = pd.DataFrame(records)
            df.attrs["source"] = f.name
            return df
    return None


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
    """Concentration metrics per model (``analysis.metrics_table``) as grouped bars."""
    from retmask_interp.analysis.metrics import metrics_table
    from retmask_interp.analysis.plots import metrics_chart

    return metrics_chart(metrics_table(named_scores))


def fig_niah_masking(niah_df, *, name: str = ""):
    """NIAH success grids side by side (``effects.masking_outcomes`` rows): unmasked, retrieval heads masked,
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
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "model"


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
) -> tuple[dict[str, Any], list[str]]:
    """Every figure from the experiments' results and the published data: ``({stem: Figure}, notes)``, where
    the notes say which figures were skipped and why."""
    figs: dict[str, Any] = {}
    notes: list[str] = []
    published = published or {}
    organisms = {f"organism: {name}": r.heads for name, r in results.items()}
    if organisms:
        figs["heatmaps_organisms"] = fig_heatmaps(
            organisms, threshold=threshold, title="Retrieval scores of the organisms"
        )
    else:
        notes.append("no organism results: organism heatmaps, NIAH masking and top-k figures skipped")
    for group, named in published.items():
        figs[f"heatmaps_{_slug(group)}"] = fig_heatmaps(
            named, threshold=threshold, title=f"Published retrieval scores ({group})"
        )
    everything = dict(organisms)
    for named in published.values():
        everything.update(named)
    if everything:
        figs["concentration_curves"] = fig_concentration_curves(everything)
        figs["concentration_metrics"] = fig_concentration_metrics(everything)
    if not published:
        notes.append(
            "no published data path: published heatmaps, cross-model comparison and DuoAttention skipped"
        )
    for name, r in results.items():
        figs[f"niah_masking_{_slug(name)}"] = fig_niah_masking(r.niah, name=f"organism {name}")
    if results:
        figs["topk_masking"] = fig_topk_masking({name: r.topk for name, r in results.items()})
    for label, (kv, gates) in (duo or {}).items():
        figs[f"duo_agreement_{_slug(label)}"] = fig_duo_agreement(kv, gates, label=label)
    if gains is None:
        notes.append(
            "no RetMask results JSON (docs/*.json with per-model gains): gain-vs-concentration skipped"
        )
    else:
        named = {name: r.heads for name, r in results.items()} | {
            k: v for named in published.values() for k, v in named.items()
        }
        filled = _with_concentration(gains, named, "gini")
        usable = filled.dropna(subset=["gini", "gain"])
        if len(usable):
            figs["gain_vs_concentration"] = fig_gain_vs_concentration(usable)
        else:
            notes.append(
                "RetMask results name no model with a known head list: gain-vs-concentration skipped"
            )
    return figs, notes


def write_figure(
    fig, stem: str | Path, *, formats: Sequence[str] = ("png", "svg"), html: str = "cdn", scale: float = 2.0
) -> list[Path]:
    """Write ``fig`` as ``<stem>.<fmt>`` for each static format (through ``figures.save_figure``) and, unless
    ``html="none"``, as ``<stem>.html`` (``"cdn"``: plotly.js from its CDN, a small file; ``"inline"``:
    self-contained). Existing files are replaced; returns the files written."""
    from retmask_interp.analysis.export import save_figure

    if html not in ("cdn", "inline", "none"):
        raise ValueError(f"html must be 'cdn', 'inline' or 'none', got {html!r}")
    import plotly.graph_objects as go

    stem = Path(stem)
    fig = go.Figure(fig)  # a copy with fixed trace ids (plotly.js draws random ones into SVG files)
    tag = hashlib.sha1(stem.name.encode()).hexdigest()[:6]
    for i, trace in enumerate(fig.data):
        trace.uid = trace.uid or f"{tag}-{i}"
    static = [f for f in formats if f.lower().lstrip(".") != "html"]
    written = save_figure(fig, stem, formats=static, overwrite=True, scale=scale) if static else []
    for svg in (
        p for p in written if p.suffix == ".svg"
    ):  # plotly.js names the figure's ids with a random uid
        text = svg.read_text(encoding="utf-8")
        uid = re.search(r'id="defs-([0-9a-z]+)"', text)
        if uid:
            atomic_write_text(svg, text.replace(uid.group(1), (tag * 4)[: len(uid.group(1))]))
    if html != "none":
        div_id = "retmask-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem.name)
        page = fig.to_html(include_plotlyjs="cdn" if html == "cdn" else True, full_html=True, div_id=div_id)
        written.append(atomic_write_text(stem.with_name(f"{stem.name}.html"), page))
    return written


def _save_results(r: ModelResults, data: Path, key: str) -> None:
    from retmask_interp.heads.formats import export_head_list

    slug = _slug(r.name)
    export_head_list(r.heads, data / f"heads_{slug}.csv", format="csv", overwrite=True)
    atomic_write_text(data / f"niah_{slug}.csv", r.niah.to_csv(index=False))
    atomic_write_text(data / f"topk_{slug}.csv", r.topk.to_csv(index=False))
    atomic_write_json(
        data / f"results_{slug}.json",
        {
            "model": r.name,
            "experiment_key": key,
            "geometry": [r.heads.num_layers, r.heads.num_heads],
            "retrieval_heads": [list(h) for h in r.retrieval],
        },
    )


def _load_results(name: str, data: Path, key: str) -> ModelResults | None:
    import pandas as pd

    from retmask_interp.heads.formats import load_csv_heads

    slug = _slug(name)
    paths = [
        data / f"{kind}_{slug}.{ext}"
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


def _default_models(config: FigureConfig) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The installed organisms of ``config`` (loaded lazily), the key of each one's saved numbers (settings and
    a fingerprint of its weights), and notes on the missing ones."""
    from retmask_interp.organism import available_organisms, load_organism, organism_path

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
    _, keys, _ = _default_models(config or FigureConfig())
    loaded = {name: _load_results(name, Path(data_dir), key) for name, key in keys.items()}
    return {name: r for name, r in loaded.items() if r is not None}


def regenerate_all(
    out_dir: str | Path,
    *,
    shared: str | Path | None = None,
    results: str | Path | None = None,
    config: FigureConfig | None = None,
    models: Mapping[str, Any] | None = None,
    reuse_data: bool | str | Path = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Regenerate every figure into ``out_dir``; returns the manifest (also in ``out_dir/manifest.json``).

    ``models``: ``{name: model}`` (a ``RetModel``, HF model, path, or a callable returning one); default: the
    organisms of ``config`` that are installed. ``shared``: the published data path (``.../shared/data``);
    ``None`` or absent = organisms only. ``results``: the RetMask experiment's gains (file or directory, see
    :func:`load_gain_results`). ``reuse_data``: take a model's numbers from ``out_dir/data`` (or from the directory
    given) when they were made with the same settings and weights: only re-draw. Existing figure files are
    replaced (the output is deterministic).
    """
    from retmask_interp.analysis.export import static_export_session
    from retmask_interp.core.models import load_model

    config = config or FigureConfig()
    out, key = Path(out_dir), config.experiment_key()
    data = out / "data"
    saved = Path(reuse_data) if isinstance(reuse_data, (str, Path)) else data
    notes: list[str] = []
    keys: dict[str, str] = {}
    if models is None:
        models, keys, notes = _default_models(config)
    computed: dict[str, ModelResults] = {}
    for name, model in models.items():
        mkey = keys.get(name, key)
        r = _load_results(name, saved, mkey) if reuse_data is not False else None
        if r is None:
            if callable(model) and not hasattr(model, "forward"):
                model = model()
            if isinstance(model, (str, Path)):
                model = load_model(model, device=config.device)
            r = run_model(model, config, name=name, progress=progress)
        _save_results(r, data, mkey)
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
        computed, published=published, duo=duo, gains=gains, threshold=config.threshold
    )
    notes += more
    for note in notes:
        log.info("note: %s", note)
    if figs and any(out.glob("*.png")):
        log.info("replacing the figures in %s", out)
    entries = []
    static = any(f.lower().lstrip(".") != "html" for f in config.formats)
    with static_export_session() if static else contextlib.nullcontext():
        for stem, fig in figs.items():
            interactive = stem.startswith(INTERACTIVE) or "html" in config.formats
            html = config.html if interactive else "none"
            files = write_figure(fig, out / stem, formats=config.formats, html=html, scale=config.scale)
            entries.append(
                {"stem": stem, "description": _describe(stem), "files": sorted(p.name for p in files)}
            )
    named = {f"organism: {n}": r.heads for n, r in computed.items()}
    named |= {k: v for group in published.values() for k, v in group.items()}
    if named:
        from retmask_interp.analysis.metrics import metrics_table, to_markdown

        table = metrics_table(named)
        atomic_write_text(data / "metrics.csv", table.to_csv())
        atomic_write_text(data / "metrics.md", to_markdown(table))
    manifest = {
        "figures": entries,
        "notes": notes,
        "models": list(computed),
        "published": {g: sorted(m) for g, m in published.items()},
        "gains_source": None if gains is None else gains.attrs.get("source"),
        "experiment_key": key,
        "config": asdict(config),
    }
    atomic_write_json(out / "manifest.json", manifest)
    atomic_write_text(out / "index.md", _index(manifest))
    return manifest


def _index(manifest: Mapping[str, Any]) -> str:
    lines = ["# Figures", "", "Regenerate with `retmask figures --out figures/ --shared ../shared/data`.", ""]
    lines += ["| figure | what it shows |", "|---|---|"]
    for e in manifest["figures"]:
        png = next((f for f in e["files"] if f.endswith(".png")), e["files"][0] if e["files"] else e["stem"])
        lines.append(f"| [{e['stem']}]({png}) | {e['description']} |")
    if manifest["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in manifest["notes"]]
    return "\n".join(lines) + "\n"
