"""Config dataclass fields that describe themselves, so that command lines are generated from the dataclasses.

``option(default, "help text", minimum=1)`` is ``dataclasses.field`` with the text and the checks in its metadata:
``help`` (what ``--help`` prints), ``minimum`` / ``maximum`` (inclusive bounds, checked when the command line is
parsed), ``choices``, ``flag`` (the option name when it is not the field's), ``cli=False`` (not on the command line).
The parser generator (``retmask_interp._cli.options``) reads them; Python callers get the plain dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["option"]

_MISSING: Any = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    help: str = "",  # noqa: A002 - the argparse name
    *,
    factory: Any = _MISSING,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its help text and range in ``metadata`` (see the module docstring)."""
    meta: dict[str, Any] = {"help": help, "cli": cli}
    for key, value in (("minimum", minimum), ("maximum", maximum), ("flag", flag)):
        if value is not None:
            meta[key] = value
    if choices is not None:
        meta["choices"] = tuple(choices)
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
