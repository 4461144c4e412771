"""The calibration models of a table: a correction of its per-op sums fitted on whole-net
timings, by least squares on the relative error (:data:`MODELS`):

- ``none``: the table as it is;
- ``affine``: ``measured ≈ scale · table_sum + offset_ms``;
- ``per-class``, ``per-kernel``, ``per-kernel-branch``: one scale per op group (the
  interaction, ``mbconv``, ``fbnet``, a projecting skip ``proj``; the kernel size; the kernel
  size and whether the interaction has r branches, :func:`latency_predictors.keys.op_group`)
  and an offset (:func:`fit_per_group`).

All only rescale table entries and add a constant, so whole-network latency stays a plain sum
over layers and the expected latency and the knapsack stay exact. They are the models a table
prior offers a fit (:mod:`.fitting`), whether the timings were measured here
(``hwnas tables adapt``, a profile's ``--calibrate``: :mod:`latency_predictors.measure.calibrate`)
or come from the user (``hwnas tables fit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwnas_common.errors import HwnasError
from search_spaces import ArchSpec, Space

from ..keys import layer_groups
from ..predictor import LatencyMatrix
from ..table import LatencyTable


@dataclass(frozen=True)
class TableParts:
    """Uncalibrated table sums of architectures (one row each), split by op group."""

    classes: tuple[str, ...]  # op groups of the space's non-identity candidates (keys.op_group)
    fixed: np.ndarray  # (n,) the fixed parts: stem, downsamples, head
    by_class: np.ndarray  # (n, len(classes)): Σ table entries of the layers of each group
    grouping: str = "class"  # how candidates are grouped (keys.op_group)

    def rows(self, index: np.ndarray) -> TableParts:
        """The same parts for the architectures ``index`` only."""
        return TableParts(self.classes, self.fixed[index], self.by_class[index], self.grouping)

    @property
    def total(self) -> np.ndarray:
        return self.fixed + self.by_class.sum(axis=1)


def table_parts(specs: Sequence[ArchSpec], space: Space, matrix: LatencyMatrix,
                grouping: str = "class") -> TableParts:
    """:class:`TableParts` of ``specs`` from an uncalibrated ``matrix`` of ``space``."""
    groups = layer_groups(space, grouping)
    classes = tuple(dict.fromkeys(g for row in groups for g in row if g))
    by_class = np.zeros((len(specs), len(classes)))
    for row, spec in enumerate(specs):
        for layer, choice in enumerate(spec.layers):
            index = space.candidate_index(choice)
            if (name := groups[layer][index]) is not None:
                by_class[row, classes.index(name)] += matrix.per_layer[layer][index]
    return TableParts(classes, np.full(len(specs), matrix.fixed_ms), by_class, grouping)


@dataclass(frozen=True)
class Fit:
    """``measured ≈ scale · fixed parts + Σ_c s_c · (table sum of group c) + offset_ms`` with
    ``s_c = class_scales.get(c, scale)``: affine when ``class_scales`` is empty."""

    scale: float
    offset_ms: float
    class_scales: dict[str, float] = field(default_factory=dict)
    grouping: str = "class"  # what the keys of class_scales are (keys.op_group)

    def __call__(self, parts: TableParts) -> np.ndarray:
        scales = np.array([self.class_scales.get(c, self.scale) for c in parts.classes])
        return self.scale * parts.fixed + parts.by_class @ scales + self.offset_ms

    def record(self) -> dict[str, Any]:
        rounded = {"scale": round(self.scale, 6), "offset_ms": round(self.offset_ms, 6)}
        if self.class_scales:
            rounded["class_scales"] = {c: round(v, 6) for c, v in self.class_scales.items()}
            rounded["groups"] = self.grouping
        return rounded


def fit_affine(table_sums: Sequence[float], measured: Sequence[float]) -> Fit:
    """``measured ≈ scale · table_sum + offset`` by least squares on the relative error
    (weights 1/measured): small and large networks count alike, as in MAPE."""
    x, y = np.asarray(table_sums, float), np.asarray(measured, float)
    if x.size < 2 or np.ptp(x) == 0:
        raise HwnasError(f"calibration needs >= 2 architectures of different table sums, "
                         f"got {x.size}")
    scale, offset = np.polyfit(x, y, 1, w=1.0 / y)
    if scale <= 0:
        raise HwnasError(f"calibration fit a non-positive scale {scale:.3g}: the measurements "
                         "do not follow the table (too noisy a machine?)")
    return Fit(float(scale), float(offset))


def fit_per_group(parts: TableParts, measured: Sequence[float]) -> Fit | None:
    """One scale per op group (``parts.grouping``: class or kernel size) and an offset, by least
    squares on the relative error; the fixed parts keep scale 1 (they are the same in every
    network, so the offset absorbs them).

    Ops timed alone are biased by class (on the x86 host cheap ``sum``/``star``/``quad``
    blocks are over-predicted by ~4-6 % and the r-branch ``poly2``/``rbf`` ones
    under-predicted), and a search picks networks of a few classes, so one scale leaves the
    searched network's prediction off by the bias of its classes. None when the data cannot
    determine every class's scale (a class never drawn, too few networks), a scale comes out
    non-positive, or two scales differ more than :data:`MAX_SCALE_RATIO` times: then one group
    barely varies over the timed nets and its scale extrapolates (fitted on 10 nets from a
    prior whose projecting skips cost ~0, one scale came out 65,000 and predicted nets with
    more such skips 2,000× too slow)."""
    y = np.asarray(measured, float)
    design = np.c_[parts.by_class, np.ones(len(y))]
    if len(y) < design.shape[1] + 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    w = 1.0 / y
    coef = np.linalg.lstsq(design * w[:, None], (y - parts.fixed) * w, rcond=None)[0]
    scales = coef[:-1]
    if (scales <= 0).any() or scales.max() > MAX_SCALE_RATIO * scales.min():
        return None
    return Fit(1.0, float(coef[-1]), dict(zip(parts.classes, map(float, coef[:-1]),
                                              strict=True)), parts.grouping)


MAX_SCALE_RATIO = 20.0  # the most two group scales of one calibration may differ
CV_FOLDS = 5
# simplest first: ties go to the simpler model; per-group models name their grouping
MODELS = {"none": None, "affine": None, "per-class": "class", "per-kernel": "kernel",
          "per-kernel-branch": "kernel-branch"}
Parts = TableParts | dict[str, TableParts]  # one grouping's parts, or parts per grouping


def _by_grouping(parts: Parts) -> dict[str, TableParts]:
    return parts if isinstance(parts, dict) else {parts.grouping: parts}


def fit_model(model: str, parts: Parts, measured: np.ndarray) -> Fit | None:
    """Fit calibration ``model`` (one of :data:`MODELS`); None when it cannot be fitted (or
    ``parts`` lack its grouping)."""
    groups = _by_grouping(parts)
    if model == "none":
        return Fit(1.0, 0.0)
    if model == "affine":
        return fit_affine(next(iter(groups.values())).total, measured)
    return fit_per_group(groups[MODELS[model]], measured) if MODELS[model] in groups else None


def predict(fit: Fit, parts: Parts) -> np.ndarray:
    """``fit``'s prediction of the architectures of ``parts`` (under the fit's grouping)."""
    return fit(_by_grouping(parts).get(fit.grouping) or next(iter(_by_grouping(parts).values())))


def cross_validate(parts: Parts, measured: np.ndarray, folds: int = CV_FOLDS,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of every model of :data:`MODELS` that fits on every fold:
    each network is predicted by the model fitted on the other folds."""
    groups = _by_grouping(parts)
    order = np.random.default_rng(seed).permutation(len(measured))
    predictions = {model: np.empty(len(measured)) for model in MODELS}
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held)
        sub = {g: p.rows(train) for g, p in groups.items()}
        held_parts = {g: p.rows(held) for g, p in groups.items()}
        for model in list(predictions):
            fit = fit_model(model, sub, measured[train])
            if fit is None:
                del predictions[model]
            else:
                predictions[model][held] = predict(fit, held_parts)
    return predictions




def without_calibration(table: LatencyTable, space: str) -> LatencyTable:
    """``table`` without its calibration for ``space`` (its raw per-op sums)."""
    metadata = {**table.metadata}
    calib = {k: v for k, v in (metadata.get("calibration") or {}).items() if k != space}
    metadata.pop("calibration", None)
    if calib:
        metadata["calibration"] = calib
    return LatencyTable(table.frame, metadata, table.name)
