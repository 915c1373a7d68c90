"""Masking equals the weight edits it stands for, on every family; random controls; generation."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import FAMILIES, make_tiny_model

from retmask_interp.core.models import as_model
from retmask_interp.interventions.controls import random_controls, random_heads
from retmask_interp.interventions.masking import generate, masked, masked_logits, mean_head_outputs
from retmask_interp.interventions.weights import zero_head_outputs_, zero_head_queries_

HEADS = [(0, 1), (1, 0), (1, 3)]


def _ids(vocab=64, shape=(2, 17), seed=0):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_no_heads_is_plain_model(family):
    model = make_tiny_model(family)
    ids = _ids()
    with torch.no_grad():
        plain = model(ids).logits
    torch.testing.assert_close(masked_logits(model, ids, []), plain, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_equals_zeroed_output_columns(family):
    model = make_tiny_model(family)
    ids = _ids()
    edited = copy.deepcopy(model)
    zero_head_outputs_(edited, HEADS)
    with torch.no_grad():
        ref = edited(ids).logits
        plain = model(ids).logits
    out = masked_logits(model, ids, HEADS, "zero")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (out - plain).abs().max() > 1e-3, "masking these heads should change the logits"


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_equals_zeroed_query_rows(family):
    model = make_tiny_model(family)
    ids = _ids()
    edited = copy.deepcopy(model)
    zero_head_queries_(edited, HEADS)
    with torch.no_grad():
        ref = edited(ids).logits
        plain = model(ids).logits
    out = masked_logits(model, ids, HEADS, "uniform")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (out - plain).abs().max() > 1e-3


def test_uniform_attends_uniformly():
    """With its query zeroed, a head's attention row is 1/(position+1) over the causal context."""
    model = make_tiny_model("llama", attn_implementation="eager")
    edited = copy.deepcopy(model)
    zero_head_queries_(edited, [(1, 2)])
    ids = _ids(shape=(1, 9))
    with torch.no_grad():
        att = edited(ids, output_attentions=True).attentions[1][0, 2]  # [q, k]
    expected = torch.tril(torch.ones(9, 9)) / torch.arange(1, 10)[:, None]
    torch.testing.assert_close(att, expected, atol=1e-6, rtol=0)


def test_mean_mode_replaces_output_with_reference_mean():
    model = make_tiny_model("llama")
    ref_ids = _ids(shape=(3, 20), seed=1)
    means = mean_head_outputs(model, ref_ids)
    assert means.shape == (2, 4, 16)
    # a 'mean' head whose mean is zero behaves like a 'zero' head
    ids = _ids()
    torch.testing.assert_close(
        masked_logits(model, ids, HEADS, "mean", mean_values=torch.zeros_like(means)),
        masked_logits(model, ids, HEADS, "zero"),
        atol=1e-6,
        rtol=0,
    )
    # and the reference mean is the plain average of the o_proj input over positions
    captured = []
    hook = model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(
        lambda m, a: captured.append(a[0])
    )
    with torch.no_grad():
        model(ref_ids)
    hook.remove()
    expected = captured[0].reshape(-1, 4, 16).mean(0)
    torch.testing.assert_close(means[1], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mean_values"):
        masked_logits(model, ids, HEADS, "mean")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "phi3"])
@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_masked_generation_equals_edited_model_greedy(family, mode):
    model = make_tiny_model(family)
    edited = copy.deepcopy(model)
    (zero_head_outputs_ if mode == "zero" else zero_head_queries_)(edited, HEADS)
    ids = _ids(shape=(1, 12))
    with torch.no_grad():
        ref = edited.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, pad_token_id=0
        )
    out = generate(model, ids, HEADS, mode, max_new_tokens=8, eos_token_id=[])
    assert out.tolist() == ref.tolist()


def test_generate_left_padded_batch_matches_single():
    model = make_tiny_model("llama")
    prompts = [_ids(shape=(n,), seed=n).tolist() for n in (7, 12)]
    batch = generate(model, prompts, HEADS, max_new_tokens=6, eos_token_id=[])
    for row, p in zip(batch, prompts):
        single = generate(model, [p], HEADS, max_new_tokens=6, eos_token_id=[])[0]
        assert row[-6:].tolist() == single[-6:].tolist()


