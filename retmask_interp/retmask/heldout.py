"""Held-out DPO rewards: the implicit reward of a trained policy on preference pairs it was not trained on.

DPO's implicit reward of a response ``y`` to a prompt ``x`` is ``beta * (log pi(y|x) - log pi_ref(y|x))``, with
``log pi(y|x)`` the summed log-probability of the response tokens. On held-out pairs (pairs from held-out prompts,
made exactly as the training pairs) the *reward accuracy* is the share of pairs whose chosen response gets the
higher reward and the *margin* the mean of ``reward(chosen) - reward(rejected)``; these are the quantities TRL
logs as ``rewards/accuracies`` and ``rewards/margins`` on its training batches.

Tokenisation follows TRL's DPO for conversational pairs: the prompt is the chat template with a generation prompt,
the response the tokens that the template of the whole conversation adds after it (ending with the template's end
of turn); for plain pairs, ``tokenizer(prompt + response)`` after ``tokenizer(prompt)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["response_token_ids", "response_logprobs", "heldout_rewards"]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value[0]["content"])


def response_token_ids(tokenizer, prompt: Any, response: Any) -> tuple[list[int], list[int]]:
    """``(prompt ids, response ids)`` of a pair side, conversational (message lists) or plain (strings)."""
    if isinstance(prompt, str):
        p = list(tokenizer(text=prompt)["input_ids"])
        full = list(tokenizer(text=prompt + _text(response))["input_ids"])
    else:
        msgs = [{"role": "user", "content": _text(prompt)}]
        p = list(
            tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ]
        )
        both = msgs + [{"role": "assistant", "content": _text(response)}]
        full = list(tokenizer.apply_chat_template(both, tokenize=True, return_dict=True)["input_ids"])
    if full[: len(p)] != p:
        raise ValueError("the prompt's tokens are not a prefix of the prompt-and-response tokens")
    return p, full[len(p) :]


@torch.no_grad()
def response_logprobs(
    model,
    tokenizer,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    *,
    batch_size: int = 8,
    max_length=None,
) -> list[float]:
    """Summed log-probability of each response's tokens given its prompt (right-padded batches, float32
    log-softmax). ``max_length`` truncates prompt + response as TRL's ``max_length`` does (from the end)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    device = next(model.parameters()).device
    seqs = []
    for prompt, response in zip(prompts, responses):
        p, r = response_token_ids(tokenizer, prompt, response)
        ids = p + r
        if max_length is not None and len(ids) > max_length:
            ids = ids[:max_length]
        seqs.append((ids, len(p)))
    out: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(x) for x, _ in chunk)
        batch = torch.tensor([x + [0] * (width - len(x)) for x, _ in chunk], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in chunk], device=device)
        logits = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, batch[:, 1:, None])[..., 0]
        for row, (x, n_prompt) in enumerate(chunk):
            out.append(float(logp[row, n_prompt - 1 : len(x) - 1].sum()))
    return out


def heldout_rewards(
    policy_logps: Mapping[str, Sequence[float]], ref_logps: Mapping[str, Sequence[float]], beta: float
) -> dict[str, float]:
    """Reward accuracy and margin (module docstring) from the chosen / rejected log-probabilities of the policy and
    the reference (``{"chosen": [...], "rejected": [...]}`` each)."""
    rc = [beta * (a - b) for a, b in zip(policy_logps["chosen"], ref_logps["chosen"], strict=True)]
    rr = [beta * (a - b) for a, b in zip(policy_logps["rejected"], ref_logps["rejected"], strict=True)]
    if not rc:
        return {"accuracy": float("nan"), "margin": float("nan"), "n": 0}
    margins = [c - r for c, r in zip(rc, rr)]
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
        "chosen": sum(rc) / len(rc),
        "rejected": sum(rr) / len(rr),
        "n": len(margins),
    }
