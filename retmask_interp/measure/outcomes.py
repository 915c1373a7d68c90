"""The one path to NIAH success with heads masked, and what is built on it: random-control conditions,
bootstrap summaries, top-k masking curves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from retmask_interp.core.generation import new_texts
from retmask_interp.core.io import KeyedCheckpoint, read_jsonl
from retmask_interp.core.models import as_model
from retmask_interp.heads.scores import Head, ranked_heads
from retmask_interp.measure.attention import _META, _batches, samples_digest, tensor_digest
from retmask_interp.measure.stats import crossed_bootstrap_ci


# --------------------------------------------------------------------------------------------- behaviour
def _split_name(name: str) -> tuple[str, int]:
    kind, sep, seed = name.rpartition("#")
    return (kind, int(seed)) if sep and seed.isdigit() else (name, 0)


def _length_batches(lengths: Sequence[int], batch_size: int, *, pad: bool) -> list[list[int]]:
    """Indices in batches of at most ``batch_size``: of equal length (``pad=False``: no padding, the causal kernel,
    as detection batches) or sorted by length and left-padded (``pad=True``: fewer, fuller batches)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not pad:
        return _batches(lengths, batch_size)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]


def greedy_texts(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    heads: Iterable[Head] = (),
    mode: str = "zero",
    max_new_tokens: int = 50,
    batch_size: int = 8,
    pad: bool = True,
    stop: str = "eos",
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy continuations of token-id ``prompts`` with ``heads`` masked at every step (none: the plain model),
    decoded up to and without the first stop token (``stop="eos"``; ``"newline"`` also stops at a line break, as
    Wu et al.'s NIAH decoding does), stripped, in the order of ``prompts``. The one decode-to-text path of the
    package: NIAH outcomes, the evaluation suite and the organism checks all use it."""
    from tqdm.auto import tqdm

    from retmask_interp.interventions.masking import generate

    rm = as_model(model)
    if rm.tokenizer is None:
        raise ValueError(
            "decoding generations needs the model's tokenizer: pass it to as_model(model, tokenizer)"
        )
    eos = set(rm.stop_token_ids(stop))
    heads = rm.check_heads(heads)
    out: list[str | None] = [None] * len(prompts)
    batches = _length_batches([len(p) for p in prompts], batch_size, pad=pad)
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        items = [torch.as_tensor(list(prompts[i]), dtype=torch.long) for i in batch]
        ids = generate(
            rm,
            items,
            heads,
            mode,
            max_new_tokens=max_new_tokens,
            mean_values=mean_values,
            eos_token_id=sorted(eos),
        )
        width = max(len(x) for x in items)  # generate returns the left-padded prompts, then the new tokens
        for text, i in zip(new_texts(rm, ids, width, sorted(eos)), batch):
            out[i] = text
    return [t if t is not None else "" for t in out]


def niah_outcomes(
    model,
    samples: Sequence[Any],
    heads: Iterable[Head] = (),
    *,
    mode: str = "zero",
    max_new_tokens: int = 50,
    batch_size: int = 8,
    rouge_threshold: float = 0.5,
    stop: str = "newline",
    rouge: str = "wu",
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """NIAH success of every sample with ``heads`` masked (none: the plain model): THE function for it.

    ``samples`` are NIAH samples (``sample_id``, ``input_ids``, ``needle["real_needle"]``; optional
    ``context_length``, ``depth``, ``needle_index``). Each is decoded greedily (``greedy_texts``, equal-length
    batches, Wu et al.'s stop at the first line break unless ``stop="eos"``) and scored by ``stats.niah_success``
    (ROUGE-1 recall of the needle's answer > ``rouge_threshold``, ``rouge`` scorer), the rule detection counts
    samples by. Returns one dict per sample, in order: ``sample_id``, ``success`` (0.0 or
    1.0), ``rouge``, ``generated`` and the sample's grid coordinates."""
    from retmask_interp.measure.stats import niah_success

    texts = greedy_texts(
        model, [s.input_ids for s in samples], heads=heads, mode=mode, max_new_tokens=max_new_tokens,
        batch_size=batch_size, pad=False, stop=stop, mean_values=mean_values, progress=progress,
    )  # fmt: skip
    rows = []
    for s, text in zip(samples, texts):
        success, recall = niah_success(s.needle["real_needle"], text, rouge_threshold, rouge)
        meta = {k: getattr(s, k) for k in _META if hasattr(s, k)}
        rows.append(
            {"sample_id": s.sample_id, "success": float(success), "rouge": recall, "generated": text, **meta}
        )
    return rows


def masking_outcomes(
    model,
    samples: Sequence[Any],
    conditions: Mapping[str, Iterable[Head]],
    *,
    mode: str = "zero",
    max_new_tokens: int = 50,
    batch_size: int | None = None,
    rouge_threshold: float = 0.5,
    answer: str = "text",
    generation: bool = True,
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> pd.DataFrame:
    """One row per condition x sample: ``condition``, ``kind``, ``seed`` (from ``"KIND#SEED"`` names), ``n_heads``,
    ``heads`` (the list masked),
    ``sample_id``, ``context_length``, ``depth``, ``needle_index``, ``success``, ``rouge``, ``generated`` (greedy,
    heads masked at every step, Wu et al.'s stop at the first line break; skipped with ``generation=False``),
    ``answer_logprob``, ``answer_logprob_sum``, ``answer_accuracy``, ``answer_tokens`` (teacher-forced, see
    ``measure.attention``).

    The sweep is packed (``measure.sweep``): rows of any condition whose prompts have one length share a batch, each
    masked by its own heads, and one prefill serves both the teacher-forced score and the generation of a row
    (``interventions.masking.score_and_generate``). ``batch_size``: rows per batch (``None``: from the free memory
    on a GPU, 4 elsewhere).

    ``checkpoint``: a JSONL file (``core.io.KeyedCheckpoint``) that keeps each finished condition's rows, keyed by
    its name and heads; a re-run reads them back instead of recomputing, and refuses a file made with other
    settings (mode, decoding, samples, model geometry)."""
    rm = as_model(model)
    done = _outcome_checkpoint(
        rm, checkpoint, samples, mode=mode, max_new_tokens=max_new_tokens, rouge_threshold=rouge_threshold,
        answer=answer, generation=generation, mean_values=mean_values,
    )  # fmt: skip
    per_condition = _outcomes(
        rm, samples, list(conditions.items()), done, mode=mode, max_new_tokens=max_new_tokens,
        batch_size=batch_size, rouge_threshold=rouge_threshold, answer=answer, generation=generation,
        mean_values=mean_values, progress=progress,
    )  # fmt: skip
    return pd.DataFrame([r for rows in per_condition for r in rows])


def _outcome_checkpoint(rm, checkpoint, samples, *, mode, max_new_tokens, rouge_threshold, answer, generation,
                        mean_values) -> KeyedCheckpoint:  # fmt: skip
    return KeyedCheckpoint(
        checkpoint,
        {
            "mode": mode,
            "max_new_tokens": max_new_tokens,
            "rouge_threshold": rouge_threshold,
            "answer": answer,
            "generation": generation,
            "samples": samples_digest(samples),
            "mean_values": None if mean_values is None else tensor_digest(mean_values),
            "geometry": [rm.geometry.num_layers, rm.geometry.num_heads],
        },
    )


def _outcomes(
    rm, samples, conditions: Sequence[tuple[str, Iterable[Head]]], done: KeyedCheckpoint, *, mode, max_new_tokens,
    batch_size, rouge_threshold, answer, generation, mean_values, progress,
) -> list[list[dict[str, Any]]]:  # fmt: skip
    """``masking_outcomes``' rows of every ``(name, heads)`` condition, a list per condition in order: those kept in
    ``done`` read back, the others computed in one packed sweep and kept as each wave finishes."""
    named = [(name, rm.check_heads(heads)) for name, heads in conditions]
    keys = [[name, [list(h) for h in heads]] for name, heads in named]
    out: dict[int, list[dict[str, Any]]] = {}
    for i, key in enumerate(keys):
        kept = done.get(key)
        if kept is not None:
            out[i] = [r | {"heads": [tuple(h) for h in r["heads"]]} for r in kept]
    todo = [i for i in range(len(named)) if i not in out]
    if todo:
        waves = _outcome_sweep(
            rm, samples, [named[i][1] for i in todo], mode=mode, max_new_tokens=max_new_tokens,
            batch_size=batch_size, rouge_threshold=rouge_threshold, answer=answer, generation=generation,
            mean_values=mean_values, progress=progress,
        )  # fmt: skip
        for conds, results in waves:
            for c, per_sample in zip(conds, results):
                i = todo[c]
                name, heads = named[i]
                kind, seed = _split_name(name)
                rows = [
                    {
                        "condition": name,
                        "kind": kind,
                        "seed": seed,
                        "n_heads": len(heads),
                        "heads": heads,
                        "sample_id": s.sample_id,
                        **{k: getattr(s, k, None) for k in _META},
                        **r,
                    }
                    for s, r in zip(samples, per_sample)
                ]
                done.put(keys[i], rows)
                out[i] = rows
    return [out[i] for i in range(len(named))]


_OUTCOME_KEYS = ("success", "rouge", "generated")


def _outcome_sweep(
    rm, samples, head_sets, *, mode, max_new_tokens, batch_size, rouge_threshold, answer, generation, mean_values,
    progress,
):  # fmt: skip
    """``measure.sweep.sweep`` of ``head_sets`` over ``samples``: per row ``success``, ``rouge``, ``generated`` and the
    teacher-forced answer numbers (``generation=False``: those alone, from one forward of prompt and answer)."""
    from retmask_interp.measure.attention import answer_tokens, check_spans, forced_sweep
    from retmask_interp.measure.sweep import sweep

    if not generation:
        yield from forced_sweep(
            rm, samples, head_sets, mode=mode, answer=answer, batch_size=batch_size, mean_values=mean_values,
            progress=progress,
        )  # fmt: skip
        return
    check_spans(samples)
    answers = [answer_tokens(s, rm.tokenizer, answer) for s in samples]
    if rm.tokenizer is None:
        raise ValueError(
            "decoding generations needs the model's tokenizer: pass it to as_model(model, tokenizer)"
        )
    eos = sorted(set(rm.stop_token_ids("newline")))
    for hs in head_sets:  # refuse missing mean values before any work
        _check_plan(rm, hs, mode, mean_values)

    def run_batch(rows, heads):
        return outcome_batch(
            rm, [samples[r.sample] for r in rows], [answers[r.sample] for r in rows], heads, mode=mode,
            mean_values=mean_values, max_new_tokens=max_new_tokens, eos=eos, rouge_threshold=rouge_threshold,
        )  # fmt: skip

    yield from sweep(
        rm, samples, head_sets, run_batch, batch_size=batch_size, new_tokens=max_new_tokens,
        answer_tokens=max(map(len, answers)), progress=progress,
    )  # fmt: skip


def _check_plan(rm, heads, mode, mean_values) -> None:
    from retmask_interp.interventions.masking import MaskPlan

    MaskPlan.build(rm, heads, mode, mean_values)


def outcome_batch(
    rm, samples, answers, heads, *, mode, mean_values, max_new_tokens, eos, rouge_threshold
) -> list[dict[str, Any]]:
    """One packed batch of ``masking_outcomes``: row ``i`` is ``samples[i]`` (prompts of one length) with
    ``heads[i]`` masked; greedy generation and the teacher-forced score of ``answers[i]`` from one prefill."""
    from retmask_interp.interventions.masking import score_and_generate
    from retmask_interp.measure.attention import answer_summary
    from retmask_interp.measure.stats import niah_success
    from retmask_interp.measure.sweep import row_plan

    ids, scores = score_and_generate(
        rm, [s.input_ids for s in samples], answers, row_plan(rm, heads, mode, mean_values),
        max_new_tokens=max_new_tokens, eos_token_id=eos,
    )  # fmt: skip
    texts = new_texts(rm, ids, len(samples[0].input_ids), eos)
    out = []
    for s, text, sc in zip(samples, texts, scores):
        success, recall = niah_success(s.needle["real_needle"], text, rouge_threshold, "wu")
        out.append(
            {"success": float(success), "rouge": recall, "generated": text}
            | answer_summary(sc["token_logprobs"], sc["correct"])
        )
    return out


def random_condition_sets(
    model,
    heads: Iterable[Head],
    *,
    n_seeds: int = 5,
    seed: int = 0,
    exclude: Iterable[Head] | None = None,
    match_per_layer: bool = False,
    name: str = "retrieval",
    unmasked: bool = True,
) -> dict[str, list[Head]]:
    """Conditions ``{"unmasked": [], name: heads, "random#0": ..., "random#{n_seeds-1}": ...}``: each random set has
    as many heads as ``heads``, drawn (``interventions.controls.random_controls``) from outside ``heads`` and ``exclude`` (pass all
    retrieval heads to draw from non-retrieval heads only)."""
    from retmask_interp.interventions.controls import random_controls

    rm = as_model(model)
    heads = rm.check_heads(heads)
    out: dict[str, list[Head]] = {"unmasked": []} if unmasked else {}
    out[name] = heads
    controls = random_controls(
        rm, heads, n_seeds=n_seeds, seed=seed, exclude=exclude, match_per_layer=match_per_layer
    )
    out.update({f"random#{i}": c for i, c in enumerate(controls)})
    return out


def summarize_outcomes(
    df: pd.DataFrame,
    by: Sequence[str] = ("kind",),
    metrics: Sequence[str] = ("success", "rouge", "answer_logprob"),
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Long table: one row per group x metric with ``mean``, ``ci_low``, ``ci_high`` (crossed bootstrap over the
    group's seeds and samples), ``n_samples``, ``n_seeds``. Metrics absent from ``df`` are skipped."""
    rows = []
    for key, g in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in (m for m in metrics if m in g.columns):
            mat = g.pivot_table(
                index="seed", columns="sample_id", values=metric, aggfunc="mean", dropna=False
            )
            low, high = crossed_bootstrap_ci(mat.to_numpy(), n_resamples, seed, alpha)
            rows.append(
                dict(zip(by, key))
                | {
                    "metric": metric,
                    "mean": float(g[metric].mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n_samples": mat.shape[1],
                    "n_seeds": mat.shape[0],
                }
            )
    return pd.DataFrame(rows)


def topk_curve(
    model,
    samples: Sequence[Any],
    head_scores,
    ks: Iterable[int],
    *,
    n_random: int = 5,
    seed: int = 0,
    exclude: Iterable[Head] | None = None,
    match_per_layer: bool = False,
    return_outcomes: bool = False,
    n_resamples: int = 1000,
    **outcome_kwargs,
):
    """NIAH success as the top-``k`` retrieval heads are masked, against ``k`` random heads (``n_random`` seeds).

    Random sets avoid ``exclude`` (default: the top ``max(ks)`` heads, so they are never retrieval heads of the
    curve). ``k = 0`` is the unmasked model (one run, reported for both kinds). Returns ``DataFrame(k, kind,
    success, ci_low, ci_high, rouge, answer_logprob, n_samples, n_seeds)`` for ``analysis.plots.topk_masking_curve``;
    with ``return_outcomes`` also the per-sample ``masking_outcomes`` table. Other keywords go to
    ``masking_outcomes`` (``mode``, ``max_new_tokens``, ``batch_size``, ``checkpoint``: one file keeps every k's
    finished conditions, so an interrupted curve resumes, ...).
    """
    from retmask_interp.interventions.controls import random_controls

    rm = as_model(model)
    ranked, _ = ranked_heads(head_scores)
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0 or ks[-1] > len(ranked):
        raise ValueError(f"ks must be between 0 and the number of heads ({len(ranked)}), got {ks}")
    excluded = ranked[: ks[-1]] if exclude is None else list(exclude)
    conds: list[tuple[str, list[Head]]] = []
    at_k: list[int] = []
    for k in ks:
        top = ranked[:k]
        named = [("retrieval", top)]
        if k > 0:
            controls = random_controls(
                rm, top, n_seeds=n_random, seed=seed, exclude=excluded, match_per_layer=match_per_layer
            )
            named += [(f"random#{i}", c) for i, c in enumerate(controls)]
        conds += named
        at_k += [k] * len(named)
    settings = {k: outcome_kwargs.pop(k) for k in _OUTCOME_SETTINGS if k in outcome_kwargs}
    checkpoint = outcome_kwargs.pop("checkpoint", None)
    unknown = set(outcome_kwargs) - {"batch_size", "progress"}
    if unknown:
        raise TypeError(f"topk_curve got unexpected keyword arguments {sorted(unknown)}")
    kw = _OUTCOME_DEFAULTS | settings
    done = _outcome_checkpoint(rm, checkpoint, samples, **kw)
    # every k's conditions in one packed sweep (rows of all conditions share batches)
    per_condition = _outcomes(
        rm, samples, conds, done, batch_size=outcome_kwargs.get("batch_size"),
        progress=outcome_kwargs.get("progress", False), **kw,
    )  # fmt: skip
    parts = [
        _at_k(pd.DataFrame([r for c, rows in enumerate(per_condition) if at_k[c] == k for r in rows]), k)
        for k in ks
    ]
    outcomes = pd.concat(parts, ignore_index=True)
    curve = curve_from_outcomes(outcomes, n_resamples=n_resamples, seed=seed)
    return (curve, outcomes) if return_outcomes else curve


# masking_outcomes' settings (what its checkpoint records) and their defaults
_OUTCOME_DEFAULTS: dict[str, Any] = {
    "mode": "zero",
    "max_new_tokens": 50,
    "rouge_threshold": 0.5,
    "answer": "text",
    "generation": True,
    "mean_values": None,
}
_OUTCOME_SETTINGS = tuple(_OUTCOME_DEFAULTS)


def _at_k(outcomes: pd.DataFrame, k: int) -> pd.DataFrame:
    """One k's outcomes as the curve takes them: with ``k``; the unmasked run (``k = 0``) counted for both kinds."""
    if k == 0:
        outcomes = pd.concat(
            [outcomes, outcomes.assign(condition="random#0", kind="random")], ignore_index=True
        )
    return outcomes.assign(k=k)


def curve_from_outcomes(outcomes: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The top-k curve (``topk_curve``'s table) from its per-sample outcomes: rows with a ``k`` column, ``k = 0``
    present once as ``retrieval`` and once as ``random``."""
    summary = summarize_outcomes(outcomes, by=("k", "kind"), n_resamples=n_resamples, seed=seed)
    curve = summary[summary.metric == "success"].rename(columns={"mean": "success"}).drop(columns="metric")
    for metric in ("rouge", "answer_logprob"):
        extra = summary[summary.metric == metric].set_index(["k", "kind"])["mean"].rename(metric)
        curve = curve.join(extra, on=["k", "kind"])
    return curve.sort_values(["kind", "k"]).reset_index(drop=True)


def finished_topk_outcomes(checkpoint: str | Path, n_random: int) -> pd.DataFrame | None:
    """From the checkpoint of an unfinished ``topk_curve`` run: the per-sample outcomes (with ``k``) of every k whose
    retrieval condition and all ``n_random`` random conditions are finished, as ``curve_from_outcomes`` takes them;
    ``None`` when no k is. The file is read as written (torn last record skipped), not checked against settings:
    it holds one run's records by construction."""
    by_k: dict[int, dict[str, list[dict]]] = {}
    for rec in read_jsonl(checkpoint, torn_tail=True):
        (name, heads), rows = rec["key"], rec["value"]
        by_k.setdefault(len(heads), {})[name] = rows
    randoms = [f"random#{i}" for i in range(n_random)]
    parts = []
    for k, conds in sorted(by_k.items()):
        if "retrieval" not in conds or (k > 0 and not all(r in conds for r in randoms)):
            continue
        parts.append(
            _at_k(
                pd.DataFrame([r for name in ["retrieval", *(randoms if k else [])] for r in conds[name]]), k
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else None
