"""A long-context evaluation suite modelled on HELMET's categories, generated at any length.

Tasks come from ``retmask_interp.tasks`` (deterministic in ``(task, seed, split, index, length)``; the ``eval``
split shares no content word with the organism's training data). Each is scored with the usual metric; ``score``
is the primary number of an example (higher is better, except ``text``):

============= ============================================================== ====================================
task          category (HELMET)                                              ``score``
============= ============================================================== ====================================
niah          synthetic recall                                               1 if ROUGE-1 recall of the needle > 0.5
multi_needle  synthetic recall                                               fraction of asked needles recalled (same rule)
json_kv       synthetic recall                                               fraction of asked values found (substring)
rag_qa        RAG: QA over passages with distractors                         substring exact match
rerank        passage re-ranking                                             NDCG@10 (graded relevance: gold 2, partial 1)
cite          generation with citations                                      mean of citation recall and precision
text          general short-context check                                    mean NLL per token (lower is better);
                                                                             ``summarize`` adds the perplexity
============= ============================================================== ====================================

``evaluate(model, tasks=..., lengths=..., n_per_cell=...)`` decodes greedily (the chat template when the tokenizer
has one) and returns one row per example; ``summarize`` gives means with bootstrap CIs per (task, length) and
``compare(before, after)`` the paired change with a paired bootstrap CI. The experiment is then::

    before = evaluate(load_model("organism"), lengths=[512, 1024, 2048])
    after = evaluate(load_model("runs/organism-retmask"), lengths=[512, 1024, 2048])
    compare(before, after)

Official HELMET on a trained checkpoint (a directory written by ``retmask train``): clone
https://github.com/princeton-nlp/HELMET, ``pip install -r requirements.txt``, ``bash scripts/download_data.sh``, then
for each category config (``recall``, ``rag``, ``rerank``, ``cite``, ``longqa``, ``summ``, ``icl``; ``*_short.yaml``
for 8K-64K inputs, the plain names for 128K)::

    python eval.py --config configs/cite.yaml --model_name_or_path runs/llama-retmask --output_dir out/llama-retmask

(``--use_chat_template False`` for base models), the same for the untrained model, and compare the ``.json.score``
files (``scripts/collect_results.py`` gathers them; LongQA and summarisation need the GPT-4o judge scripts).
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from retmask_interp.core.io import InputError
from retmask_interp.measure.outcomes import greedy_texts
from retmask_interp.measure.stats import bootstrap_ci, niah_success, paired_bootstrap_ci

__all__ = [
    "DEFAULT_TASKS",
    "MAX_NEW_TOKENS",
    "citation_scores",
    "compare",
    "evaluate",
    "first_words",
    "ndcg_at_k",
    "normalize_answer",
    "parse_citations",
    "parse_ranking",
    "score_example",
    "sequence_nll",
    "substring_exact_match",
    "summarize",
    "token_f1",
]

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("niah", "multi_needle", "json_kv", "rag_qa", "rerank", "cite", "text")
MAX_NEW_TOKENS = {"niah": 50, "multi_needle": 100, "json_kv": 100, "rag_qa": 32, "rerank": 100, "cite": 64}
LOWER_IS_BETTER = {"text"}


# -- scoring (pure) ----------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def substring_exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 if some normalised answer occurs in the normalised prediction, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(a) and normalize_answer(a) in pred for a in answers))


def token_f1(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD token F1 of the normalised prediction against the best of ``answers`` (a precision-side score: words
    beyond the answer lower it); 0.0 when either side has no token."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def first_words(text: str, n: int) -> str:
    """The first ``n`` whitespace-separated words of ``text`` (for length-controlled scores)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return " ".join(text.split()[:n])


_ID = re.compile(r"\[(\d+)\]")


def parse_ranking(text: str) -> list[str]:
    """Document ids in the order they appear as ``[i]`` (``"[3] > [1] > [3]"`` -> ``["3", "1"]``)."""
    out: list[str] = []
    for m in _ID.finditer(text):
        if m.group(1) not in out:
            out.append(m.group(1))
    return out


def parse_citations(text: str) -> list[int]:
    """Cited passage ids ``[i]`` (also ``[1][2]``), unique, in order of first appearance."""
    return [int(i) for i in parse_ranking(text)]


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, float], k: int = 10) -> float:
    """NDCG@k with graded relevance, as trec_eval's ``ndcg_cut`` (gain = relevance, discount log2(rank + 1)).

    ``ranking``: ids best first; ``qrels``: id -> relevance (absent = 0). 0.0 when nothing is relevant.
    """
    rels = {str(d): float(r) for d, r in qrels.items() if float(r) > 0}
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg == 0:
        return 0.0
    dcg = sum(rels.get(str(d), 0.0) / math.log2(i + 2) for i, d in enumerate(list(ranking)[:k]))
    return dcg / idcg


