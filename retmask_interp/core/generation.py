"""Generation: prompts in every accepted form, the one generation driver, and text out.

``prompt_ids`` turns what a user passes into token-id prompts, refusing what is ambiguous:

- a string: one text prompt, tokenized as it is (no chat template; pass chat messages for that);
- chat messages (``[{"role": "user", "content": ...}, ...]``): one prompt, through the tokenizer's chat template
  with the generation prompt added;
- an object with ``input_ids`` (a ``data.niah.NIAHSample``): its prompt;
- a flat list of ints or a 1-D tensor: ONE prompt of token ids;
- a 2-D tensor (``[batch, seq]``) or a list of any of the above: several prompts.

``generate_ids`` is the decode driver under every generation of the package (``RetModel.generate``,
``interventions.masking.generate``, the masked models): a static cache on a GPU, plain forwards, or one nnsight
trace with an edit applied on every forward. ``generate_text`` is text in, text out on top of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from retmask_interp.core.decode import cap_new_tokens, decode_in_one_trace, decode_steps, left_pad
from retmask_interp.core.io import InputError
from retmask_interp.core.models import RetModel
from retmask_interp.core.static_decode import decode_static, envoy_forward, plain_forward, resolve_backend

__all__ = ["prompt_ids", "sampler", "generate_ids", "generate_text", "new_texts"]

_SEVERAL = (
    "to generate for several prompts pass a list of them: [[ids of prompt 1], [ids of prompt 2]], a [batch, seq] "
    "tensor, or a list of strings"
)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_messages(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(m, Mapping) and "role" in m for m in x)


def _one(rm: RetModel, prompt: Any, text: bool) -> torch.Tensor:
    """One prompt as a 1-D long tensor."""
    if isinstance(prompt, str) or _is_messages(prompt):
        if not text:
            raise InputError(
                "this function takes token ids; for text in, text out use model.generate(prompt) "
                "(or masked(model, heads).generate(prompt)), or tokenize first"
            )
        tok = rm.tokenizer
        if tok is None:
            raise InputError(
                f"{rm.name} has no tokenizer: pass token ids, or attach one with as_model(model, tok)"
            )
        if isinstance(prompt, str):
            ids = tok(prompt)["input_ids"]
        else:
            if not getattr(tok, "chat_template", None):
                raise InputError(
                    f"{rm.name}'s tokenizer has no chat template: pass the prompt as a string instead of messages"
                )
            ids = tok.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping) or hasattr(ids, "keys"):  # a BatchEncoding in newer transformers
                ids = ids["input_ids"]
        return torch.as_tensor(list(ids), dtype=torch.long)
    if hasattr(prompt, "input_ids") and not isinstance(prompt, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(list(prompt.input_ids), dtype=torch.long)
    if isinstance(prompt, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(prompt)
        if t.dim() != 1 or t.dtype.is_floating_point:
            raise InputError(
                f"a prompt of token ids must be 1-D integers, got shape {tuple(t.shape)}, {t.dtype}"
            )
        return t.long()
    if isinstance(prompt, (list, tuple)) and prompt and all(_is_int(x) for x in prompt):
        return torch.as_tensor([int(x) for x in prompt], dtype=torch.long)
    raise InputError(
        f"cannot read a prompt from {type(prompt).__name__} {str(prompt)[:40]!r}: give a string, chat messages, "
        "a NIAH sample or a list of token ids"
    )


def prompt_ids(rm: RetModel, prompt: Any, *, text: bool = True) -> tuple[list[torch.Tensor], bool]:
    """``(prompts, single)``: the prompts of ``prompt`` (module docstring) as 1-D tensors, and whether it was one
    prompt. ``text=False`` refuses strings and chat messages (token-level functions)."""
    if isinstance(prompt, (torch.Tensor, np.ndarray)) and torch.as_tensor(prompt).dim() == 2:
        return [t for t in torch.as_tensor(prompt).long()], False
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise InputError("no prompt: the list is empty")
        if all(_is_int(x) for x in prompt) or _is_messages(prompt):
            return [_one(rm, prompt, text)], True
        if any(_is_int(x) for x in prompt):
            raise InputError(f"a list mixing token ids with other things is ambiguous; {_SEVERAL}")
        return [_one(rm, p, text) for p in prompt], False
    return [_one(rm, prompt, text)], True


def sampler(do_sample: bool, temperature: float, top_p: float, top_k: int, generator):
    """Logits ``[batch, vocab]`` -> next tokens: argmax, or temperature / top-k / top-p sampling. ``generator``:
    one ``torch.Generator``, or a list of them, one per row (a row's draws then do not depend on its batch)."""
    if not do_sample:
        return lambda logits: logits.argmax(dim=-1)
    if temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling (use do_sample=False for greedy)")

    def sample(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float() / temperature
        if top_k and top_k > 0:
            kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix with mass >= top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(-1)
        if isinstance(generator, list):  # one generator per row: a row's draws do not depend on its batch
            rows = [torch.multinomial(probs[i : i + 1], 1, generator=g) for i, g in enumerate(generator)]
            return torch.cat(rows).squeeze(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return sample


def generate_ids(
    rm: RetModel,
    prompts: Sequence[torch.Tensor],
    *,
    max_new_tokens: int = 50,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | Sequence[int] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    edit: tuple[Any, Callable[[], None]] | None = None,
    reference_plan=None,
    backend: str = "auto",
    on_prefill: Callable[..., None] | None = None,
) -> torch.Tensor:
    """Decode ``prompts`` (1-D token tensors); returns ``[batch, width + new]``: the left-padded prompts, then the
    new tokens, padded with ``pad_token_id`` after EOS (as ``model.generate``). ``seed``: one seed for the batch's
    generator, or one per prompt (each prompt its own generator: its sample does not depend on its batch).

    ``edit=(envoy, apply)``: ``apply()`` edits ``envoy`` (an nnsight envoy over modules of the model) on every
    forward, prefill included (``interventions.masking`` passes its mask sites). ``reference_plan`` takes the slow
    reference path instead (one nnsight trace per step, the plan applied there: ``core.decode.decode_steps``).
    ``backend``: ``"eager"``, ``"static"`` (static cache; a CUDA graph on a GPU) or ``"auto"``
    (``core.static_decode.resolve_backend``). ``on_prefill(batch, forward, cache, logits)``: called once the prompts
    are prefilled, with the left-padded ``Batch`` and what ``core.decode.OnPrefill`` receives (masked scoring reads
    the teacher-forced answer there, sharing the generation's prefill).
    """
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if eos_token_id is None:
        eos_ids = rm.eos_token_ids()
    else:
        eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if pad_token_id is None:
        pad_token_id = getattr(rm.tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = eos_ids[0] if eos_ids else 0
    max_new_tokens = cap_new_tokens(max_new_tokens, [len(p) for p in prompts], rm.max_context)
    batch = left_pad(prompts, max_new_tokens, rm.device, pad_id=pad_token_id)
    if max_new_tokens == 0:
        return batch.ids[:, : batch.width]
    generator: torch.Generator | list[torch.Generator] | None = None
    if isinstance(seed, (list, tuple)):
        if len(seed) != len(prompts):
            raise InputError(f"got {len(seed)} seeds for {len(prompts)} prompts; give one seed per prompt")
        generator = [torch.Generator(device=rm.device).manual_seed(int(s)) for s in seed]
    elif seed is not None:
        generator = torch.Generator(device=rm.device).manual_seed(int(seed))  # type: ignore[arg-type]
    choose = sampler(do_sample, temperature, top_p, top_k, generator)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=rm.device)
    reference = reference_plan is not None
    hook = None if on_prefill is None else functools.partial(on_prefill, batch)
    static, graphs = (False, False) if reference else resolve_backend(backend, rm, batch.ids.shape[1])
    if static:  # static cache; on a GPU the step (with the edit) replays as a CUDA graph
        forward = plain_forward(rm) if edit is None else envoy_forward(rm, edit[0], edit[1])
        steps = decode_static(
            rm, batch, max_new_tokens, choose, eos=eos, forward=forward, graphs=graphs, generator=generator,
            on_prefill=hook,
        )  # fmt: skip
    elif edit is None or reference:  # plain forwards (no nnsight), or the reference path
        steps = 0
        for step, _, _, _ in decode_steps(
            rm, batch, max_new_tokens, choose, eos=eos, mask_plan=reference_plan, on_prefill=hook
        ):
            steps = step + 1
    else:  # one trace for the whole generation, the edit applied on every forward
        steps = decode_in_one_trace(
            rm, batch, max_new_tokens, choose, eos=eos, envoy=edit[0], intervene=edit[1], on_prefill=hook
        )
    return batch.ids[:, : batch.width + steps]


def new_texts(rm: RetModel, ids: torch.Tensor, width: int, stop_ids: Sequence[int]) -> list[str]:
    """The text of every row's new tokens (after column ``width``), up to and without its first stop token,
    special tokens skipped, stripped."""
    if rm.tokenizer is None:
        raise InputError(
            f"{rm.name} has no tokenizer to decode with: attach one with as_model(model, tokenizer)"
        )
    stops = set(stop_ids)
    out = []
    for row in ids[:, width:].tolist():
        cut = next((j for j, t in enumerate(row) if t in stops), len(row))
        out.append(rm.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return out


def generate_text(
    rm: RetModel,
    prompt: Any,
    *,
    max_new_tokens: int = 50,
    stop: str = "eos",
    generate: Callable[..., torch.Tensor] | None = None,
    **kwargs: Any,
) -> str | list[str]:
    """Text in, text out: the continuation of ``prompt`` (any form of ``prompt_ids``) as a string, or a list of
    strings for several prompts. ``stop="eos"`` ends at the end-of-sequence tokens; ``"newline"`` also at the first
    line break (Wu et al.'s NIAH decoding). ``generate(prompts, eos_token_id=..., max_new_tokens=..., **kwargs)`` is
    the token-level generator (default ``generate_ids`` of ``rm``; a masked model passes its own)."""
    prompts, single = prompt_ids(rm, prompt, text=True)
    stop_ids = rm.stop_token_ids(stop)
    run = generate or (lambda ps, **kw: generate_ids(rm, ps, **kw))
    ids = run(prompts, eos_token_id=stop_ids, max_new_tokens=max_new_tokens, **kwargs)
    texts = new_texts(rm, ids, max(len(p) for p in prompts), stop_ids)
    return texts[0] if single else texts
