"""Train a retrieval-head model organism: tokenizer, Llama model, synthetic long-context data, an end-of-training check.

The command line is ``scripts/train_organism.py`` (a thin wrapper over :func:`main` that supplies the check, which
lives above this layer in ``workflows.organism_check``)::

    python scripts/train_organism.py --config retmask_interp/organism/configs/concentrated.json --out DIR --seed 0
    python scripts/train_organism.py --config ... --out /tmp/o --tiny          # CPU smoke test, seconds

Writes into DIR: model.safetensors (bf16), config.json, generation_config.json, tokenizer files and
train_log.json (settings, resolved step count, wall time, loss curve, held-out NIAH check). The config's
``train.steps = 0`` with ``train.time_budget_s`` fits the step count to the time budget (measured at the start,
logged; pass ``--steps N`` to reproduce a run exactly). Imports only ``core`` and ``data`` of the package (the
organism contract of ``.importlinter``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import repeat

from retmask_interp.core.io import InputError
from retmask_interp.organism.build import (
    OrganismConfig,
    build_model,
    tiny_model_spec,
    tokenizer_corpus,
    train_tokenizer,
)
from retmask_interp.organism.data import BatchPlan, batch_length, make_batch, worker_batch, worker_init

__all__ = ["HeadDropout", "CheckFn", "build_parser", "main"]

DEFAULT_TOKENIZER = Path(__file__).resolve().parent / "tokenizer"
_log = logging.getLogger(__name__)

# the end-of-training check: (RetModel, context lengths, number of Wu depths, held-out needles) -> JSON-ready dict
CheckFn = Callable[[Any, Sequence[int], int, int], dict]


def log(msg: str) -> None:
    _log.info(msg)


# ---- head dropout ----------------------------------------------------------------------------------------------
class HeadDropout:
    """Zero each head's output (its slice of ``o_proj``'s input) with probability ``p`` per sequence, in training.

    Kept heads are scaled by ``1 / (1 - p)``. ``protected`` (layer, head) pairs are never dropped nor scaled;
    ``targeted`` ``[layer, head, p]`` triples give those heads their own probability (e.g. drop the heads that
    already retrieve most of the time, so that other heads learn to retrieve too).
    """

    def __init__(self, model, p: float, protected, generator: torch.Generator, targeted=()):
        cfg = model.config
        self.gen = generator
        self.L, self.H = cfg.num_hidden_layers, cfg.num_attention_heads
        self.d = cfg.hidden_size // cfg.num_attention_heads
        self.prob = torch.full((self.L, self.H), float(p))
        for layer, h in protected:
            self.prob[layer, h] = 0.0
        for layer, h, q in targeted:
            self.prob[int(layer), int(h)] = float(q)
        if (self.prob >= 1).any():
            raise ValueError("head dropout probabilities must be below 1")
        self.masks: torch.Tensor | None = None
        self.hooks = [
            layer.self_attn.o_proj.register_forward_pre_hook(self._hook(i))
            for i, layer in enumerate(model.model.layers)
        ]

    def sample(self, batch: int, device) -> None:
        keep = torch.rand(self.L, batch, self.H, generator=self.gen) >= self.prob[:, None, :]
        scale = keep.float() / (1 - self.prob[:, None, :])
        self.masks = repeat(scale, "L B H -> L B (H d)", d=self.d).to(device)  # o_proj's input, head by head

    def _hook(self, layer: int):
        def pre(module, args):
            if not module.training or self.masks is None:
                return None
            x = args[0]
            return (x * self.masks[layer][:, None, :].to(x.dtype),) + tuple(args[1:])

        return pre


# ---- schedule --------------------------------------------------------------------------------------------------
def lr_at(step: int, total: int, spec) -> float:
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = min(1.0, (step - spec.warmup_steps) / max(1, total - spec.warmup_steps))
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def loss_fn(logits, ids, roles, spec):
    """``answer_weight`` x mean CE over answer tokens + ``context_weight`` x mean CE over context tokens."""
    target, role = ids[:, 1:], roles[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(), reduction="none").view_as(
        target
    )
    ans, ctx = role == 1, role == 0
    ans_loss = (ce * ans).sum() / ans.sum().clamp_min(1)
    ctx_loss = (ce * ctx).sum() / ctx.sum().clamp_min(1)
    return spec.answer_weight * ans_loss + spec.context_weight * ctx_loss, ans_loss, ctx_loss


def make_optimizer(model, spec, device):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), **kw)


# ---- step-count fitting -----------------------------------------------------------------------------------------
def step_time(model, spec, device, length: int, reps: int = 3) -> float:
    """Seconds per optimiser step on a random batch of ``length`` (no update is kept)."""
    b = max(1, spec.tokens_per_batch // length)
    ids = torch.randint(6, model.config.vocab_size, (b, length), device=device)
    roles = torch.zeros_like(ids)
    params = [p for p in model.parameters()]
    times = []
    for i in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids).logits
        loss = loss_fn(logits, ids, roles, spec)[0]
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
        for p in params:
            p.grad = None
    return float(np.median(times))


def fit_steps(model, spec, device, budget_s: float, seed: int, data_rate: float | None) -> tuple[int, dict]:
    """Largest step count whose expected time (GPU and data generation) fits ``budget_s``."""
    lo_len, hi_len = max(64, spec.seq_len // 8), spec.seq_len
    t_lo, t_hi = step_time(model, spec, device, lo_len), step_time(model, spec, device, hi_len)
    steps = 1000
    for _ in range(4):
        plan = BatchPlan(seed, steps, spec)
        lens = [batch_length(plan, s) for s in range(0, steps, max(1, steps // 400))]
        mean_gpu = (
            float(np.mean([t_lo + (t_hi - t_lo) * (n - lo_len) / (hi_len - lo_len) for n in lens])) * 1.1
        )
        per_step = max(mean_gpu, 1.0 / data_rate) if data_rate else mean_gpu
        steps = max(spec.warmup_steps + 10, int(budget_s / per_step))
    info = {"t_step_short": t_lo, "t_step_long": t_hi, "len_short": lo_len, "len_long": hi_len}
    return steps, info | {"est_step_s": per_step, "data_rate": data_rate}


def predicted_step_s(fit_info: dict, length: int) -> float:
    """Step time of a batch of ``length`` by linear interpolation of the two timed lengths."""
    lo, hi = fit_info["len_short"], fit_info["len_long"]
    t_lo, t_hi = fit_info["t_step_short"], fit_info["t_step_long"]
    return t_lo + (t_hi - t_lo) * (length - lo) / max(1, hi - lo)


def replan(fit_info: dict, plan, step: int, walls: list[float], lengths: list[int], time_left: float) -> int:
    """New total step count from the measured pace so far (the GPU may be shared with other runs)."""
    skip = min(10, len(walls) // 2)
    actual = sum(walls[skip:])
    predicted = sum(predicted_step_s(fit_info, n) for n in lengths[skip:])
    scale = actual / max(predicted, 1e-9)
    future = [predicted_step_s(fit_info, batch_length(plan, s)) for s in range(step, step + 400)]
    per_step = scale * float(np.mean(future))
    return max(step + 1, step + int(time_left / per_step))


# ---- main -------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="organism config JSON (configs/*.json)")
    ap.add_argument("--out", required=True, help="output directory (must not hold a finished model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tiny", action="store_true", help="tiny model, a few steps, short sequences (CPU smoke test)"
    )
    ap.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory to reuse (default: the package's one, else train one)",
    )
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument(
        "--stop-at", type=int, default=None, help="stop after this many steps without changing the schedule"
    )
    ap.add_argument(
        "--init", default=None, help="start from this trained model directory (fine-tuning stage)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a train setting, e.g. lr=0.001",
    )
    ap.add_argument(
        "--time-budget", type=float, default=None, help="override train.time_budget_s (with steps 0)"
    )
    ap.add_argument(
        "--workers", type=int, default=None, help="data worker processes (default: cores - 1, max 8)"
    )
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    ap.add_argument(
        "--barrier",
        default=None,
        help="directory shared by concurrent runs: wait for --barrier-n runs "
        "before timing (so the step count is fitted under the same GPU load)",
    )
    ap.add_argument("--barrier-n", type=int, default=1)
    ap.add_argument("--check-needles", type=int, default=3, help="held-out needles in the final NIAH check")
    ap.add_argument(
        "--check-lengths", default="384,896,1408,1920", help="context lengths (tokens) of the check"
    )
    ap.add_argument(
        "--check-depths", type=int, default=5, help="number of Wu depths of the end-of-training check"
    )
    ap.add_argument("--no-check", action="store_true", help="skip the final NIAH / masking check")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--overwrite", action="store_true")
    return ap


def load_or_train_tokenizer(path: str | None, tiny: bool):
    from transformers import AutoTokenizer

    cand = Path(path) if path else DEFAULT_TOKENIZER
    if (cand / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(cand)), str(cand)
    if path:
        raise InputError(f"--tokenizer {path}: no tokenizer.json there; give a saved tokenizer's directory")
    log("training the tokenizer")
    tok = train_tokenizer(tokenizer_corpus(120 if tiny else 1400, seed=0), 512 if tiny else 4096)
    return tok, None


def main(argv: Sequence[str] | None = None, check: CheckFn | None = None) -> int:
    """Train as the command line ``argv`` says; 0 when done, 2 when ``--out`` already holds a trained model.
    ``check``: the end-of-training check (skipped when ``None`` or ``--no-check``; its failure is logged in
    ``train_log.json``, the weights are kept)."""
    args = build_parser().parse_args(argv)
    t_start = time.time()
    cfg = OrganismConfig.from_json(args.config)
    spec, mspec = cfg.train, cfg.model
    if args.tiny:
        mspec = tiny_model_spec()
        spec.steps, spec.time_budget_s, spec.tokens_per_batch = 3, 0.0, 1024
        spec.seq_len, spec.min_len, spec.warmup_steps = 256, 128, 1
        spec.protected_heads = [[0, 0]] if spec.protected_heads else []
        spec.targeted_dropout = [[0, 1, spec.targeted_dropout[0][2]]] if spec.targeted_dropout else []
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in type(spec).__dataclass_fields__:
            raise InputError(
                f"--set {item}: unknown train setting {key!r}; known: {', '.join(type(spec).__dataclass_fields__)}"
            )
        setattr(spec, key, json.loads(value))
    if args.steps is not None:
        spec.steps = args.steps
    if args.time_budget is not None:
        spec.time_budget_s = args.time_budget
    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.overwrite:
        log(f"{out} already holds a trained model; pass --overwrite or another --out")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    tok, tok_dir = load_or_train_tokenizer(args.tokenizer, args.tiny)
    tok.save_pretrained(str(out))
    tok_dir = str(out)  # workers load the copy in the output directory
    model = build_model(mspec, tok, seed=args.seed)
    init_from = None
    if args.init:
        from safetensors.torch import load_file

        state = load_file(str(Path(args.init) / "model.safetensors"))
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise InputError(
                f"--init {args.init}: weights do not fit the config ({missing[:3]}, {unexpected[:3]}); "
                "give a model trained with the same model settings"
            )
        prev = Path(args.init) / "train_log.json"
        init_from = {"path": str(args.init), "log": json.loads(prev.read_text()) if prev.exists() else None}
        log(f"initialised from {args.init}")
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.name}: {n_params / 1e6:.2f}M parameters, device {device}")
    dropout = None
    if spec.head_dropout > 0 or spec.targeted_dropout:
        dropout = HeadDropout(
            model,
            spec.head_dropout,
            spec.protected_heads,
            torch.Generator().manual_seed(args.seed),
            spec.targeted_dropout,
        )
    opt = make_optimizer(model, spec, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))
    ctx = mp.get_context("spawn")  # no fork after torch has started threads

    if args.barrier:
        bdir = Path(args.barrier)
        bdir.mkdir(parents=True, exist_ok=True)
        (bdir / f"{cfg.name}.{os.getpid()}").touch()
        t_wait = time.time()
        while len(list(bdir.iterdir())) < args.barrier_n and time.time() - t_wait < 90:
            time.sleep(0.2)

    # step count: fixed, or fitted to the time budget (GPU step time and data-worker throughput, measured)
    pool = ctx.Pool(workers, initializer=worker_init, initargs=(tok_dir,)) if workers > 0 else None
    fit_info: dict = {}
    total = spec.steps
    if total <= 0:
        if spec.time_budget_s <= 0:
            raise InputError("train.steps is 0 but no time budget: set train.steps or train.time_budget_s")
        probe_plan = BatchPlan(args.seed + 1, 10_000, spec)
        data_rate = None
        if pool is not None:
            probes = [pool.apply_async(worker_batch, (probe_plan, 10_000 + i)) for i in range(3 * workers)]
            for pr in probes[:workers]:  # workers warm up (imports, tokenizer)
                pr.get()
            t0 = time.time()
            for pr in probes[workers:]:
                pr.get()
            data_rate = 2 * workers / (time.time() - t0)
        budget_left = spec.time_budget_s - (time.time() - t_start)
        total, fit_info = fit_steps(model, spec, device, budget_left, args.seed, data_rate)
        log(f"fitted {total} steps to the time budget: {fit_info}")
    plan = BatchPlan(args.seed, total, spec)
    pending: deque = deque()
    next_step = 0

    def fetch(step: int):
        nonlocal next_step
        if pool is None:
            return make_batch(tok, plan, step)
        while next_step < total and len(pending) < 3 * workers:
            pending.append(pool.apply_async(worker_batch, (plan, next_step)))
            next_step += 1
        got, ids, roles = pending.popleft().get()
        assert got == step
        return ids, roles

    curve, t_train, tokens_seen, answers_seen = [], time.time(), 0, 0
    deadline = t_start + spec.time_budget_s * 1.04 if spec.time_budget_s > 0 else float("inf")
    model.train()
    step = 0
    walls: list[float] = []
    lengths: list[int] = []
    replanned = None
    t_last = time.time()
    for step in range(10**9):
        ids_np, roles_np = fetch(step)
        ids = torch.from_numpy(ids_np).long().to(device, non_blocking=True)
        roles = torch.from_numpy(roles_np).to(device, non_blocking=True)
        if dropout is not None:
            dropout.sample(ids.shape[0], device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, spec)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids).logits
        loss, ans_loss, ctx_loss = loss_fn(logits, ids, roles, spec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        tokens_seen += int((roles_np >= 0).sum())
        answers_seen += int((roles_np == 1).sum())
        if step % args.log_every == 0 or step == total - 1:
            rec = {
                "step": step,
                "loss": round(loss.item(), 4),
                "answer_loss": round(ans_loss.item(), 4),
                "context_loss": round(ctx_loss.item(), 4),
                "lr": opt.param_groups[0]["lr"],
                "seq_len": int(ids.shape[1]),
                "elapsed_s": round(time.time() - t_train, 1),
                "tokens": tokens_seen,
            }
            curve.append(rec)
            log(json.dumps(rec))
        now = time.time()
        walls.append(now - t_last)
        lengths.append(int(ids.shape[1]))
        t_last = now
        if fit_info and replanned is None and step + 1 == max(30, int(0.2 * total)):
            float(loss)  # wait for the GPU so the pace is measured, not the launch queue
            left = t_start + spec.time_budget_s - time.time()
            new_total = replan(fit_info, plan, step + 1, walls, lengths, left)
            replanned = {"at_step": step + 1, "old_total": total, "new_total": new_total}
            log(f"re-planned from the measured pace: {replanned}")
            total = new_total
            plan = BatchPlan(args.seed, total, spec)
        if step + 1 >= total or (args.stop_at is not None and step + 1 >= args.stop_at):
            break
        if time.time() > deadline:
            log(f"time budget exceeded: stopping at step {step + 1} of {total}")
            break
    steps_done = step + 1
    if pool is not None:
        pool.terminate()
    train_wall = time.time() - t_train
    if dropout is not None:
        for h in dropout.hooks:
            h.remove()
    model.eval()

    model = model.to(torch.bfloat16)  # saved first, so a failing check cannot lose the weights
    model.config.dtype = "bfloat16"
    model.save_pretrained(str(out), safe_serialization=True)
    check_result = None
    if check is not None and not args.no_check:
        from retmask_interp.core.models import RetModel

        t0 = time.time()
        try:
            lengths = [64] if args.tiny else [int(x) for x in args.check_lengths.split(",")]
            check_result = check(
                RetModel(model, tok, name=cfg.name), lengths, args.check_depths, args.check_needles
            )
            check_result["dtype"] = str(model.dtype)
            log("check: " + json.dumps({k: v for k, v in check_result.items() if k != "scores"}))
        except Exception as err:  # keep the trained weights and the log even if the check breaks
            check_result = {"error": repr(err)}
            log(f"check failed: {err!r}")
        check_result["wall_s"] = round(time.time() - t0, 1)

    logrec = {
        "name": cfg.name,
        "config": cfg.to_dict() | {"model": vars(mspec), "train": {**vars(spec), "steps": total}},
        "seed": args.seed,
        "tiny": args.tiny,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "num_parameters": n_params,
        "steps_planned": total,
        "steps_done": steps_done,
        "step_fit": fit_info,
        "replanned": replanned,
        "init_from": init_from,
        "tokens_seen": tokens_seen,
        "answer_tokens_seen": answers_seen,
        "train_wall_s": round(train_wall, 1),
        "total_wall_s": round(time.time() - t_start, 1),
        "workers": workers,
        "loss_curve": curve,
        "check": check_result,
    }
    (out / "train_log.json").write_text(json.dumps(logrec, indent=1, default=str))
    log(f"wrote {out}")
    return 0
