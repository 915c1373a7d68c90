"""A self-contained check of the organism's retrieval behaviour (plain torch, no nnsight).

Used at the end of training (on the GPU machine, where nnsight is not installed) to measure the four acceptance
numbers on a held-out NIAH grid; the package's ``detect`` / ``masking`` modules are the reference
implementation and are used for the numbers in the model card. Definitions match Wu et al.:

- success: ROUGE-1 recall of ``real_needle`` in the greedy generation > 0.5;
- copy-paste score: at each generated step, a head's top-1 attended key lies in the answer span and holds the
  token just generated; each hit adds ``1 / span length``; mean over successful samples;
- masking (``zero``): the head's slice of ``o_proj``'s input is set to zero.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..tasks import make_example, niah_prompt

__all__ = [
    "NiahItem",
    "niah_items",
    "mask_heads",
    "greedy",
    "niah_success",
    "retrieval_scores",
    "gini",
    "full_check",
]

Head = tuple[int, int]


@dataclass
class NiahItem:
    """A chat-formatted NIAH prompt: ``ids`` and the answer's token span ``[start, end)`` in them."""

    ids: list[int]
    span: tuple[int, int]
    real_needle: str
    context_tokens: int
    depth: float


def niah_items(tokenizer, lengths: Iterable[int], depths: Iterable[float], needles: int = 4, seed: int = 0):
    """Held-out (eval split) NIAH prompts: ``needles`` needles x ``lengths`` (context tokens) x ``depths``."""
    from ..synthetic import make_needles
    from ..tasks import insert_at_depth

    items = []
    for ni, needle in enumerate(make_needles(needles, seed=seed, split="eval")):
        for length in lengths:
            base = make_example(
                "text", ni, seed=seed + 1000, split="eval", tokenizer=tokenizer, num_tokens=length
            )
            hay = base.target
            for depth in depths:
                context, _ = insert_at_depth(hay, needle["needle"], depth)
                prompt = niah_prompt(context, needle["question"])
                text = tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
                )
                enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                lo = text.index(needle["needle"]) + needle["needle"].index(needle["real_needle"])
                hi = lo + len(needle["real_needle"])
                toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < hi and b > lo and b > a]
                items.append(
                    NiahItem(enc["input_ids"], (toks[0], toks[-1] + 1), needle["real_needle"], length, depth)
                )
    return items


