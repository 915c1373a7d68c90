"""The decode loop shared by detection and masked generation.

A batch of prompts is left-padded, prefilled with the model's own attention kernel (only the last position's logits
are formed), then decoded one token at a time against a ``DynamicCache``.

Two ways to intervene while decoding:

- one nnsight trace per step (``decode_steps(..., mask_plan=..., readout=...)``): each step may mask heads (a
  ``MaskPlan``) and read the top-1 key of every head of every layer (for the retrieval score), layer by layer in the
  same trace. Detection uses it: it needs the step's readout on the host side between steps.
- one nnsight trace for the whole generation (``decode_in_one_trace``): the loop itself (``decode_steps`` with
  plain forwards) runs as the traced call and the intervention is applied on every forward through
  ``tracer.iter``, so nnsight sets up once instead of once per step. Masked generation uses it.

Both run the very same loop, sampler and cache, so they produce the same tokens.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from retmask_interp.core.architectures import AttentionSettings
from retmask_interp.core.models import RetModel

log = logging.getLogger(__name__)

__all__ = [
    "cap_new_tokens",
    "AttentionCall",
    "Batch",
    "attention_calls",
    "decode_in_one_trace",
    "decode_steps",
    "extension_of",
    "last_logits",
    "left_pad",
    "top1_keys",
]


@dataclass
class Batch:
    """Left-padded prompts with room for ``max_new_tokens``: ``ids``/``mask`` are ``[batch, width + max_new]``."""

    ids: torch.Tensor
    mask: torch.Tensor
    width: int
    pad: list[int]

    @property
    def padded(self) -> bool:
        return any(self.pad)


def cap_new_tokens(max_new_tokens: int, prompt_lengths: Sequence[int], window: int | None) -> int:
    """``max_new_tokens``, capped at what the model's ``window`` leaves after the shortest prompt (a warning says
    so): a batch never allocates room for tokens no row could generate inside the window (``--max-new-tokens 1e9``
    allocated 8 GB), and no row is cut before it reaches the window itself, so generations that fit the window do
    not depend on the cap or on the batch."""
    if not window or not prompt_lengths:
        return max_new_tokens
    room = max(1, int(window) - min(int(n) for n in prompt_lengths))
    if max_new_tokens > room:
        log.warning(
            "max_new_tokens %d capped to %d: the model's window of %d tokens leaves no more after a prompt of %d "
            "tokens",
            max_new_tokens,
            room,
            window,
            min(prompt_lengths),
        )
        return room
    return max_new_tokens


def left_pad(
    prompts: Sequence[torch.Tensor | Sequence[int]], max_new_tokens: int, device, pad_id: int = 0
) -> Batch:
    seqs = [torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in prompts]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("empty prompt: every prompt needs at least one token")
    width = max(len(s) for s in seqs)
    total = width + max_new_tokens
    ids = torch.full((len(seqs), total), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(seqs), total, dtype=torch.long, device=device)
    pad = []
    for i, s in enumerate(seqs):
        p = width - len(s)
        ids[i, p:width] = s.to(device)
        mask[i, p:width] = 1
        pad.append(p)
    return Batch(ids, mask, width, pad)


def top1_keys(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Top-1 key of each query head for one query position.

    ``query``: ``[batch, heads, head_dim]`` (post-RoPE), ``keys``: ``[batch, kv_heads, k_len, head_dim]``,
    ``mask``: ``None``, a bool ``[batch, 1|heads, k_len]`` (True = may attend), an additive float mask of that
    shape, or a 2-D ``[batch, k_len]`` padding mask. Returns ``[batch, heads]`` indices into ``k_len``.
    Query heads are grouped over their KV head, so keys are never repeated.
    """
    grouped = rearrange(query, "b (kv group) d -> b kv group d", kv=keys.shape[1])
    logits = rearrange(torch.matmul(grouped, keys.transpose(-1, -2)), "b kv group k -> b (kv group) k")
    if mask is not None:
        if mask.dim() == 2:
            mask = mask[:, None, :].bool()
        if mask.shape[-1] != logits.shape[-1]:
            raise RuntimeError(
                f"attention mask covers {mask.shape[-1]} keys but the cache holds {logits.shape[-1]}; "
                "static or offloaded caches are not supported by detection"
            )
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.to(logits.dtype)
    return logits.argmax(dim=-1)


def _last_row_mask(mask: Any) -> torch.Tensor | None:
    """The attention-mask row of the last query position (4-D masks), or the 2-D padding mask as it is."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise RuntimeError(
            f"attention mask of type {type(mask).__name__} (flex attention?) is not supported here; "
            "load the model with attn_implementation='sdpa', 'eager' or 'flash_attention_2'"
        )
    return mask[:, :, -1, :] if mask.dim() == 4 else mask


def _forward_names(model: torch.nn.Module) -> tuple[str, str | None]:
    """The names of the forward's cache and logits-to-keep arguments (read once per model class)."""
    return _forward_names_of(type(model))  # type: ignore[arg-type]  # torch types Module.__hash__ unbound


