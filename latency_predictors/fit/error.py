"""A table's error, and the margin a search derives under so that its net meets the budget
with a stated probability.

Every table states its error as out-of-sample ratios ``measured / predicted`` of whole nets:

- a fitted table (``hwnas tables fit``), an adapted or calibrated one: the cross-validated
  ratios of its fit (``calibration[space]["cv_ratios"]``; for a calibration recorded before
  they were stored, recomputed from its fit points);
- an estimated table anchored on published latencies: each anchor's leave-one-out ratio;
- an a-priori estimated table (no figure of its device): the pooled ratios its metadata
  ``error`` borrows from the anchored devices, and says so.

The margin treats ``log(measured / predicted)`` of a new net as Student-t distributed around
the ratios' mean with their spread (the predictive interval of a normal sample of size n)::

    margin(q) = exp(mean + t_q(n - 1) · sd · sqrt(1 + 1/n)) - 1   (at least 0)

so the net derived under ``budget / (1 + margin)`` measures within the budget with probability
``q`` when the ratios are representative of the nets a search derives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from ..table import LatencyTable
from .calibration import TableParts, cross_validate

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class TableError:
    """Out-of-sample ratios measured / predicted, and what they come from."""

    ratios: np.ndarray
    what: str

    @property
    def n(self) -> int:
        return len(self.ratios)

    @property
    def mape(self) -> float:
        return float(np.mean(np.abs(1.0 - 1.0 / self.ratios)) * 100)

    def margin(self, confidence: float = DEFAULT_CONFIDENCE) -> float:
        """The relative margin at ``confidence`` (module docstring); 0 at confidence 0."""
        if confidence <= 0:
            return 0.0
        logs = np.log(self.ratios)
        if self.n < 2:
            return 0.0
        quantile = student_t.ppf(confidence, self.n - 1)
        spread = float(logs.std(ddof=1)) * math.sqrt(1 + 1 / self.n)
        return max(0.0, math.expm1(float(logs.mean()) + quantile * spread))

    def describe(self, confidence: float = DEFAULT_CONFIDENCE) -> str:
        return (f"MAPE {self.mape:.1f} %, +{100 * self.margin(confidence):.1f} % at "
                f"{100 * confidence:g} %, {self.what}")

    def record(self, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
        return {"what": self.what, "n": self.n, "mape": round(self.mape, 3),
                "confidence": confidence, "margin": round(self.margin(confidence), 5)}


def budget_margin(error: TableError | None, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The margin of a table with ``error`` (0 when it states none)."""
    return 0.0 if error is None else error.margin(confidence)


def table_error(table: LatencyTable, space: str) -> TableError | None:
    """The error ``table`` states for ``space`` (module docstring), None when it has none."""
    calib = table.calibration(space) or {}
    if calib.get("cv_ratios"):
        return TableError(np.asarray(calib["cv_ratios"], float),
                          calib.get("cv_what", f"cross-validated on {len(calib['cv_ratios'])}"
                                                " measured nets"))
    if calib.get("fit_points"):
        return _from_fit_points(calib)
    anchoring = table.metadata.get("anchoring") or {}
    anchors = anchoring.get("anchors") or []
    if anchors:
        ratios = np.array([a["published_ms"] / a["loo_ms"] for a in anchors])
        return TableError(ratios, f"leave-one-out on {len(ratios)} published latencies")
    borrowed = table.metadata.get("error")
    if borrowed:
        return TableError(np.asarray(borrowed["ratios"], float), str(borrowed["what"]))
    return None


def _from_fit_points(calib: dict[str, Any]) -> TableError:
    """The cross-validated ratios of a calibration recorded with its fit points only."""
    columns = calib["fit_columns"]
    points = np.asarray(calib["fit_points"], float)
    parts = TableParts(tuple(columns[:-2]), points[:, -2], points[:, :-2], "class")
    measured = points[:, -1]
    predictions = cross_validate(parts, measured, seed=int(calib.get("fit_seed", 0)))
    model = calib.get("model", "affine")
    if model not in predictions:  # a grouping the fit points do not keep
        model = min(("affine", "per-class"), key=lambda m: float(np.mean(
            np.abs(predictions[m] - measured) / measured)) if m in predictions else math.inf)
    return TableError(measured / predictions[model],
                      f"cross-validated ({model}) on the {len(measured)} nets of its calibration")
