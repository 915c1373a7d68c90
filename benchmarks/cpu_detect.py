"""CPU benchmark: detection vs plain greedy generation vs the naive Wu-style reference.

A random-weight GQA Llama (8 layers, 8 query heads over 2 KV heads, hidden 512), one NIAH-sized prompt of
--length tokens, --new-tokens greedy steps (no EOS, success filter irrelevant: timing only). Prints:

    detect/generate ratio: detection time over plain greedy generation of the same tokens (HF generate, sdpa)
    speedup over naive:    naive reference time (eager attention + output_attentions + layer x head loop with
                           a host sync per head, as Wu et al.'s code) over detection time

Usage: python benchmarks/cpu_detect.py [--length 2048] [--new-tokens 50] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_impl import eager_copy, naive_copy_paste_scores  # noqa: E402

from benchmarks.timing import Clock  # noqa: E402
from retmask_interp.measure.detect import copy_paste_scores  # noqa: E402


def build_model(layers=8, hidden=512, heads=8, kv=2, vocab=8192, seed=0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=8192,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model()
    n = args.new_tokens
    ids = torch.randint(
        0, model.config.vocab_size, (args.length,), generator=torch.Generator().manual_seed(0)
    )
    span = (args.length // 2, args.length // 2 + 20)

    def plain():
        with torch.no_grad():
            return model.generate(
                ids[None],
                attention_mask=torch.ones(1, args.length, dtype=torch.long),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )[0, args.length :]

    def detect():
        return copy_paste_scores(model, ids, span, n, eos_token_ids=[])

    plain()
    detect()  # warm-up (nnsight source instrumentation, allocator)
    clock = Clock("cpu")
    t_plain, _, gen_plain = clock.run(plain, args.repeats)
    t_detect, _, (gen, _) = clock.run(detect, args.repeats)
    assert gen.tolist() == gen_plain.tolist(), "detection must decode the same tokens as plain generation"
    print(
        f"model: random GQA Llama, 8 layers, 8 heads / 2 KV heads, hidden 512; prompt {args.length} tokens, "
        f"{n} new tokens, {args.threads} threads, median of {args.repeats}"
    )
    print(f"plain greedy generation: {t_plain:.3f} s")
    print(f"detection:               {t_detect:.3f} s")
    print(f"detect/generate ratio: {t_detect / t_plain:.3f}  (target <= 1.3)")
    if not args.skip_naive:
        eager = eager_copy(model)
        t_naive, _, (gen_naive, _) = clock.run(lambda: naive_copy_paste_scores(eager, ids, span, n), 1)
        assert gen_naive.tolist() == gen.tolist()
        print(f"naive reference:         {t_naive:.3f} s")
        print(f"speedup over naive: {t_naive / t_detect:.2f}x")


if __name__ == "__main__":
    main()
