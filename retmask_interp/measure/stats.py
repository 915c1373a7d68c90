"""Small statistics shared by every measurement: ROUGE-1 recall (the NIAH success rule), bootstrap
confidence intervals (plain, paired, crossed; a crossed bootstrap over units of several conditions), bootstrap
p-values, Holm's correction, rank correlation."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import numpy as np


# --------------------------------------------------------------------------------------------- scoring pieces
def _rouge_tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


ROUGE_SCORERS = ("wu", "simple")


def niah_success(
    reference: str, generated: str, rouge_threshold: float = 0.5, scorer: str = "wu"
) -> tuple[bool, float]:
    """The NIAH success rule (Wu et al.): ``(recall > rouge_threshold, recall)`` with ``recall`` the ROUGE-1 recall
    of ``reference`` (the needle's answer) in ``generated`` (``rouge1_recall(..., scorer)``). ``rouge_threshold`` 0
    counts every sample."""
    if not 0 <= rouge_threshold < 1:
        raise ValueError(
            f"rouge_threshold must be in [0, 1) (a recall above it counts; 0 counts every sample), got {rouge_threshold}"
        )
    recall = rouge1_recall(reference, generated, scorer)
    return (recall > rouge_threshold if rouge_threshold > 0 else True), recall


_WU_SCORER: list = []


def rouge1_recall(reference: str, hypothesis: str, scorer: str = "wu") -> float:
    """ROUGE-1 recall of ``reference`` in ``hypothesis``.

    ``scorer="wu"`` (default): the ``rouge-score`` package with its Porter stemmer, as Wu et al. score NIAH
    (``RougeScorer(["rouge1"], use_stemmer=True)``): "sandwiches" matches "sandwich"; its tokenizer keeps only
    ASCII letters and digits. ``scorer="simple"``: this package's earlier rule (lower-cased alphanumeric unigrams,
    no stemming, clipped counts)."""
    if scorer == "wu":
        if not _WU_SCORER:
            try:
                from rouge_score import rouge_scorer
            except ImportError as err:  # pragma: no cover - a declared dependency
                raise ImportError(
                    "Wu et al.'s ROUGE needs the rouge-score package: pip install rouge-score "
                    "(or pass scorer='simple')"
                ) from err
            absl = logging.getLogger("absl")  # its "Using default tokenizer." INFO line, inside progress bars
            level = absl.level
            if not absl.isEnabledFor(logging.DEBUG):
                absl.setLevel(logging.WARNING)
            try:
                _WU_SCORER.append(rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True))
            finally:
                absl.setLevel(level)
        return float(_WU_SCORER[0].score(reference, hypothesis)["rouge1"].recall)
    if scorer != "simple":
        raise ValueError(f"scorer must be one of {ROUGE_SCORERS}, got {scorer!r}")
    ref = Counter(_rouge_tokens(reference))
    if not ref:
        return 0.0
    hyp = Counter(_rouge_tokens(hypothesis))
    overlap = sum(min(c, hyp[w]) for w, c in ref.items())
    return overlap / sum(ref.values())


def crossed_bootstrap_means(matrix, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution (``n_resamples`` values) of the mean of a ``[seeds, samples]`` matrix, resampling seeds
    and samples independently (both are random draws)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty [seeds, samples] matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("the [seeds, samples] matrix has gaps: every seed must cover the same samples")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m.shape[0], (n_resamples, m.shape[0]))
    cols = rng.integers(0, m.shape[1], (n_resamples, m.shape[1]))
    return m[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))


def crossed_bootstrap_ci(
    matrix, n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of a ``[seeds, samples]`` matrix, resampling seeds and samples
    independently (``crossed_bootstrap_means``); with one seed it is ``bootstrap_ci`` over the samples."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim == 2 and m.shape[0] == 1 and not np.isnan(m).any():
        return bootstrap_ci(m[0], n_resamples, seed, alpha)
    means = crossed_bootstrap_means(m, n_resamples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def unit_bootstrap(
    groups: Mapping[str, Sequence[tuple[Hashable, np.ndarray]]],
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Joint crossed bootstrap of several groups' means (e.g. conditions), each group a list of *units* (seeds,
    control draws): ``(example_set, values)`` with ``values`` a ``[cells, examples]`` array of one unit (per-example
    scores or paired differences; each cell weighted alike).

    A group's statistic is the mean over its units of the unit's mean over cells of the cell's mean over examples.
    Each resample draws, for every example set and cell, example positions with replacement, **the same positions for
    every unit that shares the example set** (so two groups evaluated on the same examples stay paired), and, for
    every group independently, its units with replacement. Returns ``{group: [n_resamples] resampled statistics}``;
    the difference of two groups' arrays is the bootstrap distribution of their contrast."""
    shapes: dict[Hashable, tuple[int, ...]] = {}
    for name, units in groups.items():
        if not units:
            raise ValueError(f"group {name!r} has no units")
        for key, values in units:
            v = np.asarray(values, dtype=float)
            if v.ndim != 2 or v.size == 0 or np.isnan(v).any():
                raise ValueError(
                    f"group {name!r}: each unit needs a complete [cells, examples] array, got shape {v.shape}"
                )
            if shapes.setdefault(key, v.shape) != v.shape:
                raise ValueError(
                    f"example set {key!r} has units of shapes {shapes[key]} and {v.shape}: units sharing an "
                    "example set must score the same cells and examples"
                )
    rng = np.random.default_rng(seed)
    positions = {
        key: rng.integers(0, shape[1], (n_resamples, shape[0], shape[1]))
        for key, shape in sorted(shapes.items(), key=lambda kv: repr(kv[0]))
    }
    out: dict[str, np.ndarray] = {}
    for name, units in groups.items():
        per_unit = []
        for key, values in units:
            v = np.asarray(values, dtype=float)
            cells = np.arange(v.shape[0])[None, :, None]
            per_unit.append(v[cells, positions[key]].mean(axis=(1, 2)))  # [n_resamples]
        stack = np.stack(per_unit, axis=1)  # [n_resamples, units]
        pick = rng.integers(0, stack.shape[1], (n_resamples, stack.shape[1]))
        out[name] = np.take_along_axis(stack, pick, axis=1).mean(axis=1)
    return out


