"""Masking sweeps packed into full batches: many (condition, sample) rows per forward, each row with its own heads.

A sweep runs every condition (a head set) over every sample. Rows are ``(condition, sample)`` pairs; rows of equal
prompt length form a batch (no padding: the causal kernel, as detection batches), whatever their condition, and a
``MaskPlan.for_rows`` masks each row's own heads inside the same intervention. So a 135M model at 8K tokens runs
one batch of 22 conditions x 6 samples instead of 22 batches of 6.

Conditions run in *waves*: as many conditions as fill one batch of the longest prompts (``batch_limit``); a wave's
conditions finish together, so a checkpoint keeps whole conditions and an interrupted sweep loses at most a wave.

``batch_limit`` picks the batch from the free device memory and the sequence length (as detection's
``prefill_batch_limit`` does for its float32 scores): the static KV cache with its prefill copy, the prefill's
activations, a sliding-window layer's 4-D mask and the answer logits, per row. A batch that still runs out of memory
(another process took some) is halved (``detect._fitting_batches``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from retmask_interp.core.models import RetModel, as_model
from retmask_interp.heads.scores import Head

__all__ = ["Row", "batch_limit", "sweep"]

log = logging.getLogger(__name__)

# rows per batch off the GPU: a CPU gains nothing from wider batches (notebook 02's single heads on the organism, one
# thread: 19-21 s of CPU time at 2, 4 or 8 rows, within the shared machine's noise; docs/benchmarks.md)
CPU_ROWS = 4
MAX_ROWS = 1024  # a ceiling on the rows of one batch whatever the memory says


@dataclass(frozen=True)
class Row:
    """One ``(condition, sample)`` of a sweep: indices into its conditions and samples, and the prompt."""

    condition: int
    sample: int
    input_ids: Sequence[int]


def _free_bytes(device: torch.device) -> int:
    """Free device memory, counting what PyTorch's allocator holds but does not use."""
    from retmask_interp.measure.detect import _free_device_bytes

    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return _free_device_bytes(device) + int(cached)


def row_bytes(rm: RetModel, length: int, new_tokens: int = 0, answer_tokens: int = 1) -> int:
    """Device memory one row of ``length`` prompt tokens needs at its peak (the prefill and the copy of its cache):
    the KV cache three times (the prefill's dynamic cache, the static one of ``length + new_tokens`` positions, and
    the dynamic cache once more while the answer's forward extends it: a full layer's keys are concatenated), the
    prefill's activations of one layer (hidden states, query/key/value, the MLP's intermediate tensors), a sliding
    layer's 4-D boolean mask when the prompt is longer than the window, and the answer logits in float32."""
    config = getattr(rm.config, "text_config", None) or rm.config
    g = rm.geometry
    elt = next(rm.model.parameters()).element_size()
    hidden = int(getattr(config, "hidden_size", g.num_heads * g.head_dim))
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", 0))
    positions = length + new_tokens + answer_tokens
    kv = 3 * g.num_layers * 2 * g.num_kv_heads * g.head_dim * elt * positions
    acts = length * elt * (6 * hidden + 3 * inter + 2 * (g.num_heads + 2 * g.num_kv_heads) * g.head_dim)
    windows = [rm.attention_settings(i).sliding_window for i in range(g.num_layers)]
    mask = length * length if any(w is not None and w < length for w in windows) else 0
    logits = answer_tokens * vocab * (elt + 8)
    return kv + acts + mask + logits


def batch_limit(
    model, length: int, new_tokens: int = 0, answer_tokens: int = 1, *, budget: float = 0.5
) -> int:
    """The most rows of ``length``-token prompts one batch takes: on a GPU what fits ``budget`` of the free memory
    (``row_bytes``; in float32 also detection's cap for materialised attention scores), at most ``MAX_ROWS``;
    elsewhere ``CPU_ROWS`` (4)."""
    from retmask_interp.measure.detect import prefill_batch_limit

    rm = as_model(model)
    if rm.device.type != "cuda":
        return CPU_ROWS
    per_row = row_bytes(rm, length, new_tokens, answer_tokens)
    fits = int(budget * _free_bytes(rm.device)) // per_row
    return max(1, min(MAX_ROWS, fits, prefill_batch_limit(rm, length, budget=budget)))


def sweep(
    model,
    samples: Sequence[Any],
    head_sets: Sequence[Sequence[Head]],
    run_batch: Callable[[list[Row], list[list[Head]]], list[Any]],
    *,
    batch_size: int | None = None,
    new_tokens: int = 0,
    answer_tokens: int = 1,
    progress: bool = False,
) -> Iterator[tuple[list[int], list[list[Any]]]]:
    """Run every head set over every sample, packed; yields ``(conditions, results)`` per wave: the indices of the
    conditions it finished and, for each, the per-sample results in sample order.

    ``run_batch(rows, heads)`` computes one batch (equal prompt lengths; ``heads[i]`` the head set of ``rows[i]``)
    and returns one result per row. ``batch_size``: the most rows of a batch (``None``: ``batch_limit``, from the
    free memory on a GPU). ``new_tokens`` / ``answer_tokens``: what the batch decodes and scores beyond the prompt
    (for the memory estimate)."""
    from tqdm.auto import tqdm

    from retmask_interp.measure.detect import _fitting_batches

    rm = as_model(model)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None: from the free memory), got {batch_size}")
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_length.setdefault(len(s.input_ids), []).append(i)

    def limit(length: int) -> int:
        fits = batch_limit(rm, length, new_tokens, answer_tokens)
        return fits if batch_size is None else min(batch_size, fits)

    # conditions per wave: as many as one batch of each length takes (the longest prompts bound it)
    limits = {length: limit(length) for length in by_length}
    per_wave = max(1, min((limits[n] // len(ix) for n, ix in by_length.items()), default=1))
    todo = list(range(len(head_sets)))
    bar = tqdm(total=len(todo) * len(samples), desc="sweep", unit="row", disable=not progress)
    for w in range(0, len(todo), per_wave):
        wave = todo[w : w + per_wave]
        results: dict[tuple[int, int], Any] = {}
        batches: list[list[Row]] = []
        for length, ix in sorted(by_length.items()):
            rows = [Row(c, i, samples[i].input_ids) for c in wave for i in ix]
            size = limits[length]
            batches += [rows[j : j + size] for j in range(0, len(rows), size)]

        def run(rows: list[Row]) -> list[Any]:
            return run_batch(rows, [list(head_sets[r.condition]) for r in rows])

        for rows, out in _fitting_batches(run, batches):
            if len(out) != len(rows):
                raise RuntimeError(f"run_batch returned {len(out)} results for {len(rows)} rows")
            results.update({(r.condition, r.sample): o for r, o in zip(rows, out)})
            bar.update(len(rows))
        yield wave, [[results[c, i] for i in range(len(samples))] for c in wave]
    bar.close()


def row_plan(model, heads: list[list[Head]], mode: str, mean_values):
    """The ``MaskPlan`` of a batch whose row ``i`` masks ``heads[i]``: one shared row when all are the same set."""
    from retmask_interp.interventions.masking import MaskPlan

    if all(h == heads[0] for h in heads):
        return MaskPlan.build(model, heads[0], mode, mean_values)
    return MaskPlan.for_rows(model, heads, mode, mean_values)
