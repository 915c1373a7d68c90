"""Fast detection equals the naive eager reference, on every family; ROUGE; resume; bad input."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import FAMILIES, make_tiny_model
from helpers import NiahSample as _Sample
from helpers import WordTokenizer as _Tok
from reference_impl import eager_copy, naive_copy_paste_scores

from retmask_interp.core.io import InputError
from retmask_interp.measure.detect import (
    DetectConfig,
    copy_paste_scores,
    copy_paste_scores_batch,
    detect_heads,
)
from retmask_interp.measure.stats import rouge1_recall


def _prompt(vocab: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_equals_naive_reference(family):
    model = make_tiny_model(family, vocab_size=8)  # a tiny vocabulary makes copy-paste hits frequent
    eager = eager_copy(model)
    total_hits = 0.0
    for seed in range(3):
        prompt = _prompt(6, 40, seed)
        span = (5, 30)
        gen, scores = copy_paste_scores(model, prompt, span, max_new_tokens=12, eos_token_ids=[])
        ref_gen, ref_scores = naive_copy_paste_scores(eager, prompt, span, 12)
        assert gen.tolist() == ref_gen.tolist()
        assert scores.shape == (model.config.num_hidden_layers, model.config.num_attention_heads)
        torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=0)
        total_hits += float(ref_scores.sum())
    assert total_hits > 0, "the construction should produce hits; otherwise the comparison is vacuous"


def test_batched_equals_unbatched_with_padding():
    model = make_tiny_model("llama")
    prompts = [_prompt(6, n, seed) for seed, n in enumerate((30, 37, 41))]
    spans = [(3, 20), (10, 30), (0, 41)]
    single = [
        copy_paste_scores(model, p, s, max_new_tokens=10, eos_token_ids=[]) for p, s in zip(prompts, spans)
    ]
    batched = copy_paste_scores_batch(model, prompts, spans, max_new_tokens=10, eos_token_ids=[])
    for (g1, s1), (g2, s2) in zip(single, batched):
        assert g1.tolist() == g2.tolist()
        torch.testing.assert_close(s1, s2, atol=1e-5, rtol=0)


def test_eos_step_is_scored_and_stops():
    model = make_tiny_model("llama", vocab_size=8)
    eager = eager_copy(model)
    prompt = _prompt(6, 40, 1)
    gen_full, _ = copy_paste_scores(model, prompt, (0, 40), max_new_tokens=12, eos_token_ids=[])
    eos = int(gen_full[3])  # pretend the 4th generated token is EOS
    first = gen_full.tolist().index(eos)
    gen, scores = copy_paste_scores(model, prompt, (0, 40), max_new_tokens=12, eos_token_ids=[eos])
    ref_gen, ref_scores = naive_copy_paste_scores(eager, prompt, (0, 40), 12, eos_token_ids=[eos])
    assert gen.tolist() == gen_full.tolist()[: first + 1] == ref_gen.tolist()
    torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=0)


def test_hit_arithmetic_on_a_constructed_copy():
    """Hits are span-length normalised: scores * span length are whole numbers, at most one per step."""
    model = make_tiny_model("llama", vocab_size=8)
    eager = eager_copy(model)
    prompt = _prompt(6, 30, 5)
    _, scores = copy_paste_scores(model, prompt, (0, 30), max_new_tokens=8, eos_token_ids=[])
    assert float(scores.sum()) > 0
    # each hit adds 1/30, so scores * 30 are whole numbers of hits, at most one per step
    hits = scores * 30
    torch.testing.assert_close(hits, hits.round(), atol=1e-4, rtol=0)
    assert float(hits.max()) <= 8
    _, ref = naive_copy_paste_scores(eager, prompt, (0, 30), 8)
    torch.testing.assert_close(scores, ref, atol=1e-6, rtol=0)


def test_rouge1_recall():
    assert rouge1_recall("eat a sandwich", "I would eat a sandwich today") == 1.0
    assert rouge1_recall("eat a sandwich", "eat") == pytest.approx(1 / 3)
    assert rouge1_recall("Because he is mean.", "because HE is") == pytest.approx(3 / 4)
    assert rouge1_recall("a a b", "a b") == pytest.approx(2 / 3)  # clipped counts
    assert rouge1_recall("", "anything") == 0.0


def test_bad_input():
    model = make_tiny_model("llama")
    with pytest.raises(ValueError, match="1-D"):
        copy_paste_scores(model, torch.zeros(2, 5, dtype=torch.long), (0, 2))
    with pytest.raises(ValueError, match="does not lie inside"):
        copy_paste_scores(model, torch.zeros(5, dtype=torch.long), (3, 9))


def test_detect_heads_resume_never_duplicates(tmp_path):
    from retmask_interp.core.models import as_model

    model = make_tiny_model("llama")
    rm = as_model(model, _Tok())
    samples = [
        _Sample(f"s{i}", _prompt(6, 30 + i, i).tolist(), (2, 20), {"real_needle": "t1"}) for i in range(4)
    ]
    path = tmp_path / "samples.jsonl"
    cfg = DetectConfig(max_new_tokens=6, rouge_threshold=0)
    full = detect_heads(rm, samples, cfg, progress=False)
    # "interrupt" after two samples, then resume
    detect_heads(rm, samples[:2], cfg, samples_path=path, progress=False)
    resumed = detect_heads(rm, samples, cfg, samples_path=path, progress=False)
    ids = [json.loads(line)["sample_id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == ["s0", "s1", "s2", "s3"]
    assert resumed.num_samples == 4 and resumed.num_counted == 4
    for head, score in full.scores.items():
        assert resumed.scores[head] == pytest.approx(score, abs=1e-6)
    # other settings on the same file are refused, not mixed
    with pytest.raises(ValueError, match="other settings"):
        detect_heads(
            rm, samples, DetectConfig(max_new_tokens=7, rouge_threshold=0), samples_path=path, progress=False
        )
    # a different success threshold changes which samples count: refused too (it is in the fingerprint)
    with pytest.raises(ValueError, match="other settings"):
        detect_heads(
            rm,
            samples,
            DetectConfig(max_new_tokens=6, rouge_threshold=0.5),
            samples_path=path,
            progress=False,
        )


def test_success_filter_drops_failed_samples():
    from retmask_interp.core.models import as_model

    model = make_tiny_model("llama")
    rm = as_model(model, _Tok())
    samples = [
        _Sample(f"s{i}", _prompt(6, 30, i).tolist(), (2, 20), {"real_needle": "zzz"}) for i in range(2)
    ]
    # no sample answered: a clear error naming why and what to change, never a list of zeros (or None)
    with pytest.raises(InputError, match=r"no NIAH sample counted.*none of the 2 samples.*rouge_threshold=0"):
        detect_heads(rm, samples, DetectConfig(max_new_tokens=4), progress=False)
    hs = detect_heads(rm, samples, DetectConfig(max_new_tokens=4, rouge_threshold=0), progress=False)
    assert hs.num_counted == 2 and hs.num_samples == 2


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text", "mistral"])
def test_fast_equals_naive_beyond_the_sliding_window(family):
    """Prompts longer than the window: a sliding layer's cache keeps only the last keys; positions must map back."""
    model = make_tiny_model(family, vocab_size=8, sliding_window=8)
    layer_types = getattr(model.config, "layer_types", None) or ["sliding_attention"] * 2
    assert "sliding_attention" in layer_types
    eager = eager_copy(model)
    total_hits = 0.0
    for seed in range(3):
        prompt = _prompt(6, 40, seed)
        span = (20, 38)  # straddles the edge of the 8-token window
        gen, scores = copy_paste_scores(model, prompt, span, max_new_tokens=12, eos_token_ids=[])
        ref_gen, ref_scores = naive_copy_paste_scores(eager, prompt, span, 12)
        assert gen.tolist() == ref_gen.tolist()
        torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=0)
        total_hits += float(ref_scores.sum())
    assert total_hits > 0


