"""(device table, budget) pairs of a search: the latency model the loss and derivation use.

A :class:`Constraint` is the one record of a device in a search: its
:class:`latency_predictors.LatencyMatrix` for the searched space, its budget, the table name the
user gave and the table's identity for the run summary.

A table states its error (:func:`latency_predictors.fit.table_error`: out-of-sample ratios
measured / predicted), so the search derives under ``budget / (1 + margin)``, the margin at the
confidence asked for (``--confidence``, default 0.95): the net it returns then measures within
the budget with that probability, as far as the table's error is representative. ``budget_ms``
is that threshold, which the loss, the weight paths and the derivation use; ``asked_ms`` is the
budget as the user gave it (resolved to ms)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix, latency_matrix, load_table
from latency_predictors.fit import DEFAULT_CONFIDENCE, TableError, table_error
from latency_predictors.measure.adapt import host_true_table
from latency_predictors.table import table_identity
from nas.core.budget import Budget, RelativeBudget
from search_spaces import Space


@dataclass(frozen=True)
class Constraint:
    """One device's latency matrix for the searched space and its budget (ms)."""

    matrix: LatencyMatrix
    budget_ms: float  # what the search derives under: the budget less the table's margin
    source: str  # table name or path as the user gave it
    metadata: dict[str, Any] = field(default_factory=dict)  # table_identity(table, space)
    note: str | None = None  # how the table was made true to this host (host_true_table)
    requested: str | None = None  # a relative budget as the user gave it ("15%"), else None
    asked_ms: float | None = None  # the budget as asked (ms); None: budget_ms, no margin
    error: TableError | None = None  # the table's stated error
    confidence: float = 0.0  # the probability the margin is for (0: no margin)

    @property
    def budget_asked_ms(self) -> float:
        return self.budget_ms if self.asked_ms is None else self.asked_ms

    @property
    def margin(self) -> float:
        return self.budget_asked_ms / self.budget_ms - 1.0

    @property
    def device(self) -> str:
        return self.matrix.device

    @property
    def estimated(self) -> bool:
        return self.matrix.provenance == "estimated"

    def budget_line(self) -> str | None:
        """How a relative budget resolved, in one line (None for a budget in ms)."""
        if self.requested is None:
            return None
        return (f"budget {self.requested} on {self.source!r} = {self.budget_asked_ms:.4g} ms "
                f"({self.requested} of the way from the fastest net of {self.matrix.space}, "
                f"{self.matrix.fastest_ms():.4g} ms, to its slowest, "
                f"{self.matrix.slowest_ms():.4g} ms)")

    def margin_line(self) -> str:
        """The margin the search derives under, in one line, e.g. ``budget 6 ms on 'vpu'
        (estimated, +12.0 % at 95 %: ...): derived under 5.357 ms``."""
        head = f"budget {self.budget_asked_ms:.4g} ms on {self.source!r}"
        if self.error is None:
            return (f"{head} ({self.matrix.provenance}; the table states no error): derived "
                    "under the budget as it is")
        if self.confidence <= 0:
            return (f"{head} ({self.matrix.provenance}, {self.error.describe(0.0)}; "
                    "--confidence 0): derived under the budget as it is")
        return (f"{head} ({self.matrix.provenance}, {self.error.describe(self.confidence)}): "
                f"derived under {self.budget_ms:.4g} ms")

    def describe(self) -> dict[str, Any]:
        """What a run summary records about this table."""
        asked = self.budget_asked_ms
        return {"table": self.source, "device": self.device, "budget_ms": asked,
                "budget_requested": self.requested or f"{asked:g}ms",
                "derived_under_ms": self.budget_ms,
                "margin": (None if self.error is None else
                           {**self.error.record(self.confidence),
                            "applied": round(self.margin, 5)}),
                "provenance": self.matrix.provenance, "calibrated": self.matrix.calibrated,
                "metadata": self.metadata}


def load_constraints(space: Space, devices: Sequence[str], budgets_ms: Sequence[Budget],
                     adapt: bool = True, progress: bool = True,
                     measure: bool = True,
                     confidence: float = DEFAULT_CONFIDENCE) -> list[Constraint]:
    """Load each device's table, make it true to this host (a measured table of another
    host is adapted for ``space`` unless ``adapt`` is False, see
    :func:`latency_predictors.measure.adapt.host_true_table`) and build its matrix for ``space``.
    A :class:`nas.core.budget.RelativeBudget` is resolved to milliseconds on that matrix, and
    each budget becomes the threshold ``budget / (1 + margin)`` of its table's error at
    ``confidence`` (module docstring; 0: the budget as it is).
    Whether some architecture meets every budget is the search's first check
    (:func:`nas.core.derive.check_feasible`).

    Raises :class:`HwnasError` when the counts differ or a table is unknown or incomplete.
    """
    if len(devices) != len(budgets_ms):
        raise HwnasError(f"got {len(devices)} devices {list(devices)} but {len(budgets_ms)} "
                         "budgets; give one budget per device (e.g. --device vpu,a100 "
                         "--budget 30ms,3ms)")
    if len(set(devices)) != len(devices):
        raise HwnasError(f"device listed twice: {list(devices)}")
    constraints = []
    for device, budget in zip(devices, budgets_ms, strict=True):
        hosted = host_true_table(load_table(device), [space.name], adapt, progress, measure)
        matrix = latency_matrix(space, hosted.table)
        requested = None
        if isinstance(budget, RelativeBudget):
            requested = str(budget)
            budget = budget.resolve(matrix.fastest_ms(), matrix.slowest_ms())
        error = table_error(hosted.table, space.name)
        margin = 0.0 if error is None else error.margin(confidence)
        constraints.append(Constraint(matrix, budget / (1 + margin), device,
                                      table_identity(hosted.table, space.name), hosted.note,
                                      requested, budget, error, confidence))
    return constraints
