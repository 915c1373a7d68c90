"""The RetMask experiment on the embedded organisms: RetMask DPO vs random-head DPO vs no training.

For each organism (``concentrated``, ``distributed``):

1. detect retrieval heads on a held-out NIAH grid (``detect.detect_heads``; eval-split needles, synthetic
   haystack) and compute the organisation metrics (``analysis.metrics.organization_metrics``);
2. choose the retrieval heads (score >= ``--threshold``; at least ``--min-heads`` by rank) and a control set of
   as many random non-retrieval heads (``interventions.controls.random_heads``, excluding every head >= ``--threshold``);
3. sample preference pairs for both head sets (``pairs.make_pairs`` on ``pairs.builtin_prompts``, or with
   ``--prompts tasks`` on ``pairs.task_prompts``: long-context task prompts of the training split);
4. DPO-train a fresh copy of the organism on each pair set (``training.train_dpo``) for every learning rate given;
5. evaluate no training / random-head DPO / RetMask DPO on the long-context suite (``evaluation.evaluate``) at
   lengths inside and beyond the training length, plus held-out perplexity, and compare each trained model
   with the untrained one (``evaluation.compare``: paired deltas with bootstrap CIs).

Every stage writes into ``--out/<organism>/`` through ``core.stages``: a finished stage is skipped (an interrupted
run resumes), one whose settings changed is refused naming the setting.
The summary goes to ``--results`` (schema: ``studies/organism_retmask/README.md``). Example (about 2 minutes on one H200; hours on 2 CPU cores)::

    python studies/organism_retmask/retmask_experiment.py --out runs/experiment --results studies/organism_retmask/experiment_results.json
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from retmask_interp.core.io import InputError, atomic_write_json, refuse_overwrite
from retmask_interp.core.stages import Stages

log = logging.getLogger("retmask_experiment")

CONDITIONS = ("none", "random", "retmask")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/experiment", help="working directory (resumable)")
    p.add_argument(
        "--results", default="studies/organism_retmask/experiment_results.json", help="summary JSON to write"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --results file")
    p.add_argument("--organisms", nargs="+", default=["concentrated", "distributed"])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    # detection
    p.add_argument("--detect-lengths", type=int, nargs="+", default=[400, 900, 1400, 1900])
    p.add_argument("--detect-depths", type=int, default=5)
    p.add_argument("--detect-needles", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval head: score >= threshold")
    p.add_argument("--min-heads", type=int, default=2, help="take at least this many top heads")
    p.add_argument("--max-heads", type=int, default=8, help="and at most this many")
    # pairs
    p.add_argument("--num-prompts", type=int, default=256)
    p.add_argument(
        "--prompts",
        choices=("general", "tasks"),
        default="general",
        help="general: pairs.builtin_prompts (short chat prompts, as in the paper); tasks: pairs.task_prompts "
        "(long-context task prompts of --prompt-tokens tokens, where copying matters)",
    )
    p.add_argument("--prompt-tokens", type=int, default=320)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--pair-batch-size", type=int, default=64)
    p.add_argument("--random-seed", type=int, default=0, help="seed of the random control head set")
    # DPO
    p.add_argument("--lr", type=float, nargs="+", default=[5e-5], help="first = main; others = variants")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument(
        "--batch-size", type=int, default=16, help="effective = per-device batch (no accumulation)"
    )
    p.add_argument("--max-length", type=int, default=384)
    # evaluation
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 3072])
    p.add_argument("--n-per-cell", type=int, default=20)
    p.add_argument("--eval-batch-size", type=int, default=20)
    p.add_argument("--tasks", nargs="+", default=None, help="default: evaluation.DEFAULT_TASKS")
    p.add_argument("--ppl-length", type=int, default=512)
    p.add_argument("--bootstrap", type=int, default=2000)
    return p.parse_args(argv)


# -- stages ------------------------------------------------------------------------------------------------------
def niah_samples(rm, args):
    """The held-out detection grid: eval-split needles in the synthetic haystack (as the demo builds it)."""
    from retmask_interp.data.niah import niah_grid

    return niah_grid(
        rm, args.detect_lengths, args.detect_depths, args.detect_needles, needle_set="eval", drop_long=True
    )


def _settings(args, *keys: str) -> dict[str, Any]:
    return {k: getattr(args, k) for k in keys}


def detect(rm, st: Stages, name: str, args):
    """Stage ``detect``: the head scores on the held-out grid (``heads.json``; resumes from its samples file)."""
    from retmask_interp.heads.scores import load_head_scores, save_head_scores
    from retmask_interp.measure.detect import DetectConfig, detect_heads

    def run(ctx) -> dict:
        hs = detect_heads(
            rm, niah_samples(rm, args), DetectConfig(max_new_tokens=24, batch_size=16),
            samples_path=ctx.path("detect_samples.jsonl"), progress=False, params={"grid": "experiment"},
        )  # fmt: skip
        save_head_scores(hs, ctx.path("heads.json"), overwrite=True)
        return {"num_samples": hs.num_samples, "num_counted": hs.num_counted}

    settings = _settings(args, "detect_lengths", "detect_depths", "detect_needles")
    settings |= {"organism": name, "weights_sha256": weights_sha256(name)}
    st.run("detect", settings, run, outputs=["heads.json"])
    return load_head_scores(st.root / "heads.json")


def choose_heads(hs, args) -> list[tuple[int, int]]:
    """Heads >= threshold, topped up to ``min_heads`` and cut to ``max_heads`` by rank."""
    ranked = [(a, b) for a, b, s in hs.ranked()]
    above = [(a, b) for a, b, s in hs.ranked() if s >= args.threshold]
    k = min(max(len(above), args.min_heads), args.max_heads)
    return sorted(ranked[:k])


def make_pair_set(rm, heads, st: Stages, cond: str, args) -> dict[str, Any]:
    """Stage ``pairs/COND``: preference pairs with ``heads`` masked (``pairs_COND.jsonl``); its stats."""
    from retmask_interp.retmask.pairs import PairsConfig, builtin_prompts, make_pairs, task_prompts

    def run(ctx) -> dict:
        cfg = PairsConfig(
            temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.pair_batch_size, seed=0
        )  # fmt: skip
        if args.prompts == "tasks":
            prompts = task_prompts(args.num_prompts, tokenizer=rm.tokenizer, num_tokens=args.prompt_tokens)
        else:
            prompts = builtin_prompts(args.num_prompts, seed=0, split="train")
        return make_pairs(
            rm, prompts, heads, ctx.path(f"pairs_{cond}.jsonl"), config=cfg, progress=False
        ).to_dict()

    keys = ("temperature", "max_new_tokens", "pair_batch_size", "num_prompts", "prompts", "prompt_tokens")
    settings = _settings(args, *keys) | {"heads": [list(h) for h in heads]}
    return st.run(
        f"pairs/{cond}", settings, run, after={"detection": "detect"}, outputs=[f"pairs_{cond}.jsonl"]
    )


def train(name: str, st: Stages, cond: str, lr: float, args) -> dict[str, Any]:
    """Stage ``train/TAG``: DPO of a fresh copy of the organism on ``pairs_COND.jsonl`` (``train_TAG/``)."""
    from retmask_interp.organism import load_organism
    from retmask_interp.retmask.training import SUMMARY_NAME, DPOSettings, train_dpo

    tag = f"{cond}_lr{lr:g}"

    def run(ctx) -> dict:
        rm = load_organism(name, device=args.device, dtype="float32")
        settings = DPOSettings(
            beta=args.beta, learning_rate=lr, num_train_epochs=args.epochs, effective_batch_size=args.batch_size,
            per_device_batch_size=args.batch_size, max_length=args.max_length, logging_steps=5,
            gradient_checkpointing=False,
        )  # fmt: skip
        return train_dpo(
            rm, None, ctx.path(f"pairs_{cond}.jsonl"), ctx.path(f"train_{tag}"), settings, overwrite=True
        )

    settings = _settings(args, "beta", "epochs", "batch_size", "max_length", "device") | {"lr": lr}
    outputs = [f"train_{tag}/{SUMMARY_NAME}"]
    return st.run(f"train/{tag}", settings, run, after={"pairs": f"pairs/{cond}"}, outputs=outputs)


def run_eval(load, st: Stages, tag: str, args):
    """Stage ``eval/TAG``: the long-context suite on the model ``load()`` gives (``eval_TAG.csv``)."""
    import pandas as pd

    from retmask_interp.core.io import atomic_write_text
    from retmask_interp.retmask.evaluation import DEFAULT_TASKS, evaluate

    def run(ctx) -> dict:
        df = evaluate(
            load(), tasks=args.tasks or DEFAULT_TASKS, lengths=args.lengths, n_per_cell=args.n_per_cell,
            batch_size=args.eval_batch_size, ppl_length=args.ppl_length, progress=False,
        )  # fmt: skip
        atomic_write_text(ctx.path(f"eval_{tag}.csv"), df.to_csv(index=False))
        return {"rows": len(df)}

    settings = _settings(args, "tasks", "lengths", "n_per_cell", "eval_batch_size", "ppl_length", "device")
    after = {"trained": f"train/{tag}"} if tag != "none" else {"detection": "detect"}
    st.run(f"eval/{tag}", settings, run, after=after, outputs=[f"eval_{tag}.csv"])
    return pd.read_csv(st.root / f"eval_{tag}.csv", keep_default_na=False)


# -- summaries ---------------------------------------------------------------------------------------------------
def _records(df) -> list[dict[str, Any]]:
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return out


def condition_summary(df, base, args) -> dict[str, Any]:
    """Per (task, length) means with CIs, perplexity, and (for trained models) paired deltas vs ``base``."""
    from retmask_interp.retmask.evaluation import LOWER_IS_BETTER, compare, summarize

    gen = df[~df["task"].isin(LOWER_IS_BETTER)]
    text = df[df["task"].isin(LOWER_IS_BETTER)]
    res: dict[str, Any] = {"summary": _records(summarize(df, n_resamples=args.bootstrap))}
    res["long_context_score"] = float(gen.groupby("task")["score"].mean().mean()) if len(gen) else None
    res["long_context_score_by_length"] = {
        str(k): float(g.groupby("task")["score"].mean().mean()) for k, g in gen.groupby("length")
    }
    if len(text):
        res["perplexity"] = math.exp((text["score"] * text["tokens"]).sum() / text["tokens"].sum())
    if base is not None:
        res["vs_none"] = _records(compare(base, df, n_resamples=args.bootstrap))
        res["vs_none_by_task"] = _records(compare(base, df, by=("task",), n_resamples=args.bootstrap))
        b = base[~base["task"].isin(LOWER_IS_BETTER)]
        res["gain"] = res["long_context_score"] - float(b.groupby("task")["score"].mean().mean())
        res["gain_by_length"] = {
            k: v - float(b[b["length"] == int(k)].groupby("task")["score"].mean().mean())
            for k, v in res["long_context_score_by_length"].items()
        }
        if "perplexity" in res:
            bt = base[base["task"].isin(LOWER_IS_BETTER)]
            res["perplexity_before"] = math.exp((bt["score"] * bt["tokens"]).sum() / bt["tokens"].sum())
    return res


def _train_info(summary: dict[str, Any]) -> dict[str, Any]:
    keep = ("optimizer_steps", "num_pairs", "effective_batch_size", "final", "finite_loss", "bf16")
    return {k: summary.get(k) for k in keep} | {
        "settings": {k: summary["settings"][k] for k in ("beta", "learning_rate", "num_train_epochs")}
    }


def weights_sha256(name: str) -> str:
    """SHA-256 of the organism's ``model.safetensors`` (the weights may be retrained; this pins the ones used)."""
    import hashlib

    from retmask_interp.organism import organism_path

    return hashlib.sha256((organism_path(name) / "model.safetensors").read_bytes()).hexdigest()


