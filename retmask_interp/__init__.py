"""retmask-interp: find, mask and train retrieval heads of long-context language models.

The package is layered; each subpackage imports only the ones listed before it (checked by import-linter,
``.importlinter``):

- ``core``: the architecture table, model loading (hub, local, organisms), the decode loop, atomic file I/O;
- ``data``: synthetic text, needle-in-a-haystack (NIAH) grids, long-context task formats, the prompt template;
- ``heads``: head scores with provenance (our JSON, Wu's JSON) and other tools' formats;
- ``interventions``: masking (zero / uniform / mean), weight edits, random controls, TransformerLens hooks;
- ``measure``: Wu et al.'s retrieval-score detection, NIAH outcomes with heads masked, attention effects, statistics;
- ``organism``: training code of the embedded model organisms (imports only ``core`` and ``data``);
- ``analysis``: organisation metrics, plotly figures, the figure writer;
- ``retmask``: preference pairs, DPO training, the long-context evaluation suite;
- ``workflows``: the demo, the paper figures, ``analyze``, organism checks; ``cli``: the ``retmask`` command.

The names below are the curated public API, importable from ``retmask_interp`` itself. Importing the package loads
none of the subpackages; each name is imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> "module" (a module) or "module:attribute"
_API = {
    # subpackages and the modules users reach for most
    "core": "retmask_interp.core",
    "data": "retmask_interp.data",
    "heads": "retmask_interp.heads",
    "interventions": "retmask_interp.interventions",
    "measure": "retmask_interp.measure",
    "organism": "retmask_interp.organism",
    "analysis": "retmask_interp.analysis",
    "retmask": "retmask_interp.retmask",
    "workflows": "retmask_interp.workflows",
    "architectures": "retmask_interp.core.architectures",
    "models": "retmask_interp.core.models",
    "synthetic": "retmask_interp.data.synthetic",
    "niah": "retmask_interp.data.niah",
    "tasks": "retmask_interp.data.tasks",
    "masking": "retmask_interp.interventions.masking",
    "detect": "retmask_interp.measure.detect",
    "figures": "retmask_interp.analysis.plots",
    "pairs": "retmask_interp.retmask.pairs",
    "training": "retmask_interp.retmask.training",
    "evaluation": "retmask_interp.retmask.evaluation",
    "paper_figures": "retmask_interp.workflows.paper_figures",
    # models
    "RetModel": "retmask_interp.core.models:RetModel",
    "as_model": "retmask_interp.core.models:as_model",
    "load_model": "retmask_interp.core.models:load_model",
    "load_organism": "retmask_interp.core.models:load_organism",
    # data
    "niah_grid": "retmask_interp.data.niah:niah_grid",
    "NIAHGrid": "retmask_interp.data.niah:NIAHGrid",
    "NIAHConfig": "retmask_interp.data.niah:NIAHConfig",
    "build_grid": "retmask_interp.data.niah:build_grid",
    "load_haystack": "retmask_interp.data.niah:load_haystack",
    "default_needles": "retmask_interp.data.niah:default_needles",
    # heads
    "HeadScores": "retmask_interp.heads.scores:HeadScores",
    "load_head_scores": "retmask_interp.heads.scores:load_head_scores",
    "save_head_scores": "retmask_interp.heads.scores:save_head_scores",
    "shipped_head_lists": "retmask_interp.heads.scores:shipped_head_lists",
    "load_heads": "retmask_interp.heads.formats:load_any_head_list",
    "load_any_head_list": "retmask_interp.heads.formats:load_any_head_list",
    "export_head_list": "retmask_interp.heads.formats:export_head_list",
    # interventions
    "MaskPlan": "retmask_interp.interventions.masking:MaskPlan",
    "masked": "retmask_interp.interventions.masking:masked",
    "masked_logits": "retmask_interp.interventions.masking:masked_logits",
    "generate": "retmask_interp.interventions.masking:generate",
    "random_heads": "retmask_interp.interventions.controls:random_heads",
    "random_controls": "retmask_interp.interventions.controls:random_controls",
    "zero_head_outputs_": "retmask_interp.interventions.weights:zero_head_outputs_",
    "export_masked": "retmask_interp.interventions.weights:export_masked",
    # measure
    "DetectConfig": "retmask_interp.measure.detect:DetectConfig",
    "detect_heads": "retmask_interp.measure.detect:detect_heads",
    "copy_paste_scores": "retmask_interp.measure.detect:copy_paste_scores",
    "niah_outcomes": "retmask_interp.measure.outcomes:niah_outcomes",
    "masking_outcomes": "retmask_interp.measure.outcomes:masking_outcomes",
    "topk_curve": "retmask_interp.measure.outcomes:topk_curve",
    "ExperimentConfig": "retmask_interp.measure.experiment:ExperimentConfig",
    "retrieval_vs_random": "retmask_interp.measure.experiment:retrieval_vs_random",
    # analysis
    "organization_metrics": "retmask_interp.analysis.metrics:organization_metrics",
    "metrics_table": "retmask_interp.analysis.metrics:metrics_table",
    "head_heatmap": "retmask_interp.heads.plots:head_heatmap",
    "explore": "retmask_interp.analysis.explorer:explore",
    "save_figure": "retmask_interp.analysis.export:save_figure",
    # retmask
    "PairsConfig": "retmask_interp.retmask.pairs:PairsConfig",
    "make_pairs": "retmask_interp.retmask.pairs:make_pairs",
    "DPOSettings": "retmask_interp.retmask.training:DPOSettings",
    "train_dpo": "retmask_interp.retmask.training:train_dpo",
    "evaluate": "retmask_interp.retmask.evaluation:evaluate",
    # workflows
    "run_demo": "retmask_interp.workflows.demo:run_demo",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'retmask_interp' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
