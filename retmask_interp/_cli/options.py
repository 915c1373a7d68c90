"""Command-line options generated from config dataclasses: one way for every command that takes a config.

``add_config_arguments(parser, Config)`` adds one option per field: ``--field-name`` (or the field's ``flag``
metadata), its type from the annotation (``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``, ``X | None``,
lists and tuples as one or more values, repeatable), its help from ``metadata["help"]`` (``core.options.option``)
followed by the dataclass default, ``choices`` and the range check of its ``core.ranges.Range`` (``metadata["range"]``,
the same check the dataclass makes) from the metadata. Every option defaults to ``None`` ("not given"), so that ``config_from_args`` can lay the given
options over a preset and the dataclass's own defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from retmask_interp.core.ranges import field_range

__all__ = ["add_config_arguments", "config_from_args", "config_values"]


def _base(hint: Any) -> tuple[Any, bool]:
    """(element type, is a sequence) of an annotation, ``None`` stripped; (None, False) for what is not simple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _base(args[0]) if len(args) == 1 else (None, False)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return (args[0] if len(set(args)) == 1 and args[0] in (int, float, str) else None), True
    return (hint if hint in (int, float, str, bool) else None), False


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) if value else "none"
    return "none" if value is None else str(value)


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
    defaults: bool = False,
) -> list[str]:
    """Add an option per field of ``cls`` (not those in ``skip``, nor fields marked ``cli=False`` or of a type
    the command line cannot give); ``flags`` / ``helps`` override a field's option name / help; ``defaults``: an
    option left out is the dataclass default, not ``None`` (for commands that have no preset and read the values
    themselves). Returns the fields added (``dest`` = the field name)."""
    hints = typing.get_type_hints(cls)
    skip, flags, helps = set(skip), dict(flags or {}), dict(helps or {})
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        kind, many = _base(hints[f.name])
        if kind is None:
            continue
        flag = flags.get(f.name) or f.metadata.get("flag") or f.name
        flag = flag if flag.startswith("--") else "--" + flag.replace("_", "-")
        text = helps.get(f.name, f.metadata.get("help", ""))
        default = None
        if defaults and f.default is not dataclasses.MISSING:
            default = f.default
        elif defaults and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        kwargs["help"] = f"{text} (default: {_default_text(f)})".strip()
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            rng = field_range(f)
            if (
                rng is not None and kind is int and not rng.integer
            ):  # a range built for a field whose default is None
                rng = dataclasses.replace(rng, integer=True)
            kwargs["type"] = rng.arg if rng is not None and kind is not str else kind
            if "choices" in f.metadata:
                kwargs["choices"] = list(f.metadata["choices"])
            if many:
                kwargs |= {"nargs": "+", "action": "extend"}
            kwargs["metavar"] = flag[2:].replace("-", "_").upper() if "choices" not in f.metadata else None
        parser.add_argument(flag, **kwargs)
        added.append(f.name)
    return added


def config_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (not ``None`` in ``args``)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }


def config_from_args(
    cls: type, args: argparse.Namespace, base: Mapping[str, Any] | None = None, **fixed: Any
):
    """``cls(**(base | the given options | fixed))``: a preset (``base``) under what the user gave, and values the
    command decides (``fixed``) over both."""
    return cls(**(dict(base or {}) | config_values(cls, args) | fixed))
