"""Per-row mask plans (``MaskPlan.for_rows``) and the shared prefill (``score_and_generate``), float32 on the CPU:
every row of a packed batch equals the same condition run alone, in every mode, on GQA and sliding-window models;
no heads equals the plain model; a masked row equals the model with that head's ``o_proj`` columns zeroed; the score
from the shared prefill equals one teacher-forced forward up to rounding."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import make_tiny_model

from retmask_interp.core.models import as_model
from retmask_interp.interventions.masking import (
    MaskPlan,
    generate,
    masked_logits,
    mean_head_outputs,
    score_and_generate,
)
from retmask_interp.interventions.weights import zero_head_outputs_

# GQA everywhere (4 query heads over 2 KV heads); sliding windows shorter than the prompts: Mistral (every layer),
# Gemma-2 (alternating with full layers), Gemma-3 (its pattern over two layers)
MODELS = {
    "llama": {},
    "mistral": {"sliding_window": 6},
    "gemma2": {"sliding_window": 6},
    "gemma3_text": {"sliding_window": 6},
}
ROWS = [[], [(0, 1), (1, 3)], [(1, 0)], [(0, 0), (0, 2), (1, 1)]]  # one condition per row, the first unmasked
MODES = ("zero", "uniform", "mean")


def _model(family):
    return as_model(make_tiny_model(family, **MODELS[family]))


def _prompts(n, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (lengths[i % len(lengths)],), generator=g) for i in range(n)]


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_every_row_equals_its_condition_alone(family, mode):
    rm = _model(family)
    ids = torch.stack(_prompts(len(ROWS), [14]))
    means = mean_head_outputs(rm, ids)
    packed = masked_logits(rm, ids, MaskPlan.for_rows(rm, ROWS, mode, means))
    for i, heads in enumerate(ROWS):
        alone = masked_logits(rm, ids[i : i + 1], heads, mode, mean_values=means)
        torch.testing.assert_close(packed[i : i + 1], alone, atol=1e-5, rtol=1e-5)
    assert (packed[1] - masked_logits(rm, ids[1:2], [])[0]).abs().max() > 1e-3, (
        "vacuous: masking changed nothing"
    )


@pytest.mark.parametrize("family", MODELS)
def test_unmasked_rows_are_the_plain_model_and_a_masked_row_is_the_zeroed_columns(family):
    rm = _model(family)
    ids = torch.stack(_prompts(len(ROWS), [14]))
    packed = masked_logits(rm, ids, MaskPlan.for_rows(rm, ROWS, "zero"))
    with torch.no_grad():
        plain = rm.model(ids).logits
    torch.testing.assert_close(packed[0], plain[0], atol=1e-6, rtol=0)
    for i, heads in enumerate(ROWS[1:], 1):
        edited = copy.deepcopy(rm.model)
        zero_head_outputs_(edited, heads)
        with torch.no_grad():
            ref = edited(ids[i : i + 1]).logits
        torch.testing.assert_close(packed[i : i + 1], ref, atol=1e-5, rtol=1e-5)
    assert MaskPlan.for_rows(rm, [[], []]).is_empty


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["eager", "static"])
def test_shared_prefill_generates_and_scores_each_row_as_alone(family, mode, backend):
    """``score_and_generate`` of a packed batch (prompts of two lengths: left padding): each row's tokens are those
    of ``generate`` with its heads alone, its answer score that of one teacher-forced forward (``masked_logits``
    over prompt + answer) to 1e-5."""
    rm = _model(family)
    prompts = _prompts(len(ROWS), [12, 9])
    g = torch.Generator().manual_seed(1)
    answers = [torch.randint(0, 64, (n,), generator=g).tolist() for n in (3, 1, 5, 2)]
    means = mean_head_outputs(rm, torch.stack(_prompts(2, [12], seed=3)))
    plan = MaskPlan.for_rows(rm, ROWS, mode, means)
    ids, scores = score_and_generate(
        rm, prompts, answers, plan, max_new_tokens=6, eos_token_id=[], backend=backend
    )
    worst = 0.0
    for i, heads in enumerate(ROWS):
        alone = generate(rm, [prompts[i]], heads, mode, mean_values=means, max_new_tokens=6, eos_token_id=[],
                         backend=backend)  # fmt: skip
        assert ids[i, -6:].tolist() == alone[0, -6:].tolist(), (i, heads)
        seq = torch.cat([prompts[i], torch.tensor(answers[i][:-1], dtype=torch.long)])[None]
        logp = masked_logits(rm, seq, heads, mode, mean_values=means)[0].log_softmax(-1)
        p = len(prompts[i])
        want = logp[p - 1 :].gather(-1, torch.tensor(answers[i])[:, None])[:, 0]
        got = scores[i]["token_logprobs"]
        assert got.shape == want.shape
        worst = max(worst, float((got - want).abs().max()))
        assert (
            scores[i]["correct"].tolist() == (logp[p - 1 :].argmax(-1) == torch.tensor(answers[i])).tolist()
        )
    assert worst < 1e-5, worst


def test_eos_and_early_stop_with_rows():
    """Rows stop at EOS independently; the scores do not depend on how long the generation ran."""
    rm = _model("llama")
    prompts = _prompts(3, [10])
    answers = [[5, 6], [7], [8, 9, 10]]
    plan = MaskPlan.for_rows(rm, ROWS[:3])
    free, s_free = score_and_generate(rm, prompts, answers, plan, max_new_tokens=8, eos_token_id=[])
    eos = int(free[0, 10])  # the first row's first new token ends it at once
    stopped, s_stop = score_and_generate(rm, prompts, answers, plan, max_new_tokens=8, eos_token_id=[eos])
    assert (stopped[0, 10:] == eos).all()  # the row ended, then padded with EOS while the others went on
    assert stopped[1:].tolist() == free[1:, : stopped.shape[1]].tolist()
    for a, b in zip(s_free, s_stop):
        torch.testing.assert_close(a["token_logprobs"], b["token_logprobs"])


def test_bad_rows_are_refused():
    rm = _model("llama")
    plan = MaskPlan.for_rows(rm, ROWS[:3])
    with pytest.raises(ValueError, match="3 rows"):
        masked_logits(rm, torch.zeros(2, 5, dtype=torch.long), plan)
    with pytest.raises(ValueError, match="one answer per prompt"):
        score_and_generate(rm, _prompts(2, [5]), [[1]], plan)
    with pytest.raises(ValueError, match="out of range"):
        MaskPlan.for_rows(rm, [[(9, 0)]])
    with pytest.raises(ValueError, match="mean_values"):
        MaskPlan.for_rows(rm, [[], [(0, 1)]], "mean")
