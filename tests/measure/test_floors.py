"""benchmarks/floors.py (the compute floors of the GPU benchmarks) against counts done token by token."""

from __future__ import annotations

import pytest
import torch
from helpers import REPO, make_tiny_model, script_module

from retmask_interp.core.models import as_model


@pytest.fixture(scope="module")
def floors():
    with script_module(REPO / "benchmarks" / "floors.py", "benchmark_floors") as module:
        yield module


@pytest.mark.parametrize("window", [None, 1, 2, 3, 5, 8, 100])
def test_keys_seen_counts_every_query(floors, window):
    for start in range(7):
        for queries in range(9):
            want = sum(p + 1 if window is None else min(p + 1, window) for p in range(start, start + queries))
            assert floors.keys_seen(start, queries, window) == pytest.approx(want)


def brute_force_floor(
    params, hidden, vocab, windows, attn_dim, weight_bytes, kv_bytes, rows, batches, peak, bw
):
    """Token by token, layer by layer: the same accounting as ``sweep_floor``, written out."""

    def attn(pos):  # one query at position pos, every layer
        return sum(4 * attn_dim * (pos + 1 if w is None else min(pos + 1, w)) for w in windows)

    prefill = decode = 0.0
    for p, n, gen in rows:
        for pos in range(p + n - 1):  # the prompt and the answer but its last token
            prefill += 2 * params + attn(pos)
        prefill += n * 2 * hidden * vocab  # logits at the answer's positions
        for step in range(gen - 1):
            decode += 2 * params + 2 * hidden * vocab + attn(p + step)
    dbytes = 0.0
    for nrows, p, steps in batches:
        for _ in range(steps):
            cache = sum(p + steps / 2 if w is None else min(p + steps / 2, w) for w in windows)
            dbytes += weight_bytes + nrows * kv_bytes * cache
    return prefill / peak + max(decode / peak, dbytes / bw), prefill, decode, dbytes


@pytest.mark.parametrize("windows", [[None, None], [4, None], [3, 3]])
def test_sweep_floor_equals_token_by_token_count(floors, windows):
    kw = dict(params=1000, hidden=16, vocab=50, windows=windows, attn_dim=8, weight_bytes=4000, kv_bytes=32)
    rows = [(12, 3, 5), (12, 2, 1), (7, 4, 0)]
    batches = [(2, 12, 4), (1, 7, 0)]
    got = floors.sweep_floor(**kw, rows=rows, batches=batches, peak=1e6, bandwidth=1e5)
    floor, prefill, decode, dbytes = brute_force_floor(*kw.values(), rows, batches, 1e6, 1e5)
    assert got["prefill_flops"] == pytest.approx(prefill)
    assert got["decode_flops"] == pytest.approx(decode)
    assert got["decode_bytes"] == pytest.approx(dbytes)
    assert got["floor_s"] == pytest.approx(floor)
    # memory-bound here: more bandwidth lowers the floor, a faster peak alone leaves the decode part unchanged
    faster = floors.sweep_floor(**kw, rows=rows, batches=batches, peak=1e6, bandwidth=1e7)
    assert faster["floor_s"] < got["floor_s"]


def test_model_inputs_of_a_tiny_model(floors):
    model = make_tiny_model("llama")  # 2 layers, 4 query heads over 2 KV heads, head dim 16, tied embeddings
    rm = as_model(model)
    got = floors.model_floor_inputs(rm)
    c = model.config
    assert got["attn_dim"] == 4 * 16 and got["windows"] == [None, None]
    assert got["kv_bytes"] == 2 * 2 * 16 * 2  # keys and values, 2 KV heads, head dim 16, bf16
    assert floors.kv_bytes_per_token(c, 2) == 2 * got["kv_bytes"]
    emb = c.vocab_size * c.hidden_size
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    all_params = sum(p.numel() for p in model.parameters())  # a tied table once
    assert got["params"] == all_params - (emb if tied else 2 * emb)
    # weights a decode step reads, as bf16: everything but the input table, which a tied output head reads anyway
    assert got["weight_bytes"] == 2 * (all_params - (0 if tied else emb))
    tied_model = make_tiny_model("llama", tie_word_embeddings=True)
    assert floors.model_floor_inputs(as_model(tied_model))["weight_bytes"] == 2 * sum(
        p.numel() for p in tied_model.parameters()
    )


def test_untied_model_reads_its_output_head_but_not_its_input_table(floors):
    model = make_tiny_model("llama", tie_word_embeddings=False)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() != emb.data_ptr()
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    assert floors.weight_bytes_per_step(model) == total - emb.numel() * emb.element_size()
    # neither table is multiplied at every token
    assert floors.linear_params(model) == sum(p.numel() for p in model.parameters()) - 2 * emb.numel()


def test_card_peaks(floors):
    assert floors.card("NVIDIA H100 80GB HBM3")[1:] == (989e12, 3.35e12)
    assert floors.card("NVIDIA H200")[2] == 4.8e12
    name, peak, bw = floors.card("cpu")
    assert name == "cpu" and torch.isnan(torch.tensor(peak)) and torch.isnan(torch.tensor(bw))
