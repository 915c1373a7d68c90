"""What masking heads does: to behaviour (NIAH success, answer likelihood) and to attention (where heads look).

Definitions (every function below uses them):

- **answer tokens** of a NIAH sample: with ``answer="text"`` (default) ``tokenizer.encode(prefix + real_needle)``
  without special tokens, ``prefix`` being ``""`` for the ``"chat"`` style (the assistant turn starts on a fresh
  line) and ``" "`` otherwise (after ``"Answer:"`` or the needle's lead-in); with ``answer="span"`` the prompt's own
  tokens ``input_ids[s:e]`` of the answer span (no tokenizer needed; the form a verbatim copy would take).
- **teacher forcing**: the model reads ``prompt + answer[:-1]``. The ``n`` *answer queries* are positions
  ``P-1 .. P+n-2`` (``P`` = prompt length); query ``i`` predicts answer token ``i``.
- **answer_logprob**: mean over answer tokens of ``log p(a_i | prompt, a_<i)`` (natural log, per token);
  ``answer_logprob_sum`` is the sum, ``answer_accuracy`` the share of ``a_i`` that are the argmax.
- **span_mass** of a head: at an answer query, its attention probability summed over the prompt's answer span
  ``[s, e)``; **top1_in_span**: its most attended key lies in the span; **copy_hit**: moreover that key holds the
  token being predicted (Wu et al.'s copy-paste hit, teacher-forced). Per sample each is the mean over the answer
  queries; tables give the mean over samples. Probabilities are recomputed from the attention call's post-RoPE
  queries and keys (``softmax(scaling * q.k [softcapped] + mask)``, query heads grouped over KV heads), with any
  ``uniform``-mode query masking applied first: a query-masked head attends uniformly, so its span mass at a query
  with ``m`` visible keys is ``(e - s) / m``. ``zero``/``mean`` masking replaces a head's *output*, so the pattern of
  that head (and of every head in its layer and below) does not change; later layers may.
- **success** / **rouge**: greedy generation with the heads masked at every step, ROUGE-1 recall of ``real_needle``
  in the generated text, success when recall > ``rouge_threshold`` (as ``measure.outcomes.niah_outcomes``).

Condition names ``"KIND#SEED"`` (e.g. ``"random#3"``) are seed ``SEED`` of ``KIND``; summaries pool the seeds of a kind
with a crossed bootstrap over seeds and samples. Visualisation: ``attention_view`` (circuitsvis, offline HTML).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import rearrange

from retmask_interp.core.architectures import AttentionSettings
from retmask_interp.core.decode import _forward_names, attention_calls
from retmask_interp.core.models import RetModel, as_model
from retmask_interp.heads.scores import ranked_heads

__all__ = [
    "answer_tokens",
    "attention_probs",
    "attention_view",
    "compensation",
    "needle_attention",
    "single_head_effects",
    "forced_sweep",
    "teacher_forced",
]

log = logging.getLogger(__name__)
Head = tuple[int, int]
_STATS = ("span_mass", "top1_in_span", "copy_hit")
_META = ("context_length", "depth", "needle_index")


# --------------------------------------------------------------------------------------------- answers
def answer_tokens(sample, tokenizer=None, answer: str = "text") -> list[int]:
    """The answer tokens of ``sample`` (see the module docstring for ``answer="text"`` / ``"span"``)."""
    if answer == "span":
        s, e = sample.answer_span
        return [int(t) for t in sample.input_ids[s:e]]
    if answer != "text":
        raise ValueError(f"unknown answer source {answer!r}; use 'text' or 'span'")
    if tokenizer is None or not hasattr(tokenizer, "encode"):
        raise ValueError(
            "answer='text' needs the model's tokenizer; load it with the model or use answer='span'"
        )
    prefix = "" if getattr(sample, "style", "") == "chat" else " "
    ids = list(tokenizer.encode(prefix + sample.needle["real_needle"], add_special_tokens=False))
    if not ids:
        raise ValueError(
            f"sample {sample.sample_id!r}: the answer {sample.needle['real_needle']!r} has no tokens"
        )
    return ids


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal length (no padding: the causal kernel), in chunks of ``batch_size``."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return [g[j : j + batch_size] for _, g in sorted(groups.items()) for j in range(0, len(g), batch_size)]


# --------------------------------------------------------------------------------------------- attention maths
def attention_probs(
    query: torch.Tensor, keys: torch.Tensor, mask, qpos: torch.Tensor, settings: AttentionSettings
) -> torch.Tensor:
    """Attention probabilities ``[batch, heads, len(qpos), k_len]`` (float32) of the queries at ``qpos``.

    ``query``: the attention call's ``[batch, heads, q_len, head_dim]``, ``keys``: ``[batch, kv_heads, k_len,
    head_dim]``, ``mask``: the call's mask (``None`` = causal, bool = may attend, float = additive, 2-D = padding),
    ``settings``: the layer's scaling, soft-capping and sliding window (``RetModel.attention_settings``, from the
    architecture table and the config). Query heads are grouped over their KV head (keys are never repeated).
    """
    k_len = keys.shape[2]
    q = rearrange(query[:, :, qpos, :].float(), "b (kv group) n d -> b kv group n d", kv=keys.shape[1])
    logits = torch.matmul(q, rearrange(keys.float(), "b kv k d -> b kv 1 d k"))
    logits = rearrange(logits, "b kv group n k -> b (kv group) n k")
    logits = logits * settings.scaling
    if settings.softcap:
        logits = torch.tanh(logits / settings.softcap) * settings.softcap
    key_idx = torch.arange(k_len, device=q.device)[None, :]
    q_abs = (qpos.to(q.device) + k_len - query.shape[2])[:, None]  # keys before the first query: a cache
    if mask is None or (isinstance(mask, torch.Tensor) and mask.dim() == 2):
        allowed = key_idx <= q_abs
        if settings.sliding_window:  # no 4-D mask carries the window (flash attention): apply it here
            allowed = allowed & (key_idx > q_abs - settings.sliding_window)
        allowed = allowed[None, None]
        if mask is not None:
            allowed = allowed & mask[:, None, None, :].bool()
        return logits.masked_fill(~allowed, float("-inf")).softmax(-1)
    if not isinstance(mask, torch.Tensor):
        raise RuntimeError(
            f"attention mask of type {type(mask).__name__} is not supported; load the model with "
            "attn_implementation='sdpa' or 'eager'"
        )
    if mask.shape[-1] != k_len:
        raise RuntimeError(f"attention mask covers {mask.shape[-1]} keys but there are {k_len}")
    rows = mask if mask.shape[-2] == 1 else mask[:, :, qpos.to(mask.device), :]
    if rows.dtype == torch.bool:
        return logits.masked_fill(~rows, float("-inf")).softmax(-1)
    return (logits + rows.float()).softmax(-1)


def _head_stats(probs, span, ids, targets, valid) -> torch.Tensor:
    """``[batch, heads, 3]``: span mass, top-1-in-span and copy hit, averaged over the valid answer queries."""
    b, h, n, k_len = probs.shape
    keys = torch.arange(k_len, device=probs.device)
    in_span = (keys[None] >= span[:, :1]) & (keys[None] < span[:, 1:])  # [b, k]
    mass = (probs * in_span[:, None, None, :]).sum(-1)
    top = probs.argmax(-1).reshape(b, -1)
    top_in = in_span.gather(1, top).reshape(b, h, n)
    hit = top_in & (ids.gather(1, top).reshape(b, h, n) == targets[:, None, :])
    w = valid.float() / valid.sum(-1, keepdim=True)
    return torch.stack([mass, top_in.float(), hit.float()], -1).mul(w[:, None, :, None]).sum(2)


# --------------------------------------------------------------------------------------------- teacher forcing
def _plan(rm: RetModel, heads, mode: str, mean_values):
    from retmask_interp.interventions.masking import MaskPlan

    return MaskPlan.build(rm, heads, mode, mean_values)


def _forced_batch(rm: RetModel, prompts, answers, spans, plan, readout: bool):
    """One teacher-forced forward of prompts of equal length ``P`` followed by their answers (right-padded: a padded
    position comes after every real one of its row, so the causal mask keeps it out of them). The answer queries
    are positions ``P-1 .. P+n_max-2``; row ``i`` reads its first ``n_i``. ``plan`` may mask each row's own heads."""
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("a teacher-forced batch takes prompts of one length")
    dev = rm.device
    b, width = len(prompts), len(prompts[0])
    n = torch.tensor([len(a) for a in answers], device=dev)
    n_max = int(n.max())
    targets = torch.zeros(b, n_max, dtype=torch.long)
    for i, a in enumerate(answers):
        targets[i, : len(a)] = torch.as_tensor(list(a), dtype=torch.long)
    targets = targets.to(dev)
    prompt = torch.tensor([list(p) for p in prompts], dtype=torch.long)
    ids = torch.cat([prompt.to(dev), targets[:, : n_max - 1]], dim=1)
    valid = torch.arange(n_max, device=dev)[None] < n[:, None]
    qpos = torch.arange(width - 1, width - 1 + n_max, device=dev)
    span = torch.tensor([list(s) for s in spans], device=dev)
    _, keep = _forward_names(rm.model)
    kwargs: dict[str, Any] = {"use_cache": False} | ({keep: n_max} if keep else {})
    stats: list[torch.Tensor] = []
    st = None
    with torch.no_grad(), rm.lm.trace(ids, **kwargs):
        for call in attention_calls(rm, plan, range(rm.geometry.num_layers) if readout else ()):
            probs = attention_probs(call.query, call.keys, call.mask, qpos, call.settings)
            stats.append(_head_stats(probs, span, ids, targets, valid))
        if readout:
            st = torch.stack(stats).save()  # type: ignore[attr-defined]  # nnsight adds .save
        logits = rm.lm.output.logits[:, -n_max:, :].save()
    logp = logits.float().log_softmax(-1)
    tok_lp = logp.gather(-1, targets[..., None])[..., 0]
    correct = logp.argmax(-1) == targets
    out = []
    for i, a in enumerate(answers):
        row = {"token_logprobs": tok_lp[i, : len(a)].cpu(), "correct": correct[i, : len(a)].cpu()}
        if st is not None:
            row["heads"] = st[:, i].cpu()  # [layers, heads, 3]
        out.append(row)
    return out


