"""The RetMask study on a real instruct model (issue 13): prompts -> pairs -> DPO (lr sweep, seeds) -> evaluation ->
one score CSV -> tables and a Markdown report, with resumable, atomic stages in one output directory.

Run it with ``python scripts/smollm2_retmask.py`` (``--preset tiny`` for a CPU proof, ``--device cuda`` on a GPU);
``docs/experiments/smollm2_retmask/RUNBOOK.md`` gives the GPU staging. The stages, each a function of the config:

1. ``prompts``: ``data.instructions`` (train split for the training pairs, the hash-held-out eval split for the
   held-out pairs), ``prompts/{train,heldout}.jsonl`` and the make-up (``prompts/makeup.{json,md}``).
2. ``heads``: the retrieval heads (score >= ``head_threshold`` in the ``--heads`` list) and the random control:
   as many heads drawn from the heads below the threshold, per-layer matched (``interventions.controls``).
3. ``responses``: one response per prompt and *side*, sampled in the batches and with the per-batch seeds of
   ``retmask.pairs.make_pairs`` (common random numbers): ``normal`` (the model), ``masked_retmask`` (retrieval
   heads zeroed), ``masked_random`` (the control heads zeroed), all with ``pair_seed``, and ``normal_alt`` (the
   model, seed ``pair_seed + self_seed_offset``). Each side file is appended batch by batch, so an interrupted
   side resumes.
4. ``pairs``: ``retmask`` = (normal, masked_retmask), ``random`` = (normal, masked_random), ``self`` = (normal,
   normal_alt), filtered as ``make_pairs`` filters (empty or identical sides dropped, counted by reason), for the
   train and the held-out prompts.
5. ``train``: DPO through TRL (``retmask.training.train_dpo``; full fine-tuning, sigmoid, beta 0.1, cosine, warmup
   0.1, weight decay 0.1, 2 epochs). First the lr sweep (``retmask`` pairs, ``sweep_seed``), then the **held-out
   criterion** picks the lr: the highest held-out DPO reward accuracy on the held-out ``retmask`` pairs (ties: the
   higher held-out margin, then the smaller lr) among the lrs whose held-out perplexity on ``data.ppl_texts`` rose by
   at most ``max_ppl_increase`` (relative) over the untrained model; if none qualifies, the smallest lr. The
   long-context test never enters the choice. Then every condition at that lr for every seed.
6. ``eval``: the untrained model and every final run, each evaluated right after its training (so a lost
   machine costs at most one run's weights; a run whose weights are gone before its evaluation is trained again):
   the long-context suite (``retmask.evaluation.evaluate``, generation tasks at ``lengths``), exact match on
   ``data.short_qa`` and the NLL of ``data.ppl_texts``; per model a CSV with exactly ``retmask.report.SCORE_COLUMNS``
   and a JSONL of predictions.
7. ``report`` (always redone): ``scores.csv`` (all rows), ``tables.json`` (``report.study_tables`` of the CSV) and
   ``README.md`` in ``report_dir``.

Every stage and unit (one side, one training run, one evaluated model) writes a marker ``stages/<name>.json``
with the parameters it depends on, its result and its wall time, last and atomically: a finished unit is skipped;
a unit whose parameters changed is refused with the name of the setting (``StageMismatch``).

Devices. Sampling and evaluation run in ``eval_dtype`` (``auto``: bf16 on a GPU, float32 on the CPU); DPO trains
float32 weights with bf16 autocast on a GPU (``training.train_dpo``: bf16 weights would lose lr-1e-6 updates).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retmask_interp.core.io import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    repair_jsonl_tail,
)

__all__ = [
    "PRESETS",
    "SIDES",
    "CONDITION_SIDES",
    "StageMismatch",
    "StudyConfig",
    "choose_lr",
    "remove_run",
    "run_name",
    "run_study",
]

log = logging.getLogger(__name__)

SIDES = ("normal", "masked_retmask", "masked_random", "normal_alt")
CONDITION_SIDES = {"retmask": ("normal", "masked_retmask"), "random": ("normal", "masked_random")}
CONDITION_SIDES["self"] = ("normal", "normal_alt")
LONG_TASKS = ("niah", "multi_needle", "json_kv", "rag_qa", "rerank", "cite")
STAGES = ("prompts", "heads", "responses", "pairs", "train", "eval", "report")


class StageMismatch(ValueError):
    """A finished stage was run with other settings than this run's."""


