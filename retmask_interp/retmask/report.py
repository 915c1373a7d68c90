"""Tables of a RetMask study computed from its one per-example score CSV, and a Markdown report writer.

The CSV (``scores.csv``) has exactly the columns ``SCORE_COLUMNS``: ``condition, seed, lr, task, length, example,
score``, one row per scored example of one evaluated model:

- ``condition``: ``none`` (no training), ``retmask``, ``random`` (random-head DPO), ``self`` (self-DPO);
- ``seed``: the DPO training seed; ``-1`` for ``none`` (one untrained model, greedy decoding: nothing random);
- ``lr``: the DPO learning rate; ``0`` for ``none``;
- ``task`` / ``length``: a long-context task at a context length in tokens, or a short-context check at
  ``length`` 0: ``short_qa`` (exact match, 0/1) and ``ppl_nll`` (a held-out paragraph's mean NLL per token; lower
  is better; the tables add ``perplexity`` = exp of the mean, each paragraph weighted alike);
- ``example``: the example's index in its cell (the same examples for every condition and seed);
- ``score``: the example's primary score (``evaluation.score_example``).

Statistics. A cell's mean is over seeds and examples; its 95 % CI is the crossed bootstrap
(``measure.stats.crossed_bootstrap_ci``: seeds and examples resampled independently). A paired difference
against a baseline condition is computed per (seed, example): against a one-seed baseline (``none``) every seed of
the condition is paired with the baseline's score of the same example; against a seeded baseline (``random``)
seed ``s`` is paired with seed ``s`` of the baseline (seeds both have). Its CI is the crossed bootstrap of that
difference matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retmask_interp.core.io import atomic_write_text
from retmask_interp.measure.stats import crossed_bootstrap_ci

__all__ = [
    "SCORE_COLUMNS",
    "SHORT_TASKS",
    "LOWER_IS_BETTER",
    "check_scores",
    "read_scores",
    "write_scores",
    "condition_means",
    "paired_differences",
    "study_tables",
    "markdown_report",
]

SCORE_COLUMNS = ("condition", "seed", "lr", "task", "length", "example", "score")
SHORT_TASKS = ("short_qa", "ppl_nll")
LOWER_IS_BETTER = {"ppl_nll"}
CONDITION_ORDER = ("none", "retmask", "random", "self")
_KEYS = ["condition", "seed", "lr", "task", "length", "example"]


def check_scores(df) -> None:
    """Raise ``ValueError`` unless ``df`` has exactly ``SCORE_COLUMNS`` and each key appears once."""
    if tuple(df.columns) != SCORE_COLUMNS:
        raise ValueError(
            f"score table must have exactly the columns {list(SCORE_COLUMNS)}, got {list(df.columns)}"
        )
    dup = df.duplicated(_KEYS)
    if dup.any():
        raise ValueError(
            f"score table repeats {int(dup.sum())} (condition, seed, lr, task, length, example) keys"
        )
    if df["score"].isna().any():
        raise ValueError("score table has missing scores")


def read_scores(path: str | Path):
    """The score CSV as a DataFrame with typed columns (checked by ``check_scores``)."""
    import pandas as pd

    df = pd.read_csv(
        path,
        dtype={"condition": str, "seed": int, "lr": float, "task": str, "length": int, "example": int},
        keep_default_na=False,
    )
    df["score"] = df["score"].astype(float)
    check_scores(df)
    return df


def write_scores(df, path: str | Path) -> Path:
    """Write ``df`` (exactly ``SCORE_COLUMNS``) atomically, rows sorted by condition, seed, lr, task, length,
    example."""
    check_scores(df)
    order = {c: i for i, c in enumerate(CONDITION_ORDER)}
    out = df.assign(_c=df["condition"].map(lambda c: order.get(c, len(order))))
    out = out.sort_values(["_c", "condition", "seed", "lr", "task", "length", "example"]).drop(columns="_c")
    return atomic_write_text(path, out.to_csv(index=False, float_format="%.10g"))


def _matrix(g) -> tuple[np.ndarray, list[int], list[int]]:
    """``[seeds, examples]`` scores of one (condition, task, length) group."""
    m = g.pivot_table(index="seed", columns="example", values="score", aggfunc="first")
    return m.to_numpy(dtype=float), [int(s) for s in m.index], [int(e) for e in m.columns]


def _order(conditions) -> list[str]:
    known = [c for c in CONDITION_ORDER if c in set(conditions)]
    return known + sorted(set(conditions) - set(known))


def condition_means(df, *, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05):
    """Per (condition, task, length): seeds, examples, mean over both, and the crossed-bootstrap CI."""
    import pandas as pd

    rows = []
    for (cond, task, length), g in df.groupby(["condition", "task", "length"], sort=True):
        m, seeds, examples = _matrix(g)
        low, high = crossed_bootstrap_ci(m, n_resamples, seed, alpha)
        row = {"condition": cond, "task": task, "length": int(length), "seeds": len(seeds)}
        row |= {"examples": len(examples), "lr": float(g["lr"].iloc[0]), "mean": float(m.mean())}
        row |= {"ci_low": low, "ci_high": high}
        if task in LOWER_IS_BETTER:
            row["perplexity"] = math.exp(float(m.mean()))
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_c"] = out["condition"].map({c: i for i, c in enumerate(_order(out["condition"]))})
    return out.sort_values(["task", "length", "_c"]).drop(columns="_c").reset_index(drop=True)


def paired_differences(df, baseline: str, *, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05):
    """Per (condition, task, length), condition minus ``baseline``, paired per example (and per seed when the
    baseline has several seeds): mean difference with its crossed-bootstrap CI (module docstring)."""
    import pandas as pd

    rows = []
    base = {k: g for k, g in df[df["condition"] == baseline].groupby(["task", "length"])}
    for (cond, task, length), g in df[df["condition"] != baseline].groupby(["condition", "task", "length"]):
        if (task, length) not in base:
            continue
        m, seeds, examples = _matrix(g)
        b, bseeds, bexamples = _matrix(base[(task, length)])
        if examples != bexamples:
            raise ValueError(f"{cond} and {baseline} score different examples of {task} at {length}")
        if len(bseeds) == 1:
            diff = m - b[0][None, :]
        else:
            common = [s for s in seeds if s in bseeds]
            if not common:
                continue
            diff = m[[seeds.index(s) for s in common]] - b[[bseeds.index(s) for s in common]]
        low, high = crossed_bootstrap_ci(diff, n_resamples, seed, alpha)
        rows.append(
            {"condition": cond, "baseline": baseline, "task": task, "length": int(length)}
            | {"pairs": int(diff.size), "delta": float(diff.mean()), "ci_low": low, "ci_high": high}
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_c"] = out["condition"].map({c: i for i, c in enumerate(_order(out["condition"]))})
    return out.sort_values(["task", "length", "_c"]).drop(columns="_c").reset_index(drop=True)


def _records(tab) -> list[dict[str, Any]]:
    """Table rows as dicts, NaN (a column a row does not have, e.g. ``perplexity``) as ``None``."""
    out = []
    for rec in tab.to_dict("records"):
        out.append({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in rec.items()})
    return out


def study_tables(df, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every score table of the report, from the score CSV alone: ``means``, ``vs_none``, ``vs_random`` (records)."""
    check_scores(df)
    conds = set(df["condition"])
    out: dict[str, Any] = {"means": _records(condition_means(df, n_resamples=n_resamples, seed=seed))}
    for base in ("none", "random"):
        if base in conds and len(conds) > 1:
            tab = paired_differences(df, base, n_resamples=n_resamples, seed=seed)
            out[f"vs_{base}"] = _records(tab)
        else:
            out[f"vs_{base}"] = []
    return out


