"""The researcher's surface: text in, text out; heads as (layer, head) or "layer-head"; HeadScores' short repr,
top, heatmap and save; the prompt forms refused when ambiguous. On the embedded organism (a real tokenizer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import retmask_interp as rmi
from retmask_interp.core.io import InputError
from retmask_interp.heads.scores import HeadScores
from retmask_interp.interventions import masking

TEXT = "The secret word is blue. What is the secret word?"


@pytest.fixture(scope="module")
def rm():
    return rmi.load_model("organism", device="cpu")


def _hf_greedy(rm, ids: list[int], n: int) -> str:
    """Hugging Face's own greedy generate, decoded up to EOS: the reference for text out."""
    out = rm.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0)[
        0, len(ids) :
    ]
    eos = set(rm.eos_token_ids())
    new = out.tolist()
    cut = next((i for i, t in enumerate(new) if t in eos), len(new))
    return rm.tokenizer.decode(new[:cut], skip_special_tokens=True).strip()


def test_generate_is_text_in_text_out_and_equals_hf_generate(rm):
    ids = rm.tokenizer(TEXT)["input_ids"]
    text = rm.generate(TEXT, max_new_tokens=8)
    assert isinstance(text, str)
    assert text == _hf_greedy(rm, ids, 8)
    # the same prompt as token ids (a flat list of ints is ONE prompt), a 1-D tensor, or a NIAH-like sample
    assert rm.generate(ids, max_new_tokens=8) == text
    assert rm.generate(torch.tensor(ids), max_new_tokens=8) == text

    class Sample:
        input_ids = ids

    assert rm.generate(Sample(), max_new_tokens=8) == text
    # several prompts: a list of strings or of id lists gives a list of strings, each as alone
    other = "Alice has a cat. Who has a cat?"
    both = rm.generate([TEXT, other], max_new_tokens=8)
    assert both == [text, rm.generate(other, max_new_tokens=8)]
    assert rm.generate([ids, rm.tokenizer(other)["input_ids"]], max_new_tokens=8) == both


def test_generate_chat_messages_use_the_chat_template(rm):
    messages = [{"role": "user", "content": TEXT}]
    ids = rm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = rm.tokenizer(ids, add_special_tokens=False)["input_ids"]
    assert rm.generate(messages, max_new_tokens=6) == _hf_greedy(rm, ids, 6)


def test_ambiguous_prompts_are_refused_with_the_fix(rm):
    with pytest.raises(InputError, match="mixing token ids.*several prompts"):
        rm.generate([1, 2, [3, 4]], max_new_tokens=2)
    with pytest.raises(InputError, match="empty"):
        rm.generate([], max_new_tokens=2)
    # the token-level function: a flat list of ints is one prompt (one row), a string is refused
    out = masking.generate(rm, [5, 6, 7], max_new_tokens=3)
    assert out.shape[0] == 1 and out[0, :3].tolist() == [5, 6, 7]
    with pytest.raises(InputError, match=r"model\.generate\(prompt\)"):
        masking.generate(rm, TEXT, max_new_tokens=3)


def test_masked_takes_layer_head_keys_and_generates_text(rm):
    ids = rm.tokenizer(TEXT)["input_ids"]
    with rmi.masked(rm, ["4-1", (5, 2)]) as m:
        text = m.generate(TEXT, max_new_tokens=8)
        assert m.heads == [(4, 1), (5, 2)] and "4-1" in repr(m)
    with rmi.masked(rm, [(4, 1), (5, 2)]) as m2:
        assert m2.generate(ids, max_new_tokens=8) == text
        toks = m2.generate_ids(ids, max_new_tokens=8)
    ref = masking.generate(rm, [ids], [(4, 1), (5, 2)], max_new_tokens=8)
    assert torch.equal(toks, ref)
    for bad, match in [
        (["4.1"], "'layer-head'"),
        ("4-1", r"a list of heads"),
        ((4, 1), r"one head.*\[\(4, 1\)\]"),
    ]:
        with pytest.raises(InputError, match=match):
            rmi.masked(rm, bad).__enter__()
    with pytest.raises(ValueError, match="9-0.*out of range"):
        rmi.masked(rm, ["9-0"]).__enter__()


def test_retmodel_repr_is_short(rm):
    text = repr(rm)
    assert "retmask-organism-concentrated" in text and "6 layers x 8 heads" in text and len(text) < 160


def _thirty_layers() -> HeadScores:
    m = np.zeros((30, 9))
    m[18, 7], m[17, 3], m[23, 2], m[0, 0] = 0.74, 0.66, 0.59, 0.01
    hs = HeadScores.from_matrix(m, model="smollm2-135m-instruct")
    hs.num_samples, hs.num_counted = 120, 76
    hs.per_sample = {h: [s] * 76 for h, s in hs.scores.items()}
    return hs


def test_head_scores_repr_is_short_and_html_is_a_table():
    hs = _thirty_layers()
    text = repr(hs)
    assert len(text) < 300, len(text)
    assert "smollm2-135m-instruct" in text and "76/120 samples counted" in text
    assert "top: 18-7 0.74, 17-3 0.66, 23-2 0.59" in text
    html = hs._repr_html_()
    assert "<table" in html and "<code>18-7</code>" in html and len(html) < 3000
    assert hs.top(2) == [(18, 7), (17, 3)] == hs.top_k(2)


def test_heatmap_grows_with_layers_and_labels_stay_legible():
    hs = _thirty_layers()
    fig = hs.heatmap()
    small = HeadScores.from_matrix(np.eye(4)).heatmap()
    assert fig.layout.height >= 30 * 20 and fig.layout.height > small.layout.height
    colours = {(a.y, a.x): a.font.color for a in fig.layout.annotations}
    assert colours[(18, 7)] == "black"  # the brightest (yellow) cell
    assert colours[(0, 0)] == "white"  # a dark cell
    assert "%{y}-%{x}" in fig.data[0].hovertemplate  # hover names the head as layer-head


def test_normal_output_has_no_weights_bar_or_absl_line(capfd, caplog):
    import logging

    from retmask_interp.measure import stats

    stats._WU_SCORER.clear()  # the scorer is built once per process: build it again under capture
    with caplog.at_level(logging.INFO):
        rmi.load_model("organism", device="cpu")
        assert stats.rouge1_recall("the cat", "a cat sat") == 0.5
    err = capfd.readouterr().err
    assert "Loading weights" not in err
    assert "Using default tokenizer" not in caplog.text
