"""argparse ``type`` functions shared by every package's commands: a bad number is one line
naming what was expected (``expected an integer, got 'x'``), the same in every command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def parsed(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse ``type`` whose failure is one line naming what was expected."""
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


int_arg = parsed(int, "an integer")
float_arg = parsed(float, "a number")
