"""Random-head controls: heads drawn away from the retrieval heads, optionally matched per layer."""

from __future__ import annotations

import random as _random
from collections.abc import Iterable

import torch

from retmask_interp.core.models import as_model
from retmask_interp.heads.scores import Head


# --------------------------------------------------------------------------------------------- random controls
def random_heads(
    model_or_geometry,
    n: int,
    *,
    exclude: Iterable[Head] = (),
    seed: int = 0,
    like: Iterable[Head] | None = None,
    layers: Iterable[int] | None = None,
) -> list[Head]:
    """``n`` heads drawn uniformly without replacement from the heads not in ``exclude``.

    With ``like`` (a head list), the draw is matched per layer: as many heads in each layer as ``like`` has there.
    With ``layers`` (unmatched draws only), the heads come from those layers alone (e.g. the layers that hold no
    retrieval head).
    """
    g = getattr(model_or_geometry, "geometry", model_or_geometry)
    if isinstance(model_or_geometry, torch.nn.Module):
        g = as_model(model_or_geometry).geometry
    excluded = {(int(a), int(b)) for a, b in exclude}
    rng = _random.Random(seed)
    if like is not None and layers is not None:
        raise ValueError(
            "a per-layer matched draw (like=) takes its layers from like; do not pass layers= too"
        )
    if like is not None:
        per_layer: dict[int, int] = {}
        for layer, _ in like:
            per_layer[layer] = per_layer.get(layer, 0) + 1
        out: list[Head] = []
        for layer, k in sorted(per_layer.items()):
            pool = [(layer, h) for h in range(g.num_heads) if (layer, h) not in excluded]
            if len(pool) < k:
                raise ValueError(
                    f"layer {layer} has {len(pool)} heads outside the excluded set but {k} are needed for a "
                    "per-layer matched control; use an unmatched control (like=None)"
                )
            out += rng.sample(pool, k)
        return sorted(out)
    if layers is not None:
        allowed = sorted({int(x) for x in layers})
        bad = [x for x in allowed if not 0 <= x < g.num_layers]
        if bad:
            raise ValueError(f"layers {bad} do not exist: the model has layers 0..{g.num_layers - 1}")
    else:
        allowed = list(range(g.num_layers))
    pool = [(layer, h) for layer in allowed for h in range(g.num_heads) if (layer, h) not in excluded]
    if n > len(pool):
        raise ValueError(
            f"asked for {n} random heads but only {len(pool)} heads lie outside the excluded set"
        )
    return sorted(rng.sample(pool, n))


def random_controls(
    model_or_geometry,
    heads: Iterable[Head],
    *,
    n_seeds: int = 5,
    seed: int = 0,
    exclude: Iterable[Head] | None = None,
    match_per_layer: bool = False,
) -> list[list[Head]]:
    """``n_seeds`` control sets, each as many heads as ``heads``, drawn from outside ``exclude`` (default: ``heads``
    themselves; pass all retrieval heads to draw from non-retrieval heads only). ``exclude`` always includes
    ``heads``, so a control never overlaps the heads it controls for."""
    heads = [(int(a), int(b)) for a, b in heads]
    excluded = set(heads) | {(int(a), int(b)) for a, b in (exclude or ())}
    return [
        random_heads(
            model_or_geometry,
            len(heads),
            exclude=excluded,
            seed=seed + i,
            like=heads if match_per_layer else None,
        )
        for i in range(n_seeds)
    ]