def run_organism(name: str, args) -> dict[str, Any]:
    from retmask_interp.analysis.metrics import organization_metrics
    from retmask_interp.interventions.controls import random_heads
    from retmask_interp.organism import load_organism

    out = Path(args.out) / name
    if out.is_dir() and any(out.iterdir()) and not (out / "stages").exists():
        raise InputError(
            f"{out} was made before the stage runner (its settings are not recorded, so a resume could mix "
            "results of other settings); give another --out"
        )
    st = Stages(out)
    t0 = time.time()
    rm = load_organism(name, device=args.device, dtype="float32")
    hs = detect(rm, st, name, args)
    metrics = {k: v for k, v in organization_metrics(hs).items()}
    heads = choose_heads(hs, args)
    all_above = hs.above(min(args.threshold, 0.05))
    rand = random_heads(rm, len(heads), exclude=set(all_above) | set(heads), seed=args.random_seed)
    log.info("%s: retrieval heads %s, random control %s", name, heads, rand)
    head_sets = {"retmask": heads, "random": rand}
    pair_stats = {c: make_pair_set(rm, h, st, c, args) for c, h in head_sets.items()}
    base = run_eval(lambda model=rm: model, st, "none", args)
    del rm
    res: dict[str, Any] = {
        "metrics": metrics,
        "top_heads": [[a, b, s] for a, b, s in hs.ranked()[:10]],
        "retrieval_heads": [list(h) for h in heads],
        "random_heads": [list(h) for h in rand],
        "pair_stats": {
            c: {k: v for k, v in s.items() if k not in ("pairs_path", "dropped_path")}
            for c, s in pair_stats.items()
        },
        "conditions": {"none": condition_summary(base, None, args)},
        "variants": {},
    }
    for i, lr in enumerate(args.lr):
        block = res["conditions"] if i == 0 else res["variants"].setdefault(f"lr={lr:g}", {})
        for cond in ("random", "retmask"):
            tag = f"{cond}_lr{lr:g}"
            summary = train(name, st, cond, lr, args)

            def trained(tag=tag):
                from retmask_interp.core.models import load_model

                return load_model(str(out / f"train_{tag}"), device=args.device, dtype="float32")

            df = run_eval(trained, st, tag, args)
            block[cond] = condition_summary(df, base, args) | {"training": _train_info(summary)}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if i == 0:
            res["gain"] = {c: res["conditions"][c]["gain"] for c in ("retmask", "random")}
        else:
            block["gain"] = {c: block[c]["gain"] for c in ("retmask", "random")}
    res["weights_sha256"] = weights_sha256(name)
    res["wall_s"] = time.time() - t0
    return res


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results_path = Path(args.results)
    refuse_overwrite(results_path, args.overwrite, "experiment results")
    result: dict[str, Any] = {
        "description": "RetMask DPO vs random-head DPO vs no training on the embedded organisms; see studies/organism_retmask/README.md",
        "settings": {k: v for k, v in vars(args).items() if k not in ("overwrite", "results")},
        "organisms": {},
    }
    for name in args.organisms:
        result["organisms"][name] = run_organism(name, args)
        atomic_write_json(results_path, result)  # after each organism: partial results survive a timeout
        log.info("%s done: gain %s", name, result["organisms"][name]["gain"])


if __name__ == "__main__":
    try:
        main()
    except InputError as err:  # a changed setting, an old directory: one line, no traceback
        log.error("%s", err)
        raise SystemExit(2) from None
