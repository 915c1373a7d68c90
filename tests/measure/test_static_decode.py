"""The static-cache decode path (``core.static_decode``) equals the eager loop and the naive reference.

On the CPU (CI) the static path runs its step function eagerly every step (no graphs): same tokens and scores as
the eager loop (``backend="eager"``) and as ``tests/reference_impl.py``, on the tiny models of every family; masked
generation (zero / uniform / mean, greedy and sampled, padded, EOS) equals the eager masked generation, on seven
families (all eleven with ``RETMASK_TEST_ALL_FAMILIES=1``).

On a GPU the same tests check the CUDA-graph path (the step captured once, nnsight's intervention inside, then
replayed): ``RETMASK_TEST_DEVICE=cuda python -m pytest tests/measure/test_static_decode.py``. There the naive
reference runs on a CPU copy of the model (float32 both), the rest on the GPU.
"""

from __future__ import annotations

import copy
import functools
import os

import pytest
import torch
from helpers import FAMILIES, make_tiny_model
from reference_impl import eager_copy, naive_copy_paste_scores

from retmask_interp.core import decode as _decode
from retmask_interp.core import static_decode
from retmask_interp.core.models import as_model
from retmask_interp.core.static_decode import resolve_backend, static_blocker
from retmask_interp.interventions.masking import generate, mean_head_outputs
from retmask_interp.interventions.weights import zero_head_outputs_, zero_head_queries_
from retmask_interp.measure.detect import copy_paste_scores, copy_paste_scores_batch