@functools.cache
def _forward_names_of(cls: type[torch.nn.Module]) -> tuple[str, str | None]:
    params = inspect.signature(cls.forward).parameters
    cache = "cache" if "cache" in params else "past_key_values"
    keep = "logits_to_keep" if "logits_to_keep" in params else None
    return cache, keep


@dataclass
class AttentionCall:
    """One layer's attention kernel call, seen inside an nnsight trace: post-RoPE ``query`` ``[batch, heads, q_len,
    head_dim]`` (after any query masking), ``keys`` ``[batch, kv_heads, k_len, head_dim]``, the call's ``mask``
    (``None``, 2-D padding, or 4-D bool / additive) and the layer's :class:`AttentionSettings`."""

    layer: int
    query: Any
    keys: Any
    mask: Any
    settings: AttentionSettings


def attention_calls(
    rm: RetModel, plan=None, read: Collection[int] = (), num_layers: int | None = None
) -> Iterator[AttentionCall]:
    """Inside an nnsight trace of ``rm``: walk the first ``num_layers`` layers (default all) in order, apply
    ``plan``'s query and output edits (a ``MaskPlan``, or None), and yield the attention call of every layer in
    ``read`` (after the plan's query edit). The one loop over attention calls: decoding with a readout, teacher
    forcing and the attention views all use it. Consume it fully (the plan's edits of later layers run as it goes).
    """
    for layer in range(rm.geometry.num_layers if num_layers is None else num_layers):
        reading = layer in read
        if reading or (plan is not None and plan.touches_query(layer)):
            args, kwargs = rm.attention_call(layer).inputs
            if plan is not None:
                plan.apply_query(layer, args[1])
            if reading:
                mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
                yield AttentionCall(layer, args[1], args[2], mask, rm.attention_settings(layer))
        if plan is not None and plan.touches_output(layer):
            plan.apply_output(layer, rm.out_proj_envoy(layer).input)