def citation_scores(prediction: str, gold_ids: Iterable[int]) -> tuple[float, float]:
    """``(recall, precision)`` of the ``[i]`` citations in ``prediction`` against the passages that hold the
    answer: recall = |cited & gold| / |gold|, precision = |cited & gold| / |cited| (0 when nothing is cited)."""
    cited, gold = set(parse_citations(prediction)), {int(g) for g in gold_ids}
    hit = len(cited & gold)
    return (hit / len(gold) if gold else 0.0), (hit / len(cited) if cited else 0.0)


def score_example(example, prediction: str) -> dict[str, float]:
    """Metrics of one ``TaskExample`` given the model's ``prediction``; ``"score"`` is the primary one."""
    task, answers, meta = example.task, example.answers, example.meta
    if task == "niah":
        ok, r = niah_success(answers[0], prediction)
        return {"score": float(ok), "rouge1_recall": r}
    if task == "multi_needle":
        outs = [niah_success(a, prediction) for a in answers]
        return {
            "score": float(np.mean([ok for ok, _ in outs])),
            "rouge1_recall": float(np.mean([r for _, r in outs])),
        }
    if task == "json_kv":
        return {"score": float(np.mean([substring_exact_match(prediction, [v]) for v in answers]))}
    if task == "rag_qa":
        return {"score": substring_exact_match(prediction, answers)}
    if task == "rerank":
        return {"score": ndcg_at_k(parse_ranking(prediction), meta["qrels"], 10)}
    if task == "cite":
        rec, prec = citation_scores(prediction, meta["gold_ids"])
        em = substring_exact_match(prediction, answers)
        return {"score": (rec + prec) / 2, "cite_recall": rec, "cite_precision": prec, "answer_em": em}
    raise ValueError(f"no generation scorer for task {task!r}; 'text' is scored by sequence_nll")


def summarize(
    df, by: Sequence[str] = ("task", "length"), n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
):
    """Mean ``score`` per group with a bootstrap CI; ``text`` rows also get ``perplexity`` = exp(mean NLL)."""
    import pandas as pd

    rows = []
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        low, high = bootstrap_ci(g["score"].to_numpy(), n_resamples, seed, alpha)
        row = dict(zip(by, key)) | {"n": len(g), "mean": g["score"].mean(), "ci_low": low, "ci_high": high}
        if "task" in g and set(g["task"]) <= LOWER_IS_BETTER and "tokens" in g:
            row["perplexity"] = math.exp((g["score"] * g["tokens"]).sum() / g["tokens"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def compare(
    before,
    after,
    *,
    by: Sequence[str] = ("task", "length"),
    metric: str = "score",
    overall: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
):
    """Paired before/after table: per group the mean of each, ``delta`` = after - before with a paired bootstrap
    CI, and ``relative_pct`` = 100 * delta / |before|. Examples are matched on ``(task, length, index)``.

    With ``overall`` (and ``"task"`` in ``by``) a row ``task="all"`` per remaining group pools the examples of
    every higher-is-better task (all but ``text``), each example weighted alike.
    """
    import pandas as pd

    keys = ["task", "length", "index"]
    merged = before[keys + [metric]].merge(after[keys + [metric]], on=keys, suffixes=("_before", "_after"))
    if merged.empty:
        raise ValueError(
            "before and after share no (task, length, index): were they made with the same settings?"
        )
    if len(merged) < max(len(before), len(after)):
        log.warning("compare: only %d examples are in both tables", len(merged))
    if overall and "task" in by:
        pooled = merged[~merged["task"].isin(LOWER_IS_BETTER)].assign(task="all")
        merged = pd.concat([merged, pooled], ignore_index=True)
    rows = []
    for key, g in merged.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        b, a = g[f"{metric}_before"].to_numpy(), g[f"{metric}_after"].to_numpy()
        low, high = paired_bootstrap_ci(b, a, n_resamples, seed, alpha)
        delta = float(a.mean() - b.mean())
        rel = 100 * delta / abs(b.mean()) if b.mean() != 0 else math.nan
        row = dict(zip(by, key)) | {"n": len(g), "before": b.mean(), "after": a.mean(), "delta": delta}
        rows.append(row | {"ci_low": low, "ci_high": high, "relative_pct": rel})
    return pd.DataFrame(rows)


# -- running a model ---------------------------------------------------------------------------------------------
def _encode(tokenizer, text: str, chat: bool) -> list[int]:
    if chat:
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True, return_dict=True
        )
        return list(out["input_ids"])
    return list(tokenizer(text)["input_ids"])


def sequence_nll(model, texts: Sequence[str], *, tokenizer=None, batch_size: int = 4, heads=(), mode="zero"):
    """``(summed NLL in nats, predicted tokens)`` of every text (each token after the first is predicted)."""
    from retmask_interp.core.models import as_model

    rm = as_model(model, tokenizer)
    tok = rm.tokenizer
    out: list[tuple[float, int]] = []
    for start in range(0, len(texts), batch_size):
        enc = [list(tok(t)["input_ids"]) for t in texts[start : start + batch_size]]
        width = max(len(x) for x in enc)
        ids = torch.tensor([x + [0] * (width - len(x)) for x in enc], device=rm.device)  # right padding
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in enc], device=rm.device)
        with torch.no_grad():
            if heads:
                from retmask_interp.interventions.masking import masked_logits

                logits = masked_logits(rm, ids, list(heads), mode, attention_mask=mask)
            else:
                logits = rm.model(input_ids=ids, attention_mask=mask).logits
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        for r in range(len(enc)):
            n = int((labels[r] != -100).sum())
            out.append((float(nll[r].sum()), n))
    return out


