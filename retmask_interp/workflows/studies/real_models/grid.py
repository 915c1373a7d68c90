"""The real-model study's NIAH grid (one haystack and prompt style) and the evenly spread subsets of it that the
masking, top-k and attention stages run on."""

from __future__ import annotations

from collections import Counter

from retmask_interp.workflows.studies.real_models.config import StudyConfig, grid_lengths

__all__ = ["build_samples", "spread_subset"]


def build_samples(rm, cfg: StudyConfig, haystack: str, style: str) -> list:
    """The NIAH grid of one haystack and prompt style (``data.niah.niah_grid``; the package's needles)."""
    from retmask_interp.data.niah import niah_grid

    assert cfg.needles and cfg.num_depths
    return niah_grid(
        rm,
        grid_lengths(cfg),
        cfg.num_depths,
        cfg.needles,
        needle_set="default",
        haystack=haystack,
        style=style,
    )


def _strata(sample) -> tuple | None:
    """(length, depth, needle) of a NIAH sample (``data.niah.NIAHSample``), or None for other items."""
    needle = "needle_index" if hasattr(sample, "needle_index") else "needle"
    keys = ("context_length", "depth", needle)
    if not all(hasattr(sample, k) for k in keys):
        return None
    return tuple(str(getattr(sample, k)) for k in keys)


def spread_subset(samples: list, n: int) -> list:
    """``n`` samples spread over the grid: NIAH samples are picked one at a time, each time the one whose length,
    depth and needle (and length x depth cell) have been picked least so far, ties broken by grid order, so every
    length, depth and needle is represented as evenly as ``n`` allows. Other items: evenly spaced. Grid order kept.
    """
    if n >= len(samples):
        return list(samples)
    strata = [_strata(s) for s in samples]
    if any(k is None for k in strata):
        step = len(samples) / n
        return [samples[int(i * step)] for i in range(n)]
    counts: list[Counter] = [Counter() for _ in range(3)]
    cells: Counter = Counter()
    left = set(range(len(samples)))
    chosen = []

    def load(i: int) -> tuple[int, int, int]:  # picked-so-far counts of i's strata, then grid order
        k = strata[i]
        assert k is not None
        return sum(counts[a][k[a]] for a in range(3)), cells[k[:2]], i

    for _ in range(n):
        best = min(left, key=load)
        left.remove(best)
        chosen.append(best)
        k = strata[best]
        assert k is not None
        for a in range(3):
            counts[a][k[a]] += 1
        cells[k[:2]] += 1
    return [samples[i] for i in sorted(chosen)]
