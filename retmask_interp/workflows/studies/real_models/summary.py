"""The real-model study's summary (``summary.json``, ``summary.md``, rebuilt from the stage files at the end of every
run) and ``load_study_results``, a study directory in the form the figures take."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json, atomic_write_text
from retmask_interp.workflows.studies.real_models.config import (
    StudyConfig,
    detection_conditions,
    fingerprint,
    grid_lengths,
    tag,
)
from retmask_interp.workflows.studies.real_models.masking import read_csv

__all__ = ["load_study_results", "write_summary"]


def load_study_results(out_dir: str | Path, name: str | None = None):
    """A study directory (finished or not) as ``workflows.experiments.ModelResults``, the form the figures take:
    the primary head list, the zero-mode masking outcomes (from ``masking/zero.csv`` while the other modes are not
    done) and the top-k curve (while that stage is unfinished, over the ks whose conditions are all done;
    ``None`` where none is). ``masking_outcomes.csv`` may be gzipped
    (``.csv.gz``), as in ``studies/real_models/``."""
    from retmask_interp.core.io import InputError
    from retmask_interp.heads.scores import load_head_scores
    from retmask_interp.workflows.experiments import ModelResults

    out = Path(out_dir)
    cfg = _read_json(out / "config.json")
    if cfg is None or not (out / "heads.json").exists():
        raise InputError(
            f"{out} is not a real-model study (no config.json / heads.json); make one with "
            "`retmask study real-model --out DIR`"
        )
    heads = load_head_scores(out / "heads.json")
    name = name or cfg.get("model_name") or heads.model or out.name
    heads.model = name

    def first(*names):
        return next((out / n for n in names if (out / n).exists()), None)

    niah = topk = None
    # a masking stage cut short keeps each finished mode in masking/MODE.csv: its zero mode is drawn too
    path = first("masking_outcomes.csv", "masking_outcomes.csv.gz", "masking/zero.csv")
    if path is not None:
        df = read_csv(path)
        niah = df[df["mode"] == "zero"].reset_index(drop=True) if "mode" in df else df
    path = first("topk_curve.csv")
    if path is not None:
        topk = read_csv(path)
    elif (partial := first("stages/topk.units.jsonl", "topk_outcomes.partial.jsonl")) is not None:
        # a top-k stage cut short: the ks whose every condition is finished are drawn
        from retmask_interp.measure.outcomes import curve_from_outcomes, finished_topk_outcomes

        done = finished_topk_outcomes(partial, int(cfg.get("topk_seeds") or 5))
        topk = None if done is None else curve_from_outcomes(done)
    return ModelResults(name, heads, niah, topk, heads.above(float(cfg.get("threshold", 0.1))))


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def write_summary(
    out: Path, cfg: StudyConfig, named: dict[str, Any], timings: dict[str, float]
) -> dict[str, Any]:
    """``summary.json`` and ``summary.md`` from the stage files present in ``out``; ``timings``: seconds per stage
    (a directory made before the stage runner keeps its own in ``timings.json``, which wins)."""
    ptag = tag(*detection_conditions(cfg)[0])
    detection = {
        name: {
            "num_samples": hs.num_samples,
            "num_counted": hs.num_counted,
            "counted_rate": (hs.num_counted / hs.num_samples) if hs.num_samples else None,
            "n_heads_ge_threshold": len(hs.above(cfg.threshold)),
            "top_heads": [[a, b, round(s, 4)] for a, b, s in hs.ranked()[:10]],
        }
        for name, hs in named.items()
    }
    summary: dict[str, Any] = {
        "model": cfg.model_name or cfg.model,
        "primary_condition": ptag,
        "threshold": cfg.threshold,
        "lengths": grid_lengths(cfg),
        "detection": detection,
        "retrieval_heads": [list(h) for h in named[ptag].above(cfg.threshold)] if ptag in named else [],
        "stability": (_read_json(out / "stability.json") or {}).get("pairs", []),
        "timings_s": timings | (_read_json(out / "timings.json") or {}),
        "config": fingerprint(cfg),
    }
    if (out / "masking_summary.csv").exists():
        ms = read_csv(out / "masking_summary.csv")
        summary["masking"] = [
            {k: (_num(v) if k in ("mean", "ci_low", "ci_high") else v) for k, v in r.items()}
            for r in ms[ms.metric == "success"].to_dict("records")
        ]
    if (out / "topk_curve.csv").exists():
        tc = read_csv(out / "topk_curve.csv")
        summary["topk"] = tc[["k", "kind", "success", "ci_low", "ci_high", "n_seeds"]].to_dict("records")
    if (out / "single_head_effects.json").exists():
        summary["single_head_effects"] = _read_json(out / "single_head_effects.json")
    if (out / "compensation.csv").exists():
        comp = read_csv(out / "compensation.csv")
        top = comp[comp.role == "compensates"].head(10)
        summary["compensation"] = {
            "roles": comp.role.value_counts().to_dict(),
            "top_compensating": top[["layer", "head", "delta_span_mass"]].to_dict("records"),
        }
    org = _read_json(out / "organisation.json")
    if org and ptag in org:
        keep = ("n_ge_0.1", "gini", "effective_heads", "top10_share", "span_layer_min", "span_layer_max")
        summary["organisation"] = {k: org[ptag].get(k) for k in keep}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", _markdown(summary))
    return summary


def _f(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _markdown(s: dict[str, Any]) -> str:
    lines = [f"# Real-model study: {s['model']}", "", f"Primary condition: `{s['primary_condition']}`; "
             f"lengths {s['lengths']}; threshold {s['threshold']}.", "", "## Detection", "",
             "| condition | samples | counted | rate | heads >= threshold | top 5 heads |", "|---|---|---|---|---|---|"]  # fmt: skip
    for cond, d in s["detection"].items():
        top = ", ".join(f"{a}.{b} ({v:.2f})" for a, b, v in d["top_heads"][:5])
        lines.append(
            f"| {cond} | {d['num_samples']} | {d['num_counted']} | {_f(d['counted_rate'], '.2f')} | "
            f"{d['n_heads_ge_threshold']} | {top} |"
        )
    if s["stability"]:
        lines += ["", "## Stability against the primary ranking", "",
                  "| condition | Spearman | top-5 overlap | top-10 overlap | top-20 overlap |", "|---|---|---|---|---|"]  # fmt: skip
        for p in s["stability"]:
            lines.append(
                f"| {p['condition']} | {_f(p.get('spearman'))} | {p.get('top5_overlap')} | "
                f"{p.get('top10_overlap')} | {p.get('top20_overlap')} |"
            )
    if "masking" in s:
        lines += ["", "## NIAH success under masking (mean, 95% CI)", "",
                  "| mode | condition | success | CI | samples | seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in s["masking"]:
            lines.append(
                f"| {r['mode']} | {r['kind']} | {_f(r['mean'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                f"{r['n_samples']} | {r['n_seeds']} |"
            )
    if "topk" in s:
        lines += [
            "",
            "## Top-k curve (zero mode)",
            "",
            "| k | kind | success | CI | seeds |",
            "|---|---|---|---|---|",
        ]
        for r in s["topk"]:
            lines.append(
                f"| {r['k']} | {r['kind']} | {_f(r['success'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                f"{r['n_seeds']} |"
            )
    if "single_head_effects" in s:
        e = s["single_head_effects"]
        lines += ["", "## Attention", "", f"Single-head masking effect vs retrieval score: Spearman "
                  f"{_f(e.get('spearman_score_effect'))} (baseline answer log-prob {_f(e.get('baseline_logprob'))}, "
                  f"{e.get('n_samples')} samples)."]  # fmt: skip
    if "compensation" in s:
        c = s["compensation"]
        top = ", ".join(
            f"{r['layer']}.{r['head']} (+{r['delta_span_mass']:.3f})" for r in c["top_compensating"]
        )
        lines += ["", f"Roles when the retrieval heads are masked: {c['roles']}. Top compensating heads "
                  f"(needle-span attention mass up): {top or 'none'}."]  # fmt: skip
    if "organisation" in s:
        lines += ["", "## Organisation (primary)", "", "```", json.dumps(s["organisation"]), "```"]
    lines += ["", "## Timings (s)", "", "```", json.dumps({k: round(v, 1) for k, v in s["timings_s"].items()}),
              "```", ""]  # fmt: skip
    return "\n".join(lines)
