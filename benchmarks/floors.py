"""Compute floors of the GPU benchmarks: one place for the card's peaks and for the FLOPs and bytes of prefills and
decode steps (``gpu_detect.py`` and ``masking_sweep.py`` use it; ``tests/benchmarks/test_floors.py`` checks it against
counts done by hand on a small config).

A floor is what the card could not beat: the prefill's FLOPs over the bf16 dense peak, plus, for the decode steps,
the larger of their FLOPs over the peak and their bytes (the weights a step reads, the KV cache of every row) over
the memory bandwidth.
"""

from __future__ import annotations

import torch

# bf16 dense peak (FLOP/s) and memory bandwidth (B/s) of the cards the device tool lends (vendor figures, SXM)
CARDS = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12)}


def card(name: str | None = None) -> tuple[str, float, float]:
    """(name, bf16 peak, bandwidth) of ``name`` or of the current CUDA device; NaNs for a card not in ``CARDS``."""
    if name is None:
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for key, (peak, bw) in CARDS.items():
        if key in name:
            return name, peak, bw
    return name, float("nan"), float("nan")


def weight_bytes_per_step(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: every parameter but the input embedding table (a step reads one row
    of it), which is read anyway when the output projection is tied to it."""
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    out = model.get_output_embeddings()
    tied = out is not None and out.weight.data_ptr() == emb.data_ptr()
    return total - (0 if tied else emb.numel() * emb.element_size())


def _text_config(config):
    return getattr(config, "text_config", None) or config


def kv_bytes_per_token(config, element_size: int = 2) -> int:
    """Bytes of keys and values one position holds in the cache, over every layer."""
    c = _text_config(config)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * element_size


def keys_seen(start: int, queries: int, window: int | None) -> float:
    """Keys the queries at positions ``start .. start + queries - 1`` attend to, causally, within ``window`` (the
    query's own position included): the sum over those positions p of min(p + 1, window)."""
    if queries <= 0:
        return 0.0
    a, b = start + 1, start + queries  # min(p + 1, w) for p + 1 in a..b
    if window is None or window >= b:
        return (a + b) * queries / 2
    if window <= a:
        return float(window * queries)
    return (a + window - 1) * (window - a) / 2 + window * (b - window + 1)


def attention_flops(queries: int, start: int, windows: list[int | None], attn_dim: int) -> float:
    """FLOPs of QK^T and PV in every layer (``windows``: each layer's sliding window or None) for ``queries`` new
    positions after ``start`` cached ones; ``attn_dim`` = query heads x head dim."""
    return sum(4 * attn_dim * keys_seen(start, queries, w) for w in windows)


def sweep_floor(
    *,
    params: int,
    hidden: int,
    vocab: int,
    windows: list[int | None],
    attn_dim: int,
    weight_bytes: int,
    kv_bytes: int,
    rows: list[tuple[int, int, int]],
    batches: list[tuple[int, int, int]],
    peak: float,
    bandwidth: float,
) -> dict:
    """Floor of a masking sweep. ``rows``: (prompt tokens, answer tokens, generated tokens) per (condition, sample):
    each row prefills its prompt and the teacher-forced answer but its last token (linear layers 2 x ``params``
    non-embedding FLOPs a token, attention, and the output projection at the answer's positions), then decodes
    ``generated - 1`` steps. ``batches``: (rows, prompt tokens, decode steps) per batch, for the bytes: each step reads
    the weights once and every row's KV cache (prompt plus half the steps on average; ``kv_bytes`` a position of
    one layer, a sliding layer holding at most its window)."""
    prefill = decode = 0.0
    for p, n, gen in rows:
        prefill += 2 * params * (p + n - 1) + attention_flops(p, 0, windows, attn_dim)
        prefill += attention_flops(n - 1, p, windows, attn_dim) + 2 * hidden * vocab * n
        steps = max(0, gen - 1)
        decode += steps * (2 * params + 2 * hidden * vocab) + attention_flops(steps, p, windows, attn_dim)

    def kv_read(length: float) -> float:  # a row's cache over the layers (a sliding layer keeps its window)
        return kv_bytes * sum(length if w is None else min(length, w) for w in windows)

    dbytes = sum(steps * (weight_bytes + nrows * kv_read(p + steps / 2)) for nrows, p, steps in batches)
    t_prefill = prefill / peak
    t_decode = max(decode / peak, dbytes / bandwidth)
    return {"prefill_flops": prefill, "decode_flops": decode, "decode_bytes": dbytes,
            "floor_s": t_prefill + t_decode, "prefill_s": t_prefill, "decode_s": t_decode}  # fmt: skip


def linear_params(model: torch.nn.Module) -> int:
    """Parameters a token's forward multiplies by: all but the input embedding table and the output projection (the
    projection runs only where logits are kept; ``sweep_floor`` counts it there)."""
    skip = {model.get_input_embeddings().weight.data_ptr()}
    if model.get_output_embeddings() is not None:
        skip.add(model.get_output_embeddings().weight.data_ptr())
    return sum(p.numel() for p in model.parameters() if p.data_ptr() not in skip)


def model_floor_inputs(rm) -> dict:
    """``sweep_floor``'s model arguments for a loaded model (``core.models.RetModel``), bf16."""
    config = _text_config(rm.config)
    g = rm.geometry
    return dict(
        params=linear_params(rm.model),
        hidden=config.hidden_size,
        vocab=config.vocab_size,
        windows=[rm.attention_settings(i).sliding_window for i in range(g.num_layers)],
        attn_dim=g.num_heads * g.head_dim,
        weight_bytes=weight_bytes_per_step(rm.model) // next(rm.model.parameters()).element_size() * 2,
        kv_bytes=kv_bytes_per_token(rm.config, 2) // g.num_layers,
    )
