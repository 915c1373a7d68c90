"""Plotly figures of head scores, NIAH results and masking experiments.

Every function returns a ``plotly.graph_objects.Figure`` (nothing is shown); ``save_figure`` writes
self-contained HTML (plotly.js embedded, works offline, fixed element id so the same figure gives the same
file) and static images through kaleido (needs Chrome/Chromium; without one it warns and writes HTML only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from retmask_interp.analysis.metrics import agreement
from retmask_interp.heads.plots import HEAT_SCALE, head_heatmap, heat_traces, heatmap_height, top_annotations
from retmask_interp.heads.scores import HeadScores, score_matrix

ScoresLike = HeadScores | np.ndarray | Mapping | Sequence  # what score_matrix accepts

__all__ = [
    "head_heatmap",
    "heatmaps_side_by_side",
    "sorted_score_curves",
    "metrics_chart",
    "niah_grid",
    "niah_grids",
    "topk_masking_curve",
    "agreement_figure",
    "gain_vs_concentration",
]

log = logging.getLogger(__name__)

SUCCESS_SCALE = "RdYlGn"


def _name(hs, default: str = "") -> str:
    return getattr(hs, "model", "") or default


def heatmaps_side_by_side(
    named_scores: Mapping[str, ScoresLike],
    *,
    threshold: float | None = 0.1,
    annotate_top: int = 5,
    zmax: float | None = None,
    max_cols: int = 4,
    title: str | None = None,
):
    """One heatmap per model (up to ``max_cols`` per row) on one colour scale (0 to ``zmax``, default the
    largest score of all models). Models may differ in geometry. Traces per model: heatmap, then threshold
    markers."""
    if not named_scores:
        raise ValueError("no head lists to plot")
    mats = {name: score_matrix(hs) for name, hs in named_scores.items()}
    top = zmax if zmax is not None else max(float(m.max()) for m in mats.values()) or 1.0
    cols = max(1, min(len(mats), max_cols))
    rows = -(-len(mats) // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(mats), horizontal_spacing=0.05, vertical_spacing=0.12 / rows
    )
    for i, (name, m) in enumerate(mats.items()):
        row, col = divmod(i, cols)
        for trace in heat_traces(m, name, threshold, "coloraxis"):
            fig.add_trace(trace, row=row + 1, col=col + 1)
        for ann in top_annotations(m, annotate_top, top):
            fig.add_annotation(**ann, row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="head", row=row + 1, col=col + 1)
        if col == 0:
            fig.update_yaxes(title_text="layer", row=row + 1, col=1)
    fig.update_layout(
        coloraxis={"colorscale": HEAT_SCALE, "cmin": 0.0, "cmax": top, "colorbar": {"title": "score"}},
        title=title or "Retrieval scores per head",
        template="plotly_white",
        width=max(500, 380 * cols + 120),
        height=max(heatmap_height(max(m.shape[0] for m in mats.values())), 420) * rows + 60,
    )
    return fig


def sorted_score_curves(named_scores: Mapping[str, ScoresLike], *, title: str | None = None):
    """The concentration picture. Left: every head's score, sorted descending, against its rank. Right:
    cumulative share of the retrieval mass against the fraction of heads (steeper = more concentrated).
    Traces: for each model, the sorted curve then the cumulative curve."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["scores, sorted", "cumulative share of retrieval mass"]
    )
    colors = _palette(len(named_scores))
    for color, (name, hs) in zip(colors, named_scores.items()):
        s = np.sort(score_matrix(hs).ravel())[::-1]
        total = s.sum()
        cum = np.cumsum(s) / total if total > 0 else np.arange(1, s.size + 1) / s.size
        frac = np.arange(1, s.size + 1) / s.size
        common = {"legendgroup": name, "line": {"color": color}, "mode": "lines"}
        fig.add_trace(go.Scatter(x=np.arange(1, s.size + 1), y=s, name=name, **common), row=1, col=1)
        fig.add_trace(go.Scatter(x=frac, y=cum, name=name, showlegend=False, **common), row=1, col=2)
    fig.update_xaxes(title_text="rank", type="log", row=1, col=1)
    fig.update_yaxes(title_text="retrieval score", row=1, col=1)
    fig.update_xaxes(title_text="fraction of heads", type="log", row=1, col=2)
    fig.update_yaxes(title_text="share of total score", range=[0, 1.02], row=1, col=2)
    fig.update_layout(
        title=title or "How concentrated are the retrieval scores?",
        template="plotly_white",
        width=1100,
        height=480,
    )
    return fig


