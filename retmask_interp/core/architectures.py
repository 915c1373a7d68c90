"""The one table of per-family differences.

Every place in the package that needs to know where a head lives reads it from ``ARCHITECTURES``;
nothing else branches on the model family. A row says, for one Hugging Face ``model_type``:

- ``layers``: dotted path from the causal-LM module to the list of decoder blocks;
- ``attn``: attribute of a block that holds the attention module;
- ``out_proj``: attribute of the attention module whose *input* is the concatenation of head outputs
  (``[..., n_heads * head_dim]``); a head is a contiguous slice of it;
- ``query``: attribute of the attention module that produces the queries, and ``query_layout``:
  ``"separate"`` (a ``q_proj`` of its own), ``"concat"`` (fused ``[q | k | v]``, Phi-3, GPT-2),
  ``"per_head"`` (fused and interleaved per head as ``[q_h | k_h | v_h]``, GPT-NeoX);
- ``weight_layout``: ``"linear"`` (``nn.Linear``, weight ``[out, in]``) or ``"conv1d"`` (GPT-2's ``Conv1D``,
  weight ``[in, out]``);
- ``joint_query_norm``: the attribute of a query norm taken over *all* heads at once (OLMo-2/3's ``q_norm`` on
  ``[..., heads * head_dim]``). There, zeroing a head's ``q_proj`` rows would change the other heads' normalised
  queries, so the weight edit that zeroes one head's query zeroes that head's slice of the norm's weight instead.
  (Per-head norms, as in Qwen3 or Gemma-3, map a zero query to zero and need nothing.)
- ``scaling``: how the attention logits are scaled: ``"head_dim"`` (``head_dim ** -0.5``),
  ``"query_pre_attn_scalar"`` (Gemma-2/3: ``config.query_pre_attn_scalar ** -0.5``) or ``"gpt2"``
  (``head_dim ** -0.5`` if ``config.scale_attn_weights``, divided by ``layer + 1`` with
  ``scale_attn_by_inverse_layer_idx``).

Soft-capping (``config.attn_logit_softcapping``, Gemma-2) and sliding windows (``config.sliding_window`` on the
layers that ``config.layer_types`` marks ``"sliding_attention"``, or on every layer of a config without
``layer_types``, as Mistral) come from the config: :func:`attention_settings` reads all three.

The number of query heads, KV heads and head_dim come from the config (``ModelGeometry.from_config``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ARCHITECTURES",
    "ATTN_IMPLEMENTATIONS",
    "ArchSpec",
    "AttentionSettings",
    "ModelGeometry",
    "UnsupportedArchitectureError",
    "arch_for",
    "attention_settings",
]


# attention implementations ``load_model`` takes (transformers' names); another name is refused, not ignored
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass(frozen=True)
class ArchSpec:
    layers: str
    attn: str
    out_proj: str
    query: str
    query_layout: str = "separate"
    weight_layout: str = "linear"
    joint_query_norm: str | None = None
    scaling: str = "head_dim"


_LLAMA_LIKE = ArchSpec(layers="model.layers", attn="self_attn", out_proj="o_proj", query="q_proj")

ARCHITECTURES: dict[str, ArchSpec] = {
    # Llama-style blocks: separate q/k/v projections, o_proj after the heads.
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen2_moe": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "qwen3_moe": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": ArchSpec(**{**_LLAMA_LIKE.__dict__, "joint_query_norm": "q_norm"}),
    "olmo3": ArchSpec(**{**_LLAMA_LIKE.__dict__, "joint_query_norm": "q_norm"}),
    "gemma": _LLAMA_LIKE,
    "gemma2": ArchSpec(**{**_LLAMA_LIKE.__dict__, "scaling": "query_pre_attn_scalar"}),
    "gemma3_text": ArchSpec(**{**_LLAMA_LIKE.__dict__, "scaling": "query_pre_attn_scalar"}),
    # Fused projections and other names.
    "phi3": ArchSpec(
        layers="model.layers", attn="self_attn", out_proj="o_proj", query="qkv_proj", query_layout="concat"
    ),
    "gpt2": ArchSpec(
        layers="transformer.h",
        attn="attn",
        out_proj="c_proj",
        query="c_attn",
        query_layout="concat",
        weight_layout="conv1d",
        scaling="gpt2",
    ),
    "gpt_neox": ArchSpec(
        layers="gpt_neox.layers",
        attn="attention",
        out_proj="dense",
        query="query_key_value",
        query_layout="per_head",
    ),
}


class UnsupportedArchitectureError(ValueError):
    """Raised for a model family that is not in ``ARCHITECTURES``."""


def arch_for(config) -> ArchSpec:
    """The table row for a Hugging Face config, or an error that names what is missing."""
    model_type = getattr(config, "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    known = ", ".join(sorted(ARCHITECTURES))
    raise UnsupportedArchitectureError(
        f"model_type {model_type!r} is not in retmask_interp.core.architectures.ARCHITECTURES (known: {known}). "
        "Add a row naming its decoder-layer path, attention module, output projection and query projection "
        "(see the module docstring), then add the family to FAMILY_CONFIGS in tests/conftest.py and run the family "
        "tests: tests/measure/test_detect.py, tests/measure/test_effects.py, tests/interventions/test_masking.py."
    )


@dataclass(frozen=True)
class ModelGeometry:
    """Head geometry of a decoder-only model."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def num_total_heads(self) -> int:
        return self.num_layers * self.num_heads

    @classmethod
    def from_config(cls, config) -> ModelGeometry:
        config = getattr(config, "text_config", None) or config
        missing = [
            a for a in ("num_hidden_layers", "num_attention_heads") if getattr(config, a, None) is None
        ]
        if missing:
            raise UnsupportedArchitectureError(
                f"config of type {type(config).__name__} has no {', '.join(missing)}; cannot read head geometry"
            )
        heads = int(config.num_attention_heads)
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(int(config.num_hidden_layers), heads, int(kv), int(head_dim))

    def as_dict(self) -> dict[str, int]:
        return {
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
        }