DEVICE = torch.device(os.environ.get("RETMASK_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("RETMASK_TEST_DEVICE=cuda but no CUDA device", allow_module_level=True)
GRAPHS = DEVICE.type == "cuda"
HEADS = [(0, 1), (1, 0), (1, 3)]
# masked generation on a spread of the families (all of them with RETMASK_TEST_ALL_FAMILIES=1): GQA with separate
# projections, eager attention with soft-capping, per-head and joint query norms, fused qkv, Conv1D, per-head fused
MASK_FAMILIES = (
    FAMILIES
    if os.environ.get("RETMASK_TEST_ALL_FAMILIES") == "1"
    else ["llama", "gemma2", "qwen3", "olmo2", "phi3", "gpt2", "gpt_neox"]
)


@functools.cache
def _cached_model(family: str, overrides: tuple):
    return make_tiny_model(family, **dict(overrides)).to(DEVICE)


def _model(family: str, **overrides):
    """One model per family and settings for the whole file (nnsight wraps and instruments it once); no test
    changes a model's weights."""
    return _cached_model(family, tuple(sorted(overrides.items())))


def _prompt(vocab: int, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def spy(monkeypatch):
    """Counts static-cache writes, eager-loop runs and CUDA graphs captured, so no comparison is vacuous."""
    seen = {"static_writes": 0, "eager_loops": 0, "graphs": 0}
    real_update, real_steps, real_capture = (
        static_decode._StaticLayer.update,
        _decode.decode_steps,
        static_decode._capture,
    )

    def update(self, *args, **kwargs):
        seen["static_writes"] += 1
        return real_update(self, *args, **kwargs)

    def steps(*args, **kwargs):
        seen["eager_loops"] += 1
        return real_steps(*args, **kwargs)

    def capture(*args, **kwargs):
        graph = real_capture(*args, **kwargs)
        assert graph is not None, "CUDA graph capture failed (see the log)"
        seen["graphs"] += 1
        return graph

    monkeypatch.setattr(static_decode._StaticLayer, "update", update)
    monkeypatch.setattr(_decode, "decode_steps", steps)
    monkeypatch.setattr(static_decode, "_capture", capture)
    # detect / generation imported decode_steps by name: patch those references too
    import retmask_interp.core.generation as generation_mod
    import retmask_interp.measure.detect as detect_mod

    monkeypatch.setattr(detect_mod, "decode_steps", steps)
    monkeypatch.setattr(generation_mod, "decode_steps", steps)
    return seen


def _static_ran(seen, steps_after_prefill: int) -> None:
    assert seen["static_writes"] > 0, "the static path did not run"
    if GRAPHS and steps_after_prefill > 1:
        assert seen["graphs"] > 0, "no CUDA graph was captured"


@pytest.mark.parametrize("family", FAMILIES)
def test_static_detection_equals_eager_and_reference(family, spy):
    model = _model(family, vocab_size=8)  # a tiny vocabulary makes copy-paste hits frequent
    eager_ref = eager_copy(model).to("cpu")
    prompt, span = _prompt(6, 40, 0), (5, 30)
    ref_gen, ref_scores = naive_copy_paste_scores(eager_ref, prompt, span, 7)
    gen_e, scores_e = copy_paste_scores(model, prompt, span, 7, eos_token_ids=[], backend="eager")
    assert spy["eager_loops"] == 1 and spy["static_writes"] == 0
    gen_s, scores_s = copy_paste_scores(model, prompt, span, 7, eos_token_ids=[], backend="static")
    assert spy["eager_loops"] == 1, "the static backend fell back to the eager loop"
    assert gen_s.tolist() == gen_e.tolist() == ref_gen.tolist()
    torch.testing.assert_close(scores_s, scores_e, atol=1e-6, rtol=0)
    torch.testing.assert_close(scores_s, ref_scores, atol=1e-6, rtol=0)
    assert float(ref_scores.sum()) > 0, (
        "the construction should produce hits; otherwise the comparison is vacuous"
    )
    _static_ran(spy, 6)


def test_static_detection_batched_with_padding_and_eos(spy):
    model = _model("llama")
    prompts = [_prompt(6, n, seed) for seed, n in enumerate((30, 37, 41))]
    spans = [(3, 20), (10, 30), (0, 41)]
    free = copy_paste_scores_batch(model, prompts, spans, 6, eos_token_ids=[], backend="eager")
    # an EOS that one row emits early and the others later or never: rows stop at different steps
    eos = int(free[0][0][2])
    for eos_ids in ([], [eos]):
        eager = copy_paste_scores_batch(model, prompts, spans, 6, eos_token_ids=eos_ids, backend="eager")
        static = copy_paste_scores_batch(model, prompts, spans, 6, eos_token_ids=eos_ids, backend="static")
        for (g1, s1), (g2, s2) in zip(eager, static):
            assert g1.tolist() == g2.tolist()
            torch.testing.assert_close(s1, s2, atol=1e-6, rtol=0)
    first = free[0][0].tolist().index(eos)
    assert len(eager[0][0]) == first + 1 < 6, "the EOS should stop the first row early"
    _static_ran(spy, 5)


def test_static_detection_with_masked_heads_equals_eager(spy):
    model = _model("qwen3", vocab_size=8)
    prompt = _prompt(6, 40, 3)
    for mode in ("zero", "uniform"):
        kw = dict(eos_token_ids=[], mask_heads=HEADS, mask_mode=mode)
        gen_e, sc_e = copy_paste_scores(model, prompt, (0, 40), 8, backend="eager", **kw)
        gen_s, sc_s = copy_paste_scores(model, prompt, (0, 40), 8, backend="static", **kw)
        assert gen_s.tolist() == gen_e.tolist()
        torch.testing.assert_close(sc_s, sc_e, atol=1e-6, rtol=0)
    _static_ran(spy, 7)


@pytest.mark.parametrize("family", MASK_FAMILIES)
def test_static_masked_generation_equals_eager(family, spy):
    model = _model(family, vocab_size=8)  # the detection test's model
    prompts = [_prompt(8, n, n).tolist() for n in (7, 12)]  # left padding
    kw = dict(max_new_tokens=4, eos_token_id=[], pad_token_id=0)
    means = (
        mean_head_outputs(model, _prompt(8, 18, 5).reshape(2, 9).to(DEVICE)) if family == "llama" else None
    )
    for mode in ("zero", "uniform") + (("mean",) if means is not None else ()):
        eager = generate(model, prompts, HEADS, mode, mean_values=means, backend="eager", **kw)
        static = generate(model, prompts, HEADS, mode, mean_values=means, backend="static", **kw)
        assert static.tolist() == eager.tolist(), mode
    if family == "llama":  # nothing masked: plain forwards, no nnsight
        plain_e = generate(model, prompts, [], backend="eager", **kw)
        assert generate(model, prompts, [], backend="static", **kw).tolist() == plain_e.tolist()
    _static_ran(spy, 3)


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_static_masked_generation_equals_edited_model(mode, spy):
    model = _model("llama")
    edited = copy.deepcopy(model)
    (zero_head_outputs_ if mode == "zero" else zero_head_queries_)(edited, HEADS)
    ids = _prompt(64, 10, 1)[None].to(DEVICE)
    with torch.no_grad():
        ref = edited.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, pad_token_id=0
        )
    out = generate(model, ids, HEADS, mode, max_new_tokens=8, eos_token_id=[], backend="static")
    assert out.tolist() == ref.tolist()
    _static_ran(spy, 7)


def test_static_sampled_with_seed_and_eos_equals_eager(spy):
    model = _model("llama")
    prompts = [_prompt(64, n, n).tolist() for n in (5, 9, 9)]
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9, seed=11, pad_token_id=0)
    eager = generate(model, prompts, HEADS, "zero", eos_token_id=[], backend="eager", **kw)
    static = generate(model, prompts, HEADS, "zero", eos_token_id=[], backend="static", **kw)
    assert static.tolist() == eager.tolist()
    width = eager.shape[1] - 8
    eos = [int(eager[0, width + 2]), int(eager[1, width + 4])]
    eager = generate(model, prompts, HEADS, "zero", eos_token_id=eos, backend="eager", **kw)
    static = generate(model, prompts, HEADS, "zero", eos_token_id=eos, backend="static", **kw)
    assert static.tolist() == eager.tolist()
    _static_ran(spy, 7)


@pytest.mark.parametrize("family", ["mistral", "gemma3_text", "gemma2"])
def test_static_beyond_the_sliding_window_equals_eager_and_reference(family, spy):
    """Windows shorter than the prompt: the static cache keeps every position and a second mask carries the window
    (Mistral: every layer slides, one mask; Gemma-3 / Gemma-2: full and sliding layers, a mask per layer type;
    Gemma-2 runs eager attention, an additive mask). Detection (padded batch, readout inside the window), and masked
    generation, against the eager loop (whose sliding cache keeps only the last keys) and the naive reference."""
    if family == "gemma3_text":  # mixed, as Gemma-3-270M (15 sliding layers of 18)
        types = ["sliding_attention", "full_attention"]
        model = make_tiny_model(family, vocab_size=8, sliding_window=8, layer_types=types).to(DEVICE)
    else:
        model = _model(family, vocab_size=8, sliding_window=8)
    rm = as_model(model)
    window, mapping = static_decode.sliding_plan(rm, 40)
    assert window == 8 and mapping == (family != "mistral")
    # a window covering every position is full attention: no second mask
    assert static_decode.sliding_plan(rm, 8) == (None, False)
    assert static_blocker(rm, 60) is None
    eager_ref = eager_copy(model).to("cpu")
    prompts = [_prompt(6, n, seed) for seed, n in enumerate((40, 33))]
    spans = [(20, 38), (4, 30)]  # straddle the edge of the window
    eager = copy_paste_scores_batch(model, prompts, spans, 12, eos_token_ids=[], backend="eager")
    static = copy_paste_scores_batch(model, prompts, spans, 12, eos_token_ids=[], backend="static")
    hits = 0.0
    for (g1, s1), (g2, s2) in zip(eager, static):
        assert g2.tolist() == g1.tolist()
        torch.testing.assert_close(s2, s1, atol=1e-6, rtol=0)
        hits += float(s1.sum())
    ref_gen, ref_scores = naive_copy_paste_scores(eager_ref, prompts[0], spans[0], 12)
    assert static[0][0].tolist() == ref_gen.tolist()
    torch.testing.assert_close(static[0][1], ref_scores.to(static[0][1].device), atol=1e-6, rtol=0)
    assert hits > 0, "no hits: the comparison would be vacuous"
    kw = dict(max_new_tokens=12, eos_token_id=[], pad_token_id=0)
    ids = [p.tolist() for p in prompts]
    for mode in ("zero", "uniform"):
        e = generate(model, ids, HEADS, mode, backend="eager", **kw)
        assert generate(model, ids, HEADS, mode, backend="static", **kw).tolist() == e.tolist(), mode
    _static_ran(spy, 11)


def test_sliding_layers_the_static_path_cannot_take(monkeypatch):
    types = ["sliding_attention", "full_attention"]
    model = make_tiny_model("gemma3_text", sliding_window=8, layer_types=types).to(DEVICE)
    rm = as_model(model)
    monkeypatch.setattr(static_decode, "_takes_mask_mapping", lambda model: False)
    assert static_blocker(rm, 8) is None  # inside the window: no second mask needed
    assert "one mask for all" in static_blocker(rm, 40)
    assert resolve_backend("auto", rm, 40) == (False, False)  # auto falls back to the eager loop
    with pytest.raises(ValueError, match="one mask for all"):
        copy_paste_scores(model, _prompt(6, 30, 0), (0, 10), 4, eos_token_ids=[], backend="static")
    monkeypatch.undo()
    windows = {0: 8, 1: 4}
    from retmask_interp.core.architectures import AttentionSettings

    monkeypatch.setattr(
        type(rm), "attention_settings", lambda self, layer: AttentionSettings(1.0, None, windows[layer])
    )
    assert "different windows" in static_blocker(rm, 40)


def test_backend_choice():
    model = _model("llama")
    rm = as_model(model)
    with pytest.raises(ValueError, match="unknown decode backend"):
        resolve_backend("fast", rm, 10)
    assert resolve_backend("eager", rm, 10) == (False, False)
    assert resolve_backend("static", rm, 10) == (True, GRAPHS)
    assert resolve_backend("auto", rm, 10) == ((True, True) if GRAPHS else (False, False))
    model.config._attn_implementation = "flash_attention_2"  # only the check reads it here
    try:
        assert "attention implementation" in static_blocker(rm, 10)
    finally:
        model.config._attn_implementation = "sdpa"


def test_split_decode_attention_equals_reference_attention():
    """The chunked decode attention is softmax(q k / sqrt(d)) v over the unmasked positions, per query head."""
    from retmask_interp.core.static_decode import SPLIT_CHUNK, split_decode_attention

    g = torch.Generator().manual_seed(0)
    b, h, kvh, d, length = 2, 8, 2, 16, 2 * SPLIT_CHUNK
    q = torch.randn(b, h, 1, d, generator=g)
    k = torch.randn(b, kvh, length, d, generator=g)
    v = torch.randn(b, kvh, length, d, generator=g)
    keep = torch.rand(b, 1, 1, length, generator=g) > 0.3
    keys, values = k.repeat_interleave(h // kvh, 1), v.repeat_interleave(h // kvh, 1)
    for softcap in (None, 5.0):
        scores = q @ keys.transpose(-1, -2) * d**-0.5
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        ref = (scores.masked_fill(~keep, float("-inf")).softmax(-1) @ values).transpose(1, 2)
        for mask in (keep, torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)):
            out, _ = split_decode_attention(None, q, k, v, mask, softcap=softcap)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["split", "model"])