def answer_summary(lp: torch.Tensor, correct: torch.Tensor) -> dict[str, Any]:
    """A sample's answer numbers from its answer tokens' log-probabilities and argmax hits (module docstring)."""
    return {
        "answer_logprob": float(lp.mean()),
        "answer_logprob_sum": float(lp.sum()),
        "answer_accuracy": float(correct.float().mean()),
        "answer_tokens": len(lp),
    }


def check_spans(samples: Sequence[Any]) -> None:
    for s in samples:
        lo, hi = s.answer_span
        if not 0 <= lo < hi <= len(s.input_ids):
            raise ValueError(f"sample {s.sample_id!r}: answer span {s.answer_span} is outside its prompt")


def samples_digest(samples: Sequence[Any]) -> str:
    """A hash of the samples' ids and token ids (what a checkpoint's results were computed on)."""
    h = hashlib.sha1()
    for s in samples:
        h.update(json.dumps([str(s.sample_id), [int(t) for t in s.input_ids]]).encode())
    return h.hexdigest()[:16]


def tensor_digest(t: torch.Tensor) -> str:
    data = t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def teacher_forced(
    model,
    samples: Sequence[Any],
    *,
    heads: Iterable[Head] = (),
    mode: str = "zero",
    answer: str = "text",
    readout: bool = False,
    batch_size: int | None = None,
    mean_values: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """One teacher-forced forward per sample with ``heads`` masked; per sample (input order) a dict with
    ``answer_logprob``, ``answer_logprob_sum``, ``answer_accuracy``, ``answer_tokens`` and, with ``readout``,
    ``heads``: a ``[layers, heads, 3]`` tensor of span mass / top-1-in-span / copy hit (see the module docstring).
    ``batch_size``: samples per forward (``None``: from the free memory on a GPU, see ``measure.sweep``)."""
    rm = as_model(model)
    (_, (results,)), *_ = forced_sweep(
        rm, samples, [list(heads)], mode=mode, answer=answer, readout=readout, batch_size=batch_size,
        mean_values=mean_values,
    )  # fmt: skip
    return results


def forced_sweep(
    model,
    samples: Sequence[Any],
    head_sets: Sequence[Iterable[Head]],
    *,
    mode: str = "zero",
    answer: str = "text",
    readout: bool = False,
    batch_size: int | None = None,
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], list[list[dict[str, Any]]]]]:
    """``teacher_forced`` of every head set over every sample, packed (``measure.sweep``: rows of any condition share
    a forward, each masked by its own heads); yields ``(conditions, results)`` per wave of finished conditions, each
    result a list over samples of ``teacher_forced``'s dicts."""
    from retmask_interp.measure.sweep import row_plan, sweep

    rm = as_model(model)
    sets = [rm.check_heads(h) for h in head_sets]
    for hs in sets:  # refuse a bad mode or missing mean values before any work
        if hs:
            _plan(rm, hs, mode, mean_values)
            break
    _plan(rm, [], mode, mean_values)
    check_spans(samples)
    answers = [answer_tokens(s, rm.tokenizer, answer) for s in samples]

    def run_batch(rows, heads):
        out = _forced_batch(
            rm,
            [r.input_ids for r in rows],
            [answers[r.sample] for r in rows],
            [samples[r.sample].answer_span for r in rows],
            row_plan(rm, heads, mode, mean_values),
            readout,
        )
        for row in out:
            row.update(answer_summary(row.pop("token_logprobs"), row.pop("correct")))
        return out

    yield from sweep(
        rm, samples, sets, run_batch, batch_size=batch_size, answer_tokens=max(map(len, answers)),
        progress=progress,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- attention
def needle_attention(
    model,
    samples: Sequence[Any],
    *,
    mask_heads: Iterable[Head] = (),
    mode: str = "zero",
    answer: str = "text",
    batch_size: int | None = None,
    mean_values: torch.Tensor | None = None,
    per_sample: bool = False,
) -> pd.DataFrame:
    """For every head: ``span_mass``, ``top1_in_span``, ``copy_hit`` at the answer queries (teacher-forced, with
    ``mask_heads`` masked; see the module docstring), mean over samples, as ``DataFrame(layer, head, ...,
    n_samples)``; ``per_sample`` gives one row per sample x head (with ``sample_id``) instead."""
    rm = as_model(model)
    res = teacher_forced(
        rm,
        samples,
        heads=mask_heads,
        mode=mode,
        answer=answer,
        readout=True,
        batch_size=batch_size,
        mean_values=mean_values,
    )
    g = rm.geometry
    layer, head = (a.ravel() for a in np.indices((g.num_layers, g.num_heads)))
    if per_sample:
        frames = [
            pd.DataFrame(
                {
                    "sample_id": s.sample_id,
                    **{k: getattr(s, k, None) for k in _META},
                    "layer": layer,
                    "head": head,
                }
                | {k: r["heads"][..., j].reshape(-1).numpy() for j, k in enumerate(_STATS)}
                | {"answer_logprob": r["answer_logprob"]}
            )
            for s, r in zip(samples, res)
        ]
        return pd.concat(frames, ignore_index=True)
    mean = torch.stack([r["heads"] for r in res]).mean(0).reshape(-1, 3).numpy()
    return pd.DataFrame(
        {"layer": layer, "head": head} | {k: mean[:, j] for j, k in enumerate(_STATS)}
    ).assign(n_samples=len(samples))


def compensation(
    model,
    samples: Sequence[Any],
    retrieval_heads: Iterable[Head],
    *,
    mode: str = "zero",
    tol: float = 0.05,
    **kwargs,
) -> pd.DataFrame:
    """Per head: ``span_mass`` / ``top1_in_span`` / ``copy_hit`` unmasked (``_before``), with ``retrieval_heads``
    masked (``_after``) and the change (``delta_*`` = after - before). ``role``: ``"masked"`` for the masked heads,
    else ``"compensates"`` (span mass up by more than ``tol``), ``"collapses"`` (down by more than ``tol``) or
    ``"unchanged"``. Sorted by ``delta_span_mass``, largest increase first. Keywords go to ``needle_attention``."""
    rm = as_model(model)
    masked_set = set(rm.check_heads(retrieval_heads))
    before = needle_attention(rm, samples, **kwargs)
    after = needle_attention(rm, samples, mask_heads=sorted(masked_set), mode=mode, **kwargs)
    df = before.drop(columns="n_samples").merge(after, on=["layer", "head"], suffixes=("_before", "_after"))
    for k in _STATS:
        df[f"delta_{k}"] = df[f"{k}_after"] - df[f"{k}_before"]
    df["masked"] = [(a, b) in masked_set for a, b in zip(df["layer"], df["head"])]
    d = df["delta_span_mass"]
    df["role"] = np.where(
        df["masked"], "masked", np.where(d > tol, "compensates", np.where(d < -tol, "collapses", "unchanged"))
    )
    return df.sort_values("delta_span_mass", ascending=False, kind="stable").reset_index(drop=True)


def single_head_effects(
    model,
    samples: Sequence[Any],
    head_scores,
    heads: int | Iterable[Head] | None = None,
    *,
    mode: str = "zero",
    answer: str = "text",
    batch_size: int | None = None,
    mean_values: torch.Tensor | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    checkpoint: str | Path | None = None,
) -> pd.DataFrame:
    """Mask each head alone; ``effect`` = drop in mean per-token answer log-likelihood (unmasked - masked, averaged
    over samples; positive = the head helps retrieval) with a paired bootstrap CI, next to its retrieval ``score``
    and ``rank`` (1 = best). ``heads``: ``None`` = every head, an int = the top-n by score, or a list.
    ``df.attrs["spearman"]`` is the rank correlation of score and effect over the heads tested (is the score causal?).
    ``checkpoint``: a JSONL file (``core.io.KeyedCheckpoint``) keeping every finished head's per-sample results, so
    that an interrupted run resumes; a file made with other settings is refused. The heads run packed
    (``forced_sweep``: many heads' rows in one forward); ``batch_size``: rows per forward (``None``: from the free
    memory on a GPU).
    """
    from retmask_interp.core.io import KeyedCheckpoint
    from retmask_interp.measure.stats import bootstrap_ci, spearman

    rm = as_model(model)
    ranked, m = ranked_heads(head_scores)
    g = rm.geometry
    if m.shape != (g.num_layers, g.num_heads):
        raise ValueError(
            f"head scores are {m.shape[0]} x {m.shape[1]} but the model has {g.num_layers} x {g.num_heads}"
        )
    chosen = (
        ranked if heads is None else ranked[: int(heads)] if isinstance(heads, int) else rm.check_heads(heads)
    )
    rank = {h: i + 1 for i, h in enumerate(ranked)}
    kw: dict[str, Any] = dict(mode=mode, answer=answer, batch_size=batch_size, mean_values=mean_values)
    done = KeyedCheckpoint(
        checkpoint,
        {
            "mode": mode,
            "answer": answer,
            "samples": samples_digest(samples),
            "mean_values": None if mean_values is None else tensor_digest(mean_values),
            "geometry": [g.num_layers, g.num_heads],
        },
    )

    units: list[list[Head]] = [[]] + [[h] for h in chosen]  # the unmasked baseline, then every head alone
    kept: dict[int, dict[str, list[float]]] = {}
    for i, hs in enumerate(units):
        value = done.get([list(h) for h in hs])
        if value is not None:
            kept[i] = value
    todo = [i for i in range(len(units)) if i not in kept]
    if todo:  # all heads in packed batches (each row masks its own head), kept as each wave finishes
        for conds, results in forced_sweep(rm, samples, [units[i] for i in todo], **kw):
            for c, res in zip(conds, results):
                i = todo[c]
                kept[i] = {k: [r[f"answer_{k}"] for r in res] for k in ("logprob", "accuracy")}
                done.put([list(h) for h in units[i]], kept[i])

    def forced(i: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample answer log-probability and accuracy of unit ``i`` (0: unmasked; i: ``chosen[i - 1]``)."""
        return np.array(kept[i]["logprob"], dtype=float), np.array(kept[i]["accuracy"], dtype=float)

    base, base_acc = forced(0)
    rows = []
    for i, head in enumerate(chosen, 1):
        lp, acc = forced(i)
        low, high = bootstrap_ci(base - lp, n_resamples, seed)
        rows.append(
            {
                "layer": head[0],
                "head": head[1],
                "score": float(m[head]),
                "rank": rank[head],
                "effect": float((base - lp).mean()),
                "ci_low": low,
                "ci_high": high,
                "masked_logprob": float(lp.mean()),
                "delta_accuracy": float((acc - base_acc).mean()),
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["baseline_logprob"] = float(base.mean())
    df.attrs["spearman"] = spearman(df["score"], df["effect"]) if len(df) > 1 else float("nan")
    return df


# --------------------------------------------------------------------------------------------- circuitsvis
def attention_view(
    model,
    sample,
    heads: Iterable[Head],
    *,
    before: int = 96,
    after: int = 32,
    mask_heads: Iterable[Head] = (),
    mode: str = "zero",
    answer: str = "text",
    mean_values: torch.Tensor | None = None,
):
    """circuitsvis attention patterns of ``heads`` on one teacher-forced sample, around the needle.

    Shown tokens: the prompt from ``before`` tokens ahead of the answer span to ``after`` tokens past it, a ``[...]``
    gap marker, then the prompt's last token and the answer tokens fed back (the answer queries). Each cell is the
    head's attention probability (over the *whole* context, not renormalised to the window; the gap marker's row and
    column are 0). Returns circuitsvis ``RenderedHTML``: it displays in a notebook; ``.local_src`` is a self-contained
    page that works offline (write it with ``core.io.atomic_write_text``).
    """
    import circuitsvis as cv

    rm = as_model(model)
    heads = rm.check_heads(heads)
    if not heads:
        raise ValueError("no heads to show: pass (layer, head) pairs, e.g. the top retrieval heads")
    plan = _plan(rm, mask_heads, mode, mean_values)
    ans = answer_tokens(sample, rm.tokenizer, answer)
    prompt = [int(t) for t in sample.input_ids]
    seq = prompt + ans[:-1]
    s, e = sample.answer_span
    window = list(range(max(0, s - before), min(len(prompt) - 1, e + after)))
    tail = list(range(len(prompt) - 1, len(seq)))
    pos = torch.tensor(window + tail, device=rm.device)
    layers = sorted({layer for layer, _ in heads})
    probs: dict[int, torch.Tensor] = {}
    with torch.no_grad(), rm.lm.trace(torch.tensor([seq], device=rm.device), use_cache=False):
        for call in attention_calls(rm, plan, layers, num_layers=max(layers) + 1):
            p = attention_probs(call.query, call.keys, call.mask, pos, call.settings)[0][:, :, pos]
            probs[call.layer] = p.save()  # type: ignore[attr-defined]  # nnsight adds .save
    att = torch.stack([probs[layer][h] for layer, h in heads]).cpu()  # [heads, n, n]
    gap = len(window)
    att = torch.cat([att[:, :gap], torch.zeros(len(heads), 1, att.shape[2]), att[:, gap:]], 1)
    att = torch.cat([att[:, :, :gap], torch.zeros(len(heads), att.shape[1], 1), att[:, :, gap:]], 2)
    tok = rm.tokenizer
    names = [tok.decode([seq[i]]) if tok is not None else str(seq[i]) for i in pos.tolist()]
    tokens = names[:gap] + ["[...]"] + names[gap:]
    return cv.attention.attention_heads(
        attention=att, tokens=tokens, attention_head_names=[f"{a}-{b}" for a, b in heads]
    )
