"""The pre-registered RetMask replication (issue 27, ``studies/retmask_replication/PLAN.md``): its per-example
score table, the length-controlled and precision-side rescoring, the primary metric with its crossed bootstrap over
examples and units (seeds, control draws), Holm's correction, and a Markdown report, all from one CSV.

The CSV (``COLUMNS``) has one row per scored example of one evaluated *unit* (a model: untrained, or one DPO run):

- ``model``; ``condition``: ``none``, ``retmask``, ``random`` (layer-matched draws), ``random_out`` (a draw from
  layers without retrieval heads), ``self``, ``top4`` / ``top34`` (dose), or ``masked`` (the untrained model with a
  head set zeroed: what a control removes; ``control_draw`` names the set);
- ``control_draw``: the random draw (``d0`` ...) or the masked set; empty otherwise;
- ``seed`` (DPO), ``pair_seed`` (sampling of the pairs), ``eval_seed`` (the evaluation examples); ``-1`` where a
  seed has no meaning (``none``, ``masked``: no training);
- ``lr``; ``task``, ``length``, ``example`` (index within the cell of that evaluation seed);
- ``score`` (the task's own rule), ``score_len_controlled`` (the prediction cut to the first N words, N the
  untrained model's median answer length on that task, then scored by the same rule), ``token_f1``,
  ``answer_words`` (words in the prediction); empty for units whose predictions are lost;
- ``source``: the run the row comes from.

Several models (the plan's SmolLM2 and its Gemma-3-270M arm) share one table: every contrast is computed within a
model (``render_report`` splits the table by ``model``; ``replication_tables`` refuses rows of two models), and the
gain against retrieval concentration across models (``concentration_table``) is shown only once every arm has at
least two units of RetMask, random-head and self-DPO (PLAN.md section 6).

A unit belongs to the design when its three seeds agree (``seed == pair_seed == eval_seed``); the 2026-12-03 runs
that only changed the DPO shuffle (pairs and examples of seed 0) do not, and are reported apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retmask_interp.core.io import atomic_write_text
from retmask_interp.measure.stats import bootstrap_p, crossed_bootstrap_ci, holm, unit_bootstrap, unit_mean
from retmask_interp.retmask.evaluation import first_words, score_example, token_f1

__all__ = [
    "COLUMNS",
    "PRIMARY_TASKS",
    "CONTRASTS",
    "answer_words",
    "check_table",
    "concentration_table",
    "contrast_table",
    "design_units",
    "gain_units",
    "length_budget",
    "models",
    "read_table",
    "replication_tables",
    "primary_sentences",
    "render_report",
    "report_markdown",
    "rescore",
    "write_table",
]

COLUMNS = (
    "model",
    "condition",
    "control_draw",
    "seed",
    "pair_seed",
    "eval_seed",
    "lr",
    "task",
    "length",
    "example",
    "score",
    "score_len_controlled",
    "token_f1",
    "answer_words",
    "score_first15",
    "source",
)
OPTIONAL = ("score_len_controlled", "token_f1", "answer_words", "score_first15")  # empty without predictions
KEYS = list(COLUMNS[:10])  # model .. example: one row per key
UNIT = ["model", "condition", "control_draw", "seed", "pair_seed", "eval_seed", "lr", "source"]
PRIMARY_TASKS = ("niah", "multi_needle", "rag_qa")
TRAINED = ("retmask", "random", "random_out", "self", "top4", "top34")
# the pre-registered contrasts (PLAN.md section 5): name -> (condition, baseline condition or None for "> 0")
CONTRASTS: dict[str, tuple[str, str | None]] = {
    "H1 retmask - random": ("retmask", "random"),
    "H2 retmask - self": ("retmask", "self"),
    "H3 retmask - untrained": ("retmask", None),
}
# the 2026-12-03 runs as they were designed (seeds = DPO shuffle only, shared pairs and examples)
OLD_DESIGN: dict[str, tuple[str, str | None]] = {
    "retmask - random (d0)": ("retmask", "random"),
    "retmask - untrained": ("retmask", None),
    "random (d0) - untrained": ("random", None),
}
MAIN_MODEL = "smollm2-135m-instruct"  # the plan's model; other models are its arms (section 6)
READY = (
    "retmask",
    "random",
    "self",
)  # conditions every arm needs >= 2 units of before gain meets concentration
SECONDARY_CONTRASTS: dict[str, tuple[str, str | None]] = {
    "random - untrained": ("random", None),
    "self - untrained": ("self", None),
    "random_out - untrained": ("random_out", None),
    "random_out - random": ("random_out", "random"),
    "top4 - untrained": ("top4", None),
    "top34 - untrained": ("top34", None),
}


# -- rescoring ---------------------------------------------------------------------------------------------------
def answer_words(text: str) -> int:
    """Whitespace-separated words of a prediction."""
    return len(text.split())


def rescore(example, prediction: str, n_words: int | None) -> dict[str, float]:
    """The replication's scores of one prediction: ``score`` (``evaluation.score_example``), ``score_len_controlled``
    (the same rule on the first ``n_words`` words; NaN without ``n_words``), ``token_f1`` (against the gold answer;
    multi_needle: against all asked answers joined) and ``answer_words``."""
    answers = list(example.answers)
    gold = [" ".join(answers)] if example.task == "multi_needle" else answers
    cut = score_example(example, first_words(prediction, n_words))["score"] if n_words else math.nan
    return {
        "score": score_example(example, prediction)["score"],
        "score_len_controlled": cut,
        "token_f1": token_f1(prediction, gold),
        "answer_words": float(answer_words(prediction)),
    }


def length_budget(words_by_task: Mapping[str, Sequence[float]]) -> dict[str, int]:
    """N per task: the median number of words of the untrained model's predictions (rounded half up, at least 1)."""
    return {
        t: max(1, int(math.floor(statistics.median(w) + 0.5))) for t, w in words_by_task.items() if len(w)
    }


