"""Loading models and wrapping them for nnsight.

``load_model`` takes a hub name or a local path; ``as_model`` turns a plain Hugging Face causal LM (or a
``RetModel``) into a ``RetModel``: the HF model, its tokenizer, the nnsight wrapper, the architecture row and
the head geometry, in one object that every stage of the package accepts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from retmask_interp.core.architectures import (
    ATTN_IMPLEMENTATIONS,
    ArchSpec,
    AttentionSettings,
    ModelGeometry,
    arch_for,
    attention_settings,
)
from retmask_interp.core.io import InputError
from retmask_interp.core.notation import as_heads, head_key

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = [
    "RetModel",
    "as_model",
    "load_model",
    "resolve_dtype",
    "resolve_device",
    "get_submodule",
    "ORGANISMS",
    "DEFAULT_ORGANISM",
    "available_organisms",
    "organism_path",
    "load_organism",
]

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype:
    """``"auto"`` means bfloat16 on a GPU and float32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        on_gpu = (device not in (None, "cpu")) and torch.cuda.is_available()
        return torch.bfloat16 if on_gpu else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(_DTYPES)}") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def get_submodule(root: Any, dotted: str) -> Any:
    """``getattr`` along a dotted path; digits index into module lists. Works on modules and nnsight envoys."""
    obj = root
    for part in dotted.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


@dataclass
class RetModel:
    """A causal LM with what the package needs to know about it."""

    model: torch.nn.Module
    tokenizer: Any = None
    name: str = ""
    revision: str | None = None
    spec: ArchSpec = field(init=False)
    geometry: ModelGeometry = field(init=False)
    _lm: Any = field(default=None, init=False, repr=False)
    _attn_call_names: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.spec = arch_for(self.model.config)
        self.geometry = ModelGeometry.from_config(self.model.config)
        if not self.name:
            self.name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__

    # -- nnsight -----------------------------------------------------------------------------------
    @property
    def lm(self):
        """The nnsight wrapper (created on first use)."""
        if self._lm is None:
            from nnsight import NNsight

            self._lm = NNsight(self.model)
        return self._lm

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self) -> PretrainedConfig:
        """The model's transformers config."""
        return cast("PretrainedConfig", self.model.config)

    @property
    def max_context(self) -> int | None:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(cfg, attr, None)
            if value:
                return int(value)
        return None

    def layers(self) -> list[torch.nn.Module]:
        return list(get_submodule(self.model, self.spec.layers))

    def attention(self, layer: int) -> torch.nn.Module:
        return getattr(self.layers()[layer], self.spec.attn)

    def attention_envoy(self, layer: int):
        return getattr(get_submodule(self.lm, self.spec.layers)[layer], self.spec.attn)

    def attention_call(self, layer: int):
        """The nnsight source operation of the attention kernel call ``attention_interface(self, q, k, v, mask, ...)``.

        Its inputs are the post-RoPE (post-norm) queries ``[batch, heads, q_len, head_dim]`` and the keys of the
        whole cache ``[batch, kv_heads, k_len, head_dim]``, whatever the attention implementation.
        """
        envoy = self.attention_envoy(layer)
        name = self._attn_call_names.get(layer)
        if name is None:
            calls = [n for n in envoy.source.names if re.fullmatch(r"attention_interface_\d+", n)]
            if not calls:
                raise RuntimeError(
                    f"{type(self.attention(layer)).__name__}.forward has no `attention_interface(...)` call; "
                    "retrieval-head detection reads queries and keys there. This transformers version or model "
                    "class is not supported by detection."
                )
            name = self._attn_call_names[layer] = calls[-1]
        return getattr(envoy.source, name)

    def attention_settings(self, layer: int) -> AttentionSettings:
        """Layer ``layer``'s logit scaling, soft-capping and sliding window (``architectures.attention_settings``)."""
        return attention_settings(self.model.config, layer)

    def out_proj_envoy(self, layer: int):
        return getattr(self.attention_envoy(layer), self.spec.out_proj)

    def check_heads(self, heads) -> list[tuple[int, int]]:
        """Validate heads, given as ``(layer, query_head)`` pairs or ``"layer-head"`` keys (``core.notation``),
        against the geometry; returns them as a sorted list of pairs."""
        out = sorted(set(as_heads(heads)))
        g = self.geometry
        bad = [(layer, h) for layer, h in out if not (0 <= layer < g.num_layers and 0 <= h < g.num_heads)]
        if bad:
            names = ", ".join(head_key(*h) for h in bad[:5])
            raise ValueError(
                f"heads {names}{'...' if len(bad) > 5 else ''} are out of range for {self.name} "
                f"({g.num_layers} layers x {g.num_heads} query heads, 0-indexed). Was the head list made for "
                "another model? Check its `model` field."
            )
        return out

    def generate(self, prompt: Any, max_new_tokens: int = 50, *, stop: str = "eos", **kwargs: Any):
        """Text in, text out: the model's continuation of ``prompt`` as a string.

        ``prompt`` is a string, chat messages (``[{"role": "user", "content": ...}]``, through the chat template),
        a NIAH sample, or one prompt of token ids (a flat list of ints or a 1-D tensor); a list of prompts (or a
        ``[batch, seq]`` tensor) gives a list of strings (``core.generation.prompt_ids``). Greedy unless
        ``do_sample=True`` (``temperature``, ``top_p``, ``top_k``, ``seed``); ``stop="newline"`` also stops at a
        line break. For token ids out use ``interventions.masking.generate``."""
        from retmask_interp.core.generation import generate_text

        return generate_text(self, prompt, max_new_tokens=max_new_tokens, stop=stop, **kwargs)

    def __repr__(self) -> str:
        g = self.geometry
        return (
            f"RetModel({self.name!r}, {getattr(self.config, 'model_type', '?')}, {g.num_layers} layers x {g.num_heads} heads "
            f"({g.num_kv_heads} KV), {self.device})"
        )

    def stop_token_ids(self, stop: str = "newline") -> list[int]:
        """Token ids that end a greedy answer: the EOS ids, and with ``stop="newline"`` (Wu et al.'s decoding, the
        default of detection and NIAH outcomes) also every token whose text contains a line break."""
        if stop == "eos":
            return self.eos_token_ids()
        if stop != "newline":
            raise ValueError(f"stop must be 'newline' (Wu et al.) or 'eos', got {stop!r}")
        return sorted(set(self.eos_token_ids()) | set(newline_token_ids(self.tokenizer)))

    def eos_token_ids(self) -> list[int]:
        ids: list[int] = []
        gen = getattr(self.model, "generation_config", None)
        for source in (getattr(gen, "eos_token_id", None), getattr(self.tokenizer, "eos_token_id", None)):
            if source is None:
                continue
            ids.extend([source] if isinstance(source, int) else list(source))
        return sorted(set(ids))


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' "Loading weights" progress bar off while a model loads (it showed on every load), unless
    this module logs at DEBUG (``retmask -v``); the bar's previous state is restored."""
    from transformers.utils import logging as hf_logging

    if log.isEnabledFor(logging.DEBUG) or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NEWLINES: dict[tuple[str, int, str], tuple[int, ...]] = {}