_CHART_METRICS = ("gini", "hoyer", "top10_share", "normalized_entropy", "effective_heads_fraction")


def metrics_chart(metrics_df, *, metrics: Sequence[str] = _CHART_METRICS, title: str | None = None):
    """Grouped bars of the [0, 1] concentration metrics (one trace per model = row of ``metrics_table``).
    Higher = more concentrated, except ``normalized_entropy`` and ``effective_heads_fraction``."""
    cols = [m for m in metrics if m in metrics_df.columns]
    if not cols:
        raise ValueError(
            f"metrics_df has none of the columns {list(metrics)}; pass analysis.metrics_table(...)"
        )
    fig = go.Figure()
    for name, row in metrics_df.iterrows():
        fig.add_trace(go.Bar(x=cols, y=[float(row[c]) for c in cols], name=str(name)))
    fig.update_layout(
        barmode="group",
        title=title or "Concentration of retrieval scores",
        yaxis={"title": "value", "range": [0, 1]},
        template="plotly_white",
    )
    return fig


def _grid(df, value: str):
    """Mean of ``value`` per (depth, context_length) and the number of samples per cell."""
    missing = {"context_length", "depth", value} - set(df.columns)
    if missing:
        raise ValueError(
            f"NIAH results need columns context_length, depth, {value}; missing {sorted(missing)}"
        )
    table = df.pivot_table(index="depth", columns="context_length", values=value, aggfunc=["mean", "count"])
    return table["mean"].sort_index(), table["count"].sort_index()


def _niah_heat(df, value: str, coloraxis: str | None, name: str = ""):
    mean, count = _grid(df, value)
    heat = go.Heatmap(
        z=mean.to_numpy(dtype=float),
        x=[str(c) for c in mean.columns],
        y=[f"{float(d):g}" for d in mean.index],  # categories: numeric depths padded the axis to -25..125
        customdata=count.to_numpy(dtype=float),
        name=name,
        hovertemplate="length %{x}, depth %{y}%<br>success %{z:.2f} (n=%{customdata})<extra></extra>",
        coloraxis=coloraxis,
    )
    if coloraxis is None:
        heat.update(colorscale=SUCCESS_SCALE, zmin=0.0, zmax=1.0, colorbar={"title": value})
    return heat


def niah_grid(df, *, value: str = "success", title: str | None = None):
    """Needle-in-a-haystack success: mean of ``value`` per context length (x, in tokens) x depth (y, % of the
    context). ``df`` has one row per sample with columns ``context_length``, ``depth``, ``value``."""
    fig = go.Figure(_niah_heat(df, value, None))
    fig.update_layout(
        title=title or "Needle in a haystack",
        xaxis_title="context length (tokens)",
        yaxis_title="needle depth (%)",
        yaxis_type="category",
        template="plotly_white",
    )
    return fig


def niah_grids(named_dfs: Mapping[str, object], *, value: str = "success", title: str | None = None):
    """Several NIAH grids side by side on one 0-1 colour scale (e.g. unmasked / retrieval-masked / random)."""
    if not named_dfs:
        raise ValueError("no NIAH results to plot")
    fig = make_subplots(rows=1, cols=len(named_dfs), subplot_titles=list(named_dfs), shared_yaxes=True)
    for col, (name, df) in enumerate(named_dfs.items(), start=1):
        fig.add_trace(_niah_heat(df, value, "coloraxis", name), row=1, col=col)
        fig.update_xaxes(title_text="context length", row=1, col=col)
    fig.update_yaxes(title_text="needle depth (%)", row=1, col=1)
    fig.update_yaxes(type="category")
    fig.update_layout(
        coloraxis={"colorscale": SUCCESS_SCALE, "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": value}},
        title=title or "Needle in a haystack",
        template="plotly_white",
        width=max(500, 380 * len(named_dfs)),
    )
    return fig


