"""The one notation for an attention head: ``"layer-head"``, 0-indexed (``"18-7"`` is query head 7 of layer 18).

It is the key of every head-list JSON (ours and Wu et al.'s), the label of figures and the form of log lines. In
Python a head is also a ``(layer, head)`` pair; ``as_head`` accepts either, so that every function taking heads
takes a key read from a file as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from retmask_interp.core.io import InputError

__all__ = ["MASK_MODES", "Head", "as_head", "as_heads", "head_key", "parse_head_key"]

Head = tuple[int, int]
# The ways a head is masked (``interventions.masking`` says what each does); zero is RetMask's.
MASK_MODES = ("zero", "uniform", "mean")


def head_key(layer: int, head: int) -> str:
    """``(18, 7)`` -> ``"18-7"``."""
    return f"{int(layer)}-{int(head)}"


def parse_head_key(key: str, *, source: str = "head file") -> Head:
    """``"18-7"`` -> ``(18, 7)``; anything else is an ``InputError`` naming ``source`` and the notation."""
    try:
        layer, head = str(key).split("-")
        if not (layer.strip().isdigit() and head.strip().isdigit()) or len(layer) + len(head) > 12:
            raise ValueError(key)
        out = int(layer), int(head)
    except ValueError:
        raise InputError(
            f"{source}: key {key!r} is not of the form '<layer>-<head>' (0-indexed integers, e.g. '16-1')"
        ) from None
    return out


def as_head(obj: Any) -> Head:
    """A head given as ``(layer, head)`` (any two integers) or ``"layer-head"``, as a pair of ints."""
    fix = "give a head as (layer, head) or 'layer-head', 0-indexed, e.g. (18, 7) or '18-7'"
    if isinstance(obj, str):
        try:
            return parse_head_key(obj.strip(), source="head")
        except InputError:
            raise InputError(f"head {obj!r:.40}: {fix}") from None
    try:
        layer, head = obj
        ok = all(float(x) == int(x) and not isinstance(x, (bool, str)) for x in (layer, head))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"head {obj!r:.40}: {fix}")
    return int(layer), int(head)


def as_heads(heads: Iterable[Any]) -> list[Head]:
    """Every head of ``heads`` through ``as_head`` (order kept). A single ``"layer-head"`` string or one pair is
    refused with the fix: a collection of heads is expected."""
    if isinstance(heads, str):
        raise InputError(f"heads={heads!r}: give a list of heads, e.g. ['{heads}'] or [(18, 7), (17, 3)]")
    items = list(heads)
    if len(items) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        raise InputError(
            f"heads={items!r} is one head, not a list of heads: pass [({items[0]}, {items[1]})] "
            f"(or ['{items[0]}-{items[1]}'])"
        )
    return [as_head(h) for h in items]
