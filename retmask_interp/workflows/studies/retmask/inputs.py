"""The RetMask study's inputs: the instruction prompts (stage ``prompts``) and the head sets (stage ``heads``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from retmask_interp.core.io import atomic_write_json, atomic_write_text, read_jsonl
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import StudyConfig
from retmask_interp.workflows.studies.retmask.models import load

__all__ = ["read_prompts", "stage_heads", "stage_prompts"]


def stage_prompts(config: StudyConfig, st: Stages) -> dict:
    """``prompts/{train,heldout}.jsonl`` (train split / hash-held-out eval split) and ``prompts/makeup.{json,md}``."""
    from retmask_interp.data.instructions import (
        InstructionConfig,
        instruction_prompts,
        summarize_prompts,
        summary_markdown,
    )

    settings = {
        "prompt_seed": config.prompt_seed,
        "n_prompts": config.n_prompts,
        "n_heldout": config.n_heldout,
    }

    def run(ctx) -> dict:
        full = instruction_prompts(InstructionConfig(seed=config.prompt_seed))
        indexed = list(enumerate(full))
        train = [(i, p) for i, p in indexed if p.split == "train"][: config.n_prompts]
        heldout = [(i, p) for i, p in indexed if p.split == "eval"][: config.n_heldout]
        for name, rows in (("train", train), ("heldout", heldout)):
            text = "".join(json.dumps(p.to_record() | {"index": i}) + "\n" for i, p in rows)
            atomic_write_text(ctx.path("prompts", f"{name}.jsonl"), text)
        summary = summarize_prompts([p for _, p in train + heldout])
        atomic_write_json(ctx.path("prompts", "makeup.json"), summary)
        atomic_write_text(ctx.path("prompts", "makeup.md"), summary_markdown(summary) + "\n")
        return {"train": len(train), "heldout": len(heldout), "set_size": len(full)}

    return st.run("prompts", settings, run)


def read_prompts(out: Path, split: str):
    """The ``retmask.pairs.Prompt``s of a split, as the ``prompts`` stage wrote them."""
    from retmask_interp.retmask.pairs import Prompt

    return [Prompt(r["index"], r["prompt"], r["id"]) for r in read_jsonl(out / "prompts" / f"{split}.jsonl")]


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stage_heads(config: StudyConfig, st: Stages) -> dict:
    """The retrieval heads (score >= ``head_threshold`` in ``config.heads``) and the random control: as many heads
    drawn from those below the threshold, per-layer matched (``interventions.controls.random_heads``; with
    ``random_layers="matched_or_window"`` a layer short of free heads takes the rest from the layers of its attention
    window), or, with ``random_layers="outside"``, from the layers that hold no retrieval head."""
    if not config.heads:
        raise ValueError("give the retrieval-head list: --heads PATH (a head-score JSON of this model)")
    settings = {"heads_sha256": _sha256(config.heads), "head_threshold": config.head_threshold}
    settings |= {"random_seed": config.random_seed, "model": config.model}
    if config.random_layers != "matched":  # recorded only when set, so that earlier runs' markers stay valid
        settings["random_layers"] = config.random_layers

    def run(ctx) -> dict:
        from retmask_interp.heads.formats import load_any_head_list
        from retmask_interp.interventions.controls import attention_groups, random_heads

        model = load(config)
        hs = load_any_head_list(str(config.heads))
        if (hs.num_layers, hs.num_heads) != (model.geometry.num_layers, model.geometry.num_heads):
            raise ValueError(
                f"{config.heads} is for {hs.num_layers} layers x {hs.num_heads} heads; {config.model} has "
                f"{model.geometry.num_layers} x {model.geometry.num_heads}"
            )
        retrieval = sorted(hs.select(threshold=config.head_threshold))
        if not retrieval:
            raise ValueError(f"no head of {config.heads} scores >= {config.head_threshold}")
        if config.random_layers == "outside":
            used = {a for a, _ in retrieval}
            outside = [x for x in range(model.geometry.num_layers) if x not in used]
            control = random_heads(
                model, len(retrieval), exclude=retrieval, seed=config.random_seed, layers=outside
            )
        else:
            groups = attention_groups(model) if config.random_layers == "matched_or_window" else None
            control = random_heads(
                model,
                len(retrieval),
                exclude=retrieval,
                seed=config.random_seed,
                like=retrieval,
                groups=groups,
            )
        scores = {f"{a}.{b}": hs.scores.get((a, b), 0.0) for a, b in retrieval + control}
        return {
            "retmask": [list(h) for h in retrieval],
            "random": [list(h) for h in control],
            "scores": scores,
            "source": str(config.heads),
        }

    return st.run("heads", settings, run)