@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt_neox"])
def test_static_decode_attention_setting(family, attention, spy, monkeypatch):
    """RETMASK_DECODE_ATTENTION=split (the default) runs the static steps through split_decode_attention (the
    prefill keeps the model's kernel), =model through the model's own; both give the eager loop's tokens and scores
    and the eager masked generation, and the model's attention implementation is restored after."""
    from retmask_interp.core import static_decode as sd

    calls = []
    real = sd.split_decode_attention
    monkeypatch.setattr(sd, "split_decode_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setitem(  # registered once per process: point the registration at the spy too
        __import__("transformers").AttentionInterface._global_mapping,
        sd._SPLIT_NAME,
        sd.split_decode_attention,
    )
    monkeypatch.setenv(sd.ATTENTION_ENV, attention)
    model = _model(family, vocab_size=8)
    impl = model.config._attn_implementation
    prompt = _prompt(6, 40, 0)
    gen_e, sc_e = copy_paste_scores(model, prompt, (5, 30), 6, eos_token_ids=[], backend="eager")
    gen_s, sc_s = copy_paste_scores(model, prompt, (5, 30), 6, eos_token_ids=[], backend="static")
    assert bool(calls) == (attention == "split")
    assert model.config._attn_implementation == impl, "the model's attention implementation was not restored"
    assert gen_s.tolist() == gen_e.tolist()
    torch.testing.assert_close(sc_s, sc_e, atol=1e-6, rtol=0)
    prompts = [_prompt(8, n, n).tolist() for n in (7, 12)]
    kw = dict(max_new_tokens=4, eos_token_id=[], pad_token_id=0)
    eager = generate(model, prompts, HEADS, "uniform", backend="eager", **kw)
    assert generate(model, prompts, HEADS, "uniform", backend="static", **kw).tolist() == eager.tolist()
    _static_ran(spy, 5)
