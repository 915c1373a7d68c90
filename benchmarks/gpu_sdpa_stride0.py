#!/usr/bin/env python3
"""Issue 12's transformers-5.17 trap on Gemma-3, checked on a GPU (not a test: it needs CUDA; prints JSON).

The first hypothesis for the gibberish Gemma-3 decoded under transformers 5.17 was attention: HF's ``repeat_kv``
handing PyTorch's memory-efficient SDPA kernel a stride-0 key/value view (one KV head). This script tests it at
four levels, under whatever transformers is importable (run it once with the image's 5.17, once with 5.24):

1. torch alone: ``scaled_dot_product_attention`` with an explicit mask, keys/values of one KV head expanded to the
   query heads as a stride-0 view vs the same values made contiguous, each kernel forced in turn, against a float32
   math reference. If torch's kernel mishandles the view, the stride-0 rows differ and the contiguous ones do not.
2. the model (``generate``): a random-weight Gemma-3 (4 query heads over 1 KV head, head_dim 256, 512-token sliding
   window) in bf16, batched greedy decoding past the window with left padding, ``attn_implementation="sdpa"``
   against ``"eager"``: logits difference and token agreement.
3. the package: the same two models through detection's own decode loop (``copy_paste_scores_batch``, eager
   backend), sdpa against eager.
4. the real weights (``--model-dir``: Gemma-3-270M's dequantized Hugging Face directory, as ``core.real_models``
   caches it): NIAH prompts inside and beyond the 512-token window through detection (``score_samples``; both
   decode backends) and through HF ``generate``, with sdpa and with eager attention.

Runs (H200, torch 2.11; ``studies/real_models/transformers517/``): 2026-12-02, levels 1-2 agree under 5.17 and 5.24;
2026-12-03 (``studies/device/sdpa_check.sh``), levels 3-4 agree too, every NIAH answer right under both versions
with a directory converted by 5.24. Attention is not the cause: the directory that 5.17's GGUF conversion writes
holds a broken tokenizer (``benchmarks/gguf_tokenizer_versions.sh``; refused since by
``core.real_models.check_converted_tokenizer``), and level 4 on that directory decodes "1 1 1 ..." on the CPU too.

    python3 benchmarks/gpu_sdpa_stride0.py [--levels 1,2,3,4] [--model-dir DIR] [--out result.json]
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F


def torch_level(device) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for lq, lk in ((1, 1500), (1, 8192), (64, 1500)):
        b, h, d = 2, 4, 256
        q = torch.randn(b, h, lq, d, generator=g).to(device, torch.bfloat16)
        k1 = torch.randn(b, 1, lk, d, generator=g).to(device, torch.bfloat16)
        v1 = torch.randn(b, 1, lk, d, generator=g).to(device, torch.bfloat16)
        # repeat_kv's way: expand then reshape; with one KV head the reshape is a view with head stride 0
        k0 = k1[:, :, None].expand(b, 1, h, lk, d).reshape(b, h, lk, d)
        v0 = v1[:, :, None].expand(b, 1, h, lk, d).reshape(b, h, lk, d)
        mask = torch.ones(b, 1, lq, lk, dtype=torch.bool, device=device)
        mask[0, :, :, : lk // 3] = False  # left padding of the first row
        ref = F.scaled_dot_product_attention(
            q.float(), k0.float().contiguous(), v0.float().contiguous(), attn_mask=mask
        )
        for name, backend in (("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)):
            for layout, (k, v) in (("stride0", (k0, v0)), ("contiguous", (k0.contiguous(), v0.contiguous()))):
                try:
                    with sdpa_kernel(backend):
                        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    err = (out.float() - ref).abs().max().item()
                except RuntimeError as e:  # the kernel refused the inputs
                    err = f"refused: {str(e).splitlines()[0][:120]}"
                rows.append(
                    dict(lq=lq, lk=lk, kernel=name, layout=layout, head_stride=k.stride(1), max_abs_err=err)
                )
    return rows


def _gemma3_config():
    """A small random Gemma-3: 4 query heads over 1 KV head, head_dim 256, 3 layers with a 512-token window."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, sliding_window=512, max_position_embeddings=4096,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
    )  # fmt: skip


