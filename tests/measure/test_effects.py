"""Effects of masking: attention statistics equal eager attention, outcomes equal the demo's, known values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from helpers import FAMILIES, make_tiny_model
from reference_impl import eager_copy

from retmask_interp.core.architectures import AttentionSettings
from retmask_interp.core.models import as_model
from retmask_interp.measure import attention as effects
from retmask_interp.measure import outcomes as _measure_outcomes
from retmask_interp.measure import stats as _measure_stats


class _Tok:
    """Token ``i`` is the word ``t{i}``; encode parses such words back."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids)

    def encode(self, text, add_special_tokens=False):
        return [int(w[1:]) for w in text.split()]


@dataclass
class _Sample:
    sample_id: str
    input_ids: list
    answer_span: tuple
    needle: dict
    style: str = "qa"
    context_length: int = 0
    depth: float = 0.0
    needle_index: int = 0
    meta: dict = field(default_factory=dict)


def _samples(specs, vocab=64, seed=0):
    """``specs``: (prompt length, span start, span end) per sample; the answer is the span's own tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (n, s, e) in enumerate(specs):
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        out.append(
            _Sample(
                f"s{i}",
                ids,
                (s, e),
                {"real_needle": _Tok().decode(ids[s:e])},
                context_length=n,
                depth=float(i),
            )
        )
    return out


def _model(family="llama", **kw):
    return as_model(make_tiny_model(family, **kw), _Tok())


def _eager_stats(model, sample):
    """Span mass / top-1 / copy hit per head from eager ``output_attentions`` (the reference)."""
    answer = effects.answer_tokens(sample, _Tok())
    seq = torch.tensor([sample.input_ids + answer[:-1]])
    with torch.no_grad():
        out = model(seq, output_attentions=True)
    s, e = sample.answer_span
    n, total = len(answer), seq.shape[1]
    rows = []
    for att in out.attentions:  # [1, heads, q, k]
        a = att[0, :, total - n :, :].double()
        top = a.argmax(-1)
        top_in = (top >= s) & (top < e)
        hit = top_in & (seq[0][top] == torch.tensor(answer))
        rows.append(
            torch.stack([a[..., s:e].sum(-1).mean(-1), top_in.double().mean(-1), hit.double().mean(-1)], -1)
        )
    return torch.stack(rows)  # [layers, heads, 3]


@pytest.mark.parametrize("family", FAMILIES)
def test_needle_attention_equals_eager_attention(family):
    model = _model(family)
    eager = eager_copy(model.model)
    # two samples of the same total length (one batch, different answer lengths) and one of another length
    samples = _samples([(40, 5, 9), (41, 20, 23), (33, 30, 33)])
    df = effects.needle_attention(model, samples, per_sample=True)
    assert len(df) == 3 * 2 * 4
    for sample in samples:
        ref = _eager_stats(eager, sample)
        part = df[df.sample_id == sample.sample_id].sort_values(["layer", "head"])
        got = torch.tensor(part[list(effects._STATS)].to_numpy(), dtype=torch.float64).reshape(ref.shape)
        torch.testing.assert_close(got[..., 0], ref[..., 0], atol=1e-5, rtol=0)
        # top-1 decisions agree exactly (a disagreement moves a mean by at least 1 / answer length)
        torch.testing.assert_close(got[..., 1:], ref[..., 1:], atol=1e-6, rtol=0)
    # on the eager model itself (an additive float mask instead of sdpa's bool mask or none) the same numbers
    df_eager = effects.needle_attention(as_model(eager, _Tok()), samples, per_sample=True)
    np.testing.assert_allclose(df_eager[list(effects._STATS)], df[list(effects._STATS)], atol=1e-5)
    mean = effects.needle_attention(model, samples)
    np.testing.assert_allclose(
        mean["span_mass"], df.groupby(["layer", "head"])["span_mass"].mean(), atol=1e-6
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_settings_match_the_model(family):
    """The table's scaling / soft-capping / window equal what the model's own attention call is given."""
    model = _model(family) if family != "mistral" else _model(family, sliding_window=12)
    ids = torch.arange(1, 21)[None]
    seen = {}
    with torch.no_grad(), model.lm.trace(ids, use_cache=False):
        for layer in range(model.geometry.num_layers):
            _, kw = model.attention_call(layer).inputs
            seen[layer] = {k: kw.get(k) for k in ("scaling", "softcap", "sliding_window")}
    for layer, kw in seen.items():
        got = model.attention_settings(layer)
        module = model.attention(layer)
        assert got.scaling == pytest.approx(float(getattr(module, "scaling", kw["scaling"])))
        assert got.softcap == (float(kw["softcap"]) if kw["softcap"] else None)
        if kw["sliding_window"] is not None:
            assert got.sliding_window == kw["sliding_window"]
    if family == "gemma2":  # the family with soft-capping, a pre-attention scalar and alternating windows
        assert model.attention_settings(0).softcap == 50.0 and model.attention_settings(0).sliding_window
        assert model.attention_settings(1).sliding_window is None
        assert model.attention_settings(0).scaling == pytest.approx(256**-0.5)


def test_sliding_window_attention_equals_eager():
    model = _model("mistral", sliding_window=12)  # windows shorter than the prompts: a 4-D mask
    eager = eager_copy(model.model)
    samples = _samples([(40, 5, 9), (33, 20, 33)])
    df = effects.needle_attention(model, samples, per_sample=True)
    for sample in samples:
        ref = _eager_stats(eager, sample)
        part = df[df.sample_id == sample.sample_id].sort_values(["layer", "head"])
        got = torch.tensor(part[list(effects._STATS)].to_numpy(), dtype=torch.float64).reshape(ref.shape)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # without a mask (flash attention) the window comes from the call's keyword
    q, k = torch.randn(1, 4, 10, 8), torch.randn(1, 2, 10, 8)
    qpos = torch.tensor([7, 9])
    probs = effects.attention_probs(q, k, None, qpos, AttentionSettings(scaling=0.5, sliding_window=3))
    ref = torch.einsum("bhqd,bhkd->bhqk", q, k.repeat_interleave(2, 1))[:, :, qpos] * 0.5
    keys = torch.arange(10)
    ref = ref.masked_fill(~((keys <= qpos[:, None]) & (keys > qpos[:, None] - 3)), float("-inf")).softmax(-1)
    torch.testing.assert_close(probs, ref)


def test_teacher_forced_logprob_matches_plain_forward():
    model = _model()
    samples = _samples([(30, 4, 10), (30, 12, 15), (25, 1, 3)])
    res = effects.teacher_forced(model, samples, batch_size=2)
    for s, r in zip(samples, res):
        answer = s.input_ids[s.answer_span[0] : s.answer_span[1]]
        seq = torch.tensor([s.input_ids + answer[:-1]])
        with torch.no_grad():
            logp = model.model(seq).logits[0].log_softmax(-1)
        p = len(s.input_ids)
        lp = logp[p - 1 : p - 1 + len(answer)].gather(-1, torch.tensor(answer)[:, None])[:, 0]
        assert r["answer_logprob"] == pytest.approx(float(lp.mean()), abs=1e-5)
        assert r["answer_logprob_sum"] == pytest.approx(float(lp.sum()), abs=1e-4)
        assert r["answer_tokens"] == len(answer)


def test_query_masked_head_attends_uniformly_known_span_mass():
    model = _model()
    samples = _samples([(30, 4, 10)])
    df = effects.needle_attention(
        model, samples, mask_heads=[(0, 1), (1, 2)], mode="uniform", per_sample=True
    )
    p, n = 30, 6
    expected = np.mean([6 / (q + 1) for q in range(p - 1, p - 1 + n)])  # span of 6 keys out of q+1 visible
    for layer, head in [(0, 1), (1, 2)]:
        row = df[(df.layer == layer) & (df["head"] == head)].iloc[0]
        assert row.span_mass == pytest.approx(expected, abs=1e-6)
        assert row.top1_in_span == 0.0  # all logits tie: argmax is key 0, outside the span


def test_zero_masking_leaves_its_layer_and_below_unchanged():
    model = _model()
    samples = _samples([(30, 4, 10), (30, 12, 15)])
    comp = effects.compensation(model, samples, [(1, 0), (1, 3)], mode="zero")
    assert set(comp.loc[comp.masked, "role"]) == {"masked"} and comp.masked.sum() == 2
    assert (comp[["delta_span_mass", "delta_top1_in_span", "delta_copy_hit"]].abs().max() == 0).all()
    np.testing.assert_allclose(comp.span_mass_after - comp.span_mass_before, comp.delta_span_mass)
    comp0 = effects.compensation(model, samples, [(0, 0), (0, 3)], mode="zero", tol=0.0)
    later = comp0[comp0.layer == 1]
    assert later.delta_span_mass.abs().max() > 0  # masking layer 0 changes layer 1's attention
    assert (comp0[comp0.layer == 0].delta_span_mass == 0).all()
    assert set(later.role) <= {"compensates", "collapses", "unchanged"}
    assert list(comp0.delta_span_mass) == sorted(comp0.delta_span_mass, reverse=True)


def test_outcomes_equal_detection_decoding():
    """The one NIAH-success path (``niah_outcomes``, one-trace masked generation) against detection's per-step
    decode loop (``score_samples`` with the same heads masked): the same texts, ROUGE and success."""
    from retmask_interp.measure.detect import DetectConfig, score_samples

    def niah_success(model, samples, heads, max_new_tokens, batch_size):
        cfg = DetectConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, mask_heads=list(heads))
        by_id = {r.sample_id: r for r in score_samples(model, samples, cfg, progress=False)}
        return [
            {"success": float(by_id[s.sample_id].counted), "rouge": by_id[s.sample_id].rouge,
             "generated": by_id[s.sample_id].generated_text}
            for s in samples
        ]  # fmt: skip

    model = _model(vocab_size=8)
    samples = _samples([(30, 2, 20), (30, 5, 12), (35, 0, 30), (35, 10, 14)], vocab=6)
    for s in samples:  # short answers the random model can partly copy: a mix of successes and failures
        s.needle["real_needle"] = " ".join(s.needle["real_needle"].split()[:2])
    heads = [(0, 1), (1, 2)]
    df = _measure_outcomes.masking_outcomes(
        model, samples, {"unmasked": [], "masked": heads}, max_new_tokens=6, batch_size=2, answer="span"
    )
    for name, hs in (("unmasked", []), ("masked", heads)):
        ref = niah_success(model, samples, hs, max_new_tokens=6, batch_size=2)
        part = df[df.condition == name]
        assert part.success.tolist() == [r["success"] for r in ref]
        assert part.rouge.tolist() == pytest.approx([r["rouge"] for r in ref])
        assert part.generated.tolist() == [r["generated"] for r in ref]
    assert df.rouge.nunique() > 1, "vacuous comparison: every rouge equal"
    # teacher-forced numbers of a condition equal teacher_forced with those heads
    tf = effects.teacher_forced(model, samples, heads=heads, answer="span")
    assert df[df.condition == "masked"].answer_logprob.tolist() == pytest.approx(
        [r["answer_logprob"] for r in tf]
    )


def test_random_condition_sets_never_overlap():
    model = _model()
    retrieval = [(1, 0), (1, 3)]
    conds = _measure_outcomes.random_condition_sets(model, retrieval, n_seeds=4, exclude=[(0, 0)])
    assert conds["unmasked"] == [] and conds["retrieval"] == retrieval
    randoms = [v for k, v in conds.items() if k.startswith("random#")]
    assert len(randoms) == 4
    for c in randoms:
        assert len(c) == 2 and not set(c) & {(1, 0), (1, 3), (0, 0)}
    assert _measure_outcomes._split_name("random#3") == ("random", 3) and _measure_outcomes._split_name(
        "retrieval"
    ) == (
        "retrieval",
        0,
    )


def test_crossed_bootstrap_and_summary():
    from retmask_interp.measure.stats import bootstrap_ci

    x = np.array([[0.0, 1.0, 1.0, 0.0, 1.0]])
    assert _measure_stats.crossed_bootstrap_ci(x, 200, 3) == bootstrap_ci(x[0], 200, 3)
    assert _measure_stats.crossed_bootstrap_ci(np.full((3, 4), 0.5)) == (0.5, 0.5)
    m = np.random.default_rng(0).random((4, 30))
    low, high = _measure_stats.crossed_bootstrap_ci(m)
    assert low < m.mean() < high
    with pytest.raises(ValueError, match="gaps"):
        _measure_stats.crossed_bootstrap_ci(np.array([[1.0, np.nan]]))
    import pandas as pd

    df = pd.DataFrame(
        [
            {"kind": "random", "seed": s, "sample_id": i, "success": float(m[s, i] > 0.5)}
            for s in range(4)
            for i in range(30)
        ]
    )
    summ = _measure_outcomes.summarize_outcomes(df)
    assert summ.loc[0, "n_seeds"] == 4 and summ.loc[0, "n_samples"] == 30
    assert summ.loc[0, "mean"] == pytest.approx((m > 0.5).mean())


def test_topk_curve_k0_is_unmasked_and_random_heads_avoid_the_top():
    model = _model(vocab_size=8)
    samples = _samples([(30, 2, 20), (30, 5, 12)], vocab=6)
    scores = np.arange(8, dtype=float).reshape(2, 4)  # best heads: (1, 3), (1, 2), (1, 1)
    curve, outcomes = _measure_outcomes.topk_curve(
        model,
        samples,
        scores,
        [0, 1, 3],
        n_random=3,
        max_new_tokens=4,
        answer="span",
        rouge_threshold=0.0,
        return_outcomes=True,
    )
    assert set(curve.columns) >= {"k", "kind", "success", "ci_low", "ci_high"}
    assert len(curve) == 6
    k0 = curve[curve.k == 0]
    assert k0.success.nunique() == 1 and k0.answer_logprob.nunique() == 1
    unmasked = effects.teacher_forced(model, samples, answer="span")
    assert k0.answer_logprob.iloc[0] == pytest.approx(np.mean([r["answer_logprob"] for r in unmasked]))
    top3 = {(1, 3), (1, 2), (1, 1)}
    for _, row in outcomes[outcomes.kind == "random"].iterrows():
        assert not set(row.heads) & top3 and len(row.heads) == row.k
    assert outcomes[(outcomes.kind == "retrieval") & (outcomes.k == 3)].heads.iloc[0] == sorted(top3)


def test_single_head_effects_match_masked_logits():
    from retmask_interp.interventions.masking import masked_logits

    model = _model()
    samples = _samples([(30, 4, 10), (30, 12, 15), (26, 3, 6)])
    scores = np.random.default_rng(1).random((2, 4))
    df = effects.single_head_effects(model, samples, scores, heads=3, n_resamples=100)
    assert len(df) == 3 and df["rank"].tolist() == [1, 2, 3]
    assert df.score.is_monotonic_decreasing
    for _, row in df.iterrows():
        drops = []
        for s in samples:
            answer = s.input_ids[s.answer_span[0] : s.answer_span[1]]
            seq = torch.tensor([s.input_ids + answer[:-1]])
            p = len(s.input_ids)
            lps = [masked_logits(model, seq, h)[0].log_softmax(-1) for h in ([], [(row.layer, row["head"])])]
            means = [float(lp[p - 1 :].gather(-1, torch.tensor(answer)[:, None]).mean()) for lp in lps]
            drops.append(means[0] - means[1])
        assert row.effect == pytest.approx(np.mean(drops), abs=1e-5)
        assert row.ci_low <= row.effect <= row.ci_high
    all_heads = effects.single_head_effects(model, samples, scores, n_resamples=50)
    assert len(all_heads) == 8 and -1 <= all_heads.attrs["spearman"] <= 1


def test_attention_view_is_offline_html():
    model = _model()
    sample = _samples([(200, 100, 106)])[0]
    html = effects.attention_view(model, sample, [(1, 0), (0, 2)], before=10, after=5)
    src = html.local_src
    assert "1-0" in src and "[...]" in src and f"t{sample.input_ids[100]}" in src
    assert "unpkg.com" not in src and "cdn.jsdelivr" not in src
    assert len(src) < 3_000_000


def test_figures():
    from retmask_interp.analysis import plots as figures

    model = _model()
    samples = _samples([(30, 4, 10), (30, 12, 15)])
    comp = effects.compensation(model, samples, [(0, 0)])
    fig = figures.compensation_figure(comp)
    assert len(fig.data) >= 2
    scores = np.random.default_rng(1).random((2, 4))
    eff = effects.single_head_effects(model, samples, scores, n_resamples=20)
    fig = figures.single_head_effect_figure(eff)
    assert len(fig.data[0].x) == 8 and "Spearman" in fig.layout.title.text
    import pandas as pd

    summ = pd.DataFrame(
        {
            "kind": ["unmasked", "retrieval", "random"],
            "metric": "success",
            "mean": [1.0, 0.2, 0.9],
            "ci_low": [1.0, 0.1, 0.8],
            "ci_high": [1.0, 0.3, 1.0],
        }
    )
    fig = figures.masking_outcome_bars(summ)
    assert list(fig.data[0].x) == ["unmasked", "retrieval", "random"]
    assert list(fig.data[0].error_y.array) == pytest.approx([0.0, 0.1, 0.1])


def test_checkpointed_runs_resume_to_the_same_results(tmp_path, monkeypatch):
    """masking_outcomes / topk_curve / single_head_effects with a checkpoint: a run killed after its first units
    resumes to exactly the uninterrupted result, recomputing only what was missing; other settings are refused."""
    import pandas as pd

    from retmask_interp.core.io import InputError

    model = _model(vocab_size=8)
    samples = _samples([(30, 2, 20), (30, 5, 12), (26, 3, 9)], vocab=6)
    conds = {"unmasked": [], "retrieval": [(1, 0), (1, 3)], "random#0": [(0, 1), (0, 2)]}
    kw = dict(max_new_tokens=4, answer="span", rouge_threshold=0.0, batch_size=2)
    plain = _measure_outcomes.masking_outcomes(model, samples, conds, **kw)

    from retmask_interp.core.io import KeyedCheckpoint

    real_put, puts = KeyedCheckpoint.put, []

    def dies_after(n):
        """A ``put`` that keeps the unit, then kills the run once ``n`` units are kept (``n=0``: never)."""

        def put(self, key, value):
            real_put(self, key, value)
            puts.append(key)
            if len(puts) == n:
                raise KeyboardInterrupt

        return put

    ck = tmp_path / "masking.jsonl"
    monkeypatch.setattr(KeyedCheckpoint, "put", dies_after(1))
    with pytest.raises(KeyboardInterrupt):
        _measure_outcomes.masking_outcomes(model, samples, conds, checkpoint=ck, **kw)
    assert len(ck.read_text().splitlines()) == 1  # the unmasked condition was kept
    puts.clear()
    monkeypatch.setattr(KeyedCheckpoint, "put", dies_after(0))
    resumed = _measure_outcomes.masking_outcomes(model, samples, conds, checkpoint=ck, **kw)
    assert [k[0] for k in puts] == ["retrieval", "random#0"]  # only the missing conditions were computed
    pd.testing.assert_frame_equal(resumed, plain)
    assert resumed.heads.tolist() == plain.heads.tolist()
    with pytest.raises(InputError, match="mode was 'zero', now 'uniform'"):
        _measure_outcomes.masking_outcomes(model, samples, conds, checkpoint=ck, mode="uniform", **kw)
    with pytest.raises(InputError, match="samples was"):
        _measure_outcomes.masking_outcomes(model, samples[:2], conds, checkpoint=ck, **kw)

    scores = np.arange(8, dtype=float).reshape(2, 4)
    curve_kw = dict(n_random=2, return_outcomes=True, **kw)
    curve, outcomes = _measure_outcomes.topk_curve(model, samples, scores, [0, 1, 2], **curve_kw)
    tk = tmp_path / "topk.jsonl"
    puts.clear()
    monkeypatch.setattr(KeyedCheckpoint, "put", dies_after(3))
    # 7 conditions: k = 0; k = 1 and 2: the top heads and two random sets
    with pytest.raises(KeyboardInterrupt):
        _measure_outcomes.topk_curve(model, samples, scores, [0, 1, 2], checkpoint=tk, **curve_kw)
    puts.clear()
    monkeypatch.setattr(KeyedCheckpoint, "put", dies_after(0))
    curve2, outcomes2 = _measure_outcomes.topk_curve(
        model, samples, scores, [0, 1, 2], checkpoint=tk, **curve_kw
    )
    assert len(puts) == 4  # the three finished conditions were read back
    pd.testing.assert_frame_equal(curve2, curve)
    pd.testing.assert_frame_equal(outcomes2, outcomes)

    hk = tmp_path / "single.jsonl"
    full = effects.single_head_effects(model, samples, scores, heads=3, n_resamples=50)
    effects.single_head_effects(model, samples, scores, heads=1, n_resamples=50, checkpoint=hk)
    puts.clear()
    again = effects.single_head_effects(model, samples, scores, heads=3, n_resamples=50, checkpoint=hk)
    assert len(puts) == 2  # unmasked and the best head were read back
    pd.testing.assert_frame_equal(again, full)
    assert again.attrs == full.attrs


def test_an_unfinished_topk_curve_is_drawn_over_its_finished_ks(tmp_path):
    """finished_topk_outcomes + curve_from_outcomes on a cut top-k checkpoint give exactly the finished curve's rows
    for every k whose conditions are all done, and leave out a k with a random seed missing."""
    import pandas as pd

    model = _model(vocab_size=8)
    samples = _samples([(30, 2, 20), (30, 5, 12), (26, 3, 9)], vocab=6)
    kw = dict(max_new_tokens=4, answer="span", rouge_threshold=0.0, batch_size=2, n_random=2)
    scores = np.arange(8, dtype=float).reshape(2, 4)
    ck = tmp_path / "topk.jsonl"
    curve = _measure_outcomes.topk_curve(model, samples, scores, [0, 1, 2], checkpoint=ck, **kw)
    lines = ck.read_text().splitlines()
    assert len(lines) == 7  # k = 0; k = 1 and 2: the top heads and two random sets
    cut = tmp_path / "cut.jsonl"
    for n, ks in ((6, [0, 1]), (3, [0]), (1, [0])):  # 6: k = 2 lacks random#1; 3: k = 1 lacks random#1
        cut.write_text("\n".join(lines[:n]) + "\n")
        done = _measure_outcomes.finished_topk_outcomes(cut, n_random=2)
        partial = _measure_outcomes.curve_from_outcomes(done)
        want = curve[curve.k.isin(ks)].reset_index(drop=True)
        pd.testing.assert_frame_equal(partial, want)
    cut.write_text(lines[1] + "\n")  # k = 1's top heads only
    assert _measure_outcomes.finished_topk_outcomes(cut, n_random=2) is None
