"""``core.ranges``: one rule per range, the same in a config dataclass and on the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import numpy as np
import pytest

from retmask_interp.core.io import InputError
from retmask_interp.core.options import option
from retmask_interp.core.ranges import POSITIVE_INT, STEPS, TOP_P, check_fields, field_range


@dataclass
class _Config:
    n: int = option(1, range=POSITIVE_INT)
    p: float = option(1.0, range=TOP_P)
    steps: int = option(-1, range=STEPS)
    cap: int | None = option(None, range=POSITIVE_INT)
    sizes: list[int] = option(range=POSITIVE_INT, factory=lambda: [1, 2])

    def __post_init__(self) -> None:
        check_fields(self)


def test_dataclass_and_argparse_share_the_rule():
    assert field_range(fields(_Config)[0]) is POSITIVE_INT
    _Config(n=np.int64(3), p=np.float32(0.5), cap=None, steps=7)  # numpy numbers are numbers
    for kwargs, message in [
        ({"n": 0}, r"n must be >= 1, got 0 \(CLI: --n\)"),
        ({"n": True}, "n must be an integer, got True"),
        ({"n": 1.5}, "n must be an integer, got 1.5"),
        ({"n": "3"}, "n must be an integer, got '3'"),
        ({"p": float("nan")}, "p must be a finite number, got nan"),
        ({"p": 0.0}, r"p must be in \(0, 1\]"),
        ({"steps": 0}, "steps must be >= 1 or -1"),
        ({"cap": 0}, "cap must be >= 1"),
        ({"sizes": [1, 0]}, "every value of sizes must be >= 1, got 0"),
        ({"n": 10**400}, "too large"),
    ]:
        with pytest.raises(InputError, match=message):
            _Config(**kwargs)
    parse = TOP_P.arg
    assert parse("1") == 1.0 and parse.range is TOP_P
    for text in ("0", "1.5", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert STEPS.arg("-1") == -1
    with pytest.raises(argparse.ArgumentTypeError, match="is not an integer"):
        POSITIVE_INT.arg("1e9")


@dataclass
class _Choices:
    mode: str = option("zero", choices=("zero", "mean"))
    modes: list[str] = option(factory=lambda: ["zero"], choices=("zero", "mean"), flag="--mode")
    style: str | None = option(None, choices=("chat", "qa"))
    quiet: str = option("a", choices=("a", "b"), cli=False)

    def __post_init__(self) -> None:
        check_fields(self)


def test_choices_are_checked_as_ranges_are():
    """A value outside a field's ``choices`` is an ``InputError`` naming the field, the choices and the option,
    for Python callers as on the command line (before, a misspelt choice could pass silently)."""
    _Choices(mode="mean", modes=["mean", "zero"], style=None)  # None passes for a field whose default is None
    for kwargs, message in [
        ({"mode": "Mean"}, r"mode must be one of 'zero', 'mean', got 'Mean' \(CLI: --mode\)"),
        ({"modes": ["zero", "uniform"]}, r"every value of modes must be one of 'zero', 'mean', got 'uniform' "
                                          r"\(CLI: --mode\)"),
        ({"style": "QA"}, "style must be one of 'chat', 'qa', got 'QA'"),
        ({"quiet": "c"}, r"quiet must be one of 'a', 'b', got 'c'$"),  # no option to name
    ]:  # fmt: skip
        with pytest.raises(InputError, match=message):
            _Choices(**kwargs)
