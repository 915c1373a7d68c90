"""Ranges of numeric settings, written once and used by the API's config dataclasses and by the command line.

A ``Range`` says what values a number may take (integer or float, finite, bounds, open or closed). It checks a
value in three places, all with the same rule and message:

- a config dataclass field: ``beta: float = option(0.1, "DPO beta", range=POSITIVE)`` (``core.options``) and
  ``check_fields(self)`` in ``__post_init__`` raise ``InputError`` (``"beta must be > 0, got 0 (CLI: --beta)"``);
  ``None`` passes for an optional field (default None);
- an argparse option: ``type=POSITIVE.arg`` (``_cli.validate`` names them ``positive_int`` ...) turns a bad value
  into the usual usage error (``argument --beta: must be > 0, got 0``);
- a parser generated from a dataclass: ``field_range(f)`` is the field's ``Range`` (or None), ``f.metadata["range"]``,
  and ``.arg`` its argparse type.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from retmask_interp.core.io import InputError

__all__ = [
    "Range",
    "field_range",
    "check_fields",
    "POSITIVE_INT",
    "NONNEGATIVE_INT",
    "SEED",
    "STEPS",
    "FINITE",
    "NONNEGATIVE",
    "POSITIVE",
    "UNIT_INTERVAL",
    "FRACTION",
    "TOP_P",
    "PERCENT",
    "GATE",
]


@dataclass(frozen=True)
class Range:
    """``integer``: whole numbers only; ``low`` / ``high``: bounds (None: unbounded), excluded when
    ``low_open`` / ``high_open``; ``also``: single values allowed outside the bounds (``-1`` = off); ``note``: a
    hint added to the message. Every value must be finite (no NaN, no infinity)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple[float, ...] = ()
    note: str = ""

    def describe(self) -> str:
        """``>= 1``, ``in (0, 1]``, ``a finite number`` ..."""
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = "an integer" if self.integer else "a finite number"
        if self.also:
            text += " or " + " or ".join(_num(v) for v in self.also)
        return text + (f" ({self.note})" if self.note else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range (``"must be >= 1, got 0"``), or None."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            kind = "an integer" if self.integer else "a number"
            return f"must be {kind}, got {value!r}"
        try:
            value = float(value)
        except OverflowError:
            return f"must be {self.describe()}, got a number too large to use"
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.integer and value != int(value):
            return f"must be an integer, got {value}"
        if value in self.also:
            return None
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        high_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"must be {self.describe()}, got {_num(value)}" if low_bad or high_bad else None

    def check(self, value: Any, name: str, cli: str | None = None) -> Any:
        """``value`` if it is in range; else ``InputError`` naming ``name`` (and the CLI option ``cli``)."""
        why = self.problem(value)
        if why is not None:
            raise InputError(f"{name} {why}" + (f" (CLI: {cli})" if cli else ""))
        return value

    def parse(self, text: str) -> int | float:
        """The number in ``text`` (an argparse ``type``): ``argparse.ArgumentTypeError`` when it is not one or
        is out of range."""
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if self.integer else 'a number'}"
            ) from None
        why = self.problem(value)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value

    @property
    def arg(self):
        """An argparse ``type`` function for this range (its ``__name__`` shows in argparse's messages)."""

        def parse(text: str) -> int | float:
            return self.parse(text)

        parse.__name__ = "integer" if self.integer else "number"
        parse.range = self
        return parse


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


POSITIVE_INT = Range(integer=True, low=1)
NONNEGATIVE_INT = Range(integer=True, low=0)
SEED = Range(integer=True, low=0, high=2**32 - 1)
STEPS = Range(integer=True, low=1, also=(-1,), note="-1: no limit")
FINITE = Range()
NONNEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
UNIT_INTERVAL = Range(low=0, high=1, high_open=True, note="0 disables the filter")  # ROUGE thresholds
FRACTION = Range(low=0, high=1)
TOP_P = Range(low=0, high=1, low_open=True, note="1 keeps every token")
PERCENT = Range(low=0, high=100)
GATE = Range(low=0, high=1, note="DuoAttention gates are in [0, 1]")


def _check_choice(value: Any, choices: tuple[Any, ...], name: str, cli: str | None) -> None:
    """``InputError`` unless ``value`` (a list or tuple: each of its elements) is one of ``choices``."""
    many = isinstance(value, (list, tuple))
    bad = [v for v in (value if many else [value]) if v not in choices]
    if bad:
        what = f"every value of {name}" if many else name
        listed = ", ".join(repr(c) for c in choices)
        raise InputError(
            f"{what} must be one of {listed}, got {bad[0]!r}" + (f" (CLI: {cli})" if cli else "")
        )


def field_range(f: dataclasses.Field) -> Range | None:
    """The ``Range`` of a dataclass field made with ``core.options.option`` (None for other fields)."""
    return f.metadata.get("range")


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` that has a range (``option(..., range=...)``; lists:
    every element) or choices (``option(..., choices=...)``; lists: every element); ``InputError`` naming the
    first bad one. ``None`` passes for an optional field (a range's, or a field whose default is None)."""
    for f in dataclasses.fields(obj):
        rng = field_range(f)
        choices = f.metadata.get("choices")
        if rng is None and choices is None:
            continue
        value = getattr(obj, f.name)
        if value is None and (f.metadata.get("optional") or f.default is None):
            continue
        cli = (
            f.metadata.get("flag") or "--" + f.name.replace("_", "-") if f.metadata.get("cli", True) else None
        )
        if choices is not None:
            _check_choice(value, tuple(choices), f.name, cli)
        if rng is None:
            continue
        if isinstance(value, (list, tuple)):
            for v in value:
                rng.check(v, f"every value of {f.name}", cli)
        else:
            rng.check(value, f.name, cli)
