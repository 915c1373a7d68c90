"""The RetMask study's DPO: the untrained reference (stage ``reference``), one training run (stage
``train/NAME``) and the held-out criterion that picks the learning rate (``choose_lr``).

DPO goes through TRL (``retmask.training.train_dpo``; full fine-tuning, sigmoid, cosine, warmup 0.1, weight decay
0.1). The **held-out criterion**: the highest held-out DPO reward accuracy on the held-out ``retmask`` pairs (ties:
the higher held-out margin, then the smaller lr) among the lrs whose held-out perplexity on ``data.ppl_texts`` rose
by at most ``max_ppl_increase`` (relative) over the untrained model; if none qualifies, the smallest lr. The
long-context test never enters the choice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

from retmask_interp.core.io import read_jsonl
from retmask_interp.core.stages import Stages
from retmask_interp.workflows.studies.retmask.config import StudyConfig
from retmask_interp.workflows.studies.retmask.models import load

__all__ = ["choose_lr", "dpo_rows", "nll_per_token", "run_name", "stage_reference", "train_run"]

log = logging.getLogger(__name__)


def run_name(cond: str, lr: float, seed: int) -> str:
    """The name of a DPO run (its folder under ``train/`` and its stages ``train/NAME``, ``eval/NAME``)."""
    return f"{cond}_lr{lr:g}_s{seed}"


def _ppl_texts(config: StudyConfig) -> list[str]:
    from retmask_interp.data.ppl_texts import load_ppl_texts

    return [t.text for t in load_ppl_texts()][: config.n_ppl]


def nll_per_token(rm, config: StudyConfig) -> list[float]:
    """Mean NLL per token of each of the study's perplexity texts."""
    from retmask_interp.retmask.evaluation import sequence_nll

    return [
        nll / max(n, 1) for nll, n in sequence_nll(rm, _ppl_texts(config), batch_size=config.eval_batch_size)
    ]


def _ppl(nll: list[float]) -> float:
    return math.exp(sum(nll) / len(nll)) if nll else math.nan


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


def stage_reference(config: StudyConfig, st: Stages) -> dict:
    """The untrained model's held-out log-probabilities (the DPO reference) and held-out perplexity."""
    settings = {"model": config.model, "conditions": list(config.conditions), "max_length": config.max_length}
    settings["n_ppl"] = config.n_ppl

    def run(ctx) -> dict:
        rm = load(config, train=True)  # float32, as the policy is trained
        logps = {c: _heldout_logps(rm, st.root, c, config) for c in config.conditions}
        return {"logps": logps, "ppl": _ppl(nll_per_token(rm, config))}

    return st.run(
        "reference", settings, run, after={"pairs": [f"pairs/{c}.heldout" for c in config.conditions]}
    )


def _has_weights(path: str | Path) -> bool:
    return any(Path(path).glob("*.safetensors"))


def train_run(
    config: StudyConfig,
    st: Stages,
    cond: str,
    lr: float,
    seed: int,
    reference: dict,
    *,
    need_weights: bool = False,
) -> dict:
    """One DPO run. ``need_weights``: the run is to be evaluated, so a finished run whose weights are gone (trained
    on a machine that was lost before its evaluation) and that is not evaluated yet is trained again."""
    name = run_name(cond, lr, seed)
    stage = f"train/{name}"
    if need_weights and st.done(stage) and not st.done(f"eval/{name}") and not _has_weights(st.root / stage):
        log.warning("%s finished but its weights are gone and it is not evaluated: training it again", stage)
        st.remove(stage, stage)
    keys = (
        "model",
        "beta",
        "epochs",
        "effective_batch_size",
        "per_device_batch_size",
        "max_length",
        "device",
    )
    settings = {k: getattr(config, k) for k in keys} | {"condition": cond, "lr": lr, "seed": seed}

    def run(ctx) -> dict:
        from retmask_interp.retmask.heldout import heldout_rewards
        from retmask_interp.retmask.training import DPOSettings, train_dpo

        rm = load(config, train=True)
        dpo = DPOSettings(
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
            rm, None, ctx.path("pairs", f"{cond}.train.jsonl"), ctx.path(stage), dpo, overwrite=True
        )
        train_s = time.time() - t0
        rm.model.eval()
        held = heldout_rewards(
            _heldout_logps(rm, st.root, cond, config), reference["logps"][cond], config.beta
        )
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
            "heldout_ppl": _ppl(nll_per_token(rm, config)),
            "train_wall_s": train_s,
            "path": str(ctx.path(stage)),
        }

    res = st.run(stage, settings, run, after={"pairs": f"pairs/{cond}.train"})
    rec = st.record(stage)
    assert rec is not None
    return res | {"wall_s": rec["wall_s"]}


def dpo_rows(sweep: Sequence[dict], runs: Sequence[dict]) -> list[dict]:
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
