"""The end-to-end demo (``retmask demo``): detect retrieval heads, mask them, measure NIAH success.

On the embedded organism it runs on 2 CPU cores in a few minutes: detection on a held-out NIAH grid (synthetic
haystack and needles from the *eval* split, never seen in training), the head list, a layer x head heatmap, NIAH
success unmasked / with the retrieval heads masked (``zero`` mode, score >= threshold) / with as many random
non-retrieval heads masked (several seeds), a Markdown report and ``summary.json``.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retmask_interp.core.io import atomic_write_json, atomic_write_text, refuse_overwrite
from retmask_interp.core.options import option
from retmask_interp.core.ranges import FINITE, POSITIVE_INT, check_fields

__all__ = ["DemoConfig", "MaskingRun", "detect_and_mask", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    model: str = "organism"
    device: str = "auto"
    dtype: str = "auto"
    threshold: float = option(0.1, range=FINITE)
    seeds: int = option(5, range=POSITIVE_INT)  # random-head controls
    # organism: 4 lengths to 1600; real: 500, 1000
    lengths: list[int] | None = option(None, range=POSITIVE_INT)
    num_depths: int | None = option(None, range=POSITIVE_INT)  # default 5 (organism), 3 (real)
    num_needles: int = option(3, range=POSITIVE_INT)
    max_new_tokens: int = option(24, range=POSITIVE_INT)
    batch_size: int = option(
        16, range=POSITIVE_INT
    )  # the grid has 15 samples per length: one batch per length
    mask_mode: str = "zero"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        from retmask_interp.core.io import InputError

        check_fields(self)
        if self.lengths is not None and not self.lengths:
            raise InputError("lengths must name at least one token count (CLI: --lengths)")


@dataclass
class MaskingRun:
    """Detection on a NIAH grid and NIAH outcomes with its retrieval heads / random controls masked."""

    heads: Any  # HeadScores
    retrieval: list[tuple[int, int]]
    normal: list[dict[str, Any]]
    masked: list[dict[str, Any]]
    controls: list[list[tuple[int, int]]]
    random_runs: list[list[dict[str, Any]]]


def detect_and_mask(
    rm,
    samples,
    *,
    samples_path: str | Path,
    threshold: float = 0.1,
    seeds: int = 5,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    mode: str = "zero",
    progress: bool = False,
    params: dict[str, Any] | None = None,
) -> MaskingRun:
    """Detect retrieval heads on ``samples`` (resumable through ``samples_path``), then NIAH success
    (``outcomes.niah_outcomes``) unmasked, with the heads scoring >= ``threshold`` masked, and with ``seeds``
    random control sets of as many heads masked (``controls.random_controls``)."""
    from retmask_interp.interventions.controls import random_controls
    from retmask_interp.measure.detect import DetectConfig, detect_heads
    from retmask_interp.measure.outcomes import niah_outcomes

    log.info("[1/4] detection on %d NIAH samples", len(samples))
    det_cfg = DetectConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    hs = detect_heads(rm, samples, det_cfg, samples_path=samples_path, progress=progress, params=params)
    retrieval = hs.above(threshold)
    if not retrieval:
        log.warning("no head has score >= %s; masking nothing", threshold)
    log.info("[2/4] NIAH with the %d retrieval heads masked", len(retrieval))
    kw: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, mode=mode
    )
    normal = niah_outcomes(rm, samples, **kw)
    masked = niah_outcomes(rm, samples, retrieval, **kw)
    log.info("[3/4] %d random-head controls", seeds)
    controls = random_controls(rm, retrieval, n_seeds=seeds, seed=0) if retrieval else []
    random_runs = [niah_outcomes(rm, samples, c, **kw) for c in controls]
    return MaskingRun(hs, retrieval, normal, masked, controls, random_runs)


def _samples(rm, config: DemoConfig):
    from retmask_interp.data.niah import build_grid, default_needles, load_haystack, wu_depths

    is_organism = str(config.model).partition(":")[0] == "organism"  # "organism" or "organism:NAME"
    # real models: 2 lengths x 3 depths x num_needles (12 samples with the default 2 needles after the
    # organism's 3), sized so that `retmask demo --model smollm2-135m-instruct` fits 10 minutes on 2 CPU cores
    lengths = config.lengths or ([400, 800, 1200, 1600] if is_organism else [500, 1000])
    if rm.max_context and config.lengths:
        over = [n for n in config.lengths if n > rm.max_context]
        if over:
            from retmask_interp.core.io import InputError

            raise InputError(
                f"--lengths {' '.join(map(str, over))}: longer than {rm.name}'s window of {rm.max_context} tokens; "
                f"use lengths up to {rm.max_context}"
            )
    if rm.max_context:
        lengths = [n for n in lengths if n <= rm.max_context] or [min(lengths)]
    depths = wu_depths(config.num_depths or (5 if is_organism else 3))
    num_needles = config.num_needles if is_organism else min(config.num_needles, 2)
    if is_organism:
        from retmask_interp.data.synthetic import make_needles

        needles = make_needles(num_needles, seed=0, split="eval")
    else:
        needles = default_needles()[:num_needles]
    style = "chat" if getattr(rm.tokenizer, "chat_template", None) else "qa"
    haystack = load_haystack("synthetic:0", num_words=max(lengths) * 2)
    return build_grid(
        rm.tokenizer,
        haystack,
        needles,
        lengths,
        depths,
        style,
        max_context=rm.max_context,
        repeat_haystack=True,
    )


def run_demo(out_dir: str | Path, config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir``; returns the summary (also written to ``summary.json``)."""
    import pandas as pd

    from retmask_interp.core.models import load_model
    from retmask_interp.heads.scores import save_head_scores

    config = config or DemoConfig()
    out = Path(out_dir)
    refuse_overwrite(out / "summary.json", config.overwrite, "demo run")
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "detect_samples.jsonl"
    if config.overwrite:
        samples_path.unlink(missing_ok=True)

    log.info("loading %s", config.model)
    rm = load_model(config.model, device=config.device, dtype=config.dtype)
    samples = _samples(rm, config)
    run = detect_and_mask(
        rm,
        samples,
        samples_path=samples_path,
        threshold=config.threshold,
        seeds=config.seeds,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        mode=config.mask_mode,
        progress=config.progress,
        params={"haystack": "synthetic:0", "grid": "demo"},
    )
    hs, retrieval, normal, masked = run.heads, run.retrieval, run.normal, run.masked
    controls, random_runs = run.controls, run.random_runs
    save_head_scores(hs, out / "heads.json", overwrite=True)

    def acc(rows):
        return statistics.fmean(r["success"] for r in rows) if rows else float("nan")

    random_accs = [acc(rows) for rows in random_runs]
    summary: dict[str, Any] = {
        "model": rm.name,
        "num_samples": len(samples),
        "threshold": config.threshold,
        "mask_mode": config.mask_mode,
        "retrieval_heads": [list(h) for h in retrieval],
        "heads_above_0.3": len(hs.above(0.3)),
        "top_heads": [{"layer": a, "head": b, "score": s} for a, b, s in hs.ranked()[:10]],
        "niah_accuracy": {
            "normal": acc(normal),
            "retrieval_masked": acc(masked),
            "random_masked": statistics.fmean(random_accs) if random_accs else float("nan"),
        },
        "random_masked_per_seed": random_accs,
        "random_heads": [[list(h) for h in c] for c in controls],
        "config": asdict(config),
    }

    log.info("[4/4] figures and report")
    rows = []
    for name, runs in [
        ("unmasked", [normal]),
        ("retrieval heads masked", [masked]),
        ("random heads masked", random_runs),
    ]:
        for seed, outcomes in enumerate(runs):
            rows += [dict(r, condition=name, seed=seed) for r in outcomes]
    df = pd.DataFrame(rows)
    df.to_csv(out / "niah_outcomes.csv", index=False)
    figures = _figures(hs, df, out, config)
    summary["figures"] = figures
    summary["table"] = _table(summary)
    atomic_write_text(out / "report.md", _report(summary, hs))
    atomic_write_json(out / "summary.json", {k: v for k, v in summary.items() if k != "table"})
    return summary


