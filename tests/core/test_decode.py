"""Masked generation in one nnsight trace equals the per-step-trace path and the weight-edited model, on every family.

The reference path (``generate(..., per_step_traces=True)``: one trace per step, the query zeroed at the attention call through
``.source`` and the head outputs zeroed by index) is the implementation masked generation used before;
the fast path (``masking.generate``: the whole loop in one trace over ``site_envoy``, the query zeroed at the query
projection's output, ``masked_fill_``) must give the same tokens, greedy and sampled with a seed.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import pytest
import torch
from helpers import FAMILIES, make_tiny_model

from retmask_interp.core import decode as _decode
from retmask_interp.core.decode import _forward_names
from retmask_interp.core.models import RetModel, as_model
from retmask_interp.interventions.masking import generate, masked_logits, mean_head_outputs, site_envoy
from retmask_interp.interventions.weights import zero_head_outputs_, zero_head_queries_
from retmask_interp.measure.detect import copy_paste_scores

HEADS = [(0, 1), (1, 0), (1, 3)]


def _ids(vocab=64, shape=(2, 11), seed=0):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def per_step_generate(
    model, prompts, heads, mode, *, max_new_tokens, eos_ids=(), mean_values=None, **sampling
):
    """The per-step-trace path, called with the same padding as the tests' ``generate`` calls."""
    return generate(
        model,
        prompts,
        heads,
        mode,
        max_new_tokens=max_new_tokens,
        eos_token_id=list(eos_ids),
        pad_token_id=0,
        mean_values=mean_values,
        per_step_traces=True,
        **sampling,
    )


def test_per_step_reference_is_the_documented_path():
    """The reference really is one trace per step through ``.source`` (else the comparisons below are vacuous)."""
    model = make_tiny_model("llama")
    rm = as_model(model)
    calls = []
    real_call, real_step = RetModel.attention_call, _decode.traced_step

    def spy_call(self, layer):
        calls.append(layer)
        return real_call(self, layer)

    steps = []

    def spy_step(*args, **kwargs):
        steps.append(1)
        return real_step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RetModel, "attention_call", spy_call)
        mp.setattr(_decode, "traced_step", spy_step)
        per_step_generate(rm, [_ids(shape=(6,)).tolist()], HEADS, "uniform", max_new_tokens=4)
    assert len(steps) == 4 and sorted(set(calls)) == [0, 1]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["zero", "uniform", "mean"])
def test_one_trace_equals_per_step_traces(family, mode):
    model = make_tiny_model(family)
    prompts = [_ids(shape=(n,), seed=n).tolist() for n in (7, 12)]  # left padding
    means = mean_head_outputs(model, _ids(shape=(2, 9), seed=5)) if mode == "mean" else None
    kw = dict(max_new_tokens=7, mean_values=means)
    new = generate(model, prompts, HEADS, mode, eos_token_id=[], pad_token_id=0, **kw)
    old = per_step_generate(model, prompts, HEADS, mode, **kw)
    assert new.tolist() == old.tolist()
    plain = generate(model, prompts, [], eos_token_id=[], pad_token_id=0, max_new_tokens=7)
    if (
        new.tolist() == plain.tolist()
    ):  # too weak to flip a token here (Gemma's flat attention): check the logits
        ids = new[:1, 5:]  # the unpadded row
        diff = masked_logits(model, ids, HEADS, mode, mean_values=means) - masked_logits(model, ids, [])
        assert diff.abs().max() > 1e-4, "masking these heads should change the model"


@pytest.mark.parametrize("family", ["llama", "olmo2", "gpt_neox"])
@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_one_trace_sampled_with_seed_equals_per_step(family, mode):
    model = make_tiny_model(family)
    prompts = [_ids(shape=(n,), seed=n).tolist() for n in (5, 9, 9)]
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9, seed=11)
    new = generate(model, prompts, HEADS, mode, eos_token_id=[], pad_token_id=0, **kw)
    old = per_step_generate(model, prompts, HEADS, mode, **kw)
    assert new.tolist() == old.tolist()
    assert (
        new.tolist() == generate(model, prompts, HEADS, mode, eos_token_id=[], pad_token_id=0, **kw).tolist()
    )
    other = generate(model, prompts, HEADS, mode, eos_token_id=[], pad_token_id=0, **{**kw, "seed": 12})
    assert other.tolist() != new.tolist()


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_pair_sides_draw_the_same_random_numbers(mode):
    """Masking heads that are already dead (weights zeroed) changes nothing, so the masked side (one trace) must
    reproduce the unmasked side (plain forwards) draw for draw with the same seed: the sides differ only by masking."""
    model = make_tiny_model("llama")
    (zero_head_outputs_ if mode == "zero" else zero_head_queries_)(model, HEADS)
    prompts = [_ids(shape=(n,), seed=n).tolist() for n in (4, 9)]
    kw = dict(max_new_tokens=15, do_sample=True, temperature=0.8, top_p=0.95, eos_token_id=[], pad_token_id=0)
    unmasked = generate(model, prompts, [], seed=7, **kw)
    assert generate(model, prompts, HEADS, mode, seed=7, **kw).tolist() == unmasked.tolist()
    assert generate(model, prompts, HEADS, mode, seed=8, **kw).tolist() != unmasked.tolist()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_masked_generation_equals_edited_model_greedy_all_families(family, mode):
    model = make_tiny_model(family)
    edited = copy.deepcopy(model)
    (zero_head_outputs_ if mode == "zero" else zero_head_queries_)(edited, HEADS)
    ids = _ids(shape=(1, 10))
    with torch.no_grad():
        ref = edited.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, pad_token_id=0
        )
    assert generate(model, ids, HEADS, mode, max_new_tokens=8, eos_token_id=[]).tolist() == ref.tolist()