# -- the table -----------------------------------------------------------------------------------------------------
def check_table(df) -> None:
    """Raise ``ValueError`` unless ``df`` has exactly ``COLUMNS``, each key once and a score everywhere."""
    if tuple(df.columns) != COLUMNS:
        raise ValueError(
            f"the replication table must have exactly the columns {list(COLUMNS)}, got {list(df.columns)}"
        )
    dup = df.duplicated(KEYS)
    if dup.any():
        raise ValueError(f"the replication table repeats {int(dup.sum())} keys ({', '.join(KEYS)})")
    if df["score"].isna().any():
        raise ValueError("the replication table has rows without a score")


def read_table(path: str | Path):
    """The CSV as a typed DataFrame (checked by ``check_table``)."""
    import pandas as pd

    ints = {c: int for c in ("seed", "pair_seed", "eval_seed", "length", "example")}
    strs = {c: str for c in ("model", "condition", "control_draw", "task", "source")}
    df = pd.read_csv(path, dtype=ints | strs | {"lr": float}, keep_default_na=False, na_values={
        c: [""] for c in ("score", *OPTIONAL)
    })  # fmt: skip
    for c in ("score", *OPTIONAL):
        df[c] = df[c].astype(float)
    check_table(df)
    return df


def write_table(df, path: str | Path) -> Path:
    """Write the table atomically, sorted by its keys."""
    check_table(df)
    out = df.sort_values(KEYS, kind="mergesort")
    return atomic_write_text(path, out.to_csv(index=False, float_format="%.10g"))


# -- units and gains -----------------------------------------------------------------------------------------------
def design_units(df):
    """Rows of units in the design (``seed == pair_seed == eval_seed`` for trained units; every untrained and
    masked unit)."""
    trained = df["condition"].isin(TRAINED)
    same = (df["seed"] == df["pair_seed"]) & (df["pair_seed"] == df["eval_seed"])
    return df[~trained | same]


def _cells(tasks: Sequence[str], lengths: Sequence[int]) -> list[tuple[str, int]]:
    return [(t, n) for t in tasks for n in lengths]


