"""Decoding against a static KV cache, with the decode step captured as a CUDA graph.

The eager loop (``core.decode.decode_steps``) grows a ``DynamicCache`` and runs every step's Python (nnsight's trace
included) on the host: on a GPU at batch 1 a step is bound by kernel launches, not by reading the weights. Here:

1. the prompt is prefilled exactly as the eager loop prefills it (the same forward and intervention, the model's own
   causal kernel, a ``DynamicCache``), and the first token is chosen and recorded by the same bookkeeping;
2. the cache is copied into preallocated buffers ``[batch, kv_heads, width + max_new, head_dim]`` per layer, written
   in place at a position held in a device tensor (``_StaticLayer``); the attention mask becomes a preallocated 4-D
   buffer (the padding mask, one more column switched on per step);
3. every later step is one call of a step function whose inputs and outputs all live in device buffers: the forward
   of the last token with its intervention (an nnsight trace of that forward: the retrieval readout, head masking),
   the choice of the next token, its bookkeeping (EOS, ``on_step``: detection's hit accumulation) and the advance of
   the positions. Nothing in it reads a value back to the host, so on a CUDA device the step is run once eagerly
   (the warm-up, and a real step), then **captured once as a CUDA graph** and replayed for the remaining steps.

nnsight inside the graph: nnsight runs an intervention as a greenlet on the thread that runs the model (no other
thread), so during capture its Python runs once and the device work it issues (the readout's matmul and argmax, a
``masked_fill_``) goes to the capturing stream and is recorded with the model's kernels. A replay runs that work
without any Python: the intervention is expressed once through nnsight and what it resolved to is replayed.

Attention of the static steps (``RETMASK_DECODE_ATTENTION``): ``split`` (default) swaps in
``split_decode_attention`` for the static steps only (the prefill keeps the model's kernel): the scores as one
batched matmul over the KV heads (bf16 scores and a float32 softmax, as HF's eager attention), the weighted sum of
the values in chunks of ``SPLIT_CHUNK`` positions (a batched matmul per chunk, the partial sums added in float32),
so every part of the cache is read by many blocks at once. ``model`` keeps the model's own implementation (sdpa with
the 4-D mask), which on an H200 ran at about 5 % of the memory bandwidth for one query position: a step at 32K took
29.3 ms with it and 10.7 ms with ``split`` (docs/benchmarks.md, runs 3 and 4).

Without graphs (on the CPU, or ``RETMASK_CUDA_GRAPHS=0``) the same step function runs eagerly every step; that is
what the CPU tests compare with the eager loop and the naive reference.

Sliding-window layers (Gemma-2/3, Mistral, gpt-oss, ...): the static cache keeps every position of every layer
(the prefill's sliding layers, which keep only their last ``window - 1`` keys, are copied to the end of the prompt),
and the window is a second 4-D mask buffer, recomputed inside the step from the padding mask and the write position
(a key is seen when its column is above ``position - window``, as HF's sliding masks count it). A model whose layers
all slide gets that mask; a model mixing full and sliding layers gets ``{"full_attention": ..., "sliding_attention":
...}``, which the forwards of those families take in place of a mask. The detection readout reads the mask its
layer received, so its top-1 key stays inside the window.

What the static path cannot take (``static_blocker``; ``backend="auto"`` then uses the eager loop): an attention
implementation other than ``sdpa`` or ``eager`` (flash-attention and flex take no 4-D mask buffer), a model spread
over several devices, cache layers other than full and sliding attention (linear-attention / hybrid / chunked
layers), sliding layers of different windows, and a model that mixes full and sliding layers but whose forward takes
no per-layer-type mask mapping. Soft-capping (Gemma-2) is no obstacle: it runs inside the (eager) attention and the
final logits, both captured, and the top-1 readout is the argmax of the raw scores, which capping does not move.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from retmask_interp.core.decode import Batch, OnPrefill, _forward_names, last_logits, traced_step
from retmask_interp.core.models import RetModel

__all__ = [
    "BACKENDS",
    "Forward",
    "decode_static",
    "envoy_forward",
    "plain_forward",
    "resolve_backend",
    "sliding_plan",
    "split_decode_attention",
    "static_blocker",
    "traced_forward",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "static")
GRAPHS_ENV = "RETMASK_CUDA_GRAPHS"  # "0" turns graph capture off (the static path then runs its step eagerly)
ATTENTION_ENV = "RETMASK_DECODE_ATTENTION"  # "split" (default) or "model": the attention of the static steps
SPLIT_CHUNK = 256  # positions per chunk of split_decode_attention (the static cache is padded to a multiple)
_SPLIT_NAME = "retmask_split_decode"

# forward(ids, attention_mask | None, position_ids | None, cache, total_len, keep=1) -> (last logits [b, vocab], tops |
# None); with keep > 1 the last keep positions' logits [b, keep, vocab]
Forward = Callable[..., tuple[torch.Tensor, Any]]


# --------------------------------------------------------------------------------------------- forwards
def _model_kwargs(rm: RetModel, attention_mask, position_ids, cache, keep: int = 1) -> dict[str, Any]:
    cache_name, keep_name = _forward_names(rm.model)
    kwargs: dict[str, Any] = {cache_name: cache, "use_cache": True}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
        kwargs["position_ids"] = position_ids
    if keep_name:
        kwargs[keep_name] = keep
    return kwargs


def plain_forward(rm: RetModel) -> Forward:
    """A forward without intervention (no nnsight)."""

    def forward(ids, attention_mask, position_ids, cache, total_len, keep=1):
        with torch.no_grad():
            out = rm.model(ids, **_model_kwargs(rm, attention_mask, position_ids, cache, keep))
        return last_logits(out.logits, keep), None

    return forward


def traced_forward(rm: RetModel, mask_plan=None, readout: bool = False) -> Forward:
    """One nnsight trace of the whole model per forward: ``core.decode.traced_step`` (detection's readout, and masking
    through the attention call)."""

    def forward(ids, attention_mask, position_ids, cache, total_len, keep=1):
        return traced_step(rm, ids, attention_mask, position_ids, cache, total_len, mask_plan, readout, keep)

    return forward


def envoy_forward(rm: RetModel, envoy, intervene: Callable[[], None]) -> Forward:
    """One forward inside a trace of ``envoy`` (any nnsight envoy over modules of the model, e.g.
    ``interventions.masking.site_envoy``), calling ``intervene()`` in the trace body, as ``decode_in_one_trace`` does per forward."""

    def forward(ids, attention_mask, position_ids, cache, total_len, keep=1):
        kwargs = _model_kwargs(rm, attention_mask, position_ids, cache, keep)
        out: list[torch.Tensor] = []

        def run(x: torch.Tensor) -> None:
            out.append(last_logits(rm.model(x, **kwargs).logits, keep))

        with torch.no_grad(), envoy.trace(ids, fn=run):
            intervene()
        return out[0], None

    return forward


# --------------------------------------------------------------------------------------------- which path
def _takes_mask_mapping(model) -> bool:
    """Whether the model's decoder forward takes ``{layer type: 4-D mask}`` as its attention mask (HF's families
    with mixed full / sliding layers test ``isinstance(attention_mask, dict)``)."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", model)
    return _forward_takes_mask_mapping(type(base))  # type: ignore[arg-type]  # Module types are hashable


