"""(device table, budget) pairs of a search: the latency model the loss and derivation use.

A :class:`Constraint` is the one record of a device in a search: its
:class:`latency_predictors.LatencyMatrix` for the searched space, its budget, the table name the
user gave and the table's identity for the run summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix, latency_matrix, load_table
from latency_predictors.measure.adapt import host_true_table
from latency_predictors.table import table_identity
from nas.core.budget import Budget, RelativeBudget
from search_spaces import Space


@dataclass(frozen=True)
class Constraint:
    """One device's latency matrix for the searched space and its budget (ms)."""

    matrix: LatencyMatrix
    budget_ms: float
    source: str  # table name or path as the user gave it
    metadata: dict[str, Any] = field(default_factory=dict)  # table_identity(table, space)
    note: str | None = None  # how the table was made true to this host (host_true_table)
    requested: str | None = None  # a relative budget as the user gave it ("15%"), else None

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
        return (f"budget {self.requested} on {self.source!r} = {self.budget_ms:.4g} ms "
                f"({self.requested} of the way from the fastest net of {self.matrix.space}, "
                f"{self.matrix.fastest_ms():.4g} ms, to its slowest, "
                f"{self.matrix.slowest_ms():.4g} ms)")

    def describe(self) -> dict[str, Any]:
        """What a run summary records about this table."""
        return {"table": self.source, "device": self.device, "budget_ms": self.budget_ms,
                "budget_requested": self.requested or f"{self.budget_ms:g}ms",
                "provenance": self.matrix.provenance, "calibrated": self.matrix.calibrated,
                "metadata": self.metadata}


def load_constraints(space: Space, devices: Sequence[str], budgets_ms: Sequence[Budget],
                     adapt: bool = True, progress: bool = True,
                     measure: bool = True) -> list[Constraint]:
    """Load each device's table, make it true to this host (a measured table of another
    host is adapted for ``space`` unless ``adapt`` is False, see
    :func:`latency_predictors.measure.adapt.host_true_table`) and build its matrix for ``space``.
    A :class:`nas.core.budget.RelativeBudget` is resolved to milliseconds on that matrix.
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
        constraints.append(Constraint(matrix, budget, device,
                                      table_identity(hosted.table, space.name), hosted.note,
                                      requested))
    return constraints