def topk_masking_curve(df, *, title: str | None = None):
    """NIAH success against the number ``k`` of masked heads, one line per ``kind`` (retrieval / random).
    Columns ``k, success, kind``; rows with the same (kind, k) are averaged; optional ``ci_low`` / ``ci_high``
    become error bars. Kinds named ``"MODEL: ..."`` (several models in one figure) share a colour per model, and
    random-head lines are dashed. Where the measured ks are not evenly spaced (0, 1, 2, 4, ..., 32) they are drawn
    evenly spaced and labelled with their values, so that the small ks do not crowd together at the left."""
    missing = {"k", "success", "kind"} - set(df.columns)
    if missing:
        raise ValueError(f"masking results need columns k, success, kind; missing {sorted(missing)}")
    has_ci = {"ci_low", "ci_high"} <= set(df.columns)
    agg = df.groupby(["kind", "k"], sort=True).mean(numeric_only=True).reset_index()
    model = {kind: str(kind).split(": ")[0] for kind in agg["kind"].unique()}
    groups = sorted(set(model.values()))
    color = dict(zip(groups, _palette(len(groups))))
    ks = sorted(agg["k"].unique().tolist())
    even = len(set(np.diff(ks).tolist())) <= 1
    where = {k: (k if even else i) for i, k in enumerate(ks)}
    fig = go.Figure()
    for kind, part in agg.groupby("kind", sort=True):
        trace = go.Scatter(
            x=[where[k] for k in part["k"].tolist()],
            y=part["success"].tolist(),
            customdata=part["k"].tolist(),
            hovertemplate=f"{kind}<br>k = %{{customdata}}: %{{y:.3f}}<extra></extra>",
            mode="lines+markers",
            name=str(kind),
            line={
                "color": color[model[kind]],
                "dash": "dash" if "random" in str(kind) else "solid",
            },
        )
        if has_ci:
            trace.error_y = {
                "type": "data",
                "symmetric": False,
                "array": (part["ci_high"] - part["success"]).tolist(),
                "arrayminus": (part["success"] - part["ci_low"]).tolist(),
            }
        fig.add_trace(trace)
    fig.update_layout(
        title=title or "Masking the top-k retrieval heads vs k random heads",
        xaxis={"title": "heads masked (k)"}
        if even
        else {
            "title": "heads masked (k)",
            "tickvals": list(where.values()),
            "ticktext": [str(k) for k in ks],
        },
        yaxis={"title": "NIAH success", "range": [0, 1.05]},
        template="plotly_white",
    )
    return fig


def agreement_figure(
    a, b, *, names: tuple[str, str] | None = None, k: Sequence[int] = (10, 20, 50), title=None
):
    """Two head lists of one model. Left: each head's score in list A against list B (trace 0, hover names the
    head). Right: top-k Jaccard overlap for each ``k`` (trace 1). The title gives the Spearman correlation."""
    names = names or (_name(a, "A"), _name(b, "B"))
    ma, mb = score_matrix(a), score_matrix(b)
    stats = agreement(ma, mb, k=k)
    k = [kk for kk in k if f"top{kk}_jaccard" in stats]  # k larger than the number of heads is skipped
    layers, heads = np.indices(ma.shape)
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.65, 0.35], subplot_titles=["per head", "top-k overlap"]
    )
    fig.add_trace(
        go.Scatter(
            x=ma.ravel(),
            y=mb.ravel(),
            mode="markers",
            marker={"size": 5, "opacity": 0.6},
            customdata=np.stack([layers.ravel(), heads.ravel()], axis=1),
            hovertemplate="head %{customdata[0]}-%{customdata[1]}<br>%{x:.3f} vs %{y:.3f}<extra></extra>",
            name="heads",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=[f"top-{kk}" for kk in k], y=[stats[f"top{kk}_jaccard"] for kk in k], name="Jaccard"),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text=names[0], row=1, col=1)
    fig.update_yaxes(title_text=names[1], row=1, col=1)
    fig.update_yaxes(title_text="Jaccard index", range=[0, 1], row=1, col=2)
    fig.update_layout(
        title=title or f"{names[0]} vs {names[1]}: Spearman {stats['spearman']:.2f}", template="plotly_white"
    )
    return fig