@functools.cache
def _forward_takes_mask_mapping(cls: type) -> bool:
    """``_takes_mask_mapping`` per decoder class: its source is read once (the check runs for every batch)."""
    import inspect

    try:
        source = inspect.getsource(cls.forward)  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return False
    return "attention_mask, dict)" in source


def sliding_plan(rm: RetModel, total_len: int) -> tuple[int | None, bool]:
    """``(window, mapping)`` of the static path for ``total_len`` positions: ``window`` the sliding window that some
    layer applies within them (``None``: every layer sees every position), ``mapping`` whether the model mixes full
    and sliding layers (the masks then go as ``{"full_attention", "sliding_attention"}``). Raises ``ValueError``
    when sliding layers have different windows."""
    windows = [rm.attention_settings(i).sliding_window for i in range(rm.geometry.num_layers)]
    inside = {w for w in windows if w is not None and w < total_len}
    if not inside:
        return None, False
    if len({w for w in windows if w is not None}) > 1:
        raise ValueError(f"sliding layers of different windows {sorted({w for w in windows if w})}")
    return inside.pop(), any(w is None for w in windows)


def static_blocker(rm: RetModel, total_len: int) -> str | None:
    """Why the static path cannot decode ``total_len`` positions (padded prompt + new tokens) with this model, or
    ``None`` when it can."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    model = rm.model
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} (the static path builds a 4-D mask for 'sdpa' or 'eager')"
    if len({p.device for p in model.parameters()}) > 1:
        return "the model is spread over several devices"
    layers = DynamicCache(config=model.config).layers  # type: ignore[arg-type]
    if not layers:
        return "the cache's layer types are not known before the first forward"
    for i, layer in enumerate(layers):
        if type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer):
            return (
                f"layer {i} is cached by {type(layer).__name__} (only full / sliding attention is supported)"
            )
    try:
        window, mapping = sliding_plan(rm, total_len)
    except ValueError as err:
        return str(err)
    if window is not None and mapping and not _takes_mask_mapping(model):
        return (
            f"full and sliding-window layers ({window} tokens, fewer than the {total_len} positions decoded) "
            f"in a model whose forward takes one mask for all ({type(model).__name__})"
        )
    return None


_FALLBACKS_LOGGED: dict[int, set[str]] = {}


def graphs_enabled() -> bool:
    return os.environ.get(GRAPHS_ENV, "1") != "0"


def resolve_backend(backend: str, rm: RetModel, total_len: int) -> tuple[bool, bool]:
    """``(static, graphs)`` for ``backend``: ``"eager"`` the eager loop; ``"static"`` the static cache (captured as a
    CUDA graph on a CUDA device; refused for a model it cannot take); ``"auto"`` the static cache with graphs on a
    CUDA device when the model allows it, else the eager loop."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decode backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "eager":
        return False, False
    cuda = rm.device.type == "cuda"
    if backend == "auto" and not (cuda and graphs_enabled()):
        return False, False
    reason = static_blocker(rm, total_len)
    if reason is not None:
        if backend == "static":
            raise ValueError(f"backend='static' cannot decode with this model: {reason}")
        # once per model and kind of reason (the lengths in the message change with every batch of a grid)
        kind = reason.split(" of ")[0].split(" (")[0]
        seen = _FALLBACKS_LOGGED.setdefault(id(rm.model), set())
        if kind not in seen:
            seen.add(kind)
            log.info("static decode not taken (%s): eager loop (logged once per model)", reason)
        return False, False
    return True, cuda and graphs_enabled()


