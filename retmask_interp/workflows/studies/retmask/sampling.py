"""The RetMask study's DPO pairs: one response per prompt and side (stage ``responses/SIDE.SPLIT``), then the pairs
of every condition (stage ``pairs/CONDITION.SPLIT``), as ``retmask.pairs.make_pairs`` makes and filters them.

Every side is sampled in the batches of ``make_pairs`` with one seed per batch, ``sample_seed(seed, first prompt's
index)``, the same on both sides (common random numbers), so the two sides of a pair differ only by the masked heads
(or, for ``normal_alt``, the seed). ``make_pairs`` now seeds every prompt on its own (a prompt's sample then does not
depend on its batch); this study keeps the per-batch rule its committed runs (2026-11-28, 2026-12-03) and the
pre-registered replication that resumes them were sampled with, so one study never mixes the two rules. A side file
is appended batch by batch: an interrupted side resumes from its last finished batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retmask_interp.core.io import append_jsonl, read_jsonl, repair_jsonl_tail
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import CONDITION_SIDES, SIDES, StudyConfig
from retmask_interp.workflows.studies.retmask.inputs import read_prompts

__all__ = ["SPLITS", "sample_side", "side_heads", "stage_pairs", "stage_responses"]

SPLITS = ("train", "heldout")


def side_heads(side: str, heads: dict) -> list[tuple[int, int]]:
    """The heads masked while sampling ``side`` (``heads``: the ``heads`` stage's result)."""
    key = SIDES[side].heads
    return [] if key is None else [(int(a), int(b)) for a, b in heads[key]]


def sample_side(rm, prompts, heads, seed: int, config: StudyConfig, path: Path) -> None:
    """Append one response per prompt (not yet in ``path``) to ``path``, in ``make_pairs``' batches, one seed per
    batch (the module's docstring says why not per prompt)."""
    from retmask_interp.retmask.pairs import (
        PairsConfig,
        _conversational,
        encode_prompt,
        sample_responses,
        sample_seed,
    )

    pc = PairsConfig(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.pair_batch_size,
        seed=seed,
        template=config.prompt_template,
        stop=config.stop,
    )
    done: set[int] = set()
    if path.exists():  # resuming after a kill: drop a torn last line, keep the finished batches
        repair_jsonl_tail(path)
        done = {r["prompt_index"] for r in read_jsonl(path)}
    conversational = _conversational(rm.tokenizer, "auto")
    encoded = {p.index: encode_prompt(rm.tokenizer, p.text, conversational, pc.template) for p in prompts}
    order = sorted(prompts, key=lambda p: (-len(encoded[p.index]), p.index))
    for start in range(0, len(order), pc.batch_size):
        batch = order[start : start + pc.batch_size]
        if all(p.index in done for p in batch):
            continue
        s = sample_seed(seed, batch[0].index)
        res = sample_responses(rm, [encoded[p.index] for p in batch], s, heads, pc)
        recs = [
            {"prompt_index": p.index, "text": t, "tokens": n, "finished": f, "sample_seed": s}
            for p, (t, n, f) in zip(batch, res)
            if p.index not in done
        ]
        append_jsonl(path, recs)


def stage_responses(config: StudyConfig, st: Stages, heads: dict, get_model: Callable[[], Any]) -> dict:
    """Every side the conditions need, for the train and the held-out prompts."""
    from retmask_interp.retmask.pairs import extra_settings

    results = {}
    for split in SPLITS:
        prompts = read_prompts(st.root, split)
        digest = hashlib.sha256(json.dumps([[p.index, p.text] for p in prompts]).encode()).hexdigest()
        for side in config.sides():
            settings = {
                "model": config.model,
                "heads": side_heads(side, heads),
                "seed": config.side_seed(side),
                "prompts": digest,
                "device": config.device,
                "eval_dtype": config.eval_dtype,
            } | {k: getattr(config, k) for k in ("temperature", "top_p", "max_new_tokens", "pair_batch_size")}
            # template and stop strings only where set, so runs made before they existed resume
            settings |= extra_settings(config.prompt_template, config.stop)

            def run(ctx, prompts=prompts, side=side, split=split) -> dict:
                path = ctx.path("responses", f"{side}.{split}.jsonl")
                sample_side(
                    get_model(), prompts, side_heads(side, heads), config.side_seed(side), config, path
                )
                recs = list(read_jsonl(path))
                return {"n": len(recs), "truncated": sum(not r["finished"] for r in recs)}

            name = f"responses/{side}.{split}"
            results[name] = st.run(name, settings, run)
    return results


def stage_pairs(config: StudyConfig, st: Stages, heads: dict, get_model: Callable[[], Any]) -> dict:
    """The pairs of every condition (chosen side, rejected side), filtered as ``make_pairs`` filters them (empty or
    identical sides dropped, counted by reason)."""
    from retmask_interp.retmask import pairs as P

    stats = {}
    for split in SPLITS:
        prompts = read_prompts(st.root, split)
        for cond in config.conditions:
            chosen_side, rejected_side = CONDITION_SIDES[cond]
            settings = {"chosen": chosen_side, "rejected": rejected_side, "split": split}
            after = {"responses": {s: f"responses/{s}.{split}" for s in (chosen_side, rejected_side)}}

            def run(
                ctx,
                prompts=prompts,
                cond=cond,
                split=split,
                chosen_side=chosen_side,
                rejected_side=rejected_side,
            ):
                side = {
                    s: {r["prompt_index"]: r for r in read_jsonl(ctx.path("responses", f"{s}.{split}.jsonl"))}
                    for s in (chosen_side, rejected_side)
                }
                paths = P.pair_paths(ctx.path("pairs", f"{cond}.{split}.jsonl"))
                for p in (paths.pairs, paths.dropped, paths.stats):
                    p.unlink(missing_ok=True)
                conversational = P._conversational(get_model().tokenizer, "auto")
                masked = side_heads(rejected_side, heads)
                sampling = {k: getattr(config, k) for k in ("temperature", "top_p", "max_new_tokens")}
                sampling |= P.extra_settings(config.prompt_template, config.stop)
                fmt = "conversational" if conversational else "plain"
                meta = {"seed": config.pair_seed, "heads_hash": P.heads_hash(masked, "zero"), "mode": "zero"}
                meta["settings"] = P._settings_hash(sampling, fmt)
                if SIDES[rejected_side].alt_seed:
                    meta["rejected_seed"] = config.side_seed(rejected_side)

                def triple(r: dict) -> tuple[str, int, bool]:
                    return (r["text"], r["tokens"], r["finished"])

                chosen = [triple(side[chosen_side][p.index]) for p in prompts]
                rejected = [triple(side[rejected_side][p.index]) for p in prompts]
                extra = [{"sample_seed": side[chosen_side][p.index]["sample_seed"]} for p in prompts]
                P._write(
                    paths, prompts, chosen, rejected, meta, conversational, extra, config.prompt_template
                )
                st_ = P._finish(paths, len(prompts), masked, meta, fmt, sampling, config.model)
                return {k: v for k, v in st_.to_dict().items() if k not in ("pairs_path", "dropped_path")}

            stats[f"{cond}.{split}"] = st.run(f"pairs/{cond}.{split}", settings, run, after=after)
    return stats
