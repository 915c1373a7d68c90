"""Head masking through nnsight interventions, and the equivalent weight edits.

One generic intervention (``MaskPlan``) with three named variants:

- ``zero``: the head's output is removed: its slice ``[h*d, (h+1)*d)`` of the output projection's *input* is
  zeroed (equals zeroing those columns of ``o_proj``; what RetMask uses);
- ``uniform``: the head's post-RoPE query is zeroed, so it attends uniformly over its causal context (equals zeroing
  the head's rows of ``q_proj``; what Wu et al. use);
- ``mean``: the head's output is replaced by its mean over a reference set (``mean_head_outputs``).

Where the interventions act (``MaskPlan.sites``): ``zero``/``mean`` edit the output projection's input; ``uniform``
zeroes the head's slice of the query projection's *output* (its slice of the fused ``qkv`` output per the table's
``query_layout``; for OLMo-2/3, whose query norm spans all heads, the norm's output), which is the exact counterpart
of the weight edit ``zero_head_queries_`` (a zero query stays zero through per-head norms and RoPE). Neither needs
``.source``, which would permanently instrument the attention forward. ``generate`` runs the whole decode loop in one
nnsight trace with the sites edited on every forward (``core.decode.decode_in_one_trace``).

Python API: ``masked_logits`` (one forward), ``generate`` (greedy or sampled decoding with heads masked at every
step), ``masked(model, heads)`` (a context for a block of work), ``random_controls`` (control head sets that never
overlap the heads they control for), and the weight edits ``zero_head_outputs_`` / ``zero_head_queries_``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from retmask_interp.core.architectures import query_features
from retmask_interp.core.generation import generate_ids, generate_text, prompt_ids
from retmask_interp.core.models import RetModel, as_model, get_submodule
from retmask_interp.core.notation import MASK_MODES, head_key
from retmask_interp.heads.scores import by_layer

__all__ = [
    "MODES",
    "MaskPlan",
    "MaskSite",
    "MaskedModel",
    "generate",
    "masked",
    "masked_logits",
    "mean_head_outputs",
    "score_and_generate",
    "site_envoy",
]

MODES = MASK_MODES  # core.notation
Head = tuple[int, int]


@dataclass
class MaskSite:
    """One in-place edit per forward: ``envoy``'s input (or output) features where ``mask`` is True become 0, or
    ``fill`` (mode ``mean``). ``mask`` is ``[rows, features]``: one row shared by the whole batch, or one per batch
    row (a per-row plan); the edited tensor is ``[batch, ..., features]``."""

    layer: int
    envoy: Any
    output: bool
    mask: torch.Tensor  # bool [rows, features]
    fill: torch.Tensor | None = None  # [features], mode "mean"

    def apply(self) -> None:
        x = self.envoy.output if self.output else self.envoy.input
        mask = self.mask.view(self.mask.shape[0], *([1] * (x.dim() - 2)), self.mask.shape[1])
        if self.fill is None:
            x.masked_fill_(mask, 0)
        else:
            x.copy_(torch.where(mask, self.fill.to(x.dtype), x))


@dataclass
class MaskPlan:
    """Which heads to mask, per batch row, and how. Build with ``MaskPlan.build`` (one head set for every row of a
    batch) or ``MaskPlan.for_rows`` (a head set per row: a sweep packs conditions x samples into one batch).

    ``heads_mask`` is ``[rows, layers, heads]`` (True = masked) on the model's device; ``rows`` is 1 (shared by the
    whole batch) or the batch size. Every edit is a masked fill with that mask broadcast over the batch, so a row is
    masked exactly as it would be in a batch of its own (``tests/interventions/test_row_masks.py``)."""

    mode: str
    heads_mask: torch.Tensor
    layers: tuple[int, ...] = ()
    num_heads: int = 0
    head_dim: int = 0
    mean_values: torch.Tensor | None = None  # [layers, heads, head_dim] for mode "mean"

    @classmethod
    def build(cls, model, heads: Iterable[Head], mode: str = "zero", mean_values=None) -> MaskPlan:
        """The same ``heads`` masked in every row of a batch."""
        return cls.for_rows(model, [heads], mode, mean_values)

    @classmethod
    def for_rows(
        cls, model, head_sets: Sequence[Iterable[Head]], mode: str = "zero", mean_values=None
    ) -> MaskPlan:
        """Row ``i`` of the batch masks ``head_sets[i]`` (``(layer, query_head)`` pairs; an empty set: the plain
        model for that row)."""
        rm = as_model(model)
        if mode not in MODES:
            raise ValueError(f"unknown masking mode {mode!r}; use one of {', '.join(MODES)}")
        if not len(head_sets):
            raise ValueError("a mask plan needs at least one row (one head set)")
        sets = [rm.check_heads(hs) for hs in head_sets]
        g = rm.geometry
        if mode == "mean" and any(sets):
            if mean_values is None:
                raise ValueError(
                    "mode 'mean' needs mean_values: compute them with mean_head_outputs(model, ids)"
                )
            if tuple(mean_values.shape) != (g.num_layers, g.num_heads, g.head_dim):
                raise ValueError(
                    f"mean_values has shape {tuple(mean_values.shape)}, expected "
                    f"({g.num_layers}, {g.num_heads}, {g.head_dim})"
                )
        mask = torch.zeros(
            len(sets), g.num_layers, g.num_heads, dtype=torch.bool
        )  # built on the host, moved once
        for row, hs in enumerate(sets):
            for layer, head in hs:
                mask[row, layer, head] = True
        device = rm.device
        return cls(
            mode=mode,
            heads_mask=mask.to(device),
            layers=tuple(sorted({layer for hs in sets for layer, _ in hs})),
            num_heads=g.num_heads,
            head_dim=g.head_dim,
            mean_values=None if mean_values is None else mean_values.to(device),
        )

    @property
    def rows(self) -> int:
        return self.heads_mask.shape[0]

    @property
    def is_empty(self) -> bool:
        return not self.layers

    def check_batch(self, batch: int) -> None:
        """Refuse a per-row plan whose rows are not the batch's."""
        if self.rows not in (1, batch):
            raise ValueError(f"the mask plan has {self.rows} rows (head sets) but the batch has {batch} rows")

    def touches_query(self, layer: int) -> bool:
        return self.mode == "uniform" and layer in self.layers

    def touches_output(self, layer: int) -> bool:
        return self.mode in ("zero", "mean") and layer in self.layers

    def _row_mask(self, layer: int, dims: int, head_axis: int) -> torch.Tensor:
        """``heads_mask[:, layer]`` shaped to broadcast over a ``dims``-dimensional tensor whose batch axis is 0 and
        whose heads lie on ``head_axis`` (every other axis 1)."""
        shape = [1] * dims
        shape[0], shape[head_axis] = self.rows, self.num_heads
        return self.heads_mask[:, layer].reshape(shape)

    def apply_query(self, layer: int, query: torch.Tensor) -> None:
        """In place on the attention call's query ``[batch, heads, q_len, head_dim]``."""
        if self.touches_query(layer):
            # a masked fill with a device mask: no host-to-device copy, which a CUDA graph capture refuses
            query.masked_fill_(self._row_mask(layer, query.dim(), 1), 0)

    def _means(self) -> torch.Tensor:
        """``mean_values``, which ``build`` requires for mode "mean"."""
        if self.mean_values is None:
            raise ValueError("mode 'mean' needs mean_values (build the plan with MaskPlan.build)")
        return self.mean_values

    def apply_output(self, layer: int, head_outputs: torch.Tensor) -> None:
        """In place on the output projection's input ``[batch, ..., heads * head_dim]``."""
        if not self.touches_output(layer):
            return
        view = head_outputs.view(*head_outputs.shape[:-1], self.num_heads, self.head_dim)
        mask = self._row_mask(layer, view.dim(), view.dim() - 2)
        if self.mode == "zero":
            view.masked_fill_(mask, 0)
        else:
            view.copy_(torch.where(mask, self._means()[layer].to(view.dtype), view))

    def site_name(self, rm: RetModel) -> tuple[str, bool]:
        """The attention submodule this plan edits and whether it edits its output (else its input)."""
        if self.mode == "uniform":
            return rm.spec.joint_query_norm or rm.spec.query, True
        return rm.spec.out_proj, False

    def sites(self, rm: RetModel, root=None) -> list[MaskSite]:
        """The edits that apply this plan, in execution order (``MaskSite.apply`` inside a trace, one forward each).

        ``zero``/``mean``: the output projection's input, ``[..., heads * head_dim]``. ``uniform``: the query
        projection's output (per ``query_layout``: ``[h*d, (h+1)*d)`` of a separate or ``[q | k | v]`` projection,
        ``[3*h*d, 3*h*d + d)`` of GPT-NeoX's per-head layout), or for a query norm over all heads the norm's output.
        The envoys are ``rm.lm``'s, or with ``root`` (``site_envoy(rm, self.site_name(rm)[0])``) that envoy's.
        """
        spec, d = rm.spec, self.head_dim
        name, output = self.site_name(rm)
        out: list[MaskSite] = []
        host = self.heads_mask.cpu()
        for layer in self.layers:
            module = get_submodule(rm.attention(layer), name)
            envoy = root[layer] if root is not None else get_submodule(rm.attention_envoy(layer), name)
            device = module.weight.device
            if self.mode == "uniform":
                # output features: nn.Linear's out_features, GPT-2 Conv1D's nf, a norm's weight length
                features = getattr(module, "out_features", None) or getattr(module, "nf", None)
                features = int(features or module.weight.shape[0])
                mask = torch.zeros(self.rows, features, dtype=torch.bool)
                for h in range(self.num_heads):
                    mask[:, query_features(spec, h, d)] = host[:, layer, h, None]
                out.append(MaskSite(layer, envoy, output, mask.to(device)))
                continue
            mask = host[:, layer, :, None].expand(self.rows, self.num_heads, d).reshape(self.rows, -1)
            fill = self._means()[layer].reshape(-1).to(device) if self.mode == "mean" else None
            out.append(MaskSite(layer, envoy, output, mask.to(device), fill))
        return out

    @staticmethod
    def apply_sites(sites: Sequence[MaskSite]) -> None:
        """Apply ``sites`` (from ``sites``) inside an active trace of their envoys' root."""
        for site in sites:
            site.apply()

    def apply_all(self, rm: RetModel) -> None:
        """Apply to every layer inside an active ``rm.lm.trace`` (layers in execution order)."""
        self.apply_sites(self.sites(rm))