def newline_token_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the vocabulary tokens whose decoded text contains a line break (``"\\n"``, ``"\\n\\n"``, ``".\\n"``,
    Llama-2's ``<0x0A>``...), cached per vocabulary. An empty tuple without a tokenizer."""
    if tokenizer is None:
        return ()
    if hasattr(tokenizer, "get_vocab"):
        ids = sorted(set(tokenizer.get_vocab().values()))
    else:  # a minimal tokenizer (tests): its ids are 0 .. vocab_size - 1
        ids = list(range(int(getattr(tokenizer, "vocab_size", 0) or 0)))
    key = (type(tokenizer).__name__, len(ids), str(getattr(tokenizer, "name_or_path", "")))
    if key not in _NEWLINES:
        if hasattr(tokenizer, "batch_decode"):
            texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
        else:
            texts = [tokenizer.decode([i]) for i in ids]
        _NEWLINES[key] = tuple(i for i, t in zip(ids, texts) if "\n" in t)
    return _NEWLINES[key]


def as_model(model, tokenizer=None) -> RetModel:
    """Accept a ``RetModel`` or a Hugging Face causal LM (one wrapper per model object is cached)."""
    if isinstance(model, RetModel):
        _set_tokenizer(model, tokenizer)
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"expected a Hugging Face causal LM or RetModel, got {type(model).__name__}")
    wrapped = _WRAPPERS.get(model)
    if wrapped is None:
        wrapped = RetModel(model, tokenizer)
        _WRAPPERS[model] = wrapped
    else:
        _set_tokenizer(wrapped, tokenizer)
    return wrapped


def _set_tokenizer(rm: RetModel, tokenizer) -> None:
    """Attach ``tokenizer`` to ``rm``; a different tokenizer than the one it holds replaces it, with a warning."""
    if tokenizer is None or tokenizer is rm.tokenizer:
        return
    if rm.tokenizer is not None:
        log.warning(
            "as_model: replacing the tokenizer of %s (%s) with the one passed (%s)",
            rm.name, type(rm.tokenizer).__name__, type(tokenizer).__name__,
        )  # fmt: skip
    rm.tokenizer = tokenizer