def _unit_matrix(g, cells, metric: str) -> np.ndarray | None:
    """``[cells, examples]`` of one unit, or None when it lacks a cell or a value of ``metric``."""
    rows = []
    for task, length in cells:
        c = g[(g["task"] == task) & (g["length"] == length)].sort_values("example")
        if c.empty or c[metric].isna().any():
            return None
        rows.append(c[metric].to_numpy(dtype=float))
    if len({r.size for r in rows}) != 1:
        return None
    return np.stack(rows)


def _baseline(
    df, eval_seed: int, source: str, cells, metric: str
) -> tuple[np.ndarray | None, list[int] | None]:
    """The untrained model's matrix on ``eval_seed``: the one evaluated by the same source if there is one."""
    base = df[(df["condition"] == "none") & (df["eval_seed"] == eval_seed)]
    if base.empty:
        return None, None
    same = base[base["source"] == source]
    g = same if not same.empty else base[base["source"] == sorted(set(base["source"]))[-1]]
    m = _unit_matrix(g, cells, metric)
    ex = sorted(set(g["example"])) if m is not None else None
    return m, ex


def gain_units(
    df, condition: str, cells, metric: str = "score", baseline: bool = True, design: bool = True
) -> list[dict[str, Any]]:
    """Design units of ``condition``: per unit its name, evaluation seed and ``[cells, examples]`` matrix of
    ``metric`` minus the untrained model's on the same examples (``baseline``) or of ``metric`` itself. Units
    without every cell (or without the metric: lost predictions) are left out and listed under ``"missing"``."""
    units = []
    d = design_units(df) if design else df
    d = d[d["condition"] == condition]
    for key, g in d.groupby(UNIT, sort=True):
        unit = dict(zip(UNIT, key))
        name = f"{condition}:{unit['control_draw'] + ':' if unit['control_draw'] else ''}s{unit['seed']}"
        if condition == "none":
            name = f"none:e{unit['eval_seed']}"
        m = _unit_matrix(g, cells, metric)
        rec = {"unit": name, "eval_seed": int(unit["eval_seed"]), "source": unit["source"], "values": m}
        if m is not None and baseline:
            b, _ = _baseline(df, int(unit["eval_seed"]), unit["source"], cells, metric)
            rec["values"] = None if b is None or b.shape != m.shape else m - b
        units.append(rec)
    return units


def _summary(draws: np.ndarray, estimate: float, alpha: float = 0.05) -> dict[str, float]:
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high), "p": bootstrap_p(draws)}


