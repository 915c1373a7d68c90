"""A deliberately naive copy-paste retrieval score, written like Wu et al.'s decode loop.

Eager attention with ``output_attentions=True``, the prompt minus its last token prefilled, then one token per step;
a Python loop over every layer x head with a host sync per head. Used by the tests (the fast path must agree) and
by the benchmarks (the speedup is measured against it).
"""

from __future__ import annotations

import copy

import torch


def eager_copy(model):
    m = copy.deepcopy(model)
    m.set_attn_implementation("eager")
    return m.eval()


@torch.no_grad()
def naive_copy_paste_scores(
    eager_model, input_ids, needle_span, max_new_tokens, eos_token_ids=(), prefill="eager"
):
    """``(generated tokens, [layers, heads] scores)``. ``prefill="sdpa"``: the prompt goes through sdpa, the steps
    through eager attention (the model is switched, and restored after), as Wu's own loop does; an eager prefill of
    a 128K prompt does not fit a GPU (the GPU benchmark's Wu-style baseline)."""
    ids = torch.as_tensor(input_ids).reshape(1, -1)
    start, end = needle_span
    cfg = eager_model.config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    scores = torch.zeros(n_layers, n_heads)
    before = cfg._attn_implementation
    if prefill != "eager":
        eager_model.set_attn_implementation(prefill)
    try:
        out = eager_model(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1)  # its logits go unused
        if prefill != "eager":
            eager_model.set_attn_implementation("eager")
        past = out.past_key_values
        inp = ids[:, -1:]
        tokens = ids[0].tolist()
        generated = []
        for _ in range(max_new_tokens):
            out = eager_model(input_ids=inp, past_key_values=past, use_cache=True, output_attentions=True)
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            generated.append(token)
            for layer in range(n_layers):
                attn = out.attentions[layer][0]  # [heads, 1, keys]
                # a sliding-window layer's cache holds only the last keys: its key j is position j + offset
                offset = len(tokens) - attn.shape[-1]
                for head in range(n_heads):
                    j = int(attn[head, -1].argmax()) + offset  # host sync per head
                    if start <= j < end and tokens[j] == token:
                        scores[layer, head] += 1.0 / (end - start)
            tokens.append(token)
            if token in eos_token_ids:
                break
            inp = torch.tensor([[token]], device=ids.device)
    finally:
        if prefill != "eager":
            eager_model.set_attn_implementation(before)
    return torch.tensor(generated, dtype=torch.long), scores