def gain_vs_concentration(
    df, *, x: str = "gini", y: str = "gain", label: str = "model", title: str | None = None
):
    """Scatter of a concentration metric (``x``) against the gain from RetMask (``y``), one labelled point per
    model (trace 0); with 3 or more models a least-squares line is added (trace 1)."""
    missing = {x, y} - set(df.columns)
    if missing:
        raise ValueError(f"need columns {x!r} and {y!r}; missing {sorted(missing)}")
    labels = df[label].astype(str).tolist() if label in df.columns else [str(i) for i in df.index]
    xs, ys = df[x].to_numpy(dtype=float), df[y].to_numpy(dtype=float)
    fig = go.Figure(
        go.Scatter(x=xs, y=ys, mode="markers+text", text=labels, textposition="top center", name="models")
    )
    if len(xs) >= 3 and np.ptp(xs) > 0:
        slope, intercept = np.polyfit(xs, ys, 1)
        line_x = np.array([xs.min(), xs.max()])
        fig.add_trace(
            go.Scatter(
                x=line_x,
                y=slope * line_x + intercept,
                mode="lines",
                name="least squares",
                line={"dash": "dash", "color": "gray"},
            )
        )
    fig.update_layout(title=title or f"{y} vs {x}", xaxis_title=x, yaxis_title=y, template="plotly_white")
    return fig


def _palette(n: int) -> list[str]:
    import plotly.express as px

    base = px.colors.qualitative.Plotly
    return [base[i % len(base)] for i in range(n)]


# -- effects of masking (retmask_interp.measure.attention, measure.outcomes) --------------------------------------------------------
_ROLE_COLORS = {"masked": "black", "compensates": "#2ca02c", "collapses": "#d62728", "unchanged": "#aaaaaa"}


