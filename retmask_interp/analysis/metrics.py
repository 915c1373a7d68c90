"""How retrieval scores are organised over a model's heads: concentration metrics, layer profile, agreement.

Every metric here is a pure function of the mean retrieval scores ``s`` of **all** heads of one model
(``n`` = number of heads, negative scores clipped to 0, ``p = s / sum(s)``):

- ``gini``: Gini coefficient of ``s``, ``sum_i (2i - n - 1) s_(i) / (n sum s)`` with ``s_(i)`` sorted ascending
  (0 = every head equal, ``1 - 1/n`` = one head holds everything);
- ``hoyer``: ``(sqrt(n) - |s|_1 / |s|_2) / (sqrt(n) - 1)`` (0 = flat, 1 = a single non-zero head);
- ``normalized_entropy``: ``-sum p log p / log n`` with ``0 log 0 = 0`` (1 = flat, 0 = one head);
- ``effective_heads``: ``exp(-sum p log p)``, the number of equally scored heads with the same entropy;
- ``top10_share`` (``top_k_share(s, k)``): mass of the ``k`` highest scores over the total mass.

Higher ``gini`` / ``hoyer`` / ``top10_share`` and lower ``normalized_entropy`` / ``effective_heads`` mean a more
*concentrated* model, the property RetMask's gains were reported to follow.

Degenerate inputs (all scores 0, or a single head) have no inequality, and every metric takes the value of
a flat distribution: ``gini = 0``, ``hoyer = 0``, ``normalized_entropy = 1``, ``effective_heads = n``,
``top_k_share = min(k, n) / n``, and the layer profile treats every head as holding equal mass. The
``total_mass`` entry (0) tells such a model apart from a genuinely flat one. Non-finite scores are an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retmask_interp.heads.scores import score_matrix
from retmask_interp.measure.stats import _pearson, spearman

__all__ = [
    "DEFAULT_THRESHOLDS",
    "gini",
    "hoyer",
    "normalized_entropy",
    "effective_heads",
    "top_k_share",
    "count_at_or_above",
    "layer_mass_share",
    "layers_for_mass",
    "organization_metrics",
    "metrics_table",
    "agreement",
    "to_markdown",
]

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)


def _flat(values) -> np.ndarray:
    s = np.asarray(values, dtype=float).ravel()
    if s.size == 0:
        raise ValueError("no scores given")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return np.clip(s, 0.0, None)


def _probabilities(s: np.ndarray) -> np.ndarray:
    total = s.sum()
    if total <= 0:
        return np.full(s.size, 1.0 / s.size)  # no mass: the flat convention of the module docstring
    return s / total


# -- single metrics --------------------------------------------------------------------------------------
def gini(values) -> float:
    """Gini coefficient of the (clipped) scores; 0 when all are equal, all zero, or ``n = 1``."""
    s = np.sort(_flat(values))
    n, total = s.size, s.sum()
    if n == 1 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * s).sum() / (n * total))


def hoyer(values) -> float:
    """Hoyer sparsity ``(sqrt(n) - |s|_1/|s|_2) / (sqrt(n) - 1)``; 0 for all-zero scores or ``n = 1``."""
    s = _flat(values)
    n = s.size
    l2 = float(np.sqrt((s**2).sum()))
    if n == 1 or l2 <= 0:
        return 0.0
    return float((math.sqrt(n) - s.sum() / l2) / (math.sqrt(n) - 1))


def _entropy(s: np.ndarray) -> float:
    p = _probabilities(s)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def normalized_entropy(values) -> float:
    """Shannon entropy of ``p = s / sum s`` over ``log n`` (1 = flat); 1 for all-zero scores or ``n = 1``."""
    s = _flat(values)
    if s.size == 1 or s.sum() <= 0:
        return 1.0
    return _entropy(s) / math.log(s.size)


def effective_heads(values) -> float:
    """``exp(entropy of p)``: how many equally scored heads carry the same entropy; ``n`` for all-zero scores."""
    s = _flat(values)
    if s.sum() <= 0:
        return float(s.size)
    return math.exp(_entropy(s))


def top_k_share(values, k: int) -> float:
    """Sum of the ``k`` largest scores over the sum of all (``min(k, n) / n`` when all are zero)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    s = _flat(values)
    total = s.sum()
    if total <= 0:
        return min(k, s.size) / s.size
    return float(np.sort(s)[::-1][:k].sum() / total)


