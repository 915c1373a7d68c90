"""The head-score heatmap (layer x head), the figure every head list draws (``HeadScores.heatmap``).

``analysis.plots`` builds its multi-model figures on these traces. Heads are labelled ``layer-head`` (``18-7``) in
hover text, as in the head-list files; the rank labels of the best heads switch between white and black with the
colour under them so that they stay legible, and the figure grows with the number of layers.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from retmask_interp.heads.scores import score_matrix

__all__ = ["HEAT_SCALE", "head_heatmap", "heat_traces", "top_annotations", "heatmap_height"]

HEAT_SCALE = "Viridis"
# Viridis runs from dark purple to yellow: above this fraction of the scale the cell is light, so the label is black
_LIGHT_FROM = 0.55
_HEAD_HOVER = "head %{y}-%{x}<br>score %{z:.3f}<extra>%{fullData.name}</extra>"


def heatmap_height(num_layers: int) -> int:
    """Pixels for a heatmap of ``num_layers`` rows: 22 px a layer (at least 300 px, at most 1400 px) plus margins,
    so that 30 layers get 30 readable rows (the issue found 180 px for 30)."""
    return int(min(1400, max(300, 22 * num_layers + 160)))


def heat_traces(m: np.ndarray, name: str, threshold: float | None, coloraxis: str | None) -> list:
    """The heatmap trace of score matrix ``m`` and (with ``threshold``) open squares on the heads at or above it."""
    heat = go.Heatmap(
        z=m,
        x=list(range(m.shape[1])),
        y=list(range(m.shape[0])),
        name=name,
        hovertemplate=_HEAD_HOVER,
        coloraxis=coloraxis,
    )
    if coloraxis is None:
        heat.update(colorscale=HEAT_SCALE, zmin=0.0, colorbar={"title": "score"})
    traces: list = [heat]
    if threshold is not None:
        layers, heads = np.nonzero(m >= threshold)
        traces.append(
            go.Scatter(
                x=heads.tolist(),
                y=layers.tolist(),
                mode="markers",
                marker={"symbol": "square-open", "size": 9, "color": "red", "line": {"width": 1.5}},
                name=f"{name} score >= {threshold:g}".strip(),
                customdata=m[layers, heads],
                hovertemplate="head %{y}-%{x}<br>score %{customdata:.3f}<extra>above threshold</extra>",
                showlegend=False,
            )
        )
    return traces


def top_annotations(m: np.ndarray, n: int, zmax: float | None = None) -> list[dict]:
    """Rank labels (1 = best) of the ``n`` highest-scoring heads (ties: lower layer, then head): black on the light
    end of the colour scale (0 to ``zmax``, default the largest score), white on the dark end."""
    flat = m.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))[: max(n, 0)]
    top = float(zmax if zmax is not None else flat.max(initial=0.0)) or 1.0
    out = []
    for rank, idx in enumerate(order, start=1):
        layer, head = divmod(int(idx), m.shape[1])
        if flat[idx] <= 0:
            break
        light = flat[idx] / top >= _LIGHT_FROM
        out.append(
            {
                "x": head,
                "y": layer,
                "text": str(rank),
                "showarrow": False,
                "font": {"color": "black" if light else "white", "size": 10},
            }
        )
    return out


def head_heatmap(
    head_scores, *, threshold: float | None = 0.1, annotate_top: int = 10, title: str | None = None
) -> go.Figure:
    """Layer x head heatmap of retrieval scores.

    Trace 0 is the heatmap (``z`` = the ``[layers, heads]`` score matrix, negatives clipped to 0); trace 1 (when
    ``threshold`` is given) marks with open squares the heads scoring at or above ``threshold``; the
    ``annotate_top`` best heads carry their rank (1 = best) as annotations. The height follows the number of
    layers (``heatmap_height``).
    """
    m = score_matrix(head_scores)
    name = getattr(head_scores, "model", "") or ""
    fig = go.Figure(heat_traces(m, name, threshold, None))
    for ann in top_annotations(m, annotate_top):
        fig.add_annotation(**ann)
    fig.update_layout(
        title=title or (f"Retrieval scores: {name}" if name else "Retrieval scores"),
        xaxis_title="head",
        yaxis_title="layer",
        template="plotly_white",
        height=heatmap_height(m.shape[0]),
        xaxis={"dtick": 1 if m.shape[1] <= 40 else None},
        yaxis={"dtick": 1 if m.shape[0] <= 40 else None},
    )
    return fig
