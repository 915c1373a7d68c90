"""Random-head controls: heads drawn away from the retrieval heads, optionally matched per layer."""

from __future__ import annotations

import random as _random
from collections.abc import Hashable, Iterable, Sequence

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
    groups: Sequence[Hashable] | None = None,
) -> list[Head]:
    """``n`` heads drawn uniformly without replacement from the heads not in ``exclude``.

    With ``like`` (a head list), the draw is matched per layer: as many heads in each layer as ``like`` has there.
    A layer with fewer free heads than that is refused, unless ``groups`` gives a label per layer (such as
    :func:`attention_groups`: each layer's attention window): then the layer's free heads are all taken and the
    rest is drawn from the free heads of the other layers of its group, after every layer's own draw (so a draw
    that needs no such spill equals the plain per-layer draw, head for head).
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
        if groups is not None and len(groups) != g.num_layers:
            raise ValueError(f"groups needs one label per layer ({g.num_layers}), got {len(groups)}")
        out: list[Head] = []
        short: dict[int, int] = {}
        for layer, k in sorted(per_layer.items()):
            pool = [(layer, h) for h in range(g.num_heads) if (layer, h) not in excluded]
            if len(pool) < k:
                if groups is None:
                    raise ValueError(
                        f"layer {layer} has {len(pool)} heads outside the excluded set but {k} are needed for a "
                        "per-layer matched control; use an unmatched control (like=None), or pass groups= "
                        "(e.g. attention_groups(model)) to take the rest from layers of the same kind"
                    )
                short[layer], k = k - len(pool), len(pool)
            out += rng.sample(pool, k)
        for layer, k in sorted(short.items()):
            taken = excluded | set(out)
            pool = [
                (other, h)
                for other in range(g.num_layers)
                if other != layer and groups[other] == groups[layer]  # type: ignore[index]
                for h in range(g.num_heads)
                if (other, h) not in taken
            ]
            if len(pool) < k:
                raise ValueError(
                    f"layer {layer} lacks {k} free heads and the other layers of its group "
                    f"({groups[layer]!r}) have only {len(pool)}: no matched control fits"  # type: ignore[index]
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


def attention_groups(model) -> list[int | None]:
    """Each layer's attention window (``None``: global attention), a ``groups=`` for :func:`random_heads`: on
    Gemma-3, whose global layers 5, 11 and 17 hold most retrieval heads, a matched control then keeps to global
    layers where a layer has no free head left."""
    rm = as_model(model)
    return [rm.attention_settings(i).sliding_window for i in range(rm.geometry.num_layers)]


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