def contrast_table(
    df,
    contrasts: Mapping[str, tuple[str, str | None]],
    cells,
    metric: str = "score",
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    design: bool = True,
    baseline: bool = True,
) -> list[dict[str, Any]]:
    """Each contrast's estimate (gain of a condition, or the difference of two gains), 95 % crossed-bootstrap CI and
    two-sided bootstrap p, with Holm's adjusted p over the contrasts given. A contrast without units on a side is
    listed with NaN; ``status`` says "tested" (>= 2 units a side), "preliminary (one unit)" or "not run"."""
    groups: dict[str, list] = {}
    units: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for cond in sorted({c for pair in contrasts.values() for c in pair if c}):
        us = gain_units(df, cond, cells, metric, baseline=baseline, design=design)
        ok = [u for u in us if u["values"] is not None]
        missing[cond] = [u["unit"] for u in us if u["values"] is None]
        units[cond] = [u["unit"] for u in ok]
        if ok:
            groups[cond] = [(u["eval_seed"], u["values"]) for u in ok]
    draws = unit_bootstrap(groups, n_resamples, seed) if groups else {}
    rows = []
    for name, (cond, base) in contrasts.items():
        row: dict[str, Any] = {"contrast": name, "metric": metric, "units": units.get(cond, [])}
        row["baseline_units"] = units.get(base, []) if base else []
        row["missing"] = missing.get(cond, []) + (missing.get(base, []) if base else [])
        if cond not in groups or (base and base not in groups):
            row |= {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
            row["status"] = "not run"
        else:
            est = unit_mean(groups[cond]) - (unit_mean(groups[base]) if base else 0.0)
            d = draws[cond] - (draws[base] if base else 0.0)
            row |= _summary(d, est)
            n = min(len(groups[cond]), len(groups[base]) if base else len(groups[cond]))
            row["status"] = "tested" if n >= 2 else "preliminary (one unit)"
        rows.append(row)
    adj = holm([r["p"] for r in rows])
    for r, a in zip(rows, adj):
        r["p_holm"] = float(a)
    return rows


def _means(df, cells, metric: str) -> list[dict[str, Any]]:
    """Mean of ``metric`` per design condition, task and length (over units and examples), with the units."""
    d = design_units(df)
    d = d[d["condition"] != "masked"]
    out = []
    for (cond, task, length), g in d.groupby(["condition", "task", "length"], sort=True):
        if (task, int(length)) not in cells:
            continue
        v = g[metric].dropna()
        n_units = g.groupby(UNIT).ngroups
        mean = float(v.mean()) if len(v) else math.nan
        out.append({"condition": cond, "task": task, "length": int(length), "units": n_units, "mean": mean})
    return out


def _harm(df, n_resamples: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """What each head set removes: per (source, task, head set) the untrained model's score with the set zeroed
    (``condition == "masked"``) against the unmasked model on the same examples (the masked set ``none`` of the same
    source and task, else the untrained evaluation on eval seed 0), with a paired bootstrap CI over the examples."""
    out: list[dict[str, Any]] = []
    masked = df[df["condition"] == "masked"]
    for (source, task), m in masked.groupby(["source", "task"], sort=True):
        ref = m[m["control_draw"] == "none"]
        if ref.empty:
            ref = df[(df["condition"] == "none") & (df["task"] == task) & (df["eval_seed"] == 0)]
        base = ref.set_index(["length", "example"])["score"]
        for name, g in m[m["control_draw"] != "none"].groupby("control_draw", sort=True):
            v = g.set_index(["length", "example"])["score"]
            common = v.index.intersection(base.index)
            if common.empty:
                continue
            diff = (v.loc[common] - base.loc[common]).to_numpy(dtype=float)
            low, high = crossed_bootstrap_ci(diff[None, :], n_resamples, seed)
            out.append(
                {"source": source, "task": task, "heads": name, "examples": int(len(common)),
                 "masked": float(v.loc[common].mean()), "unmasked": float(base.loc[common].mean()),
                 "delta": float(diff.mean()), "ci_low": low, "ci_high": high}
            )  # fmt: skip
    return out


def replication_tables(
    df,
    *,
    tasks: Sequence[str] = PRIMARY_TASKS,
    lengths: Sequence[int] = (2048, 4096, 7000),
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every table of the report for one model, from its rows of the CSV alone (``report_markdown`` prints them)."""
    check_table(df)
    if df["model"].nunique() > 1:
        raise ValueError(
            f"replication_tables takes one model's rows, got {sorted(set(df['model']))}: pass df[df.model == M] "
            "(render_report splits the table by model)"
        )
    cells = _cells(tasks, lengths)
    out: dict[str, Any] = {"cells": [list(c) for c in cells], "n_resamples": n_resamples}
    out["primary"] = contrast_table(df, CONTRASTS, cells, n_resamples=n_resamples, seed=seed)
    out["secondary"] = {
        metric: contrast_table(
            df, CONTRASTS | SECONDARY_CONTRASTS, cells, metric, n_resamples=n_resamples, seed=seed
        )
        for metric in ("score", "score_len_controlled", "token_f1", "answer_words")
    }
    per_cell = []
    for name, pair in CONTRASTS.items():
        rows = [contrast_table(df, {name: pair}, [c], n_resamples=n_resamples, seed=seed)[0] for c in cells]
        for r, a in zip(rows, holm([r["p"] for r in rows])):
            r["p_holm_cells"] = float(a)
        for (task, length), r in zip(cells, rows):
            r |= {"task": task, "length": length}
        per_cell += rows
    out["per_cell"] = per_cell
    out["means"] = _means(df, cells, "score")
    out["answer_words"] = _means(df, cells, "answer_words")
    general = [("short_qa", 0)]
    out["general"] = {
        m: contrast_table(df, {f"{c} - untrained": (c, None) for c in TRAINED}, general, m, n_resamples=n_resamples,
                          seed=seed) for m in ("score",)
    }  # fmt: skip
    out["harm"] = _harm(df, n_resamples, seed)
    old = df[df["source"] == "2026-12-03"]
    out["old_design"] = (
        contrast_table(old, OLD_DESIGN, cells, n_resamples=n_resamples, seed=seed, design=False)
        if len(old)
        else []
    )
    # exploratory: the old units whose predictions survive, RetMask against the random control on the same examples
    prim = old[old["task"].isin([t for t, _ in cells])]
    with_preds = prim.groupby(UNIT).filter(lambda g: bool(g["answer_words"].notna().all()))
    out["old_design_length"] = []
    if len(with_preds):
        for metric in ("score", "score_first15", "token_f1", "answer_words"):
            row = contrast_table(with_preds, {"retmask - random (d0)": ("retmask", "random")}, cells, metric,
                                 n_resamples=n_resamples, seed=seed, design=False, baseline=False)[0]  # fmt: skip
            out["old_design_length"].append(row)
    for r in out["old_design"] + out["old_design_length"]:  # their seeds share pairs, examples and the draw
        r["status"] = {"tested": "shuffle seeds only"}.get(r["status"], r["status"])
    out["units"] = sorted(
        {
            f"{r.condition}|{r.control_draw}|s{r.seed}|p{r.pair_seed}|e{r.eval_seed}|{r.source}"
            for r in df[
                ["condition", "control_draw", "seed", "pair_seed", "eval_seed", "source"]
            ].itertuples()
        }
    )
    return _clean(out)


def _clean(obj: Any) -> Any:
    """NaN as None, numpy scalars as Python numbers (JSON-ready, and what a reread JSON compares equal to)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def models(df) -> list[str]:
    """The models of a table, the plan's main model first."""
    return sorted(set(df["model"]), key=lambda m: (m != MAIN_MODEL, m))


def unit_counts(tables: Mapping[str, Any]) -> dict[str, int]:
    """Design units with every primary cell, per condition of ``READY`` (from a model's primary contrasts)."""
    rows = {r["contrast"]: r for r in tables["primary"]}
    return {
        "retmask": len(rows["H3 retmask - untrained"]["units"]),
        "random": len(rows["H1 retmask - random"]["baseline_units"]),
        "self": len(rows["H2 retmask - self"]["baseline_units"]),
    }


def concentration_table(
    arms: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Mapping[str, Any]],
    organisms: Sequence[Mapping[str, Any]] = (),
    need: int = 2,
) -> dict[str, Any]:
    """Gain against retrieval concentration across models. ``arms``: each real model's tables
    (``replication_tables``; an arm not run yet is absent); ``metrics``: the concentration (``gini``,
    ``effective_heads``, ``n_ge_0.1`` of its head list) of every real model the plan compares; ``organisms``: rows of the organism study (model, gini, effective_heads, n_ge_0.1, gain,
    ci_low, ci_high, source). The gains are shown only when every arm has ``need`` units of each ``READY``
    condition; ``ready`` and ``counts`` say where the arms stand."""
    counts = {m: unit_counts(arms[m]) if m in arms else dict.fromkeys(READY, 0) for m in metrics}
    ready = bool(counts) and all(min(c.values()) >= need for c in counts.values())
    rows = []
    for m in metrics:
        t = arms.get(m)
        row: dict[str, Any] = {
            "model": m,
            **{k: metrics[m][k] for k in ("gini", "effective_heads", "n_ge_0.1")},
        }
        row["source"] = "this replication: pooled primary cells, design units"
        if ready and t is not None:
            by = {r["contrast"]: r for r in t["primary"]}
            for key, name in (("gain", "H3 retmask - untrained"), ("vs_random", "H1 retmask - random")):
                row |= {key: by[name]["estimate"], f"{key}_ci_low": by[name]["ci_low"],
                        f"{key}_ci_high": by[name]["ci_high"]}  # fmt: skip
        rows.append(row)
    for o in organisms:
        rows.append({k: o.get(k) for k in ("model", "gini", "effective_heads", "n_ge_0.1", "source")}
                    | ({"gain": o["gain"], "gain_ci_low": o["ci_low"], "gain_ci_high": o["ci_high"]} if ready else {}))  # fmt: skip
    return _clean({"ready": ready, "need": need, "counts": counts, "rows": rows})


def _interval(r: Mapping[str, Any], key: str) -> str:
    """``r[key]`` with its 95 % interval (``key_ci_low`` / ``key_ci_high``), or a dash where it is absent."""
    if r.get(key) is None:
        return "–"
    return (
        f"{_f(r[key], sign=True)} [{_f(r[key + '_ci_low'], sign=True)}, {_f(r[key + '_ci_high'], sign=True)}]"
    )


def _concentration_lines(c: Mapping[str, Any]) -> list[str]:
    out = []
    if not c["ready"]:
        where = "; ".join(
            f"{m}: " + ", ".join(f"{k} {v}" for k, v in n.items()) for m, n in c["counts"].items()
        )
        out += [
            f"Withheld, as the plan says, until every real-model arm has at least {c['need']} design units of "
            f"RetMask, random-head and self-DPO ({where}). The concentration of each model's retrieval heads (the "
            "table's x axis):",
            "",
        ]
    out += ["| model | Gini | effective heads | heads >= 0.1 | gain (RetMask - untrained) [95 % CI] | "
            "RetMask - random [95 % CI] | source |", "|---|---:|---:|---:|---|---|---|"]  # fmt: skip
    for r in c["rows"]:
        out.append(f"| {r['model']} | {_f(r['gini'])} | {_f(r['effective_heads'], 1)} | {r['n_ge_0.1']} | "
                   f"{_interval(r, 'gain')} | {_interval(r, 'vs_random')} | {r['source']} |")  # fmt: skip
    return out


def _arm_lines(model: str, t: Mapping[str, Any]) -> list[str]:
    """A further model's primary and secondary (score) contrasts (one line while none has run) and its harm table
    (the plan's section 6 arm)."""
    n = int(t["n_resamples"])
    out = [f"Units: {len(t['units'])} ({', '.join(f'`{u}`' for u in t['units'])}).", ""]
    if all(r["status"] == "not run" for r in t["primary"] + t["secondary"]["score"]):
        out += [
            "No trained unit of this model is in the table yet: every contrast of the plan is not run.",
            "",
        ]
    else:
        out += (
            ["Primary metric (the plan's, within this model):", ""] + _contrast_lines(t["primary"], n) + [""]
        )
        out += primary_sentences(t) + [""]
        out += ["Secondary (score):", ""] + _contrast_lines(t["secondary"]["score"], n) + [""]
    if t["harm"]:
        out += ["What each head set removes:", "",
                "| source | task | heads | examples | masked | unmasked | Δ | 95 % CI |", "|---|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in t["harm"]:
            out.append(f"| {r['source']} | {r['task']} | {r['heads']} | {r['examples']} | {_f(r['masked'])} | "
                       f"{_f(r['unmasked'])} | {_f(r['delta'], sign=True)} | [{_f(r['ci_low'], sign=True)}, "
                       f"{_f(r['ci_high'], sign=True)}] |")  # fmt: skip
    return out


# -- Markdown ------------------------------------------------------------------------------------------------------
def _f(x: Any, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(x: Any, n: int) -> str:
    if x is None:
        return "–"
    return f"< {1 / n:.0e}" if x == 0 else f"{x:.3f}"


def _contrast_lines(rows: Iterable[Mapping[str, Any]], n: int, holm_key: str = "p_holm") -> list[str]:
    lines = [
        "| contrast | estimate | 95 % CI | p | p (Holm) | units | status |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        units = ", ".join(r["units"]) + (
            f" vs {', '.join(r['baseline_units'])}" if r["baseline_units"] else ""
        )
        lines.append(
            f"| {r['contrast']} | {_f(r['estimate'], sign=True)} | [{_f(r['ci_low'], sign=True)}, "
            f"{_f(r['ci_high'], sign=True)}] | {_p(r['p'], n)} | {_p(r.get(holm_key), n)} | {units or '–'} | "
            f"{r['status']} |"
        )
    return lines


def primary_sentences(tables: Mapping[str, Any]) -> list[str]:
    """One line per pre-registered contrast, in words and numbers (what the report's summary says)."""
    n = int(tables["n_resamples"])
    out = []
    for r in tables["primary"]:
        if r["status"] == "not run":
            out.append(f"- {r['contrast']}: not run (no unit on one side).")
            continue
        side = "above" if r["ci_low"] > 0 else "below" if r["ci_high"] < 0 else "includes"
        verdict = {"above": "the interval lies above 0", "below": "the interval lies below 0",
                   "includes": "the interval includes 0"}[side]  # fmt: skip
        units = f"{len(r['units'])} unit(s)" + (
            f" against {len(r['baseline_units'])}" if r["baseline_units"] else ""
        )
        out.append(
            f"- {r['contrast']}: {_f(r['estimate'], sign=True)} [{_f(r['ci_low'], sign=True)}, "
            f"{_f(r['ci_high'], sign=True)}], Holm-adjusted p {_p(r['p_holm'], n)}; {verdict}; {units}; "
            f"{r['status']}."
        )
    return out


def report_markdown(tables: Mapping[str, Any], *, title: str, preamble: Sequence[str] = (),
                    after_primary: Sequence[str] = (),
                    sections: Sequence[tuple[str, Sequence[str]]] = ()) -> str:  # fmt: skip
    """The report: preamble, the primary contrasts first (table and sentences), ``after_primary`` (the study's
    notes: deviations, what was not run), then the secondary tables, then extra ``sections``."""
    n = int(tables["n_resamples"])
    cells = ", ".join(f"{t}@{n_}" for t, n_ in tables["cells"])
    out = [f"# {title}", "", *preamble, ""]
    out += ["## Primary metric (pre-registered)", ""]
    out += [
        f"Gain = mean over the {len(tables['cells'])} pooled cells ({cells}) of score minus the untrained model's "
        f"score on the same examples, averaged over a condition's units; 95 % crossed-bootstrap CI ({n:,} resamples "
        "over units and examples); two-sided bootstrap p; Holm over the three contrasts.",
        "",
    ]
    out += _contrast_lines(tables["primary"], n) + [""]
    out += primary_sentences(tables) + [""]
    out += list(after_primary) + [""]
    labels = {
        "score": "score (all pre-registered and secondary contrasts; Holm over this table)",
        "score_len_controlled": "length-controlled score (first N words, N = untrained median per task)",
        "token_f1": "token F1",
        "answer_words": "answer length in words (difference from the untrained model)",
    }
    for metric, rows in tables["secondary"].items():
        out += [f"## Secondary: {labels[metric]}", ""] + _contrast_lines(rows, n) + [""]
    out += ["## Per cell (score; Holm over the 9 cells within each contrast)", ""]
    out += [
        "| contrast | task | length | estimate | 95 % CI | p | p (Holm, cells) | status |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for r in tables["per_cell"]:
        out.append(
            f"| {r['contrast']} | {r['task']} | {r['length']} | {_f(r['estimate'], sign=True)} | "
            f"[{_f(r['ci_low'], sign=True)}, {_f(r['ci_high'], sign=True)}] | {_p(r['p'], n)} | "
            f"{_p(r['p_holm_cells'], n)} | {r['status']} |"
        )
    out += ["", "## Means per condition (design units; score and answer words)", ""]
    out += [
        "| condition | task | length | units | mean score | mean answer words |",
        "|---|---|---:|---:|---:|---:|",
    ]
    words = {(r["condition"], r["task"], r["length"]): r["mean"] for r in tables["answer_words"]}
    for r in tables["means"]:
        w = words.get((r["condition"], r["task"], r["length"]))
        out.append(
            f"| {r['condition']} | {r['task']} | {r['length']} | {r['units']} | {_f(r['mean'])} | {_f(w, 1)} |"
        )
    out += ["", "## General ability (short_qa exact match, gain against the untrained model)", ""]
    out += _contrast_lines(tables["general"]["score"], n) + [""]
    if tables["harm"]:
        out += [
            "## What each head set removes (the untrained model with the set zeroed, on the same examples)",
            "",
        ]
        out += [
            "| source | task | heads | examples | masked | unmasked | Δ | 95 % CI |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in tables["harm"]:
            out.append(
                f"| {r['source']} | {r['task']} | {r['heads']} | {r['examples']} | {_f(r['masked'])} | "
                f"{_f(r['unmasked'])} | {_f(r['delta'], sign=True)} | [{_f(r['ci_low'], sign=True)}, "
                f"{_f(r['ci_high'], sign=True)}] |"
            )
        out.append("")
    if tables.get("old_design"):
        out += [
            "## The 2026-12-03 runs as designed then (not design units: their seeds changed only the DPO shuffle; "
            "pairs, examples and the control draw shared)",
            "",
        ]
        out += _contrast_lines(tables["old_design"], n) + [""]
    if tables.get("old_design_length"):
        out += [
            "## Exploratory, not pre-registered: the 2026-12-03 predictions that survive, on their first 15 words",
            "",
            "RetMask against the random control (d0) on the same examples, over the units whose predictions are in "
            "that run's state (the untrained model's are lost, so no gain against it and no plan-defined N; 15 words "
            "is the cut of the issue's re-analysis). Rows: full score, score of the first 15 words, token F1, answer "
            "words. Not a test of the plan.",
            "",
        ]
        rows = [dict(r, contrast=f"{r['contrast']}: {r['metric']}") for r in tables["old_design_length"]]
        out += _contrast_lines(rows, n) + [""]
    for head, lines in sections:
        out += [f"## {head}", "", *lines, ""]
    return "\n".join(out)


def render_report(
    df,
    notes: str | Path,
    *,
    timings: Mapping[str, float] | None = None,
    length_budget: Mapping[str, Any] | None = None,
    n_resamples: int = 10_000,
    title: str = "RetMask replication on SmolLM2-135M-Instruct (issue 27)",
    concentration: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """``(tables, README text)`` of the replication from its table alone, the study's notes (a Markdown file or
    text, placed after the primary result), and optionally the GPU seconds per stage, the length budget (per
    model) and the concentration inputs (``{"models": {model: metrics}, "organisms": [rows]}``). The main model's
    tables are the top level; each further model's are under ``arms``."""
    names = models(df) or [MAIN_MODEL]
    tables = replication_tables(df[df["model"] == names[0]], n_resamples=n_resamples)
    arms = {m: replication_tables(df[df["model"] == m], n_resamples=n_resamples) for m in names[1:]}
    if arms:
        tables["arms"] = arms
    text = Path(notes).read_text(encoding="utf-8") if isinstance(notes, Path) else notes
    units = tables["units"]
    preamble = [
        "Generated by `python studies/retmask_replication/build.py` from `scores.csv` (one row per example and "
        "evaluated model); `studies/retmask_replication/test_report.py` recomputes every number below from it. The "
        "plan: `PLAN.md` (landed before any new GPU run).",
        "",
        f"Evaluated units in the table: {len(units)} (condition | draw | DPO seed | pair seed | eval seed | source):",
        "",
        *[f"- `{u}`" for u in units],
    ]
    sections: list[tuple[str, Sequence[str]]] = []
    for m, t in arms.items():
        sections.append((f"{m}: the plan's section 6 arm", _arm_lines(m, t)))
    if concentration:
        every = {names[0]: tables, **arms}
        tables["concentration"] = concentration_table(
            every, concentration["models"], concentration.get("organisms", ())
        )
        sections.append(
            ("Gain against concentration (PLAN.md section 6)", _concentration_lines(tables["concentration"]))
        )
    budgets = {m: b for m, b in (length_budget or {}).items() if b}
    if budgets:
        sections.append(
            (
                "Length budget",
                [f"N (words) per task, {m}'s untrained median answer length on eval seed 0: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(b.items())) for m, b in budgets.items()],
            )
        )  # fmt: skip
    if timings:
        lines = ["| stage | seconds |", "|---|---:|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        sections.append(("GPU wall time per stage (stage markers of this study's runs)", lines))
    return tables, report_markdown(tables, title=title, preamble=preamble, after_primary=text.splitlines(),
                                   sections=sections)  # fmt: skip
