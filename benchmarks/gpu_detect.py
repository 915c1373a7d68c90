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
  static    (issue 14) per prompt at --static-lengths (8K, 32K): HF generate (dynamic cache), HF generate with
            cache_implementation="static" (its decode step compiled by torch.compile, mode reduce-overhead, CUDA
            graphs; warmed up: the first call compiles), the prefill alone, detection (eager loop and static
            cache + CUDA graph), our static loop with nothing masked, masked generation zero/uniform at 32 and 128
            heads (static + graph) and one eager masked run; every variant timed --repeats times interleaved
            (ABAB...), median and spread printed; the floor line (prefill + steps x bytes read / bandwidth)
            (the static steps attend through split_decode_attention, the default); the *_sdpa variants keep the
            model's sdpa in the static steps (RETMASK_DECODE_ATTENTION=model), as run 3's graph variants did
  stepprof  torch.profiler over graph replays: GPU time of a decode step by kernel category, from two runs that
            differ only by the number of replayed steps
  grid      with --grid-backend (default auto: static + graph on a GPU)

Usage (on the GPU machine): python benchmarks/gpu_detect.py --out results.json [--sections lengths grid ...]
Issue 14: python benchmarks/gpu_detect.py --sections static stepprof grid --repeats 5 --out gpu_h200_run3.json
CPU smoke test: python benchmarks/gpu_detect.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_impl import naive_copy_paste_scores  # noqa: E402

from benchmarks.floors import card, kv_bytes_per_token, weight_bytes_per_step  # noqa: E402
from benchmarks.timing import Clock, interleaved, log  # noqa: E402
from retmask_interp.core.models import as_model  # noqa: E402
from retmask_interp.core.static_decode import ATTENTION_ENV  # noqa: E402
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


def wu_style(model, ids, span, n):
    """Wu et al.'s decode loop (``tests/reference_impl.py``, as the tests and cpu_detect use it): sdpa prefill of
    prompt[:-1], then eager attention with attention outputs and a Python loop over every layer x head with a host
    sync per head."""
    return naive_copy_paste_scores(model, ids[0], span, n, prefill="sdpa")


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


def section_grid(model, clock, n, batch_size, results, lengths_max=5000, wu_slice=6, backend="auto"):
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
    warm = samples[:batch_size]
    copy_paste_scores_batch(
        model, [c[0] for c in warm], [c[1] for c in warm], 4, eos_token_ids=[], backend=backend
    )

    def run_grid():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            copy_paste_scores_batch(
                model, [c[0] for c in chunk], [c[1] for c in chunk], n, eos_token_ids=[], backend=backend
            )

    t_grid, m_grid, _ = clock.run(run_grid, 1)
    per_sample = t_grid / len(samples)
    log(f"[grid] {len(samples)} samples (lengths {lengths[0]}-{lengths[-1]}, batch {batch_size}, backend {backend}): "
        f"{t_grid:.1f}s ({per_sample * 1000:.0f} ms/sample, peak {m_grid:.1f} GiB); target <= 60 s")  # fmt: skip
    row = dict(samples=len(samples), seconds=t_grid, peak_gib=m_grid, batch_size=batch_size, backend=backend)

    # The prefill's share: the same batches through one plain forward each (cache on, the last logit row only,
    # as detection's prefill), and the matmul throughput that reaches (linear layers 2 x params x tokens, attention
    # 2 x 2 x layers x hidden x L^2 / 2 for the causal half).
    def prefill_only():
        with torch.no_grad():
            for i in range(0, len(samples), batch_size):
                ids = torch.stack([c[0] for c in samples[i : i + batch_size]]).to(device)
                model(ids, use_cache=True, logits_to_keep=1)

    t_pre, _, _ = clock.run(prefill_only, 1)
    cfg = model.config
    n_lin = sum(
        p.numel() for n_, p in model.named_parameters() if "embed_tokens" not in n_ and "lm_head" not in n_
    )
    tokens = sum(len(c[0]) for c in samples)
    flops = 2 * n_lin * tokens + sum(
        2 * cfg.num_hidden_layers * cfg.hidden_size * len(c[0]) ** 2 for c in samples
    )
    row.update(prefill_s=t_pre, decode_and_rest_s=t_grid - t_pre, prefill_tflops=flops / t_pre / 1e12,
               tokens=tokens)  # fmt: skip
    log(f"[grid] prefill alone (plain forward of the same batches): {t_pre:.1f}s = {t_pre / t_grid:.0%} of the grid, "
        f"{flops / t_pre / 1e12:.0f} TFLOP/s on {tokens} tokens; the rest (decode, readout): {t_grid - t_pre:.1f}s")  # fmt: skip
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


