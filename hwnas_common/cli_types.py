"""argparse ``type`` functions shared by every package's commands: a bad number is one line
naming what was expected (``expected an integer >= 1, got '0'``), the same in every command,
and an option's range is checked when it is parsed, before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def parsed(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse ``type`` whose failure is one line naming what was expected."""
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    parse.what = what  # what --help and the tests may quote
    return parse


def _within(convert: Callable[[str], Any], ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        value = convert(text)
        if not ok(value):
            raise ValueError(text)
        return value

    return check


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer option whose smallest meaningful value is ``low``."""
    return parsed(_within(int, lambda v: v >= low), f"an integer >= {low}")


def number_at_least(low: float) -> Callable[[str], float]:
    """A finite number >= ``low``."""
    return parsed(_within(float, lambda v: math.isfinite(v) and v >= low), f"a number >= {low:g}")


def positive_number() -> Callable[[str], float]:
    """A finite number > 0."""
    return parsed(_within(float, lambda v: math.isfinite(v) and v > 0), "a positive number")


def fraction() -> Callable[[str], float]:
    """A number in [0, 1)."""
    return parsed(_within(float, lambda v: 0 <= v < 1), "a number in [0, 1)")