_SITE_ENVOYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def site_envoy(model, name: str):
    """An nnsight envoy over only the submodule ``name`` of every layer's attention: ``NNsight`` of a ``ModuleList``
    holding those modules themselves (not copies), cached per model; ``envoy[layer]`` is that layer's module.

    Masked generation traces its decode loop through this envoy rather than ``rm.lm``: an nnsight trace hands every
    module it wraps over to the interleaver on every call (input, skip gate, output), so a trace of the whole model
    pays that at every module of every step, while the masking touches one module per layer. nnsight routes a
    module wrapped by several envoys to whichever one is tracing, so ``rm.lm`` keeps working on the same modules.
    """
    from nnsight import NNsight

    rm = as_model(model)
    modules = [get_submodule(rm.attention(layer), name) for layer in range(rm.geometry.num_layers)]
    per_model = _SITE_ENVOYS.setdefault(rm.model, {})
    cached = per_model.get(name)
    if cached is None or any(a is not b for a, b in zip(cached[0], modules)):  # new, or a module was replaced
        cached = per_model[name] = (modules, NNsight(torch.nn.ModuleList(modules)))
    return cached[1]


def masked_logits(
    model,
    input_ids: torch.Tensor,
    heads: Iterable[Head] | MaskPlan = (),
    mode: str = "zero",
    *,
    attention_mask: torch.Tensor | None = None,
    mean_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``[batch, seq, vocab]`` of a forward pass with ``heads`` (``(layer, query_head)`` pairs) masked.

    ``model`` is a Hugging Face causal LM or ``RetModel``; ``input_ids`` is ``[batch, seq]``; no heads = plain model.
    ``heads`` may be a ``MaskPlan`` (``MaskPlan.for_rows``: each row of the batch with its own heads).
    """
    rm = as_model(model)
    input_ids = torch.as_tensor(input_ids)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
    plan = heads if isinstance(heads, MaskPlan) else MaskPlan.build(rm, heads, mode, mean_values)
    plan.check_batch(input_ids.shape[0])
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask.to(rm.device)}
    with torch.no_grad(), rm.lm.trace(input_ids.to(rm.device), **kwargs):
        plan.apply_all(rm)
        logits = rm.lm.output.logits.save()
    return logits


def generate(
    model,
    input_ids: torch.Tensor | Sequence[int] | Sequence[torch.Tensor | Sequence[int]],
    heads: Iterable[Head] | MaskPlan = (),
    mode: str = "zero",
    *,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 50,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | Sequence[int] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    mean_values: torch.Tensor | None = None,
    per_step_traces: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Token ids in, token ids out: generate with ``heads`` masked at every step (prefill included); returns
    ``[batch, width + new]`` like ``model.generate``: left-padded prompts followed by the new tokens, padded with
    ``pad_token_id`` after EOS. (Text in, text out: ``model.generate(prompt)`` / ``masked(model, heads).generate``.)

    ``input_ids``: a flat list of ints or a 1-D tensor is ONE prompt; several are a ``[batch, seq]`` tensor (with
    ``attention_mask`` for left padding) or a list of 1-D prompts of different lengths. A string is refused (it is
    not token ids). ``heads``: ``(layer, head)`` pairs or ``"layer-head"`` keys masked in every row, or a
    ``MaskPlan`` (``MaskPlan.for_rows``: a head set per row, so that one batch runs many conditions; ``mode`` and
    ``mean_values`` are then the plan's). ``seed`` seeds sampling (a ``torch.Generator`` on the model's device), so
    two calls with the same seed draw the same random numbers: the masked and unmasked sides of a RetMask pair
    differ only by the masking. (The same seed gives the same draws on the same kind of device.) A list of seeds,
    one per prompt, gives every prompt its own generator: a prompt's sample then does not depend on which prompts
    share its batch (with one prompt, ``seed=[s]`` draws what ``seed=s`` draws).

    With heads to mask, the whole decode loop runs inside one nnsight trace and the heads are masked on every forward
    (``MaskPlan.sites``); with none, it runs plain forwards. Both run the same loop and sampler
    (``core.generation.generate_ids``). ``per_step_traces=True`` takes the reference path instead: one nnsight trace
    per step, the query zeroed at the attention call (``.source``) and head outputs zeroed by index
    (``MaskPlan.apply_query`` / ``apply_output``), as detection's loop does. It is slower (nnsight sets up every
    step, and ``.source`` permanently instruments the attention forwards) and kept to check and time the one-trace
    path against; the tokens are the same.

    ``backend``: ``"eager"`` (the paths above), ``"static"`` (a static cache, one site-envoy trace per forward; on a
    GPU the step is captured once as a CUDA graph, masking included, and replayed) or ``"auto"`` (static on a GPU
    when the model allows it, see ``core.static_decode``). ``per_step_traces`` always takes the eager reference.
    """
    rm = as_model(model)
    if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and attention_mask is not None:
        prompts = [row[m.bool()] for row, m in zip(input_ids, attention_mask)]
    else:
        prompts, _ = prompt_ids(rm, input_ids, text=False)
    plan = heads if isinstance(heads, MaskPlan) else MaskPlan.build(rm, heads, mode, mean_values)
    return generate_ids(
        rm,
        prompts,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        backend=backend,
        **_plan_edit(rm, plan, len(prompts), per_step_traces),
    )


def _plan_edit(rm: RetModel, plan: MaskPlan, rows: int, per_step_traces: bool) -> dict[str, Any]:
    """``generate_ids``' ``edit`` / ``reference_plan`` for ``plan`` over a batch of ``rows`` prompts."""
    plan.check_batch(rows)
    if per_step_traces:
        return {"reference_plan": plan}
    if plan.is_empty:
        return {}
    root = site_envoy(rm, plan.site_name(rm)[0])
    sites = plan.sites(rm, root)
    return {"edit": (root, lambda: plan.apply_sites(sites))}


def score_and_generate(
    model,
    prompts: Sequence[torch.Tensor | Sequence[int]],
    answers: Sequence[Sequence[int]],
    heads: Iterable[Head] | MaskPlan = (),
    mode: str = "zero",
    *,
    max_new_tokens: int = 50,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    mean_values: torch.Tensor | None = None,
    per_step_traces: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Greedy generation (as ``generate``) and the teacher-forced score of ``answers[i]`` after ``prompts[i]``, from
    one prefill: the prompt is prefilled once (heads masked); its last logits choose the first new token and score
    the first answer token, and a forward of ``answers[i][:-1]`` over the prefilled cache scores the rest, before
    the cache goes on to decode. Returns the ``generate`` tensor and per row ``{"token_logprobs": [n_i],
    "correct": [n_i]}`` (natural log-probability of each answer token given the prompt and the answer before it;
    whether it is the argmax), on the CPU.

    Equal to ``generate`` plus ``measure.attention.teacher_forced`` up to the kernels' rounding (the score's
    positions come from a cached forward instead of one forward over prompt and answer); measured in
    ``tests/interventions/test_row_masks.py`` and ``docs/benchmarks.md``."""
    rm = as_model(model)
    if len(answers) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers: one answer per prompt")
    if any(len(a) == 0 for a in answers):
        raise ValueError("an answer with no tokens: every answer needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(
            f"max_new_tokens must be >= 1 (the score shares the generation's prefill), got {max_new_tokens}"
        )
    plan = heads if isinstance(heads, MaskPlan) else MaskPlan.build(rm, heads, mode, mean_values)
    forced: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_prefill(batch, forward, cache, logits: torch.Tensor) -> None:
        forced.append(_forced_scores(forward, cache, logits, batch, answers))

    ids = generate_ids(
        rm, [torch.as_tensor(p) for p in prompts], max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, backend=backend, on_prefill=on_prefill,
        **_plan_edit(rm, plan, len(prompts), per_step_traces),
    )  # fmt: skip
    tok_lp, correct = (t.cpu() for t in forced[0])
    scores = [
        {"token_logprobs": tok_lp[i, : len(a)], "correct": correct[i, : len(a)]}
        for i, a in enumerate(answers)
    ]
    return ids, scores


def _forced_scores(forward, cache, last: torch.Tensor, batch, answers) -> tuple[torch.Tensor, torch.Tensor]:
    """``[rows, n_max]`` log-probabilities of the answer tokens and whether each is the argmax: the first from the
    prefill's ``last`` logits, the others from one ``forward`` of the answers (right-padded; a padded position comes
    after every real one of its row, so the causal mask keeps it out of them) over the prefilled ``cache``."""
    b, dev, width = len(answers), last.device, batch.width
    n_max = max(len(a) for a in answers)
    targets = torch.zeros(b, n_max, dtype=torch.long)
    for i, a in enumerate(answers):
        targets[i, : len(a)] = torch.as_tensor(list(a), dtype=torch.long)
    targets = targets.to(dev)
    logits = last[:, None, :]
    m = n_max - 1
    if m > 0:
        mask = positions = None
        if batch.padded:
            mask = torch.cat([batch.mask[:, :width], batch.mask.new_ones(b, m)], dim=1)
            start = batch.mask[:, :width].sum(-1, keepdim=True)  # a row's position after its prompt
            positions = start + torch.arange(m, device=dev)[None, :]
        ext, _ = forward(targets[:, :m], mask, positions, cache, width + m, keep=m)
        logits = torch.cat([logits, ext.reshape(b, m, -1)], dim=1)
    lf = logits.float()
    tok_lp = lf.gather(-1, targets[..., None])[..., 0] - lf.logsumexp(-1)
    return tok_lp, lf.argmax(-1) == targets


class MaskedModel:
    """A model with a fixed set of heads masked: ``.generate(prompt)`` (text in, text out, as
    ``RetModel.generate``), ``.generate_ids(ids)`` (tokens) and ``.logits(ids)``. The model itself is unchanged."""

    def __init__(self, model, heads: Iterable[Head | str], mode: str = "zero", mean_values=None):
        self.rm = as_model(model)
        self.heads = self.rm.check_heads(heads)
        self.mode = mode
        self.mean_values = mean_values
        MaskPlan.build(self.rm, self.heads, mode, mean_values)  # validate now

    def logits(self, input_ids, attention_mask=None) -> torch.Tensor:
        return masked_logits(
            self.rm,
            input_ids,
            self.heads,
            self.mode,
            attention_mask=attention_mask,
            mean_values=self.mean_values,
        )

    def generate(self, prompt, max_new_tokens: int = 50, *, stop: str = "eos", **kwargs) -> str | list[str]:
        """The masked model's continuation of ``prompt`` as text (the prompt forms of ``RetModel.generate``)."""
        return generate_text(
            self.rm, prompt, max_new_tokens=max_new_tokens, stop=stop, generate=self.generate_ids, **kwargs
        )

    def generate_ids(self, input_ids, **kwargs) -> torch.Tensor:
        """Token ids in, token ids out, with the heads masked (``masking.generate``)."""
        return generate(self.rm, input_ids, self.heads, self.mode, mean_values=self.mean_values, **kwargs)

    def __repr__(self) -> str:
        keys = ", ".join(head_key(*h) for h in self.heads[:8]) + (", ..." if len(self.heads) > 8 else "")
        return f"MaskedModel({self.rm.name!r}, {len(self.heads)} heads [{keys}], mode={self.mode!r})"