def traced_step(
    rm: RetModel,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    cache,
    total_len: int,
    mask_plan=None,
    readout: bool = False,
    keep: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward of ``ids`` through nnsight.

    Returns the last position's logits ``[batch, vocab]`` (with ``keep > 1`` the last ``keep`` positions', ``[batch,
    keep, vocab]``) and, with ``readout``, the top-1 key of every head as an absolute position ``[layers, batch,
    heads]``. ``mask_plan`` masks heads in the same trace.
    """
    cache_name, keep_name = _forward_names(rm.model)
    kwargs: dict[str, Any] = {cache_name: cache, "use_cache": True}
    if attention_mask is not None:  # without padding, no mask: the kernel runs causal (faster)
        kwargs["attention_mask"] = attention_mask
        kwargs["position_ids"] = position_ids
    if keep_name:
        kwargs[keep_name] = keep
    plan = mask_plan if mask_plan is not None and not mask_plan.is_empty else None
    if plan is None and not readout:  # nothing to intervene on: a plain forward, without nnsight's hooks
        with torch.no_grad():
            return last_logits(rm.model(ids, **kwargs).logits, keep), None
    tops: list[torch.Tensor] = []
    top_all = None
    with torch.no_grad(), rm.lm.trace(ids, **kwargs):
        for call in attention_calls(rm, plan, range(rm.geometry.num_layers) if readout else ()):
            top = top1_keys(call.query[:, :, -1, :], call.keys, _last_row_mask(call.mask))
            tops.append(top + (total_len - call.keys.shape[2]))  # keys cover the last k_len positions
        if readout:
            top_all = torch.stack(tops).save()  # type: ignore[attr-defined]  # nnsight adds .save
        logits = last_logits(rm.lm.output.logits, keep).save()  # type: ignore[attr-defined]  # nnsight adds .save
    return logits, top_all


def last_logits(logits: torch.Tensor, keep: int = 1) -> torch.Tensor:
    """The last position's logits ``[batch, vocab]``, or with ``keep > 1`` the last ``keep`` positions' ``[batch,
    keep, vocab]`` (of a forward that may have formed more)."""
    return logits[:, -1, :] if keep == 1 else logits[:, -keep:, :]


# on_prefill(forward, cache, logits): called once the prompt is prefilled, with a forward like the loop's (its
# intervention included; ``keep`` positions of logits), the prefilled cache (which it may extend: it is put back as
# it was afterwards) and the prefill's last-position logits. Masked scoring reads the teacher-forced answer there.
OnPrefill = Callable[[Callable[..., tuple[torch.Tensor, Any]], Any, torch.Tensor], None]


@contextlib.contextmanager
def extension_of(cache) -> Iterator[Any]:
    """``cache`` (a ``DynamicCache`` after the prefill), which the block may extend with more positions; afterwards
    every layer is put back as it was. Hugging Face's dynamic layers (full and sliding) replace their tensors on
    update (``torch.cat``, then a slice) and never write into them, so keeping each layer's attributes restores it
    exactly, without copying the keys and values."""
    saved = [dict(vars(layer)) for layer in cache.layers]
    try:
        yield cache
    finally:
        for layer, state in zip(cache.layers, saved):
            layer.__dict__.clear()
            layer.__dict__.update(state)


def decode_steps(
    rm: RetModel,
    batch: Batch,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    *,
    eos: torch.Tensor,
    mask_plan=None,
    readout: bool = False,
    on_prefill: OnPrefill | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """Decode, yielding ``(step, token[b], tops[layers, b, heads] | None, active_before[b])`` for every step.

    ``choose`` maps last-position logits to the next tokens. A sequence stops after it emits a token in ``eos``
    (that step is still yielded with ``active_before`` True); finished sequences keep being fed (their tokens are
    ignored). The loop ends when all have finished: that check is the only host sync per step (none when ``eos`` is
    empty). With a ``mask_plan`` or ``readout`` every step is one nnsight trace; without, plain forwards.
    ``on_prefill`` (see ``OnPrefill``) is called after the prefill with the same kind of forward (without readout).
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=rm.config)
    track_eos = eos.numel() > 0
    active = torch.ones(batch.ids.shape[0], dtype=torch.bool, device=batch.ids.device)
    cur = batch.width
    ids = batch.ids[:, :cur]
    padded = batch.padded
    positions = (batch.mask[:, :cur].cumsum(-1) - 1).clamp(min=0) if padded else None
    for step in range(max_new_tokens):
        mask = batch.mask[:, :cur] if padded else None
        logits, tops = traced_step(rm, ids, mask, positions, cache, cur, mask_plan, readout)
        if step == 0 and on_prefill is not None:

            def forward(ids_, mask_, positions_, cache_, total_, keep=1):
                return traced_step(rm, ids_, mask_, positions_, cache_, total_, mask_plan, False, keep)

            with extension_of(cache):
                on_prefill(forward, cache, logits)
        token = choose(logits)
        if track_eos:
            was_active = active.clone()
            batch.ids[:, cur] = torch.where(active, token, batch.ids[:, cur])
            active &= ~torch.isin(token, eos)
        else:  # nothing ever finishes: no bookkeeping, no host sync
            was_active = active
            batch.ids[:, cur] = token
        batch.mask[:, cur] = 1
        cur += 1
        yield step, token, tops, was_active
        if step == max_new_tokens - 1 or (track_eos and not bool(active.any())):
            return
        ids = token[:, None]
        if positions is not None:  # padded
            positions = positions[:, -1:] + 1


# nnsight's warning for a ``tracer.iter`` loop that asked for more forwards than the run made (an early stop at EOS)
_CUT_SHORT = r".*was never reached: the loop asked for a step the run did not make"


def decode_in_one_trace(
    rm: RetModel,
    batch: Batch,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    *,
    eos: torch.Tensor,
    intervene: Callable[[], None],
    envoy=None,
    on_prefill: OnPrefill | None = None,
) -> int:
    """Decode like ``decode_steps`` (plain forwards), inside a single nnsight trace that calls ``intervene()`` once per
    forward (prefill and every step) through ``tracer.iter``; returns the number of steps run.

    ``intervene`` reads and edits envoys of ``envoy`` (default ``rm.lm``; any nnsight envoy over modules of the
    model) in execution order, as a trace body would (e.g. ``MaskPlan.apply_sites``). The loop, its sampler and its
    cache are those of ``decode_steps``, so the tokens are the ones a per-step trace with the same intervention
    gives; only nnsight's setup is paid once instead of once per step. Written into ``batch.ids`` like
    ``decode_steps``. ``on_prefill``'s forwards are forwards of the traced run too (``intervene`` applies to them).
    """
    steps = 0

    def run(_ids: torch.Tensor) -> None:
        nonlocal steps
        for step, *_ in decode_steps(rm, batch, max_new_tokens, choose, eos=eos, on_prefill=on_prefill):
            steps = step + 1

    # A generation that stops early (every sequence hit EOS) leaves the loop below waiting for a forward that never
    # comes; nnsight ends it with a warning that is expected here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CUT_SHORT)
        with torch.no_grad(), (envoy if envoy is not None else rm.lm).trace(batch.ids, fn=run) as tracer:
            for _ in tracer.iter[: max_new_tokens + (on_prefill is not None)]:
                intervene()
    return steps