# --------------------------------------------------------------------------------------------- static cache
class _StaticLayer:
    """One layer's keys and values ``[batch, kv_heads, total, head_dim]``, written in place at ``write_pos`` (a
    device tensor ``[1]`` shared by all layers), so a captured step writes where the replay's position says."""

    is_compileable = True
    is_sliding = False
    is_croppable = False
    supports_early_init = False
    is_initialized = True

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, write_pos: torch.Tensor):
        self.keys, self.values, self.write_pos = keys, values, write_pos
        self.device = keys.device

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if key_states.shape[-2] != 1:
            raise RuntimeError("the static cache is written one position per forward (decode steps only)")
        self.keys.index_copy_(2, self.write_pos, key_states)
        self.values.index_copy_(2, self.write_pos, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[2], 0

    def get_seq_length(self) -> torch.Tensor:
        return self.write_pos

    def get_max_length(self) -> int:
        return self.keys.shape[2]


def _static_cache(dynamic, total_len: int, write_pos: torch.Tensor, prefilled: int):
    """A ``Cache`` of ``_StaticLayer``s holding the prefilled ``dynamic`` cache's keys and values."""
    from transformers.cache_utils import Cache

    layers = []
    for layer in dynamic.layers:
        k, v = layer.keys, layer.values
        keys = k.new_zeros(*k.shape[:2], total_len, k.shape[-1])
        values = v.new_zeros(*v.shape[:2], total_len, v.shape[-1])
        # a sliding layer's prefill keeps only its last keys: they are the positions before the first write
        start = prefilled - k.shape[2]
        keys[:, :, start : start + k.shape[2]].copy_(k)
        values[:, :, start : start + v.shape[2]].copy_(v)
        layers.append(_StaticLayer(keys, values, write_pos))
    return Cache(layers=layers)  # type: ignore[arg-type]  # our layers implement the cache-layer interface


def _mask_buffer(rm: RetModel, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The 4-D attention mask ``[batch, 1, 1, total]`` for the model's attention implementation (bool for sdpa, an
    additive float mask for eager), and the value that switches a column on."""
    keep = mask.bool()[:, None, None, :].contiguous()
    if rm.config._attn_implementation == "eager":
        dtype = next(rm.model.parameters()).dtype
        buf = torch.zeros(keep.shape, dtype=dtype, device=mask.device)
        return buf.masked_fill_(~keep, torch.finfo(dtype).min), 0.0
    return keep, True


# --------------------------------------------------------------------------------------------- decode attention
def split_decode_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs
):
    """Attention of one query position over a static cache, as an HF attention function (``AttentionInterface``).

    ``query`` ``[b, heads, 1, d]``, ``key``/``value`` ``[b, kv_heads, L, d]`` with ``L`` a multiple of
    ``SPLIT_CHUNK``, ``attention_mask`` bool (True = attend) or additive, ``[b, 1, 1, L]``. Query heads are grouped
    over their KV head (keys and values are never repeated). Returns ``([b, 1, heads, d_v], None)``.
    """
    b, h, q, d = query.shape
    kvh, length, dv = key.shape[1], key.shape[2], value.shape[-1]
    if q != 1 or length % SPLIT_CHUNK:
        raise RuntimeError(
            "split_decode_attention takes one query position over a cache padded to SPLIT_CHUNK"
        )
    g = h // kvh
    scores = torch.matmul(query.reshape(b, kvh, g, d), key.transpose(-1, -2)).float()  # [b, kvh, g, L]
    scores = scores * (scaling if scaling is not None else d**-0.5)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask.reshape(attention_mask.shape[0], 1, 1, -1)[..., :length]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    chunks = length // SPLIT_CHUNK
    probs = probs.reshape(b, kvh, g, chunks, SPLIT_CHUNK).transpose(2, 3)  # [b, kvh, chunks, g, chunk]
    parts = torch.matmul(probs, value.reshape(b, kvh, chunks, SPLIT_CHUNK, dv))  # [b, kvh, chunks, g, dv]
    out = parts.float().sum(dim=2).to(query.dtype)  # [b, kvh, g, dv]
    return out.reshape(b, 1, h, dv), None


def decode_attention() -> str:
    value = os.environ.get(ATTENTION_ENV, "split")
    if value not in ("model", "split"):
        raise ValueError(f"{ATTENTION_ENV}={value!r}: use 'model' or 'split'")
    return value


class _SwappedAttention:
    """Within the block, the model's attention implementation is ``split_decode_attention`` (the static steps);
    the model's own implementation is restored after."""

    def __init__(self, model):
        self.config = model.config

    def __enter__(self):
        from transformers import AttentionInterface

        if _SPLIT_NAME not in AttentionInterface._global_mapping:
            AttentionInterface.register(_SPLIT_NAME, split_decode_attention)
        self.saved = self.config._attn_implementation
        self.config._attn_implementation = _SPLIT_NAME
        return self

    def __exit__(self, *exc):
        self.config._attn_implementation = self.saved
        return False


# --------------------------------------------------------------------------------------------- the loop
def decode_static(
    rm: RetModel,
    batch: Batch,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    *,
    eos: torch.Tensor,
    forward: Forward,
    on_step: Callable[[torch.Tensor, Any, torch.Tensor], None] | None = None,
    graphs: bool = False,
    generator: torch.Generator | list[torch.Generator] | None = None,
    on_prefill: OnPrefill | None = None,
) -> int:
    """Decode like ``core.decode.decode_steps`` through ``forward`` (with its intervention), against a static cache from
    the second step on; returns the number of steps run (as the eager loop would). Written into ``batch.ids`` and
    ``batch.mask`` like the eager loop.

    ``on_step(token[b], tops, active_before[b])`` is called for every step (``tops`` is what ``forward`` returned
    besides the logits) and must only issue device work (no reads to the host): with ``graphs`` on a CUDA device it
    is captured with the step. ``generator``: the random generator ``choose`` samples with (or one per row),
    registered with the graph so that replays draw fresh numbers. The loop reads the device only to stop early at EOS (once per step,
    and only when ``eos`` is not empty). ``on_prefill`` (``core.decode.OnPrefill``) is called once the prompt is
    prefilled, with ``forward`` and the prefill's dynamic cache, after that cache is copied into the static one.
    """
    from transformers import DynamicCache

    device = batch.ids.device
    b, total = batch.ids.shape
    width = batch.width
    track_eos = eos.numel() > 0
    active = torch.ones(b, dtype=torch.bool, device=device)
    n_generated = torch.zeros(b, dtype=torch.long, device=device)
    # cols[0]: cache position of the token fed next; cols[1]: the column its successor is written to
    cols = torch.tensor([width - 1, width], dtype=torch.long, device=device)
    write_pos, col = cols[0:1], cols[1:2]
    attn: list[Any] = []  # the 4-D mask buffer and its "on" value, once the static steps start

    def emit(logits: torch.Tensor, tops) -> torch.Tensor:
        token = choose(logits)
        if track_eos:
            was_active = active.clone()
            held = batch.ids.index_select(1, col)[:, 0]
            batch.ids.index_copy_(1, col, torch.where(active, token, held)[:, None])
            active.logical_and_(~(token[:, None] == eos[None, :]).any(-1))  # = ~torch.isin(token, eos)
        else:
            was_active = active
            batch.ids.index_copy_(1, col, token[:, None])
        batch.mask.index_fill_(1, col, 1)
        if attn:
            attn[0].index_fill_(3, col, attn[1])
        n_generated.add_(was_active.long())
        if on_step is not None:
            on_step(token, tops, was_active)
        return token

    def finished() -> bool:
        return track_eos and not bool(active.any())

    def steps_run() -> int:
        return int(n_generated.max()) if track_eos else max_new_tokens

    # prefill: the eager loop's first step, verbatim
    padded = batch.padded
    positions = (batch.mask[:, :width].cumsum(-1) - 1).clamp(min=0) if padded else None
    dynamic = DynamicCache(config=rm.config)
    logits, tops = forward(
        batch.ids[:, :width], batch.mask[:, :width] if padded else None, positions, dynamic, width
    )
    token = emit(logits, tops)
    if max_new_tokens == 1 or finished():
        if on_prefill is not None:
            on_prefill(forward, dynamic, logits)
        return steps_run()

    split = decode_attention() == "split"
    cache_len = -(-total // SPLIT_CHUNK) * SPLIT_CHUNK if split else total  # positions past total stay masked
    cache = _static_cache(dynamic, cache_len, write_pos, width)
    if on_prefill is not None:  # the dynamic cache is copied: it may be extended as it is
        on_prefill(forward, dynamic, logits)
    del dynamic, logits, tops
    cols.add_(1)
    tok = token.clone()
    if positions is not None:  # padded
        posid = positions[:, -1:] + 1
    else:
        posid = torch.full((b, 1), width, dtype=torch.long, device=device)
    attn.extend(_mask_buffer(rm, torch.nn.functional.pad(batch.mask, (0, cache_len - total))))
    mask4d = attn[0]
    window, mapping = sliding_plan(rm, total)
    masks: Any = mask4d
    if window is not None:
        sliding = torch.empty_like(mask4d)
        columns = torch.arange(cache_len, device=device)
        off = False if mask4d.dtype == torch.bool else torch.finfo(mask4d.dtype).min
        masks = {"full_attention": mask4d, "sliding_attention": sliding} if mapping else sliding

    def step() -> None:
        if window is not None:  # the window of the query at write_pos: columns above write_pos - window
            sliding.copy_(mask4d.masked_fill(columns <= write_pos - window, off))
        logits, tops = forward(tok.view(b, 1), masks, posid, cache, cache_len)
        tok.copy_(emit(logits, tops))
        cols.add_(1)
        posid.add_(1)

    with _SwappedAttention(rm.model) if split else contextlib.nullcontext():
        _run_steps(step, max_new_tokens - 1, finished, graphs and device.type == "cuda", device, generator)
    return steps_run()


def _run_steps(step, remaining: int, finished, graphs: bool, device, generator) -> None:
    """``step()`` up to ``remaining`` times, until ``finished()``: on a CUDA device with ``graphs``, once eagerly on
    a side stream (the warm-up, a real step), then captured and replayed."""
    done = 0
    if graphs:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up before capture (a real step: allocator, kernels, nnsight)
            step()
        torch.cuda.current_stream(device).wait_stream(side)
        done = 1
        graph = None
        if done < remaining and not finished():
            graph = _capture(step, device, generator)
        while done < remaining and not finished():
            if graph is not None:
                graph.replay()
            else:
                step()
            done += 1
        del graph
    else:
        while done < remaining and not finished():
            step()
            done += 1


def _capture(step: Callable[[], None], device: torch.device, generator) -> torch.cuda.CUDAGraph | None:
    """``step`` captured as a CUDA graph (not run), or ``None`` (with a warning) when capture fails."""
    graph = torch.cuda.CUDAGraph()
    generators = generator if isinstance(generator, list) else [] if generator is None else [generator]
    if generators:
        if not hasattr(graph, "register_generator_state"):
            log.warning("this torch cannot register a generator with a CUDA graph: steps run without a graph")
            return None
        for g in generators:
            graph.register_generator_state(g)
    try:
        with torch.cuda.graph(graph):
            step()
    except Exception as err:  # noqa: BLE001 - any capture failure falls back to eager steps
        log.warning("CUDA graph capture of the decode step failed (%s): steps run without a graph", err)
        torch.cuda.synchronize(device)
        return None
    return graph