def test_prefill_batch_limit_caps_materialised_attention(monkeypatch):
    """fp32 on a GPU: the batch is capped so that heads x T^2 float32 scores fit half the free memory, and a prompt
    that cannot fit at all is refused with the fix (the 152 GiB allocation of Gemma-3 at 32K, batch 10)."""
    from retmask_interp.core import models
    from retmask_interp.core.models import as_model
    from retmask_interp.measure import detect

    rm = as_model(make_tiny_model("llama"))  # 4 heads, float32
    assert detect.prefill_batch_limit(rm, 32_000) >= 1 << 20  # CPU: no cap
    monkeypatch.setattr(models.RetModel, "device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(detect, "_free_device_bytes", lambda device: 100 * 2**30)  # 100 GiB free
    per = 4 * 8192 * 8192 * 4  # 1 GiB a sample at 8K
    assert detect.prefill_batch_limit(rm, 8192) == (50 * 2**30) // per == 50
    with pytest.raises(ValueError, match="bfloat16"):
        detect.prefill_batch_limit(rm, 200_000)  # 596 GiB for one prompt
    rm.model.to(torch.bfloat16)
    assert detect.prefill_batch_limit(rm, 200_000) >= 1 << 20  # 16-bit: flash / efficient kernels, no cap


def test_a_batch_that_runs_out_of_gpu_memory_is_halved(monkeypatch, caplog):
    """Another process may take GPU memory after the batch sizes were planned: a batch that runs out of memory is
    scored again in halves (and later batches keep the smaller size), to the same results; a single sample that
    does not fit is refused with the fix."""
    from retmask_interp.core.models import as_model
    from retmask_interp.measure import detect

    rm = as_model(make_tiny_model("llama"), _Tok())
    samples = [_Sample(f"s{i}", _prompt(6, 30, i).tolist(), (2, 20), {"real_needle": "t1"}) for i in range(7)]
    cfg = DetectConfig(max_new_tokens=6, rouge_threshold=0, batch_size=4)
    plain = {r.sample_id: r for r in detect.score_samples(rm, samples, cfg, progress=False)}
    real, sizes = detect.copy_paste_scores_batch, []

    def fits_two(model, prompts, *args, **kwargs):
        sizes.append(len(prompts))
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(detect, "copy_paste_scores_batch", fits_two)
    with caplog.at_level("WARNING", logger="retmask_interp.measure.detect"):
        halved = {r.sample_id: r for r in detect.score_samples(rm, samples, cfg, progress=False)}
    assert sizes == [4, 2, 2, 2, 1]  # 4 fails once; then 2, 2 and the last three as 2 + 1
    assert "batches of 2" in caplog.text
    assert sorted(halved) == sorted(plain)
    for sid, r in plain.items():
        assert halved[sid].generated_ids == r.generated_ids
        assert halved[sid].scores == pytest.approx(r.scores, abs=1e-6)

    def fits_none(model, prompts, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(detect, "copy_paste_scores_batch", fits_none)
    with pytest.raises(RuntimeError, match="30-token sample does not fit.*bfloat16"):
        list(detect.score_samples(rm, samples, cfg, progress=False))