def evaluate(
    model,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    lengths: Sequence[int] = (1024, 2048),
    n_per_cell: int = 20,
    seed: int = 0,
    batch_size: int = 4,
    tokenizer=None,
    length_unit: str = "tokens",
    ppl_length: int | None = 512,
    heads: Iterable[Sequence[int]] = (),
    mode: str = "zero",
    chat_template: bool | None = None,
    max_new_tokens: Mapping[str, int] | None = None,
    split: str = "eval",
    progress: bool = True,
):
    """Run the suite; one row per example with ``task, length, index, score`` (+ task metrics, ``prompt_tokens``,
    ``prediction``, ``target``; ``tokens`` for ``text``).

    ``lengths`` are context lengths in ``length_unit`` ("tokens" of the model's tokenizer, or "words");
    ``text`` (held-out perplexity, the short-context check) runs once at ``ppl_length`` (``None``: at every
    length). ``heads`` evaluates the model with those heads masked. Cells that do not fit the model's context are
    skipped with a warning; a token length beyond the window is refused before anything runs, and a run in which
    no cell fits raises ``InputError`` (no empty table). Deterministic: same arguments, same examples; greedy
    decoding.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from retmask_interp.core.models import as_model
    from retmask_interp.data.tasks import TASKS, generate_examples

    rm = as_model(model, tokenizer)
    tok = rm.tokenizer
    if tok is None:
        raise ValueError("evaluate needs a tokenizer: pass tokenizer=... or a RetModel that has one")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {sorted(TASKS)}")
    if length_unit not in ("tokens", "words"):
        raise ValueError("length_unit must be 'tokens' or 'words'")
    if not lengths or any(isinstance(n, bool) or int(n) < 1 for n in lengths):
        raise InputError(f"lengths must be positive context lengths, got {list(lengths)} (CLI: --lengths)")
    window = rm.max_context
    too_long = [int(n) for n in lengths if length_unit == "tokens" and window and int(n) > window]
    if too_long and any(t != "text" for t in tasks):
        raise InputError(
            f"--lengths {' '.join(map(str, too_long))}: longer than {rm.name}'s window of {window} tokens; use "
            f"lengths up to {window} (each prompt also needs room for its answer)"
        )
    chat = bool(getattr(tok, "chat_template", None)) if chat_template is None else chat_template
    budgets = dict(MAX_NEW_TOKENS, **(max_new_tokens or {}))
    masked: list[tuple[int, int]] = [(int(layer), int(head)) for layer, head in heads]
    cells = [(t, n) for t in tasks for n in ((ppl_length,) if t == "text" and ppl_length else lengths)]
    rows: list[dict[str, Any]] = []
    for task, length in tqdm(cells, desc="evaluate", disable=not progress):
        kw = {"num_tokens": length, "tokenizer": tok} if length_unit == "tokens" else {"num_words": length}
        examples = generate_examples(task, n_per_cell, seed=seed, split=split, **kw)
        if task == "text":
            scored = sequence_nll(
                rm, [e.target for e in examples], batch_size=batch_size, heads=masked, mode=mode
            )
            for i, (nll, n) in enumerate(scored):
                rows.append(
                    {"task": task, "length": length, "index": i, "score": nll / max(n, 1), "tokens": n}
                )
            continue
        encoded = [_encode(tok, e.prompt, chat) for e in examples]
        limit = rm.max_context
        if limit and max(len(x) for x in encoded) + budgets[task] > limit:
            log.warning(
                "skipping %s at length %s: prompts exceed the context of %d tokens", task, length, limit
            )
            continue
        preds = greedy_texts(
            rm, encoded, heads=masked, mode=mode, max_new_tokens=budgets[task], batch_size=batch_size
        )
        for i, (e, x, p) in enumerate(zip(examples, encoded, preds)):
            metrics = score_example(e, p)
            row = {"task": task, "length": length, "index": i, **metrics, "prompt_tokens": len(x)}
            rows.append(row | {"prediction": p, "target": e.target})
    if not rows:
        raise InputError(
            f"no example fits {rm.name}'s window of {window} tokens at lengths {list(lengths)} (with room for the "
            "answers): give shorter --lengths"
        )
    df = pd.DataFrame(rows)
    df.attrs.update(
        {"model": rm.name, "seed": seed, "heads": masked, "mode": mode, "length_unit": length_unit}
    )
    return df