@dataclass
class StudyConfig:
    """Every setting of the study (defaults: the full-size run of issue 13)."""

    out: str = "runs/smollm2_retmask"
    model: str = "smollm2-135m-instruct"
    heads: str | None = None  # head list (any format heads.formats reads); required
    head_threshold: float = 0.1
    device: str = "auto"
    eval_dtype: str = "auto"  # sampling and evaluation; DPO always trains float32 weights
    threads: int | None = None  # torch CPU threads
    # prompts
    prompt_seed: int = 0
    n_prompts: int | None = None  # training prompts (train split); None = all
    n_heldout: int | None = None  # held-out prompts (eval split) for the held-out pairs; None = all
    # pairs
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 512
    pair_batch_size: int = 256
    pair_seed: int = 0
    self_seed_offset: int = 1  # normal_alt samples with pair_seed + this
    random_seed: int = 0  # of the random control head set
    conditions: tuple[str, ...] = ("retmask", "random", "self")
    # DPO
    lrs: tuple[float, ...] = (1e-6, 5e-6, 2e-5)
    sweep_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    beta: float = 0.1
    epochs: float = 2.0
    effective_batch_size: int = 64
    per_device_batch_size: int = 16
    max_length: int = 1024  # prompt + response tokens
    max_ppl_increase: float = 0.05  # criterion: held-out perplexity may rise by at most this fraction
    # evaluation
    # 8K: the suite's rag_qa / rerank / cite prompts come out ~13 % longer than asked (chat template included), so
    # 7,000 keeps every prompt plus its answer budget inside SmolLM2's 8,192 tokens (checked before evaluating)
    lengths: tuple[int, ...] = (2048, 4096, 7000)
    n_per_cell: int = 100
    tasks: tuple[str, ...] = LONG_TASKS
    eval_seed: int = 0
    eval_batch_size: int = 32
    eval_max_new_tokens: int | None = None  # cap on the suite's per-task answer budgets (tiny runs)
    n_short_qa: int | None = None  # None = all
    n_ppl: int | None = None  # None = all
    heldout_batch_size: int = 16
    prune_weights: bool = False  # delete a trained model's weights once it is evaluated
    # final runs "CONDITION:SEED" this process trains and evaluates (empty: all); the report waits for a run
    # without it. Several processes (or GPUs) given disjoint subsets can share one output directory.
    only: tuple[str, ...] = ()
    # report
    report_dir: str | None = None  # default: <out>/report
    bootstrap: int = 2000
    title: str = "RetMask on SmolLM2-135M-Instruct"

    def __post_init__(self) -> None:
        for name in ("conditions", "lrs", "seeds", "lengths", "tasks", "only"):
            setattr(self, name, tuple(getattr(self, name)))
        unknown = set(self.conditions) - set(CONDITION_SIDES)
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; choose from {sorted(CONDITION_SIDES)}")
        if "retmask" not in self.conditions:
            raise ValueError("conditions must include 'retmask' (the lr sweep trains on its pairs)")
        if not self.lrs or not self.seeds:
            raise ValueError("give at least one learning rate and one seed")
        bad = set(self.tasks) - set(LONG_TASKS)
        if bad:
            raise ValueError(f"tasks must be long-context generation tasks {LONG_TASKS}, got {sorted(bad)}")
        finals = {f"{c}:{s}" for c in self.conditions for s in self.seeds}
        stray = [o for o in self.only if o not in finals]
        if stray:
            raise ValueError(
                f"only {stray} names no final run; give CONDITION:SEED from conditions {list(self.conditions)} "
                f"and seeds {list(self.seeds)}, e.g. {sorted(finals)[0]!r}"
            )


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": dict(
        n_prompts=16,
        n_heldout=8,
        max_new_tokens=32,
        pair_batch_size=16,
        lrs=(5e-6,),
        seeds=(0, 1),
        effective_batch_size=8,
        per_device_batch_size=4,
        max_length=256,
        lengths=(512, 1024),
        n_per_cell=3,
        eval_batch_size=3,
        eval_max_new_tokens=24,
        n_short_qa=6,
        n_ppl=4,
        heldout_batch_size=8,
        bootstrap=200,
        prune_weights=True,
        device="cpu",
    ),
}


