"""Latency budgets as the user writes them (``--budget``): ``30ms``, ``1.5s``, ``800us``, or
relative, ``15%``: 15 % of the way from the space's fastest net to its slowest on the device's
table as this host uses it. Milliseconds are the form for deployment; a relative budget means
the same trade-off on every host, so a demo or a sweep binds everywhere."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hwnas_common import HwnasError

_UNITS_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_BUDGET = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
                     r"(?P<unit>s|ms|us|µs)\s*$")


_RELATIVE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+)\s*%\s*$")


@dataclass(frozen=True)
class RelativeBudget:
    """``fraction`` of the way from a space's fastest net to its slowest on one device."""

    fraction: float  # in (0, 1]

    def resolve(self, fastest_ms: float, slowest_ms: float) -> float:
        """The budget in milliseconds for a space whose nets span ``[fastest, slowest]``."""
        return fastest_ms + self.fraction * (slowest_ms - fastest_ms)

    def __str__(self) -> str:
        return f"{100 * self.fraction:g}%"


Budget = float | RelativeBudget  # milliseconds, or relative to the space on the device


def parse_budget_request(text: str) -> Budget:
    """A budget in milliseconds (:func:`parse_budget`) or relative (``15%``, in (0, 100] %)."""
    match = _RELATIVE.match(text)
    if match is None:
        if "%" in text:
            raise HwnasError(f"malformed relative budget {text!r}; expected a share in "
                             "(0, 100] %, e.g. '15%'")
        return parse_budget(text)
    fraction = float(match["value"]) / 100
    if not 0 < fraction <= 1:
        raise HwnasError(f"a relative budget must lie in (0, 100] %, got {text!r}")
    return RelativeBudget(fraction)


def parse_budget_requests(text: str) -> list[Budget]:
    """A comma-separated list of budgets (one per device), each in ms or relative."""
    return [parse_budget_request(part) for part in text.split(",")]


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