def query_features(spec, head: int, head_dim: int) -> slice:
    """``head``'s features in the output of the module that holds the queries: a query norm over all heads (OLMo-2/3),
    else the query projection: ``[q_h | k_h | v_h]`` per head (GPT-NeoX), or separate / fused ``[q | k | v]``."""
    if spec.query_layout == "per_head" and not spec.joint_query_norm:
        return slice(head * 3 * head_dim, head * 3 * head_dim + head_dim)
    return slice(head * head_dim, (head + 1) * head_dim)


@dataclass(frozen=True)
class AttentionSettings:
    """What turns one layer's query-key products into attention logits: ``scaling`` multiplies them, then
    ``softcap`` (if set) maps ``x -> softcap * tanh(x / softcap)``; ``sliding_window`` (if set): a query sees only
    the last ``sliding_window`` keys (itself included)."""

    scaling: float
    softcap: float | None = None
    sliding_window: int | None = None


def attention_settings(config, layer: int) -> AttentionSettings:
    """Layer ``layer``'s :class:`AttentionSettings`, from the table row (``scaling``) and the config."""
    spec = arch_for(config)
    text = getattr(config, "text_config", None) or config
    head_dim = ModelGeometry.from_config(text).head_dim
    if spec.scaling == "query_pre_attn_scalar":
        scaling = float(text.query_pre_attn_scalar) ** -0.5
    elif spec.scaling == "gpt2":
        scaling = head_dim**-0.5 if getattr(text, "scale_attn_weights", True) else 1.0
        if getattr(text, "scale_attn_by_inverse_layer_idx", False):
            scaling /= layer + 1
    elif spec.scaling == "head_dim":
        scaling = head_dim**-0.5
    else:
        raise UnsupportedArchitectureError(f"unknown scaling rule {spec.scaling!r} in the table")
    softcap = getattr(text, "attn_logit_softcapping", None)
    window = getattr(text, "sliding_window", None)
    layer_types = getattr(text, "layer_types", None)
    if layer_types is not None and layer_types[layer] != "sliding_attention":
        window = None
    return AttentionSettings(
        float(scaling), float(softcap) if softcap else None, int(window) if window else None
    )