def test_early_stop_at_eos_is_quiet_and_matches_per_step():
    """A batch that finishes before max_new_tokens ends the trace's step loop early: same tokens, no warning."""
    model = make_tiny_model("llama")
    prompts = [_ids(shape=(n,), seed=n).tolist() for n in (6, 10)]
    free = generate(model, prompts, HEADS, max_new_tokens=20, eos_token_id=[], pad_token_id=0)
    width = free.shape[1] - 20
    eos = int(free[0, width + 2])  # the first row emits this at step 2; pick the EOS so that both stop early
    eos2 = int(free[1, width + 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = generate(model, prompts, HEADS, max_new_tokens=20, eos_token_id=[eos, eos2], pad_token_id=0)
    ref = per_step_generate(model, prompts, HEADS, "zero", max_new_tokens=20, eos_ids=[eos, eos2])
    assert out.tolist() == ref.tolist()
    assert out.shape[1] < free.shape[1], "both rows should stop before max_new_tokens"


def test_uniform_generation_does_not_use_source(monkeypatch):
    """The query is zeroed at the query projection, so generation never instruments the attention forward."""
    model = make_tiny_model("olmo2")
    expected = per_step_generate(model, [_ids(shape=(9,)).tolist()], HEADS, "uniform", max_new_tokens=5)

    def no_source(self, layer):
        raise AssertionError("masked generation touched .source")

    monkeypatch.setattr(RetModel, "attention_call", no_source)
    out = generate(model, [_ids(shape=(9,)).tolist()], HEADS, "uniform", max_new_tokens=5, eos_token_id=[])
    assert out.tolist() == expected.tolist()


def test_site_envoy_cached_rebuilt_and_model_envoy_still_works():
    model = make_tiny_model("llama")
    rm = as_model(model)
    prompt = _ids(shape=(20,), vocab=8)
    det_before = copy_paste_scores(model, prompt, (2, 15), max_new_tokens=4, eos_token_ids=[])
    env = site_envoy(rm, "o_proj")
    assert site_envoy(model, "o_proj") is env
    ids = _ids()
    before = masked_logits(model, ids, HEADS)
    # after masked generation (which traces the site envoy), the whole-model envoy still masks and reads
    generate(model, ids, HEADS, max_new_tokens=3, eos_token_id=[])
    torch.testing.assert_close(masked_logits(model, ids, HEADS), before, atol=0, rtol=0)
    det_after = copy_paste_scores(model, prompt, (2, 15), max_new_tokens=4, eos_token_ids=[])
    assert det_after[0].tolist() == det_before[0].tolist()
    torch.testing.assert_close(det_after[1], det_before[1], atol=0, rtol=0)
    # a replaced module (an adapter, a reload) gets a new envoy over the live modules
    old = model.model.layers[1].self_attn.o_proj
    model.model.layers[1].self_attn.o_proj = copy.deepcopy(old)
    try:
        assert site_envoy(rm, "o_proj") is not env
        edited = copy.deepcopy(model)
        zero_head_outputs_(edited, HEADS)
        with torch.no_grad():
            ref = edited.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
        assert generate(model, ids, HEADS, max_new_tokens=4, eos_token_id=[]).tolist() == ref.tolist()
    finally:
        model.model.layers[1].self_attn.o_proj = old


def test_no_heads_is_plain_greedy_and_skips_nnsight():
    model = make_tiny_model("llama")
    ids = _ids(shape=(1, 12))
    with torch.no_grad():
        ref = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=0
        )
    assert generate(model, ids, [], max_new_tokens=6, eos_token_id=[]).tolist() == ref.tolist()
    assert as_model(model)._lm is None, "unmasked generation should not wrap the model in nnsight"


def test_forward_names_cached_per_class():
    """Read once per class, they are the names the instance's forward takes (as nnsight wraps it too)."""
    from nnsight import NNsight

    for family in ("llama", "gpt2"):
        model = make_tiny_model(family)
        assert isinstance(
            as_model(model).lm, NNsight
        )  # nnsight installs its controller as the instance's forward
        params = inspect.signature(model.forward).parameters
        cache = "cache" if "cache" in params else "past_key_values"
        assert cache in params and "logits_to_keep" in params
        assert _forward_names(model) == (cache, "logits_to_keep")
        hits = _decode._forward_names_of.cache_info().hits
        assert _forward_names(make_tiny_model(family, seed=1)) == (cache, "logits_to_keep")
        assert (
            _decode._forward_names_of.cache_info().hits == hits + 1
        )  # another instance: read from the cache