# -- stage bookkeeping -------------------------------------------------------------------------------------------
def _canon(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _marker(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.json"


def _check_params(name: str, where: Path, old: dict, new: dict) -> None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise StageMismatch(
                f"stage {name!r} in {str(where).split('/stages/')[0]} was run with {key}={old.get(key)!r}; this run has "
                f"{key}={new.get(key)!r}. Use another --out, or delete {where} (and what it made) to redo it"
            )


def _stage(out: Path, name: str, params: dict, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless the marker of ``name`` says it finished with the same ``params`` (then return its result)."""
    params = _canon(params)
    marker = _marker(out, name)
    if marker.exists():
        rec = json.loads(marker.read_text(encoding="utf-8"))
        _check_params(name, marker, rec["params"], params)
        log.info("stage %s: done, skipped", name)
        return rec["result"]
    log.info("stage %s: running", name)
    t0 = time.time()
    result = _canon(fn())
    wall = time.time() - t0
    atomic_write_json(marker, {"name": name, "params": params, "result": result, "wall_s": wall})
    log.info("stage %s: %.1f s", name, wall)
    return result


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- models --------------------------------------------------------------------------------------------------------
def _load(config: StudyConfig, path: str | None = None, *, train: bool = False):
    import torch

    from retmask_interp.core.models import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    dtype = "float32" if train else config.eval_dtype
    rm = load_model(path or config.model, device=config.device, dtype=dtype)
    if rm.tokenizer is not None and rm.tokenizer.pad_token_id is None:
        rm.tokenizer.pad_token = rm.tokenizer.eos_token
    return rm


# -- 1. prompts ----------------------------------------------------------------------------------------------------
def stage_prompts(config: StudyConfig, out: Path) -> dict:
    from retmask_interp.data.instructions import (
        InstructionConfig,
        instruction_prompts,
        summarize_prompts,
        summary_markdown,
    )

    params = {"prompt_seed": config.prompt_seed, "n_prompts": config.n_prompts, "n_heldout": config.n_heldout}

    def run() -> dict:
        full = instruction_prompts(InstructionConfig(seed=config.prompt_seed))
        indexed = list(enumerate(full))
        train = [(i, p) for i, p in indexed if p.split == "train"][: config.n_prompts]
        heldout = [(i, p) for i, p in indexed if p.split == "eval"][: config.n_heldout]
        for name, rows in (("train", train), ("heldout", heldout)):
            text = "".join(json.dumps(p.to_record() | {"index": i}) + "\n" for i, p in rows)
            atomic_write_text(out / "prompts" / f"{name}.jsonl", text)
        summary = summarize_prompts([p for _, p in train + heldout])
        atomic_write_json(out / "prompts" / "makeup.json", summary)
        atomic_write_text(out / "prompts" / "makeup.md", summary_markdown(summary) + "\n")
        return {"train": len(train), "heldout": len(heldout), "set_size": len(full)}

    return _stage(out, "prompts", params, run)


def _prompts(out: Path, split: str):
    from retmask_interp.retmask.pairs import Prompt

    return [Prompt(r["index"], r["prompt"], r["id"]) for r in read_jsonl(out / "prompts" / f"{split}.jsonl")]


# -- 2. heads ------------------------------------------------------------------------------------------------------
def stage_heads(config: StudyConfig, out: Path, rm=None) -> dict:
    if not config.heads:
        raise ValueError("give the retrieval-head list: --heads PATH (a head-score JSON of this model)")
    params = {"heads_sha256": _sha256(config.heads), "head_threshold": config.head_threshold}
    params |= {"random_seed": config.random_seed, "model": config.model}

    def run() -> dict:
        from retmask_interp.heads.formats import load_any_head_list
        from retmask_interp.interventions.controls import random_heads

        model = rm or _load(config)
        hs = load_any_head_list(str(config.heads))
        if (hs.num_layers, hs.num_heads) != (model.geometry.num_layers, model.geometry.num_heads):
            raise ValueError(
                f"{config.heads} is for {hs.num_layers} layers x {hs.num_heads} heads; {config.model} has "
                f"{model.geometry.num_layers} x {model.geometry.num_heads}"
            )
        retrieval = sorted(hs.select(threshold=config.head_threshold))
        if not retrieval:
            raise ValueError(f"no head of {config.heads} scores >= {config.head_threshold}")
        control = random_heads(
            model, len(retrieval), exclude=retrieval, seed=config.random_seed, like=retrieval
        )
        scores = {f"{a}.{b}": hs.scores.get((a, b), 0.0) for a, b in retrieval + control}
        return {
            "retmask": [list(h) for h in retrieval],
            "random": [list(h) for h in control],
            "scores": scores,
            "source": str(config.heads),
        }

    return _stage(out, "heads", params, run)


# -- 3. responses --------------------------------------------------------------------------------------------------
def _side_heads(side: str, heads: dict) -> list[tuple[int, int]]:
    if side.startswith("masked_"):
        return [(int(a), int(b)) for a, b in heads[side.removeprefix("masked_")]]
    return []


def _side_seed(side: str, config: StudyConfig) -> int:
    return config.pair_seed + (config.self_seed_offset if side == "normal_alt" else 0)


def _needed_sides(config: StudyConfig) -> list[str]:
    return [s for s in SIDES if any(s in CONDITION_SIDES[c] for c in config.conditions)]


def sample_side(rm, prompts, heads, seed: int, config: StudyConfig, path: Path) -> None:
    """Append one response per prompt (not yet in ``path``) to ``path``, batched and seeded as ``make_pairs``."""
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
    )
    done: set[int] = set()
    if path.exists():  # resuming after a kill: drop a torn last line, keep the finished batches
        repair_jsonl_tail(path)
        done = {r["prompt_index"] for r in read_jsonl(path)}
    conversational = _conversational(rm.tokenizer, "auto")
    encoded = {p.index: encode_prompt(rm.tokenizer, p.text, conversational) for p in prompts}
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


def stage_responses(config: StudyConfig, out: Path, heads: dict, get_model) -> dict:
    results = {}
    for split in ("train", "heldout"):
        prompts = _prompts(out, split)
        for side in _needed_sides(config):
            name = f"responses/{side}.{split}"
            params = {
                "model": config.model,
                "heads": _side_heads(side, heads),
                "seed": _side_seed(side, config),
                "prompts": hashlib.sha256(
                    json.dumps([[p.index, p.text] for p in prompts]).encode()
                ).hexdigest(),
                "device": config.device,
                "eval_dtype": config.eval_dtype,
            } | {k: getattr(config, k) for k in ("temperature", "top_p", "max_new_tokens", "pair_batch_size")}
            path = out / "responses" / f"{side}.{split}.jsonl"
            started = out / "responses" / f"{side}.{split}.params.json"
            if started.exists() and not _marker(out, name).exists():
                _check_params(
                    name, _marker(out, name), json.loads(started.read_text())["params"], _canon(params)
                )

            def run(prompts=prompts, side=side, path=path, started=started, params=params) -> dict:
                atomic_write_json(started, {"params": _canon(params)})
                sample_side(
                    get_model(), prompts, _side_heads(side, heads), _side_seed(side, config), config, path
                )
                recs = list(read_jsonl(path))
                return {"n": len(recs), "truncated": sum(not r["finished"] for r in recs)}

            results[name] = _stage(out, name, params, run)
    return results


# -- 4. pairs --------------------------------------------------------------------------------------------------------
def stage_pairs(config: StudyConfig, out: Path, heads: dict, get_model) -> dict:
    from retmask_interp.retmask import pairs as P

    stats = {}
    for split in ("train", "heldout"):
        prompts = _prompts(out, split)
        for cond in config.conditions:
            chosen_side, rejected_side = CONDITION_SIDES[cond]
            name = f"pairs/{cond}.{split}"
            params: dict[str, Any] = {"chosen": chosen_side, "rejected": rejected_side, "split": split}
            params["responses"] = {
                s: json.loads(_marker(out, f"responses/{s}.{split}").read_text())["params"]
                for s in (chosen_side, rejected_side)
            }

            def run(
                prompts=prompts, cond=cond, split=split, chosen_side=chosen_side, rejected_side=rejected_side
            ):
                side = {
                    s: {r["prompt_index"]: r for r in read_jsonl(out / "responses" / f"{s}.{split}.jsonl")}
                    for s in (chosen_side, rejected_side)
                }
                paths = P.pair_paths(out / "pairs" / f"{cond}.{split}.jsonl")
                for p in (paths.pairs, paths.dropped, paths.stats):
                    p.unlink(missing_ok=True)
                conversational = P._conversational(get_model().tokenizer, "auto")
                masked = _side_heads(rejected_side, heads)
                sampling = {k: getattr(config, k) for k in ("temperature", "top_p", "max_new_tokens")}
                fmt = "conversational" if conversational else "plain"
                meta = {"seed": config.pair_seed, "heads_hash": P.heads_hash(masked, "zero"), "mode": "zero"}
                meta["settings"] = P._settings_hash(sampling, fmt)
                if cond == "self":
                    meta["rejected_seed"] = _side_seed(rejected_side, config)

                def triple(r: dict) -> tuple[str, int, bool]:
                    return (r["text"], r["tokens"], r["finished"])

                chosen = [triple(side[chosen_side][p.index]) for p in prompts]
                rejected = [triple(side[rejected_side][p.index]) for p in prompts]
                extra = [{"sample_seed": side[chosen_side][p.index]["sample_seed"]} for p in prompts]
                P._write(paths, prompts, chosen, rejected, meta, conversational, extra)
                st = P._finish(paths, len(prompts), masked, meta, fmt, sampling, config.model)
                return {k: v for k, v in st.to_dict().items() if k not in ("pairs_path", "dropped_path")}

            stats[f"{cond}.{split}"] = _stage(out, name, params, run)
    return stats


# -- 5. training -------------------------------------------------------------------------------------------------
def run_name(cond: str, lr: float, seed: int) -> str:
    """The name of a DPO run (its folder under ``train/`` and its markers ``train/NAME``, ``eval/NAME``)."""
    return f"{cond}_lr{lr:g}_s{seed}"


def _ppl_texts(config: StudyConfig) -> list[str]:
    from retmask_interp.data.ppl_texts import load_ppl_texts

    return [t.text for t in load_ppl_texts()][: config.n_ppl]


def _nll_per_token(rm, config: StudyConfig) -> list[float]:
    from retmask_interp.retmask.evaluation import sequence_nll

    return [
        nll / max(n, 1) for nll, n in sequence_nll(rm, _ppl_texts(config), batch_size=config.eval_batch_size)
    ]


def _heldout_logps(rm, out: Path, cond: str, config: StudyConfig) -> dict[str, list[float]]:
    from retmask_interp.retmask.heldout import response_logprobs

    recs = list(read_jsonl(out / "pairs" / f"{cond}.heldout.jsonl"))
    prompts = [r["prompt"] for r in recs]
    return {
        side: response_logprobs(
            rm.model,
            rm.tokenizer,
            prompts,
            [r[side] for r in recs],
            batch_size=config.heldout_batch_size,
            max_length=config.max_length,
        )
        for side in ("chosen", "rejected")
    }


def stage_reference(config: StudyConfig, out: Path) -> dict:
    """The untrained model's held-out log-probabilities (the DPO reference) and held-out perplexity."""
    params = {"model": config.model, "conditions": list(config.conditions), "max_length": config.max_length}
    params["pairs"] = [
        json.loads(_marker(out, f"pairs/{c}.heldout").read_text())["params"] for c in config.conditions
    ]
    params["n_ppl"] = config.n_ppl

    def run() -> dict:
        rm = _load(config, train=True)  # float32, as the policy is trained
        logps = {c: _heldout_logps(rm, out, c, config) for c in config.conditions}
        nll = _nll_per_token(rm, config)
        return {"logps": logps, "ppl": math.exp(sum(nll) / len(nll)) if nll else math.nan}

    return _stage(out, "reference", params, run)


def _train_params(config: StudyConfig, cond: str, lr: float, seed: int, out: Path) -> dict:
    keys = (
        "model",
        "beta",
        "epochs",
        "effective_batch_size",
        "per_device_batch_size",
        "max_length",
        "device",
    )
    params = {k: getattr(config, k) for k in keys} | {"condition": cond, "lr": lr, "seed": seed}
    params["pairs"] = json.loads(_marker(out, f"pairs/{cond}.train").read_text())["params"]
    return params


def _has_weights(path: str | Path) -> bool:
    return any(Path(path).glob("*.safetensors"))


def train_run(
    config: StudyConfig,
    out: Path,
    cond: str,
    lr: float,
    seed: int,
    reference: dict,
    *,
    need_weights: bool = False,
) -> dict:
    """One DPO run (a unit). ``need_weights``: the run is to be evaluated, so a finished run whose weights are gone
    (trained on a machine that was lost before its evaluation) and that is not evaluated yet is trained again."""
    name = run_name(cond, lr, seed)
    marker = _marker(out, f"train/{name}")
    if need_weights and marker.exists() and not _marker(out, f"eval/{name}").exists():
        if not _has_weights(out / "train" / name):
            log.warning(
                "train/%s finished but its weights are gone and it is not evaluated: training it again", name
            )
            remove_run(out, f"train/{name}")

    def run() -> dict:
        from retmask_interp.retmask.heldout import heldout_rewards
        from retmask_interp.retmask.training import DPOSettings, train_dpo

        rm = _load(config, train=True)
        settings = DPOSettings(
            beta=config.beta,
            learning_rate=lr,
            num_train_epochs=config.epochs,
            effective_batch_size=config.effective_batch_size,
            per_device_batch_size=config.per_device_batch_size,
            max_length=config.max_length,
            seed=seed,
            logging_steps=1,
        )
        t0 = time.time()
        summary = train_dpo(
            rm, None, out / "pairs" / f"{cond}.train.jsonl", out / "train" / name, settings, overwrite=True
        )
        train_s = time.time() - t0
        rm.model.eval()
        held = heldout_rewards(_heldout_logps(rm, out, cond, config), reference["logps"][cond], config.beta)
        nll = _nll_per_token(rm, config)
        final = summary["final"]
        return {
            "condition": cond,
            "lr": lr,
            "seed": seed,
            "num_pairs": summary["num_pairs"],
            "steps": summary["optimizer_steps"],
            "loss": final.get("loss"),
            "accuracy": final.get("rewards/accuracies"),
            "margin": final.get("rewards/margins"),
            "finite_loss": summary["finite_loss"],
            "heldout_accuracy": held["accuracy"],
            "heldout_margin": held["margin"],
            "heldout_n": held["n"],
            "heldout_ppl": math.exp(sum(nll) / len(nll)) if nll else math.nan,
            "train_wall_s": train_s,
            "path": str(out / "train" / name),
        }

    res = _stage(out, f"train/{name}", _train_params(config, cond, lr, seed, out), run)
    res["wall_s"] = json.loads(marker.read_text())["wall_s"]
    return res


def _dpo_rows(sweep: Sequence[dict], runs: Sequence[dict]) -> list[dict]:
    """Every DPO run once, in training order (a run trained again after a lost machine: its latest result)."""
    rows = {(r["condition"], r["lr"], r["seed"]): r for r in [*sweep, *runs]}
    return list(rows.values())


def choose_lr(sweep: Sequence[dict], base_ppl: float, max_ppl_increase: float) -> tuple[float, list[dict]]:
    """The held-out criterion (module docstring): ``(chosen lr, sweep rows with ppl_change and chosen)``."""
    rows = []
    for r in sweep:
        change = r["heldout_ppl"] / base_ppl - 1 if base_ppl and math.isfinite(base_ppl) else math.nan
        rows.append(dict(r) | {"ppl_change": change, "eligible": bool(change <= max_ppl_increase)})
    eligible = [r for r in rows if r["eligible"]]
    if eligible:
        best = max(eligible, key=lambda r: (r["heldout_accuracy"], r["heldout_margin"], -r["lr"]))
    else:
        best = min(rows, key=lambda r: r["lr"])
    for r in rows:
        r["chosen"] = r["lr"] == best["lr"]
    return float(best["lr"]), rows


# -- 6. evaluation -------------------------------------------------------------------------------------------------
def _eval_params(config: StudyConfig) -> dict:
    keys = ("lengths", "n_per_cell", "tasks", "eval_seed", "eval_max_new_tokens", "n_short_qa", "n_ppl")
    return {k: getattr(config, k) for k in keys} | {"eval_dtype": config.eval_dtype, "device": config.device}


def evaluate_model(
    rm, config: StudyConfig, condition: str, seed: int, lr: float
) -> tuple[list[dict], list[dict]]:
    """Score rows (``report.SCORE_COLUMNS``) and prediction records of one model."""
    from retmask_interp.data.short_qa import MAX_NEW_TOKENS, load_short_qa, score_short_qa
    from retmask_interp.measure.outcomes import greedy_texts
    from retmask_interp.retmask.evaluation import MAX_NEW_TOKENS as BUDGETS
    from retmask_interp.retmask.evaluation import _encode, evaluate

    cap = config.eval_max_new_tokens
    budgets = {t: min(b, cap) if cap else b for t, b in BUDGETS.items()}
    df = evaluate(
        rm,
        tasks=config.tasks,
        lengths=config.lengths,
        n_per_cell=config.n_per_cell,
        seed=config.eval_seed,
        batch_size=config.eval_batch_size,
        ppl_length=None,
        max_new_tokens=budgets,
        progress=False,
    )
    key = {"condition": condition, "seed": seed, "lr": lr}
    rows = [key | {"task": r.task, "length": int(r.length), "example": int(r.index), "score": float(r.score)}
            for r in df.itertuples()]  # fmt: skip
    preds = [key | {"task": r.task, "length": int(r.length), "example": int(r.index), "prediction": r.prediction}
             for r in df.itertuples()]  # fmt: skip
    missing = {(t, n) for t in config.tasks for n in config.lengths} - {
        (r["task"], r["length"]) for r in rows
    }
    if missing:
        raise RuntimeError(
            f"evaluation skipped cells {sorted(missing)} (prompts beyond the model's context?)"
        )
    items = load_short_qa()[: config.n_short_qa]
    chat = bool(getattr(rm.tokenizer, "chat_template", None))
    encoded = [_encode(rm.tokenizer, q.question, chat) for q in items]
    answers = greedy_texts(
        rm,
        encoded,
        max_new_tokens=min(MAX_NEW_TOKENS, cap or MAX_NEW_TOKENS),
        batch_size=config.eval_batch_size,
    )
    for i, (q, a, s) in enumerate(zip(items, answers, score_short_qa(items, answers))):
        rows.append(key | {"task": "short_qa", "length": 0, "example": i, "score": float(s)})
        preds.append(key | {"task": "short_qa", "length": 0, "example": i, "prediction": a, "id": q.id})
    for i, nll in enumerate(_nll_per_token(rm, config)):
        rows.append(key | {"task": "ppl_nll", "length": 0, "example": i, "score": float(nll)})
    return rows, preds


def check_eval_fits(rm, config: StudyConfig) -> dict[str, int]:
    """Fail before any evaluation when a cell's longest prompt plus its answer budget exceeds the model's context
    (``evaluate`` would skip it); returns the longest prompt per cell."""
    from retmask_interp.data.tasks import generate_examples
    from retmask_interp.retmask.evaluation import MAX_NEW_TOKENS as BUDGETS
    from retmask_interp.retmask.evaluation import _encode

    chat = bool(getattr(rm.tokenizer, "chat_template", None))
    longest, bad = {}, []
    for task in config.tasks:
        for n in config.lengths:
            ex = generate_examples(
                task,
                config.n_per_cell,
                seed=config.eval_seed,
                split="eval",
                num_tokens=n,
                tokenizer=rm.tokenizer,
            )
            top = max(len(_encode(rm.tokenizer, e.prompt, chat)) for e in ex)
            longest[f"{task}@{n}"] = top
            budget = min(BUDGETS[task], config.eval_max_new_tokens or BUDGETS[task])
            if rm.max_context and top + budget > rm.max_context:
                bad.append(f"{task}@{n}: {top} + {budget} > {rm.max_context}")
    if bad:
        raise ValueError(f"evaluation cells exceed the model's context (lower --lengths): {'; '.join(bad)}")
    return longest


def eval_run(
    config: StudyConfig, out: Path, name: str, condition: str, seed: int, lr: float, path: str | None
):
    import pandas as pd

    from retmask_interp.retmask.report import SCORE_COLUMNS, write_scores

    params = _eval_params(config) | {"condition": condition, "seed": seed, "lr": lr}
    if path is not None:
        params["trained"] = json.loads(_marker(out, f"train/{name}").read_text())["params"]

    def run() -> dict:
        rm = _load(config, path)
        rows, preds = evaluate_model(rm, config, condition, seed, lr)
        write_scores(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), out / "eval" / f"{name}.csv")
        atomic_write_text(
            out / "eval" / f"{name}.predictions.jsonl", "".join(json.dumps(p) + "\n" for p in preds)
        )
        if path is not None and config.prune_weights:
            for f in Path(path).glob("*.safetensors"):
                f.unlink()
        return {"rows": len(rows)}

    return _stage(out, f"eval/{name}", params, run)


# -- 7. report -------------------------------------------------------------------------------------------------------
def _timings(out: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    for marker in sorted((out / "stages").rglob("*.json")):
        rec = json.loads(marker.read_text(encoding="utf-8"))
        group = rec["name"].split("/")[0]
        times[group] = times.get(group, 0.0) + float(rec["wall_s"])
        times[rec["name"]] = float(rec["wall_s"])
    return times


def stage_report(config: StudyConfig, out: Path, eval_names: Sequence[str], extra: dict) -> dict:
    import pandas as pd

    from retmask_interp.retmask.report import markdown_report, read_scores, study_tables, write_scores

    report_dir = Path(config.report_dir) if config.report_dir else out / "report"
    df = pd.concat([read_scores(out / "eval" / f"{n}.csv") for n in eval_names], ignore_index=True)
    write_scores(df, report_dir / "scores.csv")
    df = read_scores(report_dir / "scores.csv")  # the tables come from the CSV as written
    tables = study_tables(df, n_resamples=config.bootstrap)
    atomic_write_json(report_dir / "tables.json", tables)
    timings = _timings(out)
    atomic_write_json(
        report_dir / "study.json", extra | {"timings_s": timings, "config": dataclasses.asdict(config)}
    )
    setup = [
        f"model `{config.model}`, device `{config.device}`; heads `{config.heads}` (score >= {config.head_threshold}): "
        f"{len(extra['heads']['retmask'])} retrieval heads, random control {len(extra['heads']['random'])} heads "
        "(per-layer matched, seed {})".format(config.random_seed),
        f"pairs: temperature {config.temperature}, top-p {config.top_p}, at most {config.max_new_tokens} new tokens, "
        f"zero masking, seed {config.pair_seed} on both sides (self-DPO: {config.pair_seed} vs "
        f"{config.pair_seed + config.self_seed_offset})",
        f"DPO (TRL, full fine-tuning): sigmoid, beta {config.beta}, cosine, warmup 0.1, weight decay 0.1, "
        f"{config.epochs:g} epochs, effective batch {config.effective_batch_size}; lr sweep {list(config.lrs)} "
        f"(seed {config.sweep_seed}) -> lr {extra['chosen_lr']:g}; seeds {list(config.seeds)}",
        f"evaluation: {', '.join(config.tasks)} at {list(config.lengths)} tokens, {config.n_per_cell} examples "
        f"per cell (eval seed {config.eval_seed}); short_qa and ppl_texts",
        "lr criterion: highest held-out DPO reward accuracy on held-out RetMask pairs (ties: margin, smaller lr) "
        f"among lrs whose held-out perplexity rose <= {config.max_ppl_increase:.0%}; long-context scores unused",
    ]
    makeup = (out / "prompts" / "makeup.md").read_text(encoding="utf-8")
    text = markdown_report(
        tables,
        title=config.title,
        setup=setup,
        lr_sweep=extra["lr_sweep"],
        dpo=extra["dpo"],
        pairs=extra["pairs"],
        prompts=makeup,
        timings={k: v for k, v in timings.items() if "/" not in k},
    )
    atomic_write_text(report_dir / "README.md", text)
    return {"report_dir": str(report_dir), "rows": len(df)}


# -- the whole study ------------------------------------------------------------------------------------------------
def run_study(config: StudyConfig, *, until: str = "report") -> dict:
    """Run (or resume) every stage up to and including ``until`` (one of ``STAGES``); returns what was made."""
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.last.json", dataclasses.asdict(config))
    stop = STAGES.index(until)
    res: dict[str, Any] = {"prompts": stage_prompts(config, out)}
    if stop < 1:
        return res
    cache: dict[str, Any] = {}

    def model():
        if "rm" not in cache:
            cache["rm"] = _load(config)
        return cache["rm"]

    heads = stage_heads(config, out, None)
    res["heads"] = heads
    if stop < 2:
        return res
    res["responses"] = stage_responses(config, out, heads, model)
    if stop < 3:
        return res
    res["pairs"] = stage_pairs(config, out, heads, model)
    cache.clear()
    if stop < 4:
        return res
    reference = stage_reference(config, out)
    sweep = [train_run(config, out, "retmask", lr, config.sweep_seed, reference) for lr in config.lrs]
    lr, sweep_rows = choose_lr(sweep, reference["ppl"], config.max_ppl_increase)
    atomic_write_json(
        out / "lr_choice.json", {"chosen_lr": lr, "sweep": sweep_rows, "base_ppl": reference["ppl"]}
    )
    final = [(c, s) for c in config.conditions for s in config.seeds]
    final = [(c, s) for c, s in final if not config.only or f"{c}:{s}" in config.only]  # this process's runs
    if stop < 5:
        runs = [train_run(config, out, c, lr, s, reference) for c, s in final]
        res |= {"chosen_lr": lr, "lr_sweep": sweep_rows, "dpo": _dpo_rows(sweep, runs)}
        return res
    # each final run is evaluated as soon as it is trained: weights live on one machine for one unit at most
    names = ["none"]
    if not _marker(out, "eval/none").exists():
        res["longest_prompts"] = check_eval_fits(_load(config), config)
    eval_run(config, out, "none", "none", -1, 0.0, None)
    runs = []
    for c, s in final:
        r = train_run(config, out, c, lr, s, reference, need_weights=True)
        name = run_name(c, lr, s)
        eval_run(config, out, name, c, s, lr, str(out / "train" / name))
        runs.append(r)
        names.append(name)
    res |= {"chosen_lr": lr, "lr_sweep": sweep_rows, "dpo": _dpo_rows(sweep, runs)}
    if stop < 6:
        return res
    if config.only:
        log.info(
            "only %s: the report waits for a run without --only once every final run is evaluated",
            config.only,
        )
        return res
    extra = {k: res[k] for k in ("chosen_lr", "lr_sweep", "dpo", "pairs", "heads")}
    res["report"] = stage_report(config, out, names, extra)
    return res


def remove_run(out: str | Path, name: str) -> None:
    """Delete a unit's marker and outputs (to redo it), e.g. ``remove_run(out, "train/retmask_lr5e-06_s0")``."""
    out = Path(out)
    _marker(out, name).unlink(missing_ok=True)
    target = out / name
    if target.is_dir():
        shutil.rmtree(target)
