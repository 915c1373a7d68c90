"""Config dataclass fields that describe themselves, so that command lines are generated from the dataclasses.

``option(default, "help text", minimum=1)`` is ``dataclasses.field`` with the text and the checks in its metadata:
``help`` (what ``--help`` prints), ``range`` (a ``core.ranges.Range``: ``range=TOP_P``, or built from ``minimum`` /
``maximum``, inclusive bounds), ``optional`` (None allowed too; default: when the default is None), ``choices``,
``flag`` (the option, e.g. ``"--lr"``, when it is not ``--field-name``), ``cli=False`` (not on the command line).
The parser generator (``retmask_interp._cli.options``) reads them (``metadata["range"].arg`` is the argparse type);
``core.ranges.check_fields(self)`` in a dataclass's ``__post_init__`` checks the same ranges for Python callers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from retmask_interp.core.ranges import Range

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
    range: Range | None = None,  # noqa: A002 - the natural name
    optional: bool | None = None,
) -> Any:
    """A dataclass field with its help text and range in ``metadata`` (see the module docstring)."""
    meta: dict[str, Any] = {"help": help, "cli": cli}
    if range is None and (minimum is not None or maximum is not None):
        example = default if default is not _MISSING else None
        if isinstance(example, (list, tuple)) and example:
            example = example[0]
        integer = isinstance(example, int) and not isinstance(example, bool)
        range = Range(integer=integer, low=minimum, high=maximum)
    if range is not None:
        meta["range"] = range
        meta["optional"] = default is None if optional is None else optional
    for key, value in (("minimum", minimum), ("maximum", maximum), ("flag", flag)):
        if value is not None:
            meta[key] = value
    if choices is not None:
        meta["choices"] = tuple(choices)
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
