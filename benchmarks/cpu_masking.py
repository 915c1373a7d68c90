"""CPU benchmark: per-step cost of masked generation (``retmask_interp.interventions.masking.generate``) vs plain HF generate.

On a GPU, batch-1 decoding of an 8B model is bound by the CPU launching kernels, so every microsecond of Python and
nnsight work per step shows up in the wall time. A small random GQA Llama on the CPU has the same character: its
forward is cheap, so this measures the per-step overhead of our loop and of the nnsight interventions.

Prints ms per decode step (time over ``--new-tokens``, prefill included; wall and this process's CPU time, which is
steadier when other processes share the machine) of:

    plain HF generate         ``model.generate`` greedy (``do_sample=False``), the reference
    ours, nothing masked      ``masking.generate(model, ids, [])``
    ours, zero/uniform, 25 %  and 100 % of the heads masked (random heads, seeded)
    per-step traces           with --per-step: the reference path (``generate(..., per_step_traces=True)``), which was
                              ``generate`` before it ran the whole loop in one trace

and each time over plain HF generate (on a twin of the model that nnsight never wraps). The runs are timed
round-robin (one of each per repeat). Every masked run is first checked token for token against the greedy
generation of the weight-edited model (``zero_head_outputs_`` / ``zero_head_queries_``) and against the per-step-trace
path, and the unmasked run against plain HF generate, so the timings are of runs that really mask.

Usage: python benchmarks/cpu_masking.py [--layers 16] [--hidden 256] [--heads 8] [--kv-heads 2] [--length 256]
       [--new-tokens 50] [--repeats 7] [--threads 1] [--profile zero:100] [--sampled] [--per-step]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retmask_interp.interventions.masking import generate as masked_generate  # noqa: E402
from retmask_interp.interventions.weights import zero_head_outputs_, zero_head_queries_


def build_model(layers, hidden, heads, kv, vocab, seed=0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=4096,
        eos_token_id=None,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    with torch.no_grad():  # sharper attention than the default init, so masking changes the tokens
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(4.0)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model


def hf_generate(model, ids, n):
    with torch.no_grad():
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--profile",
        default=None,
        metavar="MODE:PERCENT",
        help="cProfile one masked generation (e.g. zero:100, uniform:25, none:0) and print the top functions",
    )
    ap.add_argument("--sampled", action="store_true", help="also time seeded sampling (temperature 0.6)")
    ap.add_argument(
        "--per-step", action="store_true", help="also time the reference path (one nnsight trace per step)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model(args.layers, args.hidden, args.heads, args.kv_heads, args.vocab)
    # The HF baseline runs on a twin that nnsight never wraps: wrapping installs a controller on every module it
    # covers (and `.source` an instrumented forward), which would slow plain generation on the same object too.
    pristine = build_model(args.layers, args.hidden, args.heads, args.kv_heads, args.vocab)
    # The reference path (one trace per step, `.source`) instruments the attention forwards for good: its own twin.
    old_model = build_model(args.layers, args.hidden, args.heads, args.kv_heads, args.vocab)
    n = args.new_tokens
    ids = torch.randint(0, args.vocab, (1, args.length), generator=torch.Generator().manual_seed(0))
    all_heads = [(layer, h) for layer in range(args.layers) for h in range(args.heads)]
    g = torch.Generator().manual_seed(1)

    def pick(percent):
        k = round(len(all_heads) * percent / 100)
        return sorted(all_heads[i] for i in torch.randperm(len(all_heads), generator=g)[:k].tolist())

    head_sets = {25: pick(25), 100: pick(100)}

    def ours(heads, mode, **kw):
        return masked_generate(model, ids, heads, mode, max_new_tokens=n, eos_token_id=[], **kw)

    def per_step(heads, mode, **kw):
        return masked_generate(
            old_model, ids, heads, mode, max_new_tokens=n, eos_token_id=[], per_step_traces=True, **kw
        )

    if args.profile:
        mode, percent = args.profile.split(":")
        heads = [] if mode == "none" else head_sets.get(int(percent)) or pick(int(percent))
        mode = "zero" if mode == "none" else mode
        ours(heads, mode)
        prof = cProfile.Profile()
        prof.enable()
        ours(heads, mode)
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
        print(s.getvalue())
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
        print(s.getvalue())
        return

    print(
        f"model: random GQA Llama, {args.layers} layers, {args.heads} heads / {args.kv_heads} KV heads, "
        f"hidden {args.hidden}, vocab {args.vocab}; prompt {args.length} tokens, {n} new tokens, "
        f"{args.threads} thread(s); median of {args.repeats} round-robin repeats after a warm-up"
    )
    # equivalence first (and warm-up): unmasked == plain greedy, masked == greedy of the weight-edited model
    ref = hf_generate(pristine, ids, n)
    assert ours([], "zero").tolist() == ref.tolist(), "unmasked generation must equal plain greedy generation"
    runs = {
        "plain HF generate": lambda: hf_generate(pristine, ids, n),
        "ours, nothing masked": lambda: ours([], "zero"),
    }
    for percent, heads in head_sets.items():
        for mode in ("zero", "uniform"):
            edited = copy.deepcopy(pristine)
            (zero_head_outputs_ if mode == "zero" else zero_head_queries_)(edited, heads)
            out = ours(heads, mode)
            assert out.tolist() == hf_generate(edited, ids, n).tolist(), (
                f"{mode} masking of {len(heads)} heads must equal the weight-edited model's greedy generation"
            )
            assert out.tolist() != ref.tolist(), "masking should change the generation of this model"
            del edited
            assert per_step(heads, mode).tolist() == out.tolist(), "one trace must equal per-step traces"
            runs[f"ours, {mode:<7} {len(heads):>4} heads ({percent:>3} %)"] = lambda heads=heads, mode=mode: (
                ours(heads, mode)
            )
            if args.per_step:
                runs[f"per-step traces, {mode:<7} {len(heads):>4} heads"] = lambda heads=heads, mode=mode: (
                    per_step(heads, mode)
                )
    if args.sampled:
        kw = dict(do_sample=True, temperature=0.6, seed=0)
        a = ours([], "zero", **kw)
        assert a.tolist() == ours([], "zero", **kw).tolist(), "seeded sampling must repeat"
        b = ours(head_sets[25], "zero", **kw)
        assert b.tolist() == per_step(head_sets[25], "zero", **kw).tolist(), "sampled: one trace == per step"
        runs["sampled, nothing masked"] = lambda: ours([], "zero", **kw)
        runs[f"sampled, zero {len(head_sets[25]):>4} heads"] = lambda: ours(head_sets[25], "zero", **kw)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    base_w = statistics.median(wall["plain HF generate"])
    base_c = statistics.median(cpu["plain HF generate"])
    print(f"{'':36s} {'wall ms/step':>12s} {'ratio':>6s}   {'CPU ms/step':>11s} {'ratio':>6s}")
    for name in runs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:36s} {1000 * w / n:12.2f} {w / base_w:6.3f}   {1000 * c / n:11.2f} {c / base_c:6.3f}")
    print(
        "(ratio: over plain HF generate on an nnsight-free twin; every masked run checked == the weight-edited "
        "model's greedy generation and == the per-step-trace path)"
    )


if __name__ == "__main__":
    main()