def compensation_figure(df, *, value: str = "span_mass", top_n: int = 15, title: str | None = None):
    """Output of ``measure.attention.compensation``. Left: each head's ``value`` unmasked (x) against with the retrieval
    heads masked (y), one trace per role (masked / compensates / collapses / unchanged), and the diagonal (last
    trace). Right: the ``top_n`` unmasked heads with the largest change, as bars (trace after the roles)."""
    need = {"layer", "head", "role", f"{value}_before", f"{value}_after", f"delta_{value}"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"compensation results need columns {sorted(need)}; missing {sorted(missing)}")
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.55, 0.45], subplot_titles=["per head", f"largest changes ({value})"]
    )
    for role, color in _ROLE_COLORS.items():
        part = df[df["role"] == role]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part[f"{value}_before"].tolist(),
                y=part[f"{value}_after"].tolist(),
                mode="markers",
                name=role,
                marker={"color": color, "size": 7, "symbol": "x" if role == "masked" else "circle"},
                customdata=np.stack([part["layer"], part["head"]], axis=1),
                hovertemplate="head %{customdata[0]}-%{customdata[1]}<br>%{x:.3f} -> %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    free = df[df["role"] != "masked"]
    top = free.reindex(free[f"delta_{value}"].abs().sort_values(ascending=False).index)[:top_n]
    fig.add_trace(
        go.Bar(
            x=[f"{a}-{b}" for a, b in zip(top["layer"], top["head"])],
            y=top[f"delta_{value}"].tolist(),
            marker_color=[_ROLE_COLORS.get(r, "gray") for r in top["role"]],
            name="change",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    hi = float(max(df[f"{value}_before"].max(), df[f"{value}_after"].max(), 1e-9)) * 1.05
    fig.add_trace(
        go.Scatter(
            x=[0, hi], y=[0, hi], mode="lines", line={"dash": "dash", "color": "gray"}, showlegend=False
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text=f"{value}, unmasked", row=1, col=1)
    fig.update_yaxes(title_text=f"{value}, retrieval heads masked", row=1, col=1)
    fig.update_yaxes(title_text=f"change in {value}", row=1, col=2)
    fig.update_layout(
        title=title or "Which heads take over when the retrieval heads are masked", template="plotly_white"
    )
    return fig


def single_head_effect_figure(df, *, title: str | None = None):
    """Output of ``measure.attention.single_head_effects``: retrieval score (x) against the drop in answer log-likelihood
    when the head alone is masked (y, with bootstrap CI bars); one point per head (trace 0). The title gives the
    Spearman correlation (``df.attrs["spearman"]``, recomputed when absent)."""
    from retmask_interp.measure.stats import spearman

    missing = {"layer", "head", "score", "effect"} - set(df.columns)
    if missing:
        raise ValueError(
            f"single-head effects need columns layer, head, score, effect; missing {sorted(missing)}"
        )
    trace = go.Scatter(
        x=df["score"].tolist(),
        y=df["effect"].tolist(),
        mode="markers",
        marker={"size": 7},
        customdata=np.stack([df["layer"], df["head"]], axis=1),
        hovertemplate="head %{customdata[0]}-%{customdata[1]}<br>score %{x:.3f}<br>effect %{y:.3f}<extra></extra>",
        name="heads",
    )
    if {"ci_low", "ci_high"} <= set(df.columns):
        trace.error_y = {
            "type": "data",
            "symmetric": False,
            "array": (df["ci_high"] - df["effect"]).tolist(),
            "arrayminus": (df["effect"] - df["ci_low"]).tolist(),
            "thickness": 1,
        }
    rho = df.attrs.get("spearman")
    if rho is None:
        rho = spearman(df["score"], df["effect"]) if len(df) > 1 else float("nan")
    fig = go.Figure(trace)
    fig.add_hline(y=0, line={"color": "gray", "dash": "dot"})
    fig.update_layout(
        title=title or f"Masking one head: effect vs retrieval score (Spearman {rho:.2f})",
        xaxis_title="retrieval score",
        yaxis_title="drop in answer log-likelihood (nats / token)",
        template="plotly_white",
    )
    return fig


def masking_outcome_bars(summary, *, metric: str = "success", by: str = "kind", title: str | None = None):
    """Output of ``measure.outcomes.summarize_outcomes``: one bar per ``by`` group (in table order) for ``metric``, with
    its bootstrap CI as error bars (trace 0)."""
    missing = {by, "metric", "mean", "ci_low", "ci_high"} - set(summary.columns)
    if missing:
        raise ValueError(
            f"outcome summary needs columns {by}, metric, mean, ci_low, ci_high; missing {sorted(missing)}"
        )
    part = summary[summary["metric"] == metric]
    if part.empty:
        raise ValueError(f"no rows for metric {metric!r}; metrics present: {sorted(set(summary['metric']))}")
    fig = go.Figure(
        go.Bar(
            x=part[by].astype(str).tolist(),
            y=part["mean"].tolist(),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (part["ci_high"] - part["mean"]).tolist(),
                "arrayminus": (part["mean"] - part["ci_low"]).tolist(),
            },
            marker_color=_palette(len(part)),
            name=metric,
        )
    )
    yaxis: dict[str, Any] = {"title": metric}
    if metric in ("success", "rouge"):
        yaxis["range"] = [0, 1.05]
    fig.update_layout(
        title=title or f"NIAH {metric} by condition (95% CI)", yaxis=yaxis, template="plotly_white"
    )
    return fig


__all__ += ["compensation_figure", "single_head_effect_figure", "masking_outcome_bars"]