def unit_mean(units: Sequence[tuple[Hashable, np.ndarray]]) -> float:
    """The point estimate ``unit_bootstrap`` resamples: mean over units of the mean over cells and examples."""
    return float(np.mean([np.asarray(v, dtype=float).mean(axis=1).mean() for _, v in units]))


def bootstrap_p(draws, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value of ``null`` for a bootstrap distribution: ``min(1, 2 min(P(d <= null),
    P(d >= null)))``; it is 0 when no resample reaches the null (report it as ``< 1 / len(draws)``)."""
    d = np.asarray(draws, dtype=float)
    if d.size == 0 or np.isnan(d).any():
        raise ValueError("bootstrap_p needs a non-empty distribution without NaN")
    return min(1.0, 2 * min(float(np.mean(d <= null)), float(np.mean(d >= null))))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order: the k-th smallest p times
    ``n - k + 1`` (k from 1), made monotone and capped at 1. NaN stays NaN and does not count in ``n``."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[ok].min()} .. {p[ok].max()}")
    order = ok[np.argsort(p[ok], kind="mergesort")]
    n = order.size
    adj = np.maximum.accumulate(p[order] * (n - np.arange(n)))
    out[order] = np.minimum(adj, 1.0)
    return out


# -- statistics --------------------------------------------------------------------------------------------------
def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of the mean at level ``1 - alpha``; NaN for no values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap_ci(
    before: Sequence[float],
    after: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """CI of the mean of ``after - before`` resampling *pairs* (the same examples scored twice)."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if b.shape != a.shape:
        raise ValueError(f"paired values need the same length, got {b.size} and {a.size}")
    return bootstrap_ci(a - b, n_resamples, seed, alpha)


# -- agreement between two head lists of one model ------------------------------------------------------
def rankdata(values) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties getting the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    x = np.asarray(values, dtype=float).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    if denom == 0:
        return float("nan")  # a constant list has no correlation
    return float((a * b).sum() / denom)


def spearman(a, b) -> float:
    """Spearman rank correlation with average ranks for ties; NaN when either input is constant."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman: inputs differ in length ({a.size} vs {b.size})")
    return _pearson(rankdata(a), rankdata(b))
