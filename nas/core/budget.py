"""Latency budgets as the user writes them (``--budget``): ``30ms``, ``1.5s``, ``800us``."""

from __future__ import annotations

import math
import re

from hwnas_common import HwnasError

_UNITS_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_BUDGET = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
                     r"(?P<unit>s|ms|us|µs)\s*$")


def parse_budget(text: str) -> float:
    """A budget string with its unit (``30ms``, ``1.5s``, ``800us``) in milliseconds.

    A missing unit, a non-number, zero, a negative value, ``nan`` or ``inf`` is an error.
    """
    match = _BUDGET.match(text)
    if match is None:
        raise HwnasError(f"malformed budget {text!r}; expected a positive number with a unit "
                         f"({'/'.join(_UNITS_MS)}), e.g. '30ms', '1.5s', '800us'")
    value = float(match["value"]) * _UNITS_MS[match["unit"]]
    if not math.isfinite(value) or value <= 0:
        raise HwnasError(f"budget must be a positive latency, got {text!r}")
    return value


def parse_budgets(text: str) -> list[float]:
    """A comma-separated list of budgets (one per device), each in milliseconds."""
    return [parse_budget(part) for part in text.split(",")]


def format_ms(value: float) -> str:
    """A latency in ms, printed with a sensible number of digits."""
    return f"{value:.4g} ms"