def _figures(hs, df, out: Path, config: DemoConfig) -> list[str]:
    from retmask_interp.analysis.export import save_figure
    from retmask_interp.analysis.plots import head_heatmap, niah_grids

    written = []
    fig = head_heatmap(hs, threshold=config.threshold, title=f"Retrieval scores: {hs.model}")
    written += save_figure(fig, out / "heatmap", formats=("html", "png"), overwrite=True)
    grids = {
        name: g.groupby(["context_length", "depth"], as_index=False)["success"].mean()
        for name, g in df.groupby("condition", sort=False)
    }
    fig = niah_grids(grids, title="NIAH success by context length and depth")
    written += save_figure(fig, out / "niah_grids", formats=("html", "png"), overwrite=True)
    return [p.name for p in written]


def _table(summary: dict[str, Any]) -> str:
    acc = summary["niah_accuracy"]
    n = len(summary["retrieval_heads"])
    lines = [
        f"model: {summary['model']}  ({summary['num_samples']} NIAH samples)",
        f"retrieval heads (score >= {summary['threshold']}): {n}; heads >= 0.3: {summary['heads_above_0.3']}",
        "",
        f"{'condition':<34}{'NIAH success':>12}",
        f"{'unmasked':<34}{acc['normal']:>12.3f}",
        f"{f'{n} retrieval heads masked':<34}{acc['retrieval_masked']:>12.3f}",
        f"{f'{n} random heads masked (mean)':<34}{acc['random_masked']:>12.3f}",
    ]
    return "\n".join(lines)


def _report(summary: dict[str, Any], hs) -> str:
    top = "\n".join(
        f"| {i + 1} | {h['layer']} | {h['head']} | {h['score']:.3f} |"
        for i, h in enumerate(summary["top_heads"])
    )
    per_seed = ", ".join(f"{a:.3f}" for a in summary["random_masked_per_seed"])
    acc = summary["niah_accuracy"]
    pngs = [f for f in summary["figures"] if f.endswith(".png")]
    pictures = (
        "\n".join(f"![{f}]({f})" for f in pngs) or "(interactive figures: heatmap.html, niah_grids.html)"
    )
    return f"""# retmask demo: {summary["model"]}

{summary["num_samples"]} held-out NIAH samples; {hs.num_counted} passed the success filter and were scored.

| condition | NIAH success |
|---|---|
| unmasked | {acc["normal"]:.3f} |
| {len(summary["retrieval_heads"])} retrieval heads masked ({summary["mask_mode"]}) | {acc["retrieval_masked"]:.3f} |
| as many random non-retrieval heads masked (mean of {len(summary["random_masked_per_seed"])} seeds) | \
{acc["random_masked"]:.3f} |

Random seeds: {per_seed or "none"}.

## Top heads

| rank | layer | head | score |
|---|---|---|---|
{top}

## Figures

{pictures}

Files: `heads.json` (head list), `detect_samples.jsonl` (per-sample hits), `niah_outcomes.csv`, `summary.json`.
"""