@contextlib.contextmanager
def mask_heads(model, heads: Iterable[Head]) -> Iterator[None]:
    """Zero the listed query heads' outputs (their slice of each layer's ``o_proj`` input) inside the block."""
    cfg = model.config
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(int(layer), []).append(int(h))
    hooks = []
    for layer, hs in by_layer.items():
        keep = torch.ones(cfg.num_attention_heads * d)
        for h in hs:
            keep[h * d : (h + 1) * d] = 0

        def pre(module, args, keep=keep):
            x = args[0]
            return (x * keep.to(x.device, x.dtype),) + tuple(args[1:])

        hooks.append(model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for hk in hooks:
            hk.remove()


@torch.no_grad()
def greedy(
    model, prompts: list[list[int]], max_new_tokens: int = 24, batch_size: int = 32
) -> list[list[int]]:
    """Greedy continuations (left-padded batches; stops at the model's eos)."""
    gen_cfg = model.generation_config
    pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            att[r, width - len(prompts[i]) :] = 1
        res = model.generate(
            input_ids=ids.to(dev),
            attention_mask=att.to(dev),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=gen_cfg.eos_token_id,
        )
        for r, i in enumerate(idx):
            toks = res[r, width:].tolist()
            if gen_cfg.eos_token_id in toks:
                toks = toks[: toks.index(gen_cfg.eos_token_id) + 1]
            out[i] = toks
    return out


def _rouge_recall(reference: str, hypothesis: str) -> float:
    import re
    from collections import Counter

    ref = Counter(re.sub(r"[^a-z0-9]+", " ", reference.lower()).split())
    hyp = Counter(re.sub(r"[^a-z0-9]+", " ", hypothesis.lower()).split())
    return sum(min(c, hyp[w]) for w, c in ref.items()) / max(1, sum(ref.values()))


def niah_success(
    model, tokenizer, items: list[NiahItem], heads: Iterable[Head] = (), **kw
) -> tuple[float, list]:
    """Share of items whose greedy answer has ROUGE-1 recall of ``real_needle`` > 0.5 (heads masked if given)."""
    with mask_heads(model, list(heads)):
        gens = greedy(model, [it.ids for it in items], **kw)
    ok = [
        _rouge_recall(it.real_needle, tokenizer.decode(g, skip_special_tokens=True)) > 0.5
        for it, g in zip(items, gens)
    ]
    return sum(ok) / max(1, len(ok)), gens


@torch.no_grad()
def retrieval_scores(model, items: list[NiahItem], gens: list[list[int]], ok: list[bool]) -> torch.Tensor:
    """Mean copy-paste score ``[layers, heads]`` over successful items (eager attention, teacher-forced on gens)."""
    cfg = model.config
    total = torch.zeros(cfg.num_hidden_layers, cfg.num_attention_heads)
    n = 0
    prev = model.config._attn_implementation
    model.set_attn_implementation("eager")
    dev = next(model.parameters()).device
    try:
        for it, g, good in zip(items, gens, ok):
            if not good or not g:
                continue
            seq = torch.tensor(it.ids + g, device=dev)[None]
            out = model(seq[:, :-1], output_attentions=True)
            p = len(it.ids)
            rows = torch.arange(p - 1, p - 1 + len(g), device=dev)
            target = torch.tensor(g, device=dev)
            s, e = it.span
            for layer, att in enumerate(out.attentions):
                top = att[0, :, rows, :].argmax(-1)  # [heads, steps]
                held = seq[0, top]
                hit = (top >= s) & (top < e) & (held == target[None])
                total[layer] += hit.float().sum(-1).cpu() / (e - s)
            n += 1
    finally:
        model.set_attn_implementation(prev)
    return total / max(1, n)


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values (0 = spread evenly, near 1 = all mass on one entry)."""
    v = values.flatten().clamp_min(0).sort().values.double()
    if v.sum() <= 0:
        return 0.0
    n = v.numel()
    idx = torch.arange(1, n + 1, dtype=torch.double)
    return float((2 * (idx * v).sum() / (n * v.sum())) - (n + 1) / n)


def full_check(model, tokenizer, items: list[NiahItem], *, seeds: int = 5, threshold: float = 0.1) -> dict:
    """NIAH success, retrieval scores, and success with retrieval / random non-retrieval heads masked."""
    model.eval()
    acc, gens = niah_success(model, tokenizer, items)
    ok = [
        _rouge_recall(it.real_needle, tokenizer.decode(g, skip_special_tokens=True)) > 0.5
        for it, g in zip(items, gens)
    ]
    scores = retrieval_scores(model, items, gens, ok)
    L, H = scores.shape
    ret = [(layer, h) for layer in range(L) for h in range(H) if scores[layer, h] >= threshold]
    acc_ret, _ = niah_success(model, tokenizer, items, ret) if ret else (acc, None)
    others = [(layer, h) for layer in range(L) for h in range(H) if (layer, h) not in ret]
    rand = []
    for sd in range(seeds):
        pick = random.Random(sd).sample(others, min(len(ret), len(others)))
        rand.append(niah_success(model, tokenizer, items, pick)[0] if pick else acc)
    ranked = sorted(
        ((float(scores[layer, h]), layer, h) for layer in range(L) for h in range(H)), reverse=True
    )
    return {
        "niah_success": acc,
        "num_items": len(items),
        "heads_ge_0.1": int((scores >= 0.1).sum()),
        "heads_ge_0.3": int((scores >= 0.3).sum()),
        "top_heads": [[layer, h, round(s, 4)] for s, layer, h in ranked[:12]],
        "gini": gini(scores),
        "masked_retrieval_success": acc_ret,
        "masked_retrieval_drop": acc - acc_ret,
        "masked_random_success": rand,
        "masked_random_drop_mean": acc - sum(rand) / len(rand),
        "scores": [[round(float(x), 4) for x in row] for row in scores],
    }
