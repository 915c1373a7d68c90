"""The RetMask study's evaluation of one model (stage ``eval/NAME``): the long-context suite
(``retmask.evaluation.evaluate``, generation tasks at ``lengths``), exact match on ``data.short_qa`` and the NLL of
``data.ppl_texts``; a CSV with exactly ``retmask.report.SCORE_COLUMNS`` and a JSONL of predictions per model."""

from __future__ import annotations

import json
from pathlib import Path

from retmask_interp.core.io import atomic_write_text
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import StudyConfig
from retmask_interp.workflows.studies.retmask.models import load
from retmask_interp.workflows.studies.retmask.training import nll_per_token

__all__ = ["check_eval_fits", "eval_run", "evaluate_model"]


def evaluate_model(
    rm, config: StudyConfig, condition: str, seed: int, lr: float
) -> tuple[list[dict], list[dict]]:
    """Score rows (``report.SCORE_COLUMNS``) and prediction records of one model."""
    from retmask_interp.data.short_qa import MAX_NEW_TOKENS, load_short_qa, score_short_qa
    from retmask_interp.measure.outcomes import greedy_texts
    from retmask_interp.retmask.evaluation import MAX_NEW_TOKENS as BUDGETS
    from retmask_interp.retmask.evaluation import _encode, evaluate

    cap = config.eval_max_new_tokens
    budgets = {t: min(b, cap) if cap else b for t, b in BUDGETS.items()}
    df = evaluate(
        rm,
        tasks=config.tasks,
        lengths=config.lengths,
        n_per_cell=config.n_per_cell,
        seed=config.eval_seed,
        batch_size=config.eval_batch_size,
        ppl_length=None,
        max_new_tokens=budgets,
        progress=False,
    )
    key = {"condition": condition, "seed": seed, "lr": lr}
    rows = [key | {"task": r.task, "length": int(r.length), "example": int(r.index), "score": float(r.score)}
            for r in df.itertuples()]  # fmt: skip
    preds = [key | {"task": r.task, "length": int(r.length), "example": int(r.index), "prediction": r.prediction}
             for r in df.itertuples()]  # fmt: skip
    missing = {(t, n) for t in config.tasks for n in config.lengths} - {
        (r["task"], r["length"]) for r in rows
    }
    if missing:
        raise RuntimeError(
            f"evaluation skipped cells {sorted(missing)} (prompts beyond the model's context?)"
        )
    items = load_short_qa()[: config.n_short_qa]
    chat = bool(getattr(rm.tokenizer, "chat_template", None))
    encoded = [_encode(rm.tokenizer, q.question, chat) for q in items]
    answers = greedy_texts(
        rm,
        encoded,
        max_new_tokens=min(MAX_NEW_TOKENS, cap or MAX_NEW_TOKENS),
        batch_size=config.eval_batch_size,
    )
    for i, (q, a, s) in enumerate(zip(items, answers, score_short_qa(items, answers))):
        rows.append(key | {"task": "short_qa", "length": 0, "example": i, "score": float(s)})
        preds.append(key | {"task": "short_qa", "length": 0, "example": i, "prediction": a, "id": q.id})
    for i, nll in enumerate(nll_per_token(rm, config)):
        rows.append(key | {"task": "ppl_nll", "length": 0, "example": i, "score": float(nll)})
    return rows, preds


def check_eval_fits(rm, config: StudyConfig) -> dict[str, int]:
    """Fail before any evaluation when a cell's longest prompt plus its answer budget exceeds the model's context
    (``evaluate`` would skip it); returns the longest prompt per cell."""
    from retmask_interp.data.tasks import generate_examples
    from retmask_interp.retmask.evaluation import MAX_NEW_TOKENS as BUDGETS
    from retmask_interp.retmask.evaluation import _encode

    chat = bool(getattr(rm.tokenizer, "chat_template", None))
    longest, bad = {}, []
    for task in config.tasks:
        for n in config.lengths:
            ex = generate_examples(
                task,
                config.n_per_cell,
                seed=config.eval_seed,
                split="eval",
                num_tokens=n,
                tokenizer=rm.tokenizer,
            )
            top = max(len(_encode(rm.tokenizer, e.prompt, chat)) for e in ex)
            longest[f"{task}@{n}"] = top
            budget = min(BUDGETS[task], config.eval_max_new_tokens or BUDGETS[task])
            if rm.max_context and top + budget > rm.max_context:
                bad.append(f"{task}@{n}: {top} + {budget} > {rm.max_context}")
    if bad:
        raise ValueError(f"evaluation cells exceed the model's context (lower --lengths): {'; '.join(bad)}")
    return longest


def eval_run(
    config: StudyConfig, st: Stages, name: str, condition: str, seed: int, lr: float, path: str | None
) -> dict:
    """Evaluate the untrained model (``path=None``) or the trained run ``name`` at ``path``."""
    import pandas as pd

    from retmask_interp.retmask.report import SCORE_COLUMNS, write_scores

    keys = ("lengths", "n_per_cell", "tasks", "eval_seed", "eval_max_new_tokens", "n_short_qa", "n_ppl")
    settings = {k: getattr(config, k) for k in keys} | {
        "eval_dtype": config.eval_dtype,
        "device": config.device,
    }
    settings |= {"condition": condition, "seed": seed, "lr": lr}

    def run(ctx) -> dict:
        rm = load(config, path)
        rows, preds = evaluate_model(rm, config, condition, seed, lr)
        write_scores(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), ctx.path("eval", f"{name}.csv"))
        atomic_write_text(
            ctx.path("eval", f"{name}.predictions.jsonl"), "".join(json.dumps(p) + "\n" for p in preds)
        )
        if path is not None and config.prune_weights:
            for f in Path(path).glob("*.safetensors"):
                f.unlink()
        return {"rows": len(rows)}

    after = {} if path is None else {"trained": f"train/{name}"}
    return st.run(f"eval/{name}", settings, run, after=after)
