"""The real-model study's settings: ``StudyConfig``, the grid presets, and ``resolve_config`` (the preset's and the
model's defaults filled in, everything checked before a model is loaded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retmask_interp.core.io import InputError
from retmask_interp.core.notation import MASK_MODES
from retmask_interp.core.options import option
from retmask_interp.core.ranges import check_fields

__all__ = [
    "GRIDS",
    "MODES",
    "STAGES",
    "SUBSET_RULE",
    "StudyConfig",
    "StudyConfigError",
    "detection_conditions",
    "fingerprint",
    "grid_lengths",
    "resolve_config",
    "tag",
]

STAGES = ("detection", "masking", "topk", "attention", "organisation")
MODES = MASK_MODES  # core.notation
# How the masking / attention subsets are drawn; part of the settings of the stages that use them, so that a
# directory whose subsets were drawn by an earlier rule is never resumed with another. (Before "balanced": evenly
# spaced indices of the needle-major grid, which with 5 depths took only 2 of them.)
SUBSET_RULE = "balanced"

# Grid presets: lengths (tokens, linspace lo..hi, hi capped by the model's window), depths, needles, seeds.
GRIDS: dict[str, dict[str, Any]] = {
    # Wu et al.'s grid within the window, sized for a GPU: SmolLM2 1K-8K, Gemma-3 1K-32K.
    "full": {
        "min_length": 1000,
        "max_length": None,  # the model's window (minus room for the answer)
        "num_lengths": 8,
        "num_depths": 5,
        "needles": 3,
        "seeds": 10,
        "topk_seeds": 5,
        "ks": [1, 2, 4, 8, 16, 32],
        "masking_samples": 48,
        "attention_samples": 24,
        "single_heads": None,  # every head
        "batch_size": 16,
        "masking_batch_size": 48,  # one batch per condition on a GPU (48 x 8K tokens of SmolLM2: ~9 GB of KV)
    },
    # A CPU check of the whole pipeline: a few short lengths, 3 depths, 2 needles, few seeds.
    "small": {
        "min_length": 500,
        "max_length": 1000,
        "num_lengths": 2,
        "num_depths": 3,
        "needles": 2,
        "seeds": 2,
        "topk_seeds": 2,
        "ks": [1, 4, 16],
        "masking_samples": 6,
        "attention_samples": 4,
        "single_heads": 6,
        "batch_size": 8,
        "masking_batch_size": 8,
    },
}


class StudyConfigError(InputError):
    """A study configuration that is invalid."""


def _list(default):
    return lambda: list(default)


@dataclass
class StudyConfig:
    """Parameters of one real-model study. ``None`` fields are filled by ``resolve_config`` from the ``grid`` preset
    and the model (window, chat template, device)."""

    model: str = option("smollm2-135m-instruct", "registry name, .gguf path or HF directory")
    model_name: str | None = option(
        None, "name recorded in the head lists (e.g. when --model is a .gguf path)"
    )
    grid: str = option("full", "grid preset (its values fill every option left unset)", choices=tuple(GRIDS))
    haystacks: list[str] = option(
        help="haystack (path, synthetic:SEED); repeat; first = primary",
        factory=_list(["synthetic:0"]),
        flag="--haystack",
    )
    styles: list[str] | None = option(
        None, "prompt styles (chat models: chat; base models: continuation qa)",
        choices=("chat", "qa", "continuation"), flag="--style",
    )  # fmt: skip
    dtypes: list[str] | None = option(
        None, "detection dtypes, first = primary (GPU: bfloat16 float32; CPU: float32)",
        choices=("bfloat16", "float16", "float32"), flag="--dtype",
    )  # fmt: skip
    device: str = option("auto", "cpu, cuda or auto")
    min_length: int | None = option(None, "shortest context (tokens)", minimum=1)
    max_length: int | None = option(None, "longest context (default: the model's window)", minimum=1)
    num_lengths: int | None = option(None, "context lengths between min and max", minimum=1)
    num_depths: int | None = option(None, "needle depths", minimum=1)
    needles: int | None = option(None, "how many of the package's needles", minimum=1)
    max_new_tokens: int = option(32, "answer tokens decoded", minimum=1)
    batch_size: int | None = option(None, "detection batch size", minimum=1)
    masking_batch_size: int | None = option(
        None, "batch size of the masking, top-k and attention stages", minimum=1
    )
    threshold: float = option(0.1, "retrieval heads: score >= this", minimum=0.0, maximum=1.0)
    modes: list[str] = option(help="masking modes", factory=_list(MODES), choices=MODES, flag="--mode")
    seeds: int | None = option(None, "random / matched control seeds of the masking stage", minimum=1)
    topk_seeds: int | None = option(None, "random seeds per k of the top-k curve", minimum=1)
    ks: list[int] | None = option(None, "the top-k curve's k", minimum=1)
    masking_samples: int | None = option(None, "masking and top-k on this many grid samples", minimum=1)
    attention_samples: int | None = option(
        None, "compensation and single heads on this many samples", minimum=1
    )
    single_heads: int | None = option(
        None, "single-head effects of the top-n heads (default: all)", minimum=1
    )
    stages: list[str] = option(
        help="run only these stages", factory=_list(STAGES), choices=STAGES, flag="--stage"
    )
    overwrite: bool = option(False, "start the output directory afresh")
    progress: bool = option(False, "progress bars")

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except InputError as err:
            raise StudyConfigError(f"invalid study configuration: {err}") from None


def _fill(cfg: StudyConfig, name: str, value: Any) -> None:
    if getattr(cfg, name) is None:
        setattr(cfg, name, value)


def resolve_config(
    config: StudyConfig, *, max_context: int | None = None, chat: bool = True, cuda: bool = False
) -> StudyConfig:
    """A copy of ``config`` with the preset's and the model's defaults filled in, validated (``StudyConfigError``).

    ``max_context``: the model's window (lengths are capped to it, leaving room for the answer); ``chat``: the
    tokenizer has a chat template; ``cuda``: the study runs on a GPU (bf16 and fp32 detection; CPU: fp32 only)."""
    # checks every field's range and choices (again, if config was changed after it was made)
    cfg = StudyConfig(**asdict(config))
    preset = GRIDS[cfg.grid]
    for key, value in preset.items():
        if key == "max_length":
            continue
        if key == "single_heads":
            continue
        _fill(cfg, key, value)
    window_cap = max_context - 2 * cfg.max_new_tokens - 64 if max_context else None
    hi = cfg.max_length or preset["max_length"] or window_cap or 8000
    if window_cap:
        hi = min(hi, window_cap)
    # round a window-derived top length down to a multiple of 1000 (8192 -> 8000, 32768 -> 32000)
    cfg.max_length = int(hi if hi < 2000 or cfg.max_length else hi // 1000 * 1000)
    if cfg.single_heads is None and cfg.grid == "small":
        cfg.single_heads = preset["single_heads"]
    _fill(cfg, "styles", ["chat"] if chat else ["continuation", "qa"])
    _fill(cfg, "dtypes", ["bfloat16", "float32"] if cuda else ["float32"])
    assert cfg.styles is not None and cfg.dtypes is not None and cfg.ks is not None
    errors = []
    if not cfg.haystacks:
        errors.append("haystacks is empty")
    if len(set(cfg.haystacks)) != len(cfg.haystacks):
        errors.append(f"haystacks has duplicates: {cfg.haystacks}")
    if "chat" in cfg.styles and not chat:
        errors.append(
            "style 'chat' needs a tokenizer with a chat template (a base model: use qa/continuation)"
        )
    runs_model = bool({"detection", "masking", "topk", "attention"} & set(cfg.stages))
    if not cuda and runs_model and any(d != "float32" for d in cfg.dtypes):
        errors.append(
            f"dtypes {cfg.dtypes} need a GPU; on CPU the study runs in float32 only "
            "(--stage organisation alone re-reads a GPU study's results on any machine)"
        )
    if not cfg.modes:
        errors.append(f"no masking mode; use one or more of {list(MODES)}")
    assert cfg.min_length is not None and cfg.num_lengths is not None and cfg.num_depths is not None
    if cfg.min_length <= 0 or cfg.min_length > cfg.max_length:
        errors.append(f"lengths {cfg.min_length}..{cfg.max_length} are empty or not positive")
    for name in (
        "num_lengths",
        "num_depths",
        "needles",
        "max_new_tokens",
        "batch_size",
        "masking_batch_size",
    ):
        if getattr(cfg, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("seeds", "topk_seeds", "masking_samples", "attention_samples"):
        if getattr(cfg, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.single_heads is not None and cfg.single_heads < 1:
        errors.append(f"single_heads must be >= 1 (or None for every head), got {cfg.single_heads}")
    if not cfg.ks or min(cfg.ks) < 1:
        errors.append(f"ks must be positive, got {cfg.ks}")
    if not 0 < cfg.threshold <= 1:
        errors.append(f"threshold must be in (0, 1], got {cfg.threshold}")
    if errors:
        raise StudyConfigError("invalid study configuration: " + "; ".join(errors))
    return cfg


def fingerprint(cfg: StudyConfig) -> dict[str, Any]:
    """The parameters that determine the results (not where they go or how chatty the run is): ``config.json``."""
    out = {k: v for k, v in asdict(cfg).items() if k not in ("overwrite", "progress", "stages")}
    return out | {"subset_rule": SUBSET_RULE}


def tag(haystack: str, style: str, dtype: str) -> str:
    """The file name of a detection condition: ``HAYSTACK.STYLE.DTYPE``."""
    hay = (
        haystack.replace(":", "-") if haystack.startswith("synthetic") else Path(haystack).name or "haystack"
    )
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in hay)
    return f"{safe}.{style}.{dtype}"


def detection_conditions(cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(haystack, style, dtype) of every detection run; the first is the primary one (masking etc. use it):
    every haystack x style in the primary dtype, and every other dtype on the primary haystack and style."""
    assert cfg.styles and cfg.dtypes
    primary = cfg.dtypes[0]
    out = [(h, s, primary) for h in cfg.haystacks for s in cfg.styles]
    out += [(cfg.haystacks[0], cfg.styles[0], d) for d in cfg.dtypes[1:]]
    return out


def grid_lengths(cfg: StudyConfig) -> list[int]:
    from retmask_interp.data.niah import linspace_lengths

    assert cfg.min_length and cfg.max_length and cfg.num_lengths
    if cfg.num_lengths == 1:
        return [cfg.max_length]
    return sorted(set(linspace_lengths(cfg.min_length, cfg.max_length, cfg.num_lengths)))
