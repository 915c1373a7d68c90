"""Small statistics shared by every measurement: ROUGE-1 recall (the NIAH success rule), bootstrap
confidence intervals (plain, paired, crossed), rank correlation."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

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
            _WU_SCORER.append(rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True))
        return float(_WU_SCORER[0].score(reference, hypothesis)["rouge1"].recall)
    if scorer != "simple":
        raise ValueError(f"scorer must be one of {ROUGE_SCORERS}, got {scorer!r}")
    ref = Counter(_rouge_tokens(reference))
    if not ref:
        return 0.0
    hyp = Counter(_rouge_tokens(hypothesis))
    overlap = sum(min(c, hyp[w]) for w, c in ref.items())
    return overlap / sum(ref.values())


def crossed_bootstrap_ci(
    matrix, n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of a ``[seeds, samples]`` matrix, resampling seeds and samples
    independently (both are random draws); with one seed it is ``measure.stats.bootstrap_ci`` over the samples."""
    from retmask_interp.measure.stats import bootstrap_ci

    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty [seeds, samples] matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("the [seeds, samples] matrix has gaps: every seed must cover the same samples")
    if m.shape[0] == 1:
        return bootstrap_ci(m[0], n_resamples, seed, alpha)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m.shape[0], (n_resamples, m.shape[0]))
    cols = rng.integers(0, m.shape[1], (n_resamples, m.shape[1]))
    means = m[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


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