def model_level(device) -> dict:
    from transformers import AutoModelForCausalLM

    cfg = _gemma3_config()
    torch.manual_seed(0)
    base = (
        AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(device, torch.bfloat16).eval()
    )
    state = base.state_dict()
    out = {}
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 512, (2, 1500), generator=g)
    att = torch.ones_like(ids)
    ids[0, :400] = 0  # left padding of the first row
    att[0, :400] = 0
    ids, att = ids.to(device), att.to(device)
    for impl in ("eager", "sdpa"):
        m = AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).to(device, torch.bfloat16).eval()
        m.load_state_dict(state)
        with torch.no_grad():
            res = m.generate(
                ids, attention_mask=att, max_new_tokens=24, do_sample=False, output_logits=True,
                return_dict_in_generate=True, pad_token_id=0,
            )  # fmt: skip
        out[impl] = (res.sequences[:, ids.shape[1] :].cpu(), torch.stack(res.logits, 1).float().cpu())
    te, le = out["eager"]
    ts, ls = out["sdpa"]
    first = le[:, 0]
    return dict(
        tokens_equal=bool(torch.equal(te, ts)),
        token_agreement=float((te == ts).float().mean()),
        first_step_logit_max_abs_diff=float((ls[:, 0] - first).abs().max()),
        first_step_logit_scale=float(first.abs().max()),
    )


def package_level(device) -> dict:
    from transformers import AutoModelForCausalLM

    from retmask_interp.core import models
    from retmask_interp.measure import detect

    cfg = _gemma3_config()
    torch.manual_seed(0)
    state = AutoModelForCausalLM.from_config(cfg).state_dict()
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 512, (n,), generator=g) for n in (1500, 1100)]
    spans = [(700, 732), (300, 332)]
    out = {}
    for impl in ("eager", "sdpa"):
        m = AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).to(device, torch.bfloat16).eval()
        m.load_state_dict(state)
        rm = models.RetModel(m, None, name=f"gemma3-random-{impl}")
        res = detect.copy_paste_scores_batch(rm, prompts, spans, 24, eos_token_ids=[], backend="eager")
        out[impl] = res
    pairs = list(zip(out["eager"], out["sdpa"]))
    return dict(
        tokens_identical=[bool(torch.equal(a[0].cpu(), b[0].cpu())) for a, b in pairs],
        score_max_abs_diff=[float((a[1].float() - b[1].float()).abs().max()) for a, b in pairs],
        tokens_eager=[a[0].tolist() for a, _ in pairs],
        tokens_sdpa=[b[0].tolist() for _, b in pairs],
    )


def real_level(device, model_dir: str, lengths=(400, 2000, 6000)) -> dict:
    """NIAH prompts of 400 (inside the window), 2,000 and 6,000 tokens, 3 depths, one needle (synthetic haystack,
    continuation style): per attention implementation, what detection decodes with each backend and what HF
    ``generate`` decodes (greedy, 24 tokens), and whether the needle's answer is in it."""
    from retmask_interp.core.models import load_model
    from retmask_interp.data.niah import niah_grid
    from retmask_interp.measure import detect

    out: dict = {}
    for impl in ("eager", "sdpa"):
        rm = load_model(model_dir, dtype="bfloat16", device=str(device), attn_implementation=impl)
        samples = niah_grid(rm, list(lengths), 3, 1, needle_set="default", style="continuation")
        row: dict = {}
        for backend in ("eager", "auto"):
            cfg = detect.DetectConfig(max_new_tokens=24, batch_size=3, backend=backend)
            res = sorted(detect.score_samples(rm, samples, cfg, progress=False), key=lambda r: r.sample_id)
            row[f"detect_{backend}"] = [
                dict(id=r.sample_id, n=len(r.input_ids), counted=r.counted, text=r.generated_text[:80])
                for r in res
            ]
        gen = []
        for smp in samples:
            ids = torch.tensor([list(smp.input_ids)], device=rm.device)
            with torch.no_grad():
                seq = rm.model.generate(ids, max_new_tokens=24, do_sample=False)
            text = rm.tokenizer.decode(seq[0, ids.shape[1] :], skip_special_tokens=True).strip()
            gen.append(dict(n=ids.shape[1], answer_in=smp.needle["real_needle"][:20] in text, text=text[:80]))
        row["generate"] = gen
        out[impl] = row
        del rm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--levels", default="1,2,3", help="comma-separated levels to run (4 needs --model-dir)")
    ap.add_argument("--model-dir", help="level 4: the real Gemma-3's Hugging Face directory")
    ap.add_argument("--lengths", default="400,2000,6000", help="level 4: prompt lengths in tokens")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    levels = {int(x) for x in args.levels.split(",")}
    if 4 in levels and not args.model_dir:
        ap.error(
            "level 4 needs --model-dir (the dequantized Gemma-3 directory; core.real_models.real_model_dir)"
        )
    import transformers

    device = torch.device(args.device)
    res = dict(
        torch=torch.__version__,
        transformers=transformers.__version__,
        gpu=torch.cuda.get_device_name() if device.type == "cuda" else None,
    )
    for level, name, fn in (
        (1, "torch_level", lambda: torch_level(device)),
        (2, "model_level", lambda: model_level(device)),
        (3, "package_level", lambda: package_level(device)),
        (
            4,
            "real_level",
            lambda: real_level(device, args.model_dir, [int(x) for x in args.lengths.split(",")]),
        ),
    ):
        if level in levels:
            res[name] = fn()
    text = json.dumps(res, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
