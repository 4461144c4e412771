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
from search_spaces import Space


@dataclass(frozen=True)
class Constraint:
    """One device's latency matrix for the searched space and its budget (ms)."""

    matrix: LatencyMatrix
    budget_ms: float
    source: str  # table name or path as the user gave it
    metadata: dict[str, Any] = field(default_factory=dict)  # table_identity(table, space)
    note: str | None = None  # how the table was made true to this host (host_true_table)

    @property
    def device(self) -> str:
        return self.matrix.device

    @property
    def estimated(self) -> bool:
        return self.matrix.provenance == "estimated"

    def describe(self) -> dict[str, Any]:
        """What a run summary records about this table."""
        return {"table": self.source, "device": self.device, "budget_ms": self.budget_ms,
                "provenance": self.matrix.provenance, "calibrated": self.matrix.calibrated,
                "metadata": self.metadata}


def load_constraints(space: Space, devices: Sequence[str], budgets_ms: Sequence[float],
                     adapt: bool = True, progress: bool = True,
                     measure: bool = True) -> list[Constraint]:
    """Load each device's table, make it true to this host (a measured table of another
    host is adapted for ``space`` unless ``adapt`` is False, see
    :func:`latency_predictors.measure.adapt.host_true_table`) and build its matrix for ``space``.
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
        constraints.append(Constraint(latency_matrix(space, hosted.table), budget, device,
                                      table_identity(hosted.table, space.name), hosted.note))
    return constraints