# -- Markdown ---------------------------------------------------------------------------------------------------
def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(row: Mapping[str, Any]) -> str:
    return f"[{_f(row['ci_low'])}, {_f(row['ci_high'])}]"


def _means_table(rows: Sequence[Mapping[str, Any]], short: bool) -> list[str]:
    lines = [
        "| task | length | condition | seeds × examples | mean | 95 % CI |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        if (r["task"] in SHORT_TASKS) != short:
            continue
        mean = _f(r["mean"])
        if "perplexity" in r and r.get("perplexity") is not None and not math.isnan(r["perplexity"]):
            mean += f" (ppl {r['perplexity']:.2f})"
        lines.append(
            f"| {r['task']} | {r['length']} | {r['condition']} | {r['seeds']} × {r['examples']} | {mean} | {_ci(r)} |"
        )
    return lines


def _diff_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| task | length | condition | pairs | Δ | 95 % CI |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['length']} | {r['condition']} | {r['pairs']} | {_f(r['delta'])} | {_ci(r)} |"
        )
    return lines


def markdown_report(
    tables: Mapping[str, Any],
    *,
    title: str = "RetMask study",
    setup: Sequence[str] = (),
    lr_sweep: Sequence[Mapping[str, Any]] = (),
    dpo: Sequence[Mapping[str, Any]] = (),
    pairs: Mapping[str, Mapping[str, Any]] | None = None,
    prompts: str = "",
    timings: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The study's Markdown report: setup lines, prompt make-up, pairs kept/dropped, the lr sweep, DPO margins,
    the long-context and general-check tables (from ``study_tables``), paired differences and stage times."""
    out = [f"# {title}", ""]
    if setup:
        out += ["## Setup", ""] + [f"- {s}" for s in setup] + [""]
    if prompts:
        out += ["## Prompts", "", prompts, ""]
    if pairs:
        out += [
            "## Pairs",
            "",
            "| condition | split | prompts | kept | dropped (reason: n) | truncated chosen / rejected |",
        ]
        out += ["|---|---|---:|---:|---|---|"]
        for name, s in pairs.items():
            dropped = ", ".join(f"{k}: {v}" for k, v in s.get("dropped", {}).items() if v) or "none"
            cond, _, split = name.partition(".")
            out.append(
                f"| {cond} | {split or 'train'} | {s['total_prompts']} | {s['kept']} | {dropped} | "
                f"{_f(s.get('truncated_chosen'))} / {_f(s.get('truncated_rejected'))} |"
            )
        out.append("")
    if lr_sweep:
        out += ["## Learning-rate sweep (held-out criterion)", ""]
        out += ["| lr | held-out reward acc. | held-out margin | held-out ppl | ppl change | chosen |"]
        out += ["|---:|---:|---:|---:|---:|---|"]
        for r in lr_sweep:
            out.append(
                f"| {r['lr']:g} | {_f(r.get('heldout_accuracy'))} | {_f(r.get('heldout_margin'))} | "
                f"{_f(r.get('heldout_ppl'), 2)} | {_f(r.get('ppl_change'))} | {'yes' if r.get('chosen') else ''} |"
            )
        out.append("")
    if dpo:
        out += ["## DPO training (final logged values; held-out pairs of the same condition)", ""]
        out += ["| condition | lr | seed | pairs | steps | loss | train acc. | train margin | held-out acc. | "
                "held-out margin | wall s |"]  # fmt: skip
        out += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in dpo:
            out.append(
                f"| {r['condition']} | {r['lr']:g} | {r['seed']} | {r.get('num_pairs')} | {r.get('steps')} | "
                f"{_f(r.get('loss'))} | {_f(r.get('accuracy'))} | {_f(r.get('margin'))} | "
                f"{_f(r.get('heldout_accuracy'))} | {_f(r.get('heldout_margin'))} | {_f(r.get('wall_s'), 1)} |"
            )
        out.append("")
    means = tables.get("means", [])
    out += ["## Long-context suite (mean over seeds and examples, 95 % crossed-bootstrap CI)", ""]
    out += _means_table(means, short=False) + [""]
    out += [
        "## Short-context general check (`short_qa`: exact match; `ppl_nll`: NLL per token, lower is better)",
        "",
    ]
    out += _means_table(means, short=True) + [""]
    for base, label in (("none", "no training"), ("random", "the random-head control")):
        rows = tables.get(f"vs_{base}", [])
        if rows:
            out += [f"## Paired difference against {label}", ""] + _diff_table(rows) + [""]
    if timings:
        out += ["## Stage wall times", "", "| stage | seconds |", "|---|---:|"]
        out += [f"| {k} | {v:.1f} |" for k, v in timings.items()] + [""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
