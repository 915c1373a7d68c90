"""Checks of command-line arguments that run before any model is loaded or anything is computed.

argparse ``type=`` functions (``positive_int`` ...) turn a bad number into the usual one-line usage error; they are
the ranges of ``core.ranges``, which the API's config dataclasses check too (every numeric option must use one:
``tests/cli/test_bad_inputs.py`` walks the parsers); the ``check_*`` functions raise ``InputError`` (printed by ``retmask`` as one line, exit status 2).

Model names: ``organism[:NAME]``, an existing local directory, or a Hugging Face hub name. A name that is not a
local directory and looks like a path (starts with ``/``, ``.``, ``~`` or has more than one ``/``) is refused at
once. A hub name that is not in the local Hugging Face cache needs the network: when the hub cannot be reached
(``HF_HUB_OFFLINE=1``, or no connection within 3 s) the command stops with a message saying so, instead of
retrying for a minute and printing the hub's traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
from pathlib import Path

from retmask_interp.core import ranges
from retmask_interp.core.io import InputError, check_writable

__all__ = [
    "positive_int",
    "nonnegative_int",
    "seed_int",
    "steps_int",
    "finite_float",
    "nonnegative_float",
    "positive_float",
    "unit_interval",
    "fraction",
    "top_p",
    "percent",
    "json_object",
    "check_device",
    "check_model_source",
    "check_writable",
    "check_head_selection",
    "lock_outputs",
]


# argparse types: one per ``core.ranges.Range`` (the config dataclasses check the same ranges)
positive_int = ranges.POSITIVE_INT.arg
nonnegative_int = ranges.NONNEGATIVE_INT.arg
seed_int = ranges.SEED.arg
steps_int = ranges.STEPS.arg  # >= 1, or -1 for no limit
finite_float = ranges.FINITE.arg
nonnegative_float = ranges.NONNEGATIVE.arg
positive_float = ranges.POSITIVE.arg
unit_interval = ranges.UNIT_INTERVAL.arg  # [0, 1): ROUGE thresholds (a sample counts when recall > threshold)
fraction = ranges.FRACTION.arg  # [0, 1]
top_p = ranges.TOP_P.arg  # (0, 1]
percent = ranges.PERCENT.arg  # [0, 100]


def json_object(text: str) -> dict:
    """A JSON object given on the command line (``--chat-template-kwargs '{"enable_thinking": false}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"key\": value}}', got {text}")
    return value


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; CUDA only when it is available."""
    import torch

    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise InputError(f"--device {device}: no CUDA GPU is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= n:
            raise InputError(f"--device {device}: there are only {n} CUDA GPUs (cuda:0 .. cuda:{n - 1})")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_hf_cache(name: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    try:
        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an invalid repo id is answered below
        return False
    return isinstance(found, str)


def check_model_source(name: str, revision: str | None = None) -> None:
    """Refuse a model name that cannot be loaded, with a message saying why (see the module docstring)."""
    from retmask_interp.core.models import ORGANISMS

    if name == "organism" or name.startswith("organism:"):
        which = name.partition(":")[2] or "concentrated"
        if which not in ORGANISMS:
            raise InputError(
                f"unknown organism {which!r}; use one of: organism, organism:{', organism:'.join(ORGANISMS)}"
            )
        return
    from retmask_interp.core.real_models import near_registry_names, registry_name

    if registry_name(name) is not None:
        return  # a registry name: load_model resolves it (a missing package gets the install command there)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise InputError(f"GGUF file {name!r} does not exist; check the path")
        return
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError(
                f"model {name!r} is a local path but not a model directory (no config.json in it); give the "
                "directory saved by save_pretrained, a hub name, or 'organism'"
            )
        return
    if _looks_like_path(name):
        raise InputError(f"model directory {name!r} does not exist; check the path (or give a hub name)")
    near, typo = near_registry_names(name)
    if typo and "/" not in name:  # one edit from a registry name: a typo, not a hub name (no network probe)
        from retmask_interp.core.real_models import check_registry_typo

        check_registry_typo(name)
    if _in_hf_cache(name, revision):
        return
    if not _hub_reachable():
        hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
        raise InputError(
            f"model {name!r} is not a local directory, a registry name or in the Hugging Face cache, and the hub "
            f"cannot be reached (no network, or HF_HUB_OFFLINE is set): {hint}check the name, download the model "
            "where there is a network, or give a local directory"
        )


def check_head_selection(top_k: int | None, threshold: float | None) -> None:
    if top_k is not None and top_k < 0:
        raise InputError(f"--top-k must be >= 0, got {top_k}")
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite number, got {threshold}")


def lock_outputs(args: argparse.Namespace, *paths: str | Path | None, what: str = "output") -> None:
    """Hold the exclusive run lock (``core.locks.run_lock``) on ``paths`` until the command ends: a second run
    writing the same outputs is refused at once, naming this process. Call it after the outputs' paths are checked
    (``check_writable``) and before anything is computed."""
    from retmask_interp.core.locks import run_lock

    args.held.enter_context(run_lock(*paths, what=what))
