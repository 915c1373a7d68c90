"""An organism's acceptance numbers, measured with the package's own pipeline (niah -> detect -> outcomes).

Used by ``studies/organisms/verify_organism.py`` (the numbers of the model card) and at the end of
training (``training_check``, given to ``organism.train.main``). Held-out grid: eval-split needles (``make_needles(N, seed, split="eval")``: words,
names and codes never seen in training) in an eval-split synthetic haystack, chat template, Wu depths. Reports NIAH
success (``stats.niah_success``: ROUGE-1 recall > 0.5), every head's retrieval score, NIAH success with the
retrieval heads (score >= threshold) masked in ``zero`` mode, and with as many random non-retrieval heads masked
for several seeds (``measure.experiment.retrieval_vs_random``), plus the organisation metrics of the scores.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CheckConfig", "organism_check", "training_check"]


@dataclass(frozen=True)
class CheckConfig:
    needles: int = 6
    needle_seed: int = 2024
    haystack: str = "synthetic:11"  # synthetic haystacks are read from the eval split
    lengths: tuple[int, ...] = (500, 1000, 1500, 2000)
    depths: int = 5  # number of Wu depths
    threshold: float = 0.1
    seeds: int = 5
    max_new_tokens: int = 24
    batch_size: int = 16
    extra: dict[str, Any] = field(default_factory=dict)  # recorded with the result, not used


def organism_check(rm, config: CheckConfig | None = None) -> dict[str, Any]:
    """Detection, then NIAH success unmasked / retrieval heads masked / random controls
    (``measure.experiment.retrieval_vs_random``), on the held-out grid of ``config``. Returns a JSON-ready dict."""
    from retmask_interp.analysis.metrics import metrics_table
    from retmask_interp.data.niah import niah_grid, wu_depths
    from retmask_interp.measure.experiment import ExperimentConfig, retrieval_vs_random

    cfg = config or CheckConfig()
    samples = niah_grid(
        rm,
        cfg.lengths,
        cfg.depths,
        cfg.needles,
        needle_set="eval",
        needle_seed=cfg.needle_seed,
        haystack=cfg.haystack,
        style="chat",
    )
    exp = ExperimentConfig(
        threshold=cfg.threshold,
        seeds=cfg.seeds,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        detect_batch_size=cfg.batch_size,
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        run = retrieval_vs_random(rm, samples, None, exp, samples_path=Path(tmp_dir) / "samples.jsonl")
    hs = run.heads
    assert hs is not None  # detected
    success = run.success()
    random_acc = run.per_seed("random")
    normal = run.table[run.table["kind"] == "unmasked"]
    scores = hs.matrix().flatten().tolist()
    unmasked = success["unmasked"]
    return {
        "model": rm.name,
        "config": asdict(cfg),
        "num_samples": len(samples),
        "depths": wu_depths(cfg.depths),
        "needles": list({s.needle_index: s.needle for s in samples}.values()),
        "haystack": f"{cfg.haystack} (eval split)",
        "niah_success": unmasked,
        "heads_ge_0.3": sum(s >= 0.3 for s in scores),
        "heads_ge_0.1": sum(s >= 0.1 for s in scores),
        "top_heads": [[layer, head, round(s, 4)] for layer, head, s in hs.ranked()[:12]],
        "retrieval_heads": [list(h) for h in run.retrieval],
        "masked_retrieval_success": success.get("retrieval", unmasked),
        "masked_retrieval_drop": unmasked - success.get("retrieval", unmasked),
        "random_controls": [
            [list(h) for h in c] for n, c in run.conditions.items() if n.startswith("random#")
        ],
        "masked_random_success": random_acc,
        "masked_random_drop_mean": unmasked - statistics.fmean(random_acc) if random_acc else None,
        "organisation": metrics_table({rm.name: hs}).to_dict(orient="records")[0],
        "scores": hs.matrix().round(4).tolist(),
        "failures": normal.loc[normal["success"] == 0, "generated"].tolist()[:10],
    }


def training_check(rm, lengths, depths: int, needles: int) -> dict[str, Any]:
    """The end-of-training check of ``organism.train.main`` (which cannot import this layer): ``organism_check``
    on ``lengths`` x ``depths`` Wu depths x ``needles`` held-out needles."""
    return organism_check(rm, CheckConfig(lengths=tuple(lengths), depths=depths, needles=needles))