def count_at_or_above(values, threshold: float) -> int:
    """Number of heads whose mean score is at or above ``threshold`` (the convention of the published tables)."""
    return int((_flat(values) >= threshold).sum())


def layer_mass_share(matrix) -> np.ndarray:
    """Share of the total retrieval mass held by each layer (sums to 1; equal per head when all are zero)."""
    m = score_matrix(matrix)
    total = m.sum()
    if total <= 0:
        return np.full(m.shape[0], 1.0 / m.shape[0])
    return m.sum(axis=1) / total


def layers_for_mass(matrix, fraction: float = 0.5) -> int:
    """Fewest layers that together hold at least ``fraction`` of the retrieval mass."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    shares = np.sort(layer_mass_share(matrix))[::-1]
    cum = np.cumsum(shares)
    return int(np.searchsorted(cum, fraction - 1e-12) + 1)


# -- all metrics of one model ----------------------------------------------------------------------------
def _threshold_name(t: float) -> str:
    return f"{t:g}"


def organization_metrics(
    head_scores,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    top_k: int = 10,
    span_threshold: float = 0.1,
) -> dict[str, Any]:
    """Concentration and layer-profile metrics of one model's scores (definitions: module docstring).

    Keys: ``n_layers``, ``n_heads_per_layer``, ``n_heads``, ``total_mass``, ``max_score``, ``gini``, ``hoyer``,
    ``normalized_entropy``, ``effective_heads``, ``effective_heads_fraction`` (= effective_heads / n),
    ``top{k}_share``, ``n_ge_{t}`` for each threshold ``t`` (mean score >= t), ``layers_for_half_mass``,
    ``span_threshold``, ``span_layer_min`` / ``span_layer_max`` (lowest / highest layer with a head scoring
    >= ``span_threshold``, ``None`` when there is none), ``n_layers_above_span_threshold``,
    ``mass_centroid_depth`` (mass-weighted mean layer / (n_layers - 1), 0 = first layer, 1 = last) and
    ``layer_mass_share`` (list, one share per layer).
    """
    m = score_matrix(head_scores)
    s = m.ravel()
    n_layers, per_layer = m.shape
    shares = layer_mass_share(m)
    span_layers = np.flatnonzero((m >= span_threshold).any(axis=1))
    out: dict[str, Any] = {
        "n_layers": int(n_layers),
        "n_heads_per_layer": int(per_layer),
        "n_heads": int(s.size),
        "total_mass": float(s.sum()),
        "max_score": float(s.max()),
        "gini": gini(s),
        "hoyer": hoyer(s),
        "normalized_entropy": normalized_entropy(s),
        "effective_heads": effective_heads(s),
    }
    out["effective_heads_fraction"] = out["effective_heads"] / s.size
    out[f"top{top_k}_share"] = top_k_share(s, top_k)
    for t in thresholds:
        out[f"n_ge_{_threshold_name(t)}"] = count_at_or_above(s, t)
    out["layers_for_half_mass"] = layers_for_mass(m, 0.5)
    out["span_threshold"] = float(span_threshold)
    out["span_layer_min"] = int(span_layers.min()) if span_layers.size else None
    out["span_layer_max"] = int(span_layers.max()) if span_layers.size else None
    out["n_layers_above_span_threshold"] = int(span_layers.size)
    depth = float((shares * np.arange(n_layers)).sum() / (n_layers - 1)) if n_layers > 1 else 0.0
    out["mass_centroid_depth"] = depth
    out["layer_mass_share"] = [float(x) for x in shares]
    return out


def metrics_table(named_head_scores: Mapping[str, Any], **kwargs):
    """One row per model (index = name) of the scalar ``organization_metrics``; ``kwargs`` are passed on."""
    import pandas as pd

    rows = {}
    for name, hs in named_head_scores.items():
        metrics = organization_metrics(hs, **kwargs)
        rows[name] = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "model"
    return df


def _top_set(m: np.ndarray, k: int) -> tuple[set[tuple[int, int]], int]:
    """Top-k heads (ties: lower layer, then head, as ``HeadScores.ranked``) and how many heads outside the
    top-k tie with its k-th score (then the top-k set is partly arbitrary)."""
    flat = m.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))  # score desc, then row-major index
    top = order[:k]
    ties = int((flat[order[k:]] == flat[order[k - 1]]).sum()) if 0 < k < flat.size else 0
    return {divmod(int(i), m.shape[1]) for i in top}, ties


def _share_reaching(heads: set[tuple[int, int]], m: np.ndarray, k: int) -> float:
    """Fraction of ``heads`` whose score in ``m`` reaches ``m``'s k-th highest score (tie-robust overlap)."""
    kth = np.sort(m.ravel())[::-1][k - 1]
    return sum(m[h] >= kth for h in heads) / len(heads)


