"""GPU benchmark: detection and masking on a Llama-3.1-8B-shaped model with random weights (bf16).

Prints ratio lines and writes a JSON of every number. Random weights never pass the success filter, so timing runs
use a fixed decode length (50 tokens, no EOS). Sections (each can be skipped):

  lengths   per prompt at 8K/32K/128K: plain greedy generation (HF generate, sdpa), detection, the Wu-style loop
            (sdpa prefill, then eager attention with output_attentions and a layer x head loop with a host sync per
            head), peak GPU memory of each; ratios detection/plain and Wu-style/detection
  grid      the RetMask detection grid: 3 needles x 20 lengths (0-5000) x 10 depths = 600 samples, batched by
            length; the Wu-style loop on a slice, extrapolated
  masking   masked generation (zero / uniform; 32 and 128 heads; one nnsight trace per generation) over plain HF
            generation at 8K, on a fresh model nnsight never wrapped (--no-fresh-masking-model: the shared one);
            pair-sampling throughput (tokens/s) in process, batched; then the per-step-trace reference path
            (what masked generation was before) at 32 heads, timed and checked token for token
  overhead  nnsight's own overhead on one forward pass at 8K

Usage (on the GPU machine): python benchmarks/gpu_detect.py --out results.json [--sections lengths grid ...]
CPU smoke test: python benchmarks/gpu_detect.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retmask_interp.core.models import as_model  # noqa: E402
from retmask_interp.interventions.masking import generate as masked_generate  # noqa: E402
from retmask_interp.measure.detect import copy_paste_scores, copy_paste_scores_batch  # noqa: E402

LLAMA_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072 + 512,
    rope_theta=500000.0,
)  # fmt: skip
TINY = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096,
)  # fmt: skip


def log(msg: str) -> None:
    print(msg, flush=True)


class Clock:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def run(self, fn, repeats=1):
        """Median seconds over ``repeats`` and the peak GPU memory (GiB) of the last run."""
        times, out = [], None
        for _ in range(repeats):
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self.sync()
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")
        return statistics.median(times), peak, out


def build(cfg_kwargs, device, dtype):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(**cfg_kwargs)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def plain_generate(model, ids, n):
    with torch.no_grad():
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=0, eos_token_id=None,
        )[:, ids.shape[1]:]  # fmt: skip


@torch.no_grad()
def plain_loop(model, ids, n):
    """Greedy decoding without nnsight and without an attention mask (the causal kernel), as detection runs."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    logits = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    out = []
    for step in range(n):
        token = logits.argmax(-1)
        out.append(token)
        if step < n - 1:
            logits = model(token[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
    return torch.stack(out, 1)


@torch.no_grad()
def wu_style(model, ids, span, n):
    """Wu et al.'s decode loop: sdpa prefill of prompt[:-1], then eager attention with attention outputs and a
    Python loop over every layer x head with a host sync per head."""
    start, end = span
    cfg = model.config
    model.set_attn_implementation("sdpa")
    out = model(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    model.set_attn_implementation("eager")
    inp = ids[:, -1:]
    prompt = ids[0]
    scores = [[0.0] * cfg.num_attention_heads for _ in range(cfg.num_hidden_layers)]
    generated = []
    try:
        for _ in range(n):
            out = model(input_ids=inp, past_key_values=past, use_cache=True, output_attentions=True)
            past = out.past_key_values
            token = out.logits[0, -1].argmax()
            generated.append(int(token))
            for layer in range(cfg.num_hidden_layers):
                att = out.attentions[layer][0]
                for head in range(cfg.num_attention_heads):
                    j = int(att[head, -1].argmax())  # host sync per head
                    if start <= j < end and int(prompt[j]) == generated[-1]:
                        scores[layer][head] += 1 / (end - start)
            inp = token.view(1, 1)
    finally:
        model.set_attn_implementation("sdpa")
    return generated, scores


def section_lengths(model, clock, lengths, n, repeats, results, wu: bool, plain_model=None):
    """Detection on ``model``; the plain baselines on ``plain_model``, a copy nnsight never wrapped (nnsight's
    wrapping is permanent and slows any later forward of the model it wrapped, which would flatter the ratio)."""
    device = model.device
    base = plain_model if plain_model is not None else model
    rows = []
    for length in lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, length), device=device)
        span = (length // 2, length // 2 + 32)
        plain_generate(base, ids, 2)  # warm-ups at the full length (kernel choice, allocator)
        plain_loop(base, ids, 2)
        copy_paste_scores(model, ids[0], span, 2, eos_token_ids=[])
        t_plain, m_plain, gen_plain = clock.run(lambda ids=ids: plain_generate(base, ids, n), repeats)
        t_det, m_det, (gen_det, _) = clock.run(
            lambda ids=ids, span=span: copy_paste_scores(model, ids[0], span, n, eos_token_ids=[]), repeats
        )
        t_loop, _, gen_loop = clock.run(lambda ids=ids: plain_loop(base, ids, n), repeats)
        same = gen_det.tolist() == gen_loop[0].tolist()
        row = dict(length=length, plain_s=t_plain, plain_peak_gib=m_plain, detect_s=t_det, detect_peak_gib=m_det,
                   detect_over_plain=t_det / t_plain, plain_loop_s=t_loop, detect_over_plain_loop=t_det / t_loop,
                   same_tokens_as_loop=same)  # fmt: skip
        log(f"[lengths] {length:>6} tokens: plain {t_plain:.2f}s ({m_plain:.1f} GiB), detect {t_det:.2f}s "
            f"({m_det:.1f} GiB): detect/plain ratio {t_det / t_plain:.3f}; plain loop without mask/nnsight "
            f"{t_loop:.2f}s: detect/loop ratio {t_det / t_loop:.3f}; same tokens as the loop: {same}")  # fmt: skip
        if wu:
            t_wu, m_wu, (gen_wu, _) = clock.run(lambda ids=ids, span=span: wu_style(model, ids, span, n), 1)
            row.update(wu_s=t_wu, wu_peak_gib=m_wu, speedup_over_wu=t_wu / t_det)
            log(f"[lengths] {length:>6} tokens: Wu-style loop {t_wu:.2f}s ({m_wu:.1f} GiB): "
                f"speedup over Wu-style {t_wu / t_det:.2f}x")  # fmt: skip
        rows.append(row)
        results["lengths"] = rows
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_grid(model, clock, n, batch_size, results, lengths_max=5000, wu_slice=6):
    import numpy as np

    device = model.device
    lengths = [int(x) for x in np.round(np.linspace(lengths_max / 20, lengths_max, 20))]  # 0 holds no prompt
    g = torch.Generator().manual_seed(0)
    samples = []
    for length in lengths:
        for _needle in range(3):
            for depth in np.round(np.linspace(0, 100, 10)):
                ids = torch.randint(0, model.config.vocab_size, (length,), generator=g)
                s = int((length - 40) * depth / 100) if length > 40 else 0
                samples.append((ids, (s, min(s + 32, length))))
    copy_paste_scores_batch(model, [samples[0][0][:64]], [(0, 8)], 2, eos_token_ids=[])  # warm-up

    def run_grid():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            copy_paste_scores_batch(model, [c[0] for c in chunk], [c[1] for c in chunk], n, eos_token_ids=[])

    t_grid, m_grid, _ = clock.run(run_grid, 1)
    per_sample = t_grid / len(samples)
    log(f"[grid] {len(samples)} samples (lengths {lengths[0]}-{lengths[-1]}, batch {batch_size}): {t_grid:.1f}s "
        f"({per_sample * 1000:.0f} ms/sample, peak {m_grid:.1f} GiB); target <= 300 s")  # fmt: skip
    row = dict(samples=len(samples), seconds=t_grid, peak_gib=m_grid, batch_size=batch_size)
    if wu_slice:
        picks = [samples[i] for i in np.linspace(0, len(samples) - 1, wu_slice).astype(int)]
        t_wu, _, _ = clock.run(
            lambda: [wu_style(model, ids[None].to(device), span, n) for ids, span in picks], 1
        )
        est = t_wu / wu_slice * len(samples)
        row.update(wu_slice=wu_slice, wu_slice_s=t_wu, wu_grid_estimate_s=est, speedup_over_wu=est / t_grid)
        log(f"[grid] Wu-style loop on {wu_slice} samples spread over the grid: {t_wu:.1f}s -> whole grid about "
            f"{est / 60:.1f} min; speedup {est / t_grid:.1f}x")  # fmt: skip
    results["grid"] = row


def section_masking(
    model, clock, n, repeats, results, length=8192, pair_batch=32, pair_prompt=256, pair_new=256, fresh=None
):
    """Masked generation (one nnsight trace for the whole loop) over plain HF generate, on ``fresh()``: a model that
    nnsight never wrapped, since earlier sections leave controllers on every module and `.source`-instrumented
    attention forwards on ``model``, which slow any later generation on it (HF's included)."""
    base = fresh() if fresh is not None else model
    device = base.device
    rm = as_model(base)
    geo = rm.geometry
    ids = torch.randint(0, base.config.vocab_size, (1, length), device=device)
    g = torch.Generator().manual_seed(1)
    all_heads = [(layer, h) for layer in range(geo.num_layers) for h in range(geo.num_heads)]
    rows = []
    plain_generate(base, ids, 2)  # warm-ups at the full length (kernel choice, allocator)
    masked_generate(base, ids, [], max_new_tokens=2, eos_token_id=[])
    t_plain, _, _ = clock.run(lambda: plain_generate(base, ids, n), repeats)
    t_loop, _, _ = clock.run(
        lambda: masked_generate(base, ids, [], max_new_tokens=n, eos_token_id=[]), repeats
    )
    log(f"[masking] {length} tokens, {n} new: plain HF generate {t_plain:.2f}s; our loop, nothing masked "
        f"{t_loop:.2f}s (ratio {t_loop / t_plain:.3f})")  # fmt: skip
    picks = {}
    for count in (32, 128):
        pick = torch.randperm(len(all_heads), generator=g)[: min(count, len(all_heads))].tolist()
        picks[count] = [all_heads[i] for i in pick]
    outs = {}
    for count, heads in picks.items():
        for mode in ("zero", "uniform"):
            masked_generate(base, ids, heads, mode, max_new_tokens=2, eos_token_id=[])  # warm-up
            t, _, out = clock.run(
                lambda heads=heads, mode=mode: masked_generate(
                    base, ids, heads, mode, max_new_tokens=n, eos_token_id=[]
                ),
                repeats,
            )
            outs[count, mode] = out
            rows.append(
                dict(heads=len(heads), mode=mode, seconds=t, over_plain=t / t_plain, path="one trace")
            )
            log(f"[masking] {len(heads):>3} heads {mode:<7}: {t:.2f}s, masked/plain ratio {t / t_plain:.3f} "
                "(target <= 1.05; one nnsight trace for the whole generation)")  # fmt: skip
    t_again, _, _ = clock.run(lambda: plain_generate(base, ids, n), repeats)
    log(f"[masking] plain HF generate again, on the model masked generation ran on: {t_again:.2f}s "
        f"(ratio to the first {t_again / t_plain:.3f}; nnsight now wraps its o_proj/q_proj)")  # fmt: skip
    results["masking"] = dict(
        length=length, plain_s=t_plain, unmasked_loop_s=t_loop, plain_again_s=t_again, rows=rows
    )
    prompts = torch.randint(0, base.config.vocab_size, (pair_batch, pair_prompt), device=device)
    heads = picks[32]

    def pairs():
        a = masked_generate(base, prompts, [], max_new_tokens=pair_new, do_sample=True, temperature=0.6,
                            seed=0, eos_token_id=[])  # fmt: skip
        b = masked_generate(base, prompts, heads, max_new_tokens=pair_new, do_sample=True, temperature=0.6,
                            seed=0, eos_token_id=[])  # fmt: skip
        return a, b

    t_pairs, _, _ = clock.run(pairs, 1)
    tps = 2 * pair_batch * pair_new / t_pairs
    log(f"[masking] pair sampling: {pair_batch} prompts x {pair_prompt} tokens, {pair_new} new tokens per side, "
        f"batched: {t_pairs:.1f}s, {tps:.0f} tokens/s")  # fmt: skip
    results["pairs"] = dict(
        batch=pair_batch, prompt=pair_prompt, new=pair_new, seconds=t_pairs, tokens_per_s=tps
    )
    # Last, since its `.source` instruments the attention forwards for good: the per-step-trace reference path
    # (what `generate` was before), timed and checked token for token against the one-trace path.
    for mode in ("zero", "uniform"):
        heads = picks[32]
        t, _, out = clock.run(
            lambda heads=heads, mode=mode: masked_generate(
                base, ids, heads, mode, max_new_tokens=n, eos_token_id=[], per_step_traces=True
            ),
            repeats,
        )
        same = out.tolist() == outs[32, mode].tolist()
        rows.append(dict(heads=len(heads), mode=mode, seconds=t, over_plain=t / t_plain, path="per-step traces",
                         same_tokens_as_one_trace=same))  # fmt: skip
        log(f"[masking] {len(heads):>3} heads {mode:<7}: per-step traces (reference path) {t:.2f}s, masked/plain "
            f"ratio {t / t_plain:.3f}; same tokens as one trace: {same}")  # fmt: skip
    if base is not model:
        t_inst, _, _ = clock.run(lambda: plain_generate(model, ids, n), repeats)
        log(f"[masking] plain HF generate on the model the earlier sections instrumented: {t_inst:.2f}s (ratio "
            f"to the nnsight-free model {t_inst / t_plain:.3f})")  # fmt: skip
        results["masking"]["plain_on_instrumented_s"] = t_inst
        del base, rm
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_overhead(model, clock, repeats, results, length=8192):
    rm = as_model(model)
    ids = torch.randint(0, model.config.vocab_size, (1, length), device=model.device)

    def plain():
        with torch.no_grad():
            return model(ids, logits_to_keep=1).logits

    def traced():
        with torch.no_grad(), rm.lm.trace(ids, logits_to_keep=1):
            out = rm.lm.output.logits.save()
        return out

    def traced_source():
        with torch.no_grad(), rm.lm.trace(ids, logits_to_keep=1):
            for layer in range(rm.geometry.num_layers):
                _ = rm.attention_call(layer).inputs
            out = rm.lm.output.logits.save()
        return out

    for fn in (plain, traced, traced_source):
        fn()
    t0, _, _ = clock.run(plain, repeats)
    t1, _, _ = clock.run(traced, repeats)
    t2, _, _ = clock.run(traced_source, repeats)
    log(
        f"[overhead] forward at {length}: plain {t0 * 1000:.1f} ms, nnsight trace {t1 * 1000:.1f} ms "
        f"(ratio {t1 / t0:.3f}), trace reading every attention call {t2 * 1000:.1f} ms (ratio {t2 / t0:.3f})"
    )
    results["overhead"] = dict(length=length, plain_ms=t0 * 1e3, trace_ms=t1 * 1e3, source_ms=t2 * 1e3)


def section_profile(model, results, batch=30, length=2600, steps=6):
    """torch.profiler over a few batched decode steps of detection and of plain HF decoding (the top ops)."""
    from torch.profiler import ProfilerActivity, profile

    device = model.device
    ids = torch.randint(0, model.config.vocab_size, (batch, length), device=device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    copy_paste_scores_batch(model, list(ids[:, :64]), [(0, 8)] * batch, 2, eos_token_ids=[])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, fn in [
        (
            "detect",
            lambda: copy_paste_scores_batch(model, list(ids), [(5, 30)] * batch, steps, eos_token_ids=[]),
        ),
        ("plain", lambda: plain_generate(model, ids, steps)),
    ]:
        with profile(activities=acts) as prof:
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by=key, row_limit=12)
        log(f"[profile] {name}: batch {batch} x {length} tokens, {steps} steps\n{table}")
        results.setdefault("profile", {})[name] = table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny model (smoke test)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768, 131072])
    ap.add_argument("--new-tokens", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--grid-batch", type=int, default=30)
    ap.add_argument("--sections", nargs="+", default=["overhead", "lengths", "masking", "grid"])
    ap.add_argument("--no-wu", action="store_true")
    ap.add_argument(
        "--fresh-masking-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the plain baselines (and masking) on a second, never-wrapped copy of the model (+16 GiB)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    cfg = TINY if args.tiny else LLAMA_8B
    model = build(cfg, device, dtype)
    clock = Clock(device)
    lengths = [min(x, 1024) for x in args.lengths] if args.tiny else args.lengths
    info = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
                dtype=str(dtype), new_tokens=args.new_tokens, date=time.strftime("%Y-%m-%d"))  # fmt: skip
    import transformers

    info["transformers"] = transformers.__version__
    results: dict = {"info": info}
    log(f"model: Llama-3.1-8B shape, random weights, {dtype}; {info['device']}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}")  # fmt: skip

    def save():
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))

    plain_model = None  # a second copy that nnsight never wraps: the baselines of "lengths" and "masking"
    if args.fresh_masking_model and {"lengths", "masking"} & set(args.sections):
        plain_model = build(cfg, device, dtype)
    for section in args.sections:
        t0 = time.perf_counter()
        if section == "lengths":
            section_lengths(
                model, clock, lengths, args.new_tokens, args.repeats, results, not args.no_wu, plain_model
            )
        elif section == "grid":
            kw = dict(lengths_max=300, wu_slice=2) if args.tiny else {}
            section_grid(model, clock, args.new_tokens, args.grid_batch, results, **kw)
        elif section == "masking":
            kw = dict(length=256, pair_batch=4, pair_prompt=16, pair_new=8) if args.tiny else {}
            fresh = (lambda: plain_model) if plain_model is not None else None
            section_masking(model, clock, args.new_tokens, args.repeats, results, fresh=fresh, **kw)
        elif section == "profile":
            section_profile(model, results, **(dict(batch=4, length=128, steps=3) if args.tiny else {}))
        elif section == "overhead":
            section_overhead(model, clock, args.repeats, results, length=256 if args.tiny else 8192)
        else:
            raise SystemExit(f"unknown section {section}")
        log(f"  ({section}: {time.perf_counter() - t0:.0f} s)")
        save()


if __name__ == "__main__":
    main()
