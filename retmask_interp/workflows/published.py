"""Readers of published data for the figures: the published retrieval scores, the DuoAttention gates matched to
them, and the RetMask experiment's gains."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retmask_interp.heads.scores import HeadScores

__all__ = ["DUO_MATCHES", "duo_pairs", "load_gain_results", "published_head_scores"]

log = logging.getLogger(__name__)


def _data_root(shared: str | Path) -> Path:
    """Accept the data directory itself (holding ``head_scores/``) or its parent (``shared/``)."""
    p = Path(shared).expanduser()
    for cand in (p, p / "data"):
        if (cand / "head_scores").is_dir():
            return cand
    raise FileNotFoundError(
        f"{p} holds no head_scores/ directory; give the published data path (e.g. ../shared/data)"
    )


def published_head_scores(shared: str | Path) -> dict[str, dict[str, HeadScores]]:
    """Published retrieval scores under ``<shared>/head_scores/<group>/*.json`` (Wu et al.'s format), as
    ``{group: {model: HeadScores}}``, groups and models sorted by name."""
    from retmask_interp.heads.scores import load_head_scores

    root = _data_root(shared) / "head_scores"
    out: dict[str, dict[str, HeadScores]] = {}
    for group in sorted(d for d in root.iterdir() if d.is_dir()):
        models = {p.stem: load_head_scores(p) for p in sorted(group.glob("*.json"))}
        if models:
            out[group.name] = models
    return out


# model label -> (score file under head_scores/, DuoAttention model directory under head_patterns/duo_attention/)
DUO_MATCHES = {
    "Llama-3.1-8B-Instruct": ("retmask2026/Llama-3.1-8B-Instruct.json", "Meta-Llama-3.1-8B-Instruct"),
    "Mistral-7B-v0.2": ("wu2024/Mistral-7B-v0.2-hf.json", "Mistral-7B-Instruct-v0.2"),
}


def duo_pairs(shared: str | Path) -> dict[str, tuple[HeadScores, HeadScores]]:
    """For each model with both a published retrieval-score file and DuoAttention gates: ``(retrieval scores
    reduced to KV heads by the max over each group, DuoAttention gates)``, both ``[layers, KV heads]``.
    (Mistral: Wu et al. scored the base v0.2 model, DuoAttention the Instruct v0.2 model.)"""
    from retmask_interp.heads.formats import kv_head_scores, load_duo_attention
    from retmask_interp.heads.scores import load_head_scores

    root = _data_root(shared)
    out = {}
    for label, (score_file, duo_dir) in DUO_MATCHES.items():
        scores, duo = root / "head_scores" / score_file, root / "head_patterns" / "duo_attention" / duo_dir
        if not (scores.exists() and duo.exists()):
            log.info("no %s pair for %s: skipped", "DuoAttention" if scores.exists() else "score file", label)
            continue
        gates = load_duo_attention(duo, group_size=1)
        hs = load_head_scores(scores)
        kv = kv_head_scores(hs, hs.num_heads // gates.num_heads, reduce="max")
        kv.model, gates.model = f"{label} retrieval score", f"{label} DuoAttention gate"
        out[label] = (kv, gates)
    return out


def _gain_records(obj: Any, source: Path) -> list[dict]:
    """Records ``{"model", "condition", "gain", ...}`` of any accepted shape (see ``load_gain_results``); ``[]``
    for JSON of another shape (not a results file). A file of the experiment script's shape with malformed
    entries raises ``ValueError`` naming it."""
    if isinstance(obj, Mapping) and isinstance(
        obj.get("organisms"), Mapping
    ):  # studies/organism_retmask/retmask_experiment.py
        rows = []
        for name, org in obj["organisms"].items():
            if not isinstance(org, Mapping) or not isinstance(org.get("conditions") or {}, Mapping):
                raise ValueError(f"{source}: organisms[{name!r}] is not an object with a 'conditions' object")
            extra = dict(org.get("metrics") or {}) | {"weights_sha256": org.get("weights_sha256")}
            for cond, res in (org.get("conditions") or {}).items():
                if not isinstance(res, Mapping):
                    raise ValueError(f"{source}: organisms[{name!r}].conditions[{cond!r}] is not an object")
                by_task = res.get("vs_none_by_task", [])
                pooled = [r for r in by_task if isinstance(r, Mapping) and r.get("task") == "all"]
                ci = {k: pooled[0][k] for k in ("ci_low", "ci_high") if pooled and k in pooled[0]}
                if "gain" in res:
                    rows.append(extra | {"model": name, "condition": cond, "gain": res["gain"]} | ci)
        return rows
    if isinstance(obj, Mapping):
        obj = obj.get("models", obj.get("results"))
    if not isinstance(obj, list):
        return []
    keep = [r for r in obj if isinstance(r, Mapping) and "model" in r and ("gain" in r or "delta" in r)]
    return [{"condition": "retmask", **r, "gain": r.get("gain", r.get("delta"))} for r in keep]


def load_gain_results(path: str | Path | None):
    """The RetMask experiment's gains as a DataFrame ``model, condition, gain[, ci_low, ci_high, gini, ...]``, or
    ``None`` when there are none. ``path``: a JSON file, or a directory whose ``*.json`` files are tried in name
    order (the first holding gains wins; files that are not JSON or hold no gains are passed over). Shapes: the
    ``organisms`` JSON of ``studies/organism_retmask/retmask_experiment.py`` (``studies/organism_retmask/experiment_results.json``: a row per organism
    and trained condition, with its metrics and the pooled paired-bootstrap CI), or records
    ``[{"model": ..., "gain": ...}, ...]`` (``delta`` is read as ``gain``; ``condition`` defaults to ``retmask``),
    bare or under a ``models`` / ``results`` key. A file named directly that is not JSON or holds no gains raises
    ``ValueError``; so does a results file with malformed entries (in a directory too)."""
    import pandas as pd

    p = Path(path) if path is not None else None
    named = p is not None and p.is_file()
    files = [] if p is None else sorted(p.glob("*.json")) if p.is_dir() else [p] if named else []
    for f in files:
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:  # not a JSON file: not a results file
            if named:
                raise ValueError(f"{f} is not a JSON file ({err}); give the RetMask results JSON") from err
            continue
        records = _gain_records(obj, f)
        if records:
            log.info("RetMask gains (%d rows) from %s", len(records), f)
            df = pd.DataFrame(records)
            df.attrs["source"] = f.name
            return df
        if named:
            raise ValueError(
                f"{f} holds no RetMask gains: expected the 'organisms' JSON of studies/organism_retmask/retmask_experiment.py or "
                'records [{"model": ..., "gain": ...}] (bare or under "models" / "results")'
            )
    return None