# --------------------------------------------------------------------------------------------- issue 14
def static_generate(model, ids, n):
    """HF generate with a static cache: transformers compiles the decode step (torch.compile, reduce-overhead)."""
    with torch.no_grad():
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=0, eos_token_id=None, cache_implementation="static",
        )[:, ids.shape[1]:]  # fmt: skip


def with_env(name, value, fn):
    """``fn()`` with the environment variable ``name`` set to ``value`` (restored after)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def measure_ceilings(device):
    """Device-to-device copy bandwidth (bytes read + written) and a bf16 matmul rate, measured once."""
    if device.type != "cuda":
        return {}
    x = torch.empty(2 * 2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    bw = 10 * 2 * x.numel() / (time.perf_counter() - t0)
    del x, y
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    flops = 20 * 2 * 8192**3 / (time.perf_counter() - t0)
    return dict(copy_bytes_per_s=bw, bf16_matmul_flops=flops)


def section_static(
    model, plain_model, clock, lengths, n, repeats, results, ceilings, eager_masked=True, sdpa=True,
    save=lambda: None, only=None,
):  # fmt: skip
    """Issue 14: detection and masked generation through the static cache + CUDA graph, against HF generate with
    a dynamic and with a static (compiled) cache, and the floor; everything timed interleaved."""
    device = model.device
    rm = as_model(model)
    geo = rm.geometry
    all_heads = [(layer, h) for layer in range(geo.num_layers) for h in range(geo.num_heads)]
    g = torch.Generator().manual_seed(1)
    picks = {}
    for count in (32, 128):
        pick = torch.randperm(len(all_heads), generator=g)[: min(count, len(all_heads))].tolist()
        picks[count] = [all_heads[i] for i in pick]
    w_bytes = weight_bytes_per_step(plain_model)
    kv_tok = kv_bytes_per_token(plain_model.config, next(plain_model.parameters()).element_size())
    rows = results.setdefault("static", {"rows": []})["rows"]
    for length in lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, length), device=device)
        span = (length // 2, length // 2 + 32)

        def prefill(ids=ids):
            with torch.no_grad():
                return plain_model(ids, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1)

        def detect(backend, ids=ids, span=span):
            return copy_paste_scores(model, ids[0], span, n, eos_token_ids=[], backend=backend)[0]

        def masked(heads, mode, backend, ids=ids):
            out = masked_generate(model, ids, heads, mode, max_new_tokens=n, eos_token_id=[], backend=backend)
            return out[0, ids.shape[1] :]

        variants = {
            "hf_dynamic": lambda ids=ids: plain_generate(plain_model, ids, n),
            "hf_static": lambda ids=ids: static_generate(plain_model, ids, n),
            "prefill": prefill,
            "detect_eager": lambda: detect("eager"),
            "detect_graph": lambda: detect("static"),
            "ours_plain_graph": lambda: masked([], "zero", "static"),
        }
        for count, heads in picks.items():
            for mode in ("zero", "uniform"):
                variants[f"mask_{mode}_{count}_graph"] = lambda h=heads, m=mode: masked(h, m, "static")
        if sdpa:  # the static steps through the model's own sdpa (RETMASK_DECODE_ATTENTION=model)
            variants["detect_graph_sdpa"] = lambda: with_env(ATTENTION_ENV, "model", lambda: detect("static"))
            variants["ours_plain_graph_sdpa"] = lambda: with_env(
                ATTENTION_ENV, "model", lambda: masked([], "zero", "static")
            )
        if eager_masked and length == lengths[0]:  # the eager masked loop, once, as the reference
            variants["mask_zero_32_eager"] = lambda: masked(picks[32], "zero", "eager")
        if only:
            variants = {k: v for k, v in variants.items() if k in only}
        if device.type == "cuda":
            torch._dynamo.reset()  # a fresh compile for this length (no dynamic-shape recompile from the last)
        t0 = time.perf_counter()
        for (
            name,
            fn,
        ) in variants.items():  # warm-ups at the full length (compile, kernel choice, allocator, capture)
            w0 = time.perf_counter()
            try:
                fn()
                if name == "hf_static":
                    fn()  # the first call compiles; the second records the CUDA graphs
            except Exception as err:  # noqa: BLE001 - reported by the timed rounds
                log(f"[static] warm-up of {name} failed: {type(err).__name__}: {err}")
            clock.sync()
            log(f"[static] {length}: warm-up {name} {time.perf_counter() - w0:.1f}s")
        log(f"[static] {length}: warm-ups took {time.perf_counter() - t0:.0f}s")
        stats, outs = interleaved(variants, repeats, clock, f"static {length}")
        t_pre = stats.get("prefill", {}).get("median")
        bw = card()[2]
        floor_step = w_bytes / bw
        floor_step_kv = (w_bytes + kv_tok * (length + n / 2)) / bw
        row = dict(length=length, new_tokens=n, variants=stats, weight_bytes_per_step=w_bytes,
                   kv_bytes_per_token=kv_tok, floor_step_s=floor_step, floor_step_with_kv_s=floor_step_kv)  # fmt: skip
        if t_pre is not None:
            row["floor_s"] = t_pre + (n - 1) * floor_step
            row["floor_with_kv_s"] = t_pre + (n - 1) * floor_step_kv
            if ceilings.get("copy_bytes_per_s"):
                row["floor_with_kv_measured_bw_s"] = (
                    t_pre + (n - 1) * (w_bytes + kv_tok * length) / ceilings["copy_bytes_per_s"]
                )
        same = {}
        for a, b in [("detect_graph", "detect_eager"), ("detect_graph", "ours_plain_graph"),
                     ("detect_graph_sdpa", "detect_graph"),
                     ("mask_zero_32_graph", "mask_zero_32_eager"), ("hf_static", "hf_dynamic")]:  # fmt: skip
            if a in outs and b in outs:
                same[f"{a}=={b}"] = outs[a].reshape(-1).tolist() == outs[b].reshape(-1).tolist()
        row["same_tokens"] = same
        rows.append(row)
        base = stats.get("hf_static", {}).get("median")
        log(
            f"[static] {length} tokens, {n} new, medians of {repeats} interleaved (spread = (max-min)/median):"
        )
        for name, st in stats.items():
            if "median" not in st:
                log(f"  {name:<22} FAILED: {st.get('error')}")
                continue
            step = (st["median"] - t_pre) / (n - 1) * 1e3 if t_pre and name != "prefill" else float("nan")
            ratio = st["median"] / base if base else float("nan")
            log(f"  {name:<22} {st['median']:7.3f}s  spread {st['spread'] * 100:5.1f}%  "
                f"({step:6.2f} ms/step after prefill)  / hf_static {ratio:.3f}")  # fmt: skip
        if t_pre is not None:
            log(f"  {'floor (weights)':<22} {row['floor_s']:7.3f}s  ({floor_step * 1e3:.2f} ms/step: "
                f"{w_bytes / 1e9:.2f} GB / {bw / 1e12:.2f} TB/s)")  # fmt: skip
            log(
                f"  {'floor (weights + KV)':<22} {row['floor_with_kv_s']:7.3f}s  ({floor_step_kv * 1e3:.2f} ms/step)"
            )
        log(f"  same tokens: {same}")
        results["static"]["rows"] = rows
        save()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _kernel_category(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("flash", "fmha", "attention", "efficient", "cudnn")):
        return "attention"
    if any(k in n for k in ("gemm", "gemv", "nvjet", "cutlass", "xmma", "matmul", "splitk", "dot_kernel")):
        return "matmul (weights and readout)"
    if any(k in n for k in ("argmax", "reduce", "norm", "mean", "sum")):
        return "reductions (norms, argmax)"
    if any(k in n for k in ("index", "scatter", "gather", "copy", "cat")):
        return "copies / indexing (cache writes, RoPE cat)"
    if "memcpy" in n or "memset" in n:
        return "memcpy/memset"
    return "elementwise and other"


def section_stepprof(model, results, length=8192, short=3, long=13, only=None):
    """GPU time of one graph-replayed decode step by kernel category: a profile of a run with ``long`` new tokens
    minus one with ``short`` (same prefill, warm-up step and capture), divided by ``long - short``."""
    from torch.profiler import ProfilerActivity, profile

    device = model.device
    ids = torch.randint(0, model.config.vocab_size, (1, length), device=device)
    span = (length // 2, length // 2 + 32)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = {}
    runs = {
        "detect_graph": lambda k: copy_paste_scores(
            model, ids[0], span, k, eos_token_ids=[], backend="static"
        ),
        "ours_plain_graph": lambda k: masked_generate(
            model, ids, [], max_new_tokens=k, eos_token_id=[], backend="static"
        ),  # fmt: skip
        "detect_graph_sdpa": lambda k: with_env(
            ATTENTION_ENV,
            "model",
            lambda: copy_paste_scores(model, ids[0], span, k, eos_token_ids=[], backend="static"),
        ),  # fmt: skip
    }
    for name, fn in runs.items():
        if only and name not in only:
            continue
        per = {}
        for k in (short, long):
            fn(k)
            with profile(activities=acts) as prof:
                fn(k)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            cats: dict[str, float] = {}
            for ev in prof.key_averages():
                dev_t = getattr(ev, "self_device_time_total", None)
                if dev_t is None:
                    dev_t = getattr(ev, "self_cuda_time_total", 0.0)
                if dev_t and getattr(ev, "device_type", None) is not None and "CUDA" in str(ev.device_type):
                    cat = _kernel_category(ev.key)
                    cats[cat] = cats.get(cat, 0.0) + dev_t
            per[k] = cats
            if k == long:
                key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
                log(
                    f"[stepprof] {name}, {k} new tokens:\n{prof.key_averages().table(sort_by=key, row_limit=15)}"
                )
        steps = long - short
        step_ms = {c: (per[long].get(c, 0.0) - per[short].get(c, 0.0)) / steps / 1e3 for c in per[long]}
        step_ms["total GPU"] = sum(step_ms.values())
        out[name] = step_ms
        log(f"[stepprof] {name}: GPU time of one replayed decode step at {length} (ms): "
            + ", ".join(f"{c} {v:.3f}" for c, v in sorted(step_ms.items(), key=lambda kv: -kv[1])))  # fmt: skip
    results["stepprof"] = dict(length=length, per_step_ms=out)


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
    ap.add_argument("--static-lengths", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument(
        "--variants", nargs="+", default=None, help="time only these variants of the static section"
    )
    ap.add_argument("--grid-backend", default="auto", choices=["auto", "eager", "static"])
    ap.add_argument(
        "--deadline", type=float, default=0, help="skip sections that start after this many seconds"
    )
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
    if args.fresh_masking_model and {"lengths", "masking", "static"} & set(args.sections):
        plain_model = build(cfg, device, dtype)
    start = time.perf_counter()
    if "static" in args.sections:
        results["ceilings"] = measure_ceilings(device)
        log(f"ceilings: {results['ceilings']}")
    for section in args.sections:
        t0 = time.perf_counter()
        if args.deadline and t0 - start > args.deadline:
            log(f"  ({section}: skipped, past the deadline of {args.deadline:.0f} s)")
            continue
        if section == "static":
            lengths_s = [min(x, 512) for x in args.static_lengths] if args.tiny else args.static_lengths
            section_static(model, plain_model or model, clock, lengths_s, args.new_tokens, args.repeats, results,
                           results.get("ceilings", {}), save=save, only=args.variants)  # fmt: skip
        elif section == "stepprof":
            section_stepprof(model, results, length=256 if args.tiny else 8192, only=args.variants)
        elif section == "lengths":
            section_lengths(
                model, clock, lengths, args.new_tokens, args.repeats, results, not args.no_wu, plain_model
            )
        elif section == "grid":
            kw = dict(lengths_max=300, wu_slice=2) if args.tiny else {}
            if args.no_wu:
                kw["wu_slice"] = 0
            section_grid(
                model, clock, args.new_tokens, args.grid_batch, results, backend=args.grid_backend, **kw
            )
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
