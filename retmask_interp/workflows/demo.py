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
from retmask_interp.core.notation import MASK_MODES
from retmask_interp.core.options import option
from retmask_interp.core.ranges import FINITE, POSITIVE_INT, check_fields

__all__ = ["DemoConfig", "detect_and_mask", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Settings of the demo (``retmask demo``: one option per field)."""

    model: str = option("organism", "the model (any name load_model takes)")
    device: str = option("auto", "cpu, cuda, cuda:1, ... (auto: a GPU if there is one)")
    dtype: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    threshold: float = option(0.1, "retrieval heads: score >= this", range=FINITE)
    seeds: int = option(5, "random-head control sets", range=POSITIVE_INT)
    lengths: list[int] | None = option(
        None, "NIAH context lengths in tokens (none: 4 lengths to 1600 on the organism, 500 1000 otherwise)",
        range=POSITIVE_INT,
    )  # fmt: skip
    num_depths: int | None = option(
        None,
        "needle depths, evenly from 0 to 100 percent (none: 5 on the organism, 3 otherwise)",
        range=POSITIVE_INT,
    )
    num_needles: int = option(3, "held-out needles per length and depth", range=POSITIVE_INT)
    max_new_tokens: int = option(24, "longest answer decoded per sample", range=POSITIVE_INT)
    # the organism's grid has 15 samples per length: one batch per length
    batch_size: int = option(16, "samples decoded together", range=POSITIVE_INT)
    mask_mode: str = option("zero", "how the heads are masked", choices=MASK_MODES)
    overwrite: bool = option(False, "run again over a finished output directory")
    progress: bool = option(True, "progress bars (--no-progress: logs only)")

    def __post_init__(self) -> None:
        from retmask_interp.core.io import InputError

        check_fields(self)
        if self.lengths is not None and not self.lengths:
            raise InputError("lengths must name at least one token count (CLI: --lengths)")


def detect_and_mask(rm, samples, config: DemoConfig, *, samples_path: str | Path, params: dict[str, Any]):
    """The demo's experiment: ``measure.experiment.retrieval_vs_random`` with ``config``'s settings (detection,
    the heads scoring >= ``threshold`` masked, ``seeds`` random sets of as many heads)."""
    from retmask_interp.measure.experiment import ExperimentConfig, retrieval_vs_random

    exp = ExperimentConfig(
        threshold=config.threshold,
        modes=(config.mask_mode,),
        seeds=config.seeds,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        detect_batch_size=config.batch_size,
    )
    return retrieval_vs_random(
        rm, samples, None, exp, samples_path=samples_path, params=params, progress=config.progress
    )


def _samples(rm, config: DemoConfig):
    from retmask_interp.data.niah import niah_grid

    # real models: 2 lengths x 3 depths x at most 2 needles (12 samples, after the organism's 60), sized so that
    # `retmask demo --model smollm2-135m-instruct` fits 10 minutes on 2 CPU cores
    organism = str(config.model).partition(":")[0] == "organism"  # "organism" or "organism:NAME"
    return niah_grid(
        rm,
        config.lengths or ([400, 800, 1200, 1600] if organism else [500, 1000]),
        config.num_depths or (5 if organism else 3),
        config.num_needles if organism else min(config.num_needles, 2),
        needle_set="eval" if organism else "default",  # the organisms' held-out needles
        drop_long=config.lengths is None,
    )


def run_demo(out_dir: str | Path, config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir``; returns the summary (also written to ``summary.json``)."""

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
        rm, samples, config, samples_path=samples_path, params={"haystack": "synthetic:0", "grid": "demo"}
    )
    assert run.heads is not None  # detected
    hs, retrieval, df = run.heads, run.retrieval, run.table
    save_head_scores(hs, out / "heads.json", overwrite=True)
    success = run.success()
    random_accs = run.per_seed("random")
    summary: dict[str, Any] = {
        "model": rm.name,
        "num_samples": len(samples),
        "threshold": config.threshold,
        "mask_mode": config.mask_mode,
        "retrieval_heads": [list(h) for h in retrieval],
        "heads_above_0.3": len(hs.above(0.3)),
        "top_heads": [{"layer": a, "head": b, "score": s} for a, b, s in hs.ranked()[:10]],
        "niah_accuracy": {
            "normal": success["unmasked"],
            "retrieval_masked": success.get("retrieval", float("nan")),
            "random_masked": statistics.fmean(random_accs) if random_accs else float("nan"),
        },
        "random_masked_per_seed": random_accs,
        "random_heads": [
            [list(h) for h in c] for name, c in run.conditions.items() if name.startswith("random#")
        ],
        "config": asdict(config),
    }

    log.info("[4/4] figures and report")
    names = {"unmasked": "unmasked", "retrieval": "retrieval heads masked", "random": "random heads masked"}
    df = df.assign(condition=df["kind"].map(names)).drop(columns=["heads", "mode"])
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