def agreement(a, b, k: Sequence[int] = (10, 20, 50)) -> dict[str, Any]:
    """How far two head lists of the same model agree.

    Returns ``spearman`` (rank correlation over all heads, average ranks for ties), ``pearson``, ``n_heads``,
    and for each ``k``: ``top{k}_jaccard`` (|A & B| / |A | B| of the two top-k sets), ``top{k}_overlap``
    (|A & B|) and ``top{k}_boundary_ties`` (heads outside a top-k that tie with its k-th score, summed over
    both lists; when > 0 the top-k sets depend on the tie-break and the Jaccard index is partly arbitrary),
    and the tie-robust ``top{k}_a_in_b`` (fraction of A's top-k whose score in B reaches B's k-th highest
    score, i.e. that are in B's top-k under some tie-break) and ``top{k}_b_in_a``. A ``k`` larger than the
    number of heads is skipped.
    """
    ma, mb = score_matrix(a), score_matrix(b)
    if ma.shape != mb.shape:
        raise ValueError(
            f"head lists have different geometry ({ma.shape[0]}x{ma.shape[1]} vs {mb.shape[0]}x{mb.shape[1]} "
            "layers x heads): agreement compares two lists of the same model. A per-KV-head list (DuoAttention) "
            "must be expanded to query heads first (interop.load_duo_attention(..., group_size=...))."
        )
    out: dict[str, Any] = {
        "n_heads": int(ma.size),
        "spearman": spearman(ma, mb),
        "pearson": _pearson(ma.ravel(), mb.ravel()),
    }
    for kk in k:
        kk = int(kk)
        if kk <= 0:
            raise ValueError(f"k must be positive, got {kk}")
        if kk > ma.size:
            log.debug("top-%d skipped: the model has only %d heads", kk, ma.size)
            continue
        top_a, ties_a = _top_set(ma, kk)
        top_b, ties_b = _top_set(mb, kk)
        inter = len(top_a & top_b)
        out[f"top{kk}_jaccard"] = inter / len(top_a | top_b)
        out[f"top{kk}_overlap"] = inter
        out[f"top{kk}_boundary_ties"] = ties_a + ties_b
        out[f"top{kk}_a_in_b"] = _share_reaching(top_a, mb, kk)
        out[f"top{kk}_b_in_a"] = _share_reaching(top_b, ma, kk)
        if ties_a + ties_b:  # DEBUG: it repeated for every pair of models and every k (-v shows it)
            log.debug(
                "top-%d: %d heads tie with the k-th score; the top-k set depends on tie-breaks",
                kk,
                ties_a + ties_b,
            )
    return out


# -- files in, table and figures out --------------------------------------------------------------------
def to_markdown(df, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (index included), without extra dependencies."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(v) for v in row.tolist()]) + " |")
    return "\n".join(lines) + "\n"