@contextlib.contextmanager
def masked(model, heads: Iterable[Head | str], mode: str = "zero", mean_values=None) -> Iterator[MaskedModel]:
    """``with masked(model, heads) as m: m.generate("text")`` — heads as ``(layer, head)`` or ``"layer-head"``;
    the model itself is never modified."""
    yield MaskedModel(model, heads, mode, mean_values)


def mean_head_outputs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of every head's output (the output projection's input) over all non-padding positions of a reference
    batch: ``[layers, heads, head_dim]``, for mode ``mean``."""
    rm = as_model(model)
    g = rm.geometry
    input_ids = torch.as_tensor(input_ids).to(rm.device)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = attention_mask.to(rm.device)
    weights = attention_mask.float()[..., None]
    sums: list[torch.Tensor] = []
    with torch.no_grad(), rm.lm.trace(input_ids, attention_mask=attention_mask):
        for layer in range(g.num_layers):
            x = rm.out_proj_envoy(layer).input
            sums.append((x.float() * weights).sum(dim=(0, 1)).save())
    total = weights.sum()
    return torch.stack([s / total for s in sums]).reshape(g.num_layers, g.num_heads, g.head_dim)


# --------------------------------------------------------------------------------------------- weight edits
def _by_layer(rm: RetModel, heads) -> dict[int, list[int]]:
    """``heads`` checked against ``rm``'s geometry, grouped by layer."""
    return by_layer(rm.check_heads(heads))