# --------------------------------------------------------------------------------------------- organisms
# The embedded model organisms ship as Hugging Face directories inside the package (retmask_interp/organism/weights);
# loading them needs no organism code, so the loader lives here, below the organism's training code.
_ORGANISM_WEIGHTS = Path(__file__).resolve().parents[1] / "organism" / "weights"
ORGANISMS = ("concentrated", "distributed")
DEFAULT_ORGANISM = "concentrated"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def available_organisms() -> list[str]:
    """Names of the organisms whose weights are present in this installation."""
    root = _ORGANISM_WEIGHTS
    out = []
    for name in ORGANISMS:
        d = root / name
        if all((d / f).is_file() for f in _REQUIRED):
            out.append(name)
    return out


def organism_path(name: str = DEFAULT_ORGANISM) -> Path:
    """Directory of organism ``name``'s weights, config and tokenizer (inside the installed package).

    Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` when the weights are missing.
    """
    if name not in ORGANISMS:
        raise ValueError(f"unknown organism {name!r}; choose one of {', '.join(ORGANISMS)}")
    path = Path(str(_ORGANISM_WEIGHTS / name))
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the {name!r} organism's files {missing} are missing from {path}. The weights ship as package data; "
            "reinstall the package from a complete checkout (`pip install -e .`), or train them with "
            f"`python scripts/train_organism.py --config retmask_interp/organism/configs/{name}.json --out {path}`."
        )
    return path


def check_attn_implementation(attn_implementation: str | None) -> None:
    if attn_implementation is not None and attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise InputError(
            f"unknown attention implementation {attn_implementation!r}; use one of {', '.join(ATTN_IMPLEMENTATIONS)} "
            "(CLI: --attn-implementation)"
        )


# every organism's model name starts so (data.niah picks its needles by it)
ORGANISM_PREFIX = "retmask-organism-"


def load_organism(
    name: str = DEFAULT_ORGANISM,
    device: str | None = "cpu",
    dtype: str | torch.dtype | None = "auto",
    attn_implementation: str | None = None,
) -> RetModel:
    """Load organism ``name`` as a :class:`~retmask_interp.core.models.RetModel` named ``retmask-organism-<name>``.

    ``device``: ``"cpu"`` (default), ``"cuda"``, or ``"auto"`` (a GPU when there is one). ``dtype``: ``"auto"``
    (float32 on CPU, bfloat16 on GPU) or a dtype name. The model is returned in eval mode with sdpa attention
    (or ``attn_implementation``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_attn_implementation(attn_implementation)
    path = organism_path(name)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=torch_dtype, attn_implementation=attn_implementation or "sdpa"
        )
    model.to(dev).eval()  # type: ignore[arg-type]  # transformers types PreTrainedModel.to through functools.wraps
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return RetModel(model, tokenizer, name=f"{ORGANISM_PREFIX}{name}")


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str | torch.dtype | None = "auto",
    device: str | None = "auto",
    revision: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> RetModel:
    """Load a causal LM and its tokenizer from the hub or a local directory.

    ``"organism"`` loads the package's embedded model organism (``"organism:distributed"`` names one). A real
    model's registry name (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``; ``core/real_models.json``) or a path to a
    ``.gguf`` file loads the dequantized Hugging Face directory that ``core.real_models`` converts once and caches.
    ``device="auto"`` uses a GPU when there is one (and ``device_map="auto"`` when several are visible);
    ``dtype="auto"`` is bf16 on GPU, fp32 on CPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_attn_implementation(attn_implementation)
    if str(name_or_path) == "organism" or str(name_or_path).startswith("organism:"):
        name = str(name_or_path).partition(":")[2] or DEFAULT_ORGANISM
        return load_organism(name, device=device, dtype=dtype, attn_implementation=attn_implementation)
    from retmask_interp.core.real_models import resolve_real_model

    display_name = str(name_or_path)
    real_dir = resolve_real_model(name_or_path)  # a registry name or a .gguf file: a dequantized HF directory
    if real_dir is not None:
        name_or_path = real_dir
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device == "auto" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    log.info("loading %s (%s, %s)", name_or_path, torch_dtype, dev)
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    except ValueError as err:
        if "scaled_dot_product_attention" not in str(err) or attn_implementation:
            raise
        log.warning(
            "%s does not support sdpa attention (%s); loading it with eager attention, which is slower "
            "and materialises attention weights. Pass attn_implementation= to choose.", name_or_path, err,
        )  # fmt: skip
        kwargs["attn_implementation"] = "eager"
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    if "device_map" not in kwargs:
        model.to(dev)  # type: ignore[arg-type]  # (as in load_organism)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(
        str(name_or_path), revision=revision, trust_remote_code=trust_remote_code
    )
    return RetModel(model, tokenizer, name=display_name, revision=revision)