def test_sampling_is_seeded():
    model = make_tiny_model("llama")
    ids = _ids(shape=(2, 8))
    kw = dict(max_new_tokens=10, do_sample=True, temperature=0.6, top_p=0.9, eos_token_id=[])
    a = generate(model, ids, HEADS, seed=3, **kw)
    b = generate(model, ids, HEADS, seed=3, **kw)
    c = generate(model, ids, HEADS, seed=4, **kw)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_masked_context_and_validation():
    model = make_tiny_model("llama")
    ids = _ids()
    with masked(model, HEADS) as m:
        torch.testing.assert_close(m.logits(ids), masked_logits(model, ids, HEADS))
        assert "3 heads" in repr(m)
    with pytest.raises(ValueError, match="out of range"):
        masked_logits(model, ids, [(2, 0)])
    with pytest.raises(ValueError, match="unknown masking mode"):
        masked_logits(model, ids, HEADS, "scramble")


def test_random_controls_never_overlap_and_are_seeded():
    model = make_tiny_model("llama")
    g = as_model(model).geometry
    retrieval = [(0, 1), (1, 2)]
    exclude = retrieval + [(0, 0)]
    controls = random_controls(model, retrieval, n_seeds=5, exclude=exclude)
    assert len(controls) == 5
    for c in controls:
        assert len(c) == 2 and not set(c) & set(exclude)
        assert all(0 <= layer < g.num_layers and 0 <= h < g.num_heads for layer, h in c)
    assert controls == random_controls(model, retrieval, n_seeds=5, exclude=exclude)
    assert len({tuple(c) for c in controls}) > 1
    matched = random_heads(model, 2, exclude=exclude, seed=1, like=retrieval)
    assert sorted(layer for layer, _ in matched) == [0, 1]
    with pytest.raises(ValueError, match="only"):
        random_heads(model, 8, exclude=exclude)


def test_random_heads_from_given_layers():
    from retmask_interp.core.models import load_organism

    model = load_organism()
    g = model.geometry
    exclude = [(0, 0)]
    heads = random_heads(model, 3, exclude=exclude, seed=0, layers=[0, 1])
    assert len(heads) == 3 and {a for a, _ in heads} <= {0, 1} and (0, 0) not in heads
    with pytest.raises(ValueError, match="do not exist"):
        random_heads(model, 1, layers=[g.num_layers])
    with pytest.raises(ValueError, match="like"):
        random_heads(model, 1, like=[(0, 1)], layers=[0])


def test_matched_control_spills_into_layers_of_the_same_attention_window():
    """Gemma-3's case: a layer whose heads are all retrieval heads. With groups, its share comes from the other
    layers of its group (never another group, never an excluded or already drawn head); a draw that needs no spill
    is the plain per-layer draw, head for head."""
    from types import SimpleNamespace

    from retmask_interp.interventions.controls import attention_groups

    g = SimpleNamespace(num_layers=6, num_heads=4)
    groups = [512, 512, None, 512, 512, None]  # layers 2 and 5 global, as Gemma-3's every sixth layer
    retrieval = [(2, 0), (2, 1), (2, 2), (2, 3), (4, 1)]  # layer 2 has no free head left
    for seed in range(20):
        drawn = random_heads(g, 5, exclude=retrieval, seed=seed, like=retrieval, groups=groups)
        assert len(set(drawn)) == 5 and not set(drawn) & set(retrieval)
        layers = sorted(a for a, _ in drawn)
        assert (
            layers.count(4) == 1 and layers.count(5) == 4
        )  # layer 4's own, layer 2's four from global layer 5
    # no spill needed: groups change nothing
    easy = [(0, 1), (3, 2), (3, 0)]
    for seed in range(20):
        assert random_heads(g, 3, exclude=easy, seed=seed, like=easy, groups=groups) == random_heads(
            g, 3, exclude=easy, seed=seed, like=easy
        )
    with pytest.raises(ValueError, match="groups="):
        random_heads(g, 5, exclude=retrieval, seed=0, like=retrieval)
    crowded = retrieval + [(5, 0), (5, 1)]  # the group has 2 free heads for 4 needed
    with pytest.raises(ValueError, match="no matched control fits"):
        random_heads(g, 5, exclude=crowded, seed=0, like=retrieval, groups=groups)
    with pytest.raises(ValueError, match="one label per layer"):
        random_heads(g, 5, exclude=retrieval, like=retrieval, groups=[None])
    # attention_groups reads each layer's window from the config (a tiny Gemma-3: sliding, then global)
    model = make_tiny_model(
        "gemma3_text", sliding_window=8, layer_types=["sliding_attention", "full_attention"]
    )
    assert attention_groups(model) == [8, None]
