"""RetMask training: DPO on normal-vs-masked preference pairs, through TRL's ``DPOTrainer``.

``train_dpo(model, tokenizer, pairs_path, out_dir, DPOSettings())`` trains with the sigmoid DPO loss and the
paper's settings as defaults (beta 0.1, learning rate 5e-7 with a cosine schedule, warmup 10 % of the steps,
weight decay 0.1, 2 epochs, effective batch 512 = per-device batch x gradient accumulation x processes, bf16 on a
GPU), either full fine-tuning or LoRA (``DPOSettings(lora=True)``, peft). It writes to ``out_dir``:

- the trained model (for LoRA: the adapter merged into the base weights) and the tokenizer, as safetensors, so
  ``retmask_interp.core.models.load_model(out_dir)`` and every ``retmask`` command read it;
- ``adapter/`` (LoRA only): the adapter alone;
- ``checkpoints/`` (only with ``save_steps``): Trainer checkpoints, from which ``resume=True`` continues;
- ``training_summary.json``: settings, counts, the final metrics (loss, reward accuracy and margin) and the log.

Reference model. For full fine-tuning the reference is a frozen deep copy of the model as it was before training
(``reference="copy"``; TRL would otherwise try to re-load the model from ``config._name_or_path``, which fails for
models built in memory), or the policy's own log-probabilities computed once before training
(``reference="precompute"``: no second copy in memory; not under FSDP). With LoRA the reference is the base model
with the adapter disabled, so no copy is kept.

Precision. With ``bf16`` the Trainer uses autocast; the weights should be float32 (``load_model(...,
dtype="float32")``) or sharded by DeepSpeed ZeRO, which keeps float32 master weights. Full fine-tuning of bf16
weights without DeepSpeed loses updates as small as lr 5e-7 to rounding: ``train_dpo`` warns about it.

Several GPUs. There is no launcher of our own: run the same command under ``accelerate launch``, with a DeepSpeed
config for models that do not fit one GPU, e.g. (TRL ships ZeRO configs)::

    accelerate launch --config_file "$(python -c 'import trl, os; print(os.path.join(os.path.dirname(trl.__file__),
        "accelerate_configs", "zero3.yaml"))')" -m retmask_interp.cli train meta-llama/Llama-3.1-8B-Instruct \\
        --pairs pairs.jsonl --out runs/llama-retmask --per-device-batch-size 4

The gradient accumulation is computed from the number of processes so that the effective batch stays 512.
Several CPU processes (a test of the mechanism): ``accelerate launch --multi_gpu --num_processes 2`` on a machine
without GPUs starts 2 processes that join over gloo; ``accelerate launch --cpu --num_processes 2`` starts only one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from retmask_interp.core.io import InputError, atomic_write_json, read_jsonl, refuse_overwrite
from retmask_interp.core.locks import run_lock
from retmask_interp.core.options import option
from retmask_interp.core.ranges import (
    FRACTION,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    STEPS,
    Range,
    check_fields,
)

__all__ = ["DPOSettings", "load_pairs_dataset", "train_dpo", "SUMMARY_NAME"]

log = logging.getLogger(__name__)

SUMMARY_NAME = "training_summary.json"


@dataclass
class DPOSettings:
    """DPO settings; defaults are the RetMask paper's (Ma & Okazaki 2026) where it states them."""

    beta: float = option(0.1, "DPO beta (TRL default, used by the paper)", range=POSITIVE)
    learning_rate: float = option(
        5e-7,
        "learning rate (paper, full fine-tuning; LoRA usually needs 1e-5 .. 1e-4)",
        range=POSITIVE,
        flag="--lr",
    )
    lr_scheduler_type: str = option("cosine", "lr schedule (paper)", cli=False)
    warmup_ratio: float = option(0.1, "warmup, a fraction of all optimizer steps (paper)", range=FRACTION)
    weight_decay: float = option(0.1, "weight decay (paper)", range=NONNEGATIVE)
    num_train_epochs: float = option(2.0, "epochs (paper)", range=POSITIVE, flag="--epochs")
    effective_batch_size: int = option(
        512, "pairs per optimizer step: per-device x accumulation x processes (paper)", range=POSITIVE_INT
    )
    per_device_batch_size: int = option(4, "pairs per forward pass", range=POSITIVE_INT)
    max_length: int | None = option(
        2560, "prompt + response tokens (the paper's responses are at most 2048; none: TRL's default)",
        range=POSITIVE_INT, optional=True,
    )  # fmt: skip
    bf16: bool | None = option(
        None, "bf16 autocast (auto: when a CUDA GPU with bf16 is present, else float32)"
    )
    gradient_checkpointing: bool | None = option(None, "gradient checkpointing (auto: on for a GPU)")
    reference: str = option(
        "copy", "full fine-tuning's reference: a frozen deep copy, or log-probs precomputed up front",
        choices=("copy", "precompute"),
    )  # fmt: skip
    lora: bool = option(
        False, "train a LoRA adapter (peft; merged into the saved model) instead of all weights"
    )
    lora_r: int = option(16, "LoRA rank", range=POSITIVE_INT)
    lora_alpha: int = option(32, "LoRA alpha", range=POSITIVE_INT)
    lora_dropout: float = option(0.0, "LoRA dropout", range=Range(low=0, high=1, high_open=True), cli=False)
    lora_target_modules: str | list[str] = option("all-linear", "LoRA target modules", cli=False)
    seed: int = option(0, "training seed", range=SEED, flag="--train-seed")
    max_steps: int = option(
        -1, "stop after N optimizer steps; > 0 overrides the epochs (smoke tests)", range=STEPS
    )
    logging_steps: int = option(10, "log loss and rewards every N optimizer steps", range=POSITIVE_INT)
    save_steps: int | None = option(
        None, "write a Trainer checkpoint every N steps (to resume a long run: --resume)", range=POSITIVE_INT
    )
    deepspeed: str | None = option(None, "a DeepSpeed JSON config (or pass one through `accelerate launch`)")
    extra: dict[str, Any] = option(
        help="any other trl.DPOConfig field, passed as is", factory=dict, cli=False
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- data --------------------------------------------------------------------------------------------------------
def load_pairs_dataset(pairs_path: str | Path):
    """The ``prompt`` / ``chosen`` / ``rejected`` columns of a pairs JSONL file as a ``datasets.Dataset``.

    All records must share one format: strings (plain) or chat messages (conversational).
    """
    from datasets import Dataset

    path = Path(pairs_path)
    if not path.exists():
        raise FileNotFoundError(f"pairs file {path} does not exist; make it with `retmask pairs`")
    rows = []
    kinds = set()
    for i, rec in enumerate(read_jsonl(path)):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in rec]
        if missing:
            raise InputError(f"{path}: record {i} lacks {missing}; expected prompt/chosen/rejected columns")
        for k in ("prompt", "chosen", "rejected"):
            if not (isinstance(rec[k], str) or _is_messages(rec[k])):
                raise InputError(
                    f"{path}:{i + 1}: {k} is {type(rec[k]).__name__} {rec[k]!r:.40}; expected a string or a list "
                    'of chat messages ({"role": ..., "content": "..."})'
                )
        kinds.add(tuple(isinstance(rec[k], str) for k in ("prompt", "chosen", "rejected")))
        rows.append({k: rec[k] for k in ("prompt", "chosen", "rejected")})
    if not rows:
        raise InputError(f"{path} holds no pairs (were they all dropped? see its .stats.json)")
    if len(kinds) != 1 or kinds.pop() not in ((True, True, True), (False, False, False)):
        raise InputError(
            f"{path} mixes plain (string) and conversational (message list) records; use one format"
        )
    return Dataset.from_list(rows)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value)
    )


def _is_conversational(dataset) -> bool:
    return not isinstance(dataset[0]["prompt"], str)


# -- configuration -----------------------------------------------------------------------------------------------
def _on_gpu(model: torch.nn.Module) -> bool:
    return next(model.parameters()).device.type == "cuda"


def _num_processes() -> int:
    """The number of training processes: the launcher's world size (``accelerate launch``, torchrun, DeepSpeed, MPI).

    Read from the initialised process group or the launcher's environment, not from ``accelerate.PartialState()``:
    that one, created before the Trainer's, reports 1 process for a CPU launch (no GPU: it does not join the gloo
    group), which made a 2-process CPU run use the one-process accumulation and twice the effective batch.
    """
    import os

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        value = os.environ.get(name)
        if value and value.strip().isdigit() and int(value) > 0:
            return int(value)
    return 1


def _dpo_config(settings: DPOSettings, out_dir: Path, use_gpu: bool, num_processes: int):
    from trl import DPOConfig

    names = {f.name for f in dataclasses.fields(DPOConfig)}
    per_step = settings.per_device_batch_size * num_processes
    accum = max(1, round(settings.effective_batch_size / per_step))
    if accum * per_step != settings.effective_batch_size:
        log.warning(
            "effective batch %d is not a multiple of %d (per-device batch x %d processes); using %d",
            settings.effective_batch_size,
            per_step,
            num_processes,
            accum * per_step,
        )
    bf16 = settings.bf16
    if bf16 is None:
        bf16 = use_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    checkpointing = use_gpu if settings.gradient_checkpointing is None else settings.gradient_checkpointing
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir / "checkpoints"),
        beta=settings.beta,
        loss_type=["sigmoid"],
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=accum,
        max_length=settings.max_length,
        bf16=bool(bf16),
        fp16=False,
        seed=settings.seed,
        logging_steps=settings.logging_steps,
        report_to="none",
        save_strategy="steps" if settings.save_steps else "no",
        precompute_ref_log_probs=settings.reference == "precompute" and not settings.lora,
        use_cpu=not use_gpu,
        deepspeed=settings.deepspeed,
    )
    if settings.save_steps:
        kwargs["save_steps"] = settings.save_steps
    # names that moved between transformers versions
    if "warmup_ratio" in names:
        kwargs["warmup_ratio"] = settings.warmup_ratio
    else:  # transformers >= 5.x: a float in [0, 1) is a ratio
        kwargs["warmup_steps"] = (
            settings.warmup_ratio if settings.warmup_ratio < 1 else int(settings.warmup_ratio)
        )
    ckpt_name = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    kwargs[ckpt_name] = bool(checkpointing)
    unknown = sorted(set(settings.extra) - names)
    if unknown:
        raise ValueError(f"DPOSettings.extra has fields that trl.DPOConfig does not know: {unknown}")
    kwargs.update(settings.extra)
    return DPOConfig(**kwargs), accum * per_step


def _lora_config(settings: DPOSettings):
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
    )


def _pairs_provenance(pairs_path: Path) -> dict[str, Any]:
    """Heads hash / mode / seed of the pairs, and their stats file when there is one."""
    out: dict[str, Any] = {"path": str(pairs_path)}
    first = next(read_jsonl(pairs_path), {})
    for key in ("heads_hash", "mode", "seed"):
        if key in first:
            out[key] = first[key]
    stem = pairs_path.name[: -len(".jsonl")] if pairs_path.name.endswith(".jsonl") else pairs_path.name
    stats = pairs_path.with_name(stem + ".stats.json")
    if stats.exists():
        out["stats"] = json.loads(stats.read_text(encoding="utf-8"))
    return out


def _final_metrics(history: list[dict]) -> dict[str, float]:
    keys = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
    out: dict[str, float] = {}
    for rec in history:
        for k in keys:
            if k in rec:
                out[k] = float(rec[k])
    summary: dict = next((r for r in reversed(history) if "train_loss" in r), {})
    for k in ("train_loss", "train_runtime"):
        if k in summary:
            out[k] = float(summary[k])
    return out


# -- training ----------------------------------------------------------------------------------------------------
def train_dpo(
    model,
    tokenizer,
    pairs_path: str | Path,
    out_dir: str | Path,
    config: DPOSettings | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """DPO-train ``model`` on the pairs in ``pairs_path`` and save it to ``out_dir``; returns the summary dict.

    ``model`` is a Hugging Face causal LM or a ``RetModel`` (``tokenizer`` may then be ``None``). It is trained in
    place (full fine-tuning) or receives the merged adapter (LoRA). A finished ``out_dir`` (with
    ``training_summary.json``) is not overwritten without ``overwrite=True``; ``resume=True`` continues from the
    last checkpoint in ``out_dir/checkpoints`` (needs ``save_steps``). The run holds the exclusive run lock of
    ``out_dir`` (``core.locks``; under ``accelerate launch`` the main process holds it for all ranks).
    """
    main = int(os.environ.get("RANK", "0")) == 0
    with run_lock(out_dir if main else None, what="training output"):
        return _train_dpo(model, tokenizer, pairs_path, out_dir, config, overwrite=overwrite, resume=resume)


def _train_dpo(
    model, tokenizer, pairs_path, out_dir, config, *, overwrite: bool, resume: bool
) -> dict[str, Any]:
    import trl
    from trl import DPOTrainer

    from retmask_interp import __version__
    from retmask_interp.core.models import RetModel

    settings = config or DPOSettings()
    if isinstance(model, RetModel):
        tokenizer = tokenizer or model.tokenizer
        name = model.name
        model = model.model
    else:
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    if tokenizer is None:
        raise ValueError("train_dpo needs the model's tokenizer")
    if settings.reference not in ("copy", "precompute"):
        raise ValueError(f"reference must be 'copy' or 'precompute', got {settings.reference!r}")
    out_dir = Path(out_dir)
    refuse_overwrite(out_dir / SUMMARY_NAME, overwrite, "training run")
    pairs_path = Path(pairs_path)
    dataset = load_pairs_dataset(pairs_path)
    if _is_conversational(dataset) and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{pairs_path} holds chat messages but the tokenizer has no chat template")

    use_gpu = _on_gpu(model)
    nproc = _num_processes()
    args, effective = _dpo_config(settings, out_dir, use_gpu, nproc)
    dtype = next(model.parameters()).dtype
    if (
        not settings.lora
        and dtype in (torch.bfloat16, torch.float16)
        and not (settings.deepspeed or nproc > 1)
    ):
        log.warning(
            "full fine-tuning of %s weights: updates of lr %.1e are mostly lost to rounding; load the model in "
            "float32 (bf16 autocast still applies) or train under DeepSpeed",
            dtype,
            settings.learning_rate,
        )
    if settings.lora and settings.learning_rate < 1e-5:
        log.warning(
            "LoRA with learning rate %.1e barely moves the adapter; 1e-5 .. 1e-4 is usual",
            settings.learning_rate,
        )

    ref_model = None
    peft_config = None
    if settings.lora:
        peft_config = _lora_config(settings)
    elif settings.reference == "copy":
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if trainer.accelerator.num_processes != nproc:  # the accumulation above assumed nproc processes
        raise RuntimeError(
            f"the Trainer runs {trainer.accelerator.num_processes} processes but the gradient accumulation was "
            f"computed for {nproc}; the effective batch would not be {effective}"
        )
    checkpoint = None
    if resume:
        ckpts = sorted(
            (out_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
        )
        checkpoint = str(ckpts[-1]) if ckpts else None
        if checkpoint is None:
            log.warning(
                "resume=True but %s has no checkpoint; starting from the beginning", out_dir / "checkpoints"
            )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    if int(result.global_step) == 0:  # an untrained copy must not be saved as a finished run
        raise InputError(
            f"training made no optimizer step ({len(dataset)} pairs, {settings.num_train_epochs} epochs, effective "
            f"batch {effective}, max_steps {settings.max_steps}); nothing was saved: raise --epochs or --max-steps"
        )

    # save: the full model (merged for LoRA) and the tokenizer
    if settings.lora:
        trainer.save_model(str(out_dir / "adapter"))
        trained = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if trainer.is_world_process_zero():
            trained.save_pretrained(str(out_dir))
    else:
        trainer.save_model(str(out_dir))
        trained = trainer.accelerator.unwrap_model(trainer.model)
    trained.eval()
    if trainer.is_world_process_zero():
        for junk in (out_dir / "training_args.bin", out_dir / "adapter" / "training_args.bin"):
            junk.unlink(
                missing_ok=True
            )  # a pickle the Trainer writes beside the weights; settings are in the summary
        ckpt_dir = out_dir / "checkpoints"
        if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
            ckpt_dir.rmdir()
    summary = {
        "model": name,
        "method": "retmask-dpo",
        "settings": settings.to_dict(),
        "effective_batch_size": effective,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": nproc,
        "bf16": bool(args.bf16),
        "num_pairs": len(dataset),
        "format": "conversational" if _is_conversational(dataset) else "plain",
        "optimizer_steps": int(result.global_step),
        "final": _final_metrics(trainer.state.log_history),
        "finite_loss": math.isfinite(float(result.training_loss)),
        "log_history": trainer.state.log_history,
        "pairs": _pairs_provenance(pairs_path),
        "versions": {"retmask_interp": __version__, "trl": trl.__version__, "torch": torch.__version__},
    }
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out_dir))
        atomic_write_json(out_dir / SUMMARY_NAME, summary)
    log.info("DPO done: %d steps, final %s", summary["optimizer_steps"], summary["final"])
    return summary
