"""The fit: whole-net timings refit a prior into a table of the timed device.

One mechanism for every source of timings: ``hwnas tables fit`` (a user's timings of any
device), ``hwnas tables adapt`` and a profile's ``--calibrate`` (nets measured here, the one
table being adapted as the prior: :func:`select_calibration`).

A candidate is one model of one prior (:mod:`.priors`):

- a table prior's calibration models (:mod:`.calibration`: none, affine, a scale per op group,
  and an offset), fitted by least squares on the relative error; the fitted table keeps the
  prior's rows and records the calibration;
- the roofline's bases: a net's features are the sums of its ops' basis values, and
  ``measured ≈ Σ_j w_j · feature_j + offset_ms`` with ``w_j ≥ 0`` is fitted by non-negative least
  squares on the relative error; the fitted table's entry of an op is ``Σ_j w_j · basis_j[op]``.

Either way whole-net latency stays a plain sum over layers (the expected latency and the
knapsack stay exact). Relative error: weights 1/measured, so small and large nets count alike,
as in MAPE.

Which candidate: the one with the lowest cross-validated MAPE on the timings (:data:`FOLDS`-fold,
leave-one-out for fewer nets; among those that leave a degree of freedom on every fold; the
simpler one on a tie: the order of the priors given, then of their models). That choice looks
at the same nets, so the error the table states is measured one level out (**nested**
cross-validation): each net is predicted by a candidate chosen, and fitted, without it. Those
out-of-sample ratios measured/predicted are the table's error distribution (:mod:`.error`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.optimize import nnls

from hwnas_common.errors import HwnasError
from search_spaces import ArchSpec, Space

from ..keys import required_keys
from ..metadata import GROUPINGS, new_metadata
from ..predictor import check_coverage, latency_matrix
from ..table import KEY_COLUMNS, LatencyTable, make_table
from .calibration import MODELS, Fit, TableParts, fit_model, predict, table_parts
from .error import TableError
from .priors import Prior, roofline_prior, table_prior
from .timings import Timings, check_count

FOLDS = 10  # cross-validation folds (leave-one-out below this many nets)
TIE_MAPE = 0.1  # percentage points within which the simpler candidate wins
MIN_ENTRY_MS = 1e-6  # a table entry must be > 0; an op whose bases all got weight 0 gets this


class Candidate(Protocol):
    """One model of one prior, on the timed nets."""

    prior: Prior
    model: str

    @property
    def label(self) -> str: ...

    @property
    def width(self) -> int:
        """Parameters fitted, the offset included."""

    def fit(self, index: np.ndarray, ms: np.ndarray) -> Any | None:
        """The model fitted on the nets ``index`` (None: it cannot be fitted on them)."""

    def predict(self, fitted: Any, index: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BasisCandidate:
    """A basis model: non-negative weights on per-net features, and an offset."""

    prior: Prior
    model: str
    features: np.ndarray  # (nets × bases)

    @property
    def label(self) -> str:
        return f"{self.prior.name}/{self.model}"

    @property
    def width(self) -> int:
        return self.features.shape[1] + 1

    def fit(self, index: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, float]:
        return solve(self.features[index], ms[index])

    def predict(self, fitted: tuple[np.ndarray, float], index: np.ndarray) -> np.ndarray:
        weights, offset = fitted
        return self.features[index] @ weights + offset


@dataclass(frozen=True)
class CalibrationCandidate:
    """A calibration model of a table prior (:data:`.calibration.MODELS`)."""

    prior: Prior
    model: str
    parts: dict[str, TableParts]  # the timed nets' table sums by op group, per grouping

    @property
    def label(self) -> str:
        return f"{self.prior.name}/{self.model}"

    @property
    def width(self) -> int:
        if self.model == "none":
            return 0
        grouping = MODELS[self.model]
        return 2 if grouping is None else len(self.parts[grouping].classes) + 1

    def fit(self, index: np.ndarray, ms: np.ndarray) -> Fit | None:
        try:
            return fit_model(self.model, self._rows(index), ms[index])
        except HwnasError:  # no spread of table sums, or a non-positive scale
            return None

    def predict(self, fitted: Fit, index: np.ndarray) -> np.ndarray:
        return predict(fitted, self._rows(index))

    def _rows(self, index: np.ndarray) -> dict[str, TableParts]:
        return {g: p.rows(index) for g, p in self.parts.items()}


def solve(features: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, float]:
    """``(w ≥ 0, offset)`` minimising Σ ((features·w + offset - ms) / ms)²."""
    scale = features.mean(axis=0)
    scale[scale <= 0] = 1.0
    weight = 1.0 / ms
    design = np.c_[features / scale, np.ones(len(ms)), -np.ones(len(ms))] * weight[:, None]
    coef = nnls(design, ms * weight, maxiter=50 * design.shape[1])[0]
    return coef[:-2] / scale, float(coef[-2] - coef[-1])


def _folds(n: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [f for f in np.array_split(order, min(n, FOLDS)) if len(f)]


def fits_on(candidate: Candidate, n: int) -> bool:
    """Whether a candidate leaves at least one degree of freedom on the smallest training fold
    of ``n`` nets (a model as wide as its data extrapolates wildly: on 5 timed nets, per-class
    models predicted held-out nets thousands of percent off)."""
    train = n - -(-n // min(n, FOLDS))
    return candidate.width < train


def cv_predictions(candidate: Candidate, index: np.ndarray, ms: np.ndarray,
                   seed: int = 0) -> np.ndarray | None:
    """Out-of-fold predictions of ``candidate`` on the nets ``index`` (None when it cannot be
    fitted on some fold)."""
    out = np.empty(len(index))
    for held in _folds(len(index), seed):
        train = np.setdiff1d(np.arange(len(index)), held)
        fitted = candidate.fit(index[train], ms)
        if fitted is None:
            return None
        out[held] = candidate.predict(fitted, index[held])
    return out


def mape(predicted: np.ndarray, ms: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - ms) / ms) * 100)


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, every candidate's cross-validated MAPE (inf: not fittable) and
    out-of-fold predictions."""

    index: int
    scores: dict[str, float]
    out_of_fold: dict[str, np.ndarray]


def choose(candidates: Sequence[Candidate], index: np.ndarray, ms: np.ndarray,
           seed: int = 0) -> Choice:
    """The candidate with the lowest cross-validated MAPE on the nets ``index`` (the first
    within :data:`TIE_MAPE`) among those that :func:`fits_on` them."""
    scores, out_of_fold = {}, {}
    for c in candidates:
        predicted = cv_predictions(c, index, ms, seed) if fits_on(c, len(index)) else None
        scores[c.label] = math.inf if predicted is None else mape(predicted, ms[index])
        if predicted is not None:
            out_of_fold[c.label] = predicted
    best = min(scores.values())
    if not math.isfinite(best):
        raise HwnasError(f"{len(index)} timed nets are too few for every prior's models (the "
                         "narrowest needs 3 nets plus one per parameter); time more nets")
    chosen = next(i for i, c in enumerate(candidates) if scores[c.label] <= best + TIE_MAPE)
    return Choice(chosen, scores, out_of_fold)


def nested_predictions(candidates: Sequence[Candidate], ms: np.ndarray,
                       seed: int = 0) -> np.ndarray:
    """Each net predicted by the candidate chosen, and fitted, without it."""
    out = np.empty(len(ms))
    for held in _folds(len(ms), seed):
        train = np.setdiff1d(np.arange(len(ms)), held)
        best = candidates[choose(candidates, train, ms, seed).index]
        out[held] = best.predict(best.fit(train, ms), held)
    return out


def candidates_of(priors: Sequence[Prior], specs: Sequence[ArchSpec], space: Space
                  ) -> list[Candidate]:
    out: list[Candidate] = []
    for prior in priors:
        if prior.table is not None:
            matrix = latency_matrix(space, prior.table)
            parts = {g: table_parts(specs, space, matrix, g) for g in GROUPINGS}
            out += [CalibrationCandidate(prior, model, parts) for model in MODELS]
        else:
            counts = prior.incidence(list(specs), space)
            out += [BasisCandidate(prior, model, counts @ basis)
                    for model, basis in prior.models.items()]
    return out


@dataclass(frozen=True)
class Selection:
    """A fit chosen among candidates: the chosen one fitted on every net, the choice, and the
    error one level out."""

    candidate: Candidate
    fitted: Any
    choice: Choice
    error: TableError
    in_sample: np.ndarray


def select(candidates: Sequence[Candidate], ms: np.ndarray, seed: int = 0) -> Selection:
    """Choose a candidate on every net, fit it on every net, and measure the error of the whole
    procedure by nested cross-validation (module docstring)."""
    everything = np.arange(len(ms))
    choice = choose(candidates, everything, ms, seed)
    best = candidates[choice.index]
    fitted = best.fit(everything, ms)
    # a held-out net predicted at <= 0 ms is a miss without bound: its ratio is huge
    ratios = ms / np.maximum(nested_predictions(candidates, ms, seed), MIN_ENTRY_MS)
    error = TableError(ratios, f"nested {min(len(ms), FOLDS)}-fold cross-validation on "
                               f"{len(ms)} timed nets")
    return Selection(best, fitted, choice, error, best.predict(fitted, everything))


def select_calibration(table: LatencyTable, space: Space, specs: Sequence[ArchSpec],
                       ms: np.ndarray, seed: int = 0) -> Selection:
    """The calibration of ``table`` for ``space`` on nets measured here (``tables adapt``, a
    profile's ``--calibrate``): :func:`select` among the table's own calibration models."""
    return select(candidates_of([table_prior(table, space)], specs, space), ms, seed)


@dataclass(frozen=True)
class FitResult:
    """A fitted table and how it was chosen."""

    table: LatencyTable
    chosen: str  # "prior/model"
    scores: dict[str, float]  # cross-validated MAPE of every candidate (%; inf: not fittable)
    error: TableError  # nested cross-validated ratios measured / predicted
    seconds: float


def fit_table(timings: Timings, space: Space, priors: Sequence[Prior], device: str,
              name: str = "", runtime: str = "unknown", seed: int = 0) -> FitResult:
    """The table of ``device`` for ``space`` fitted on ``timings`` from the best of ``priors``
    (module docstring)."""
    start = time.perf_counter()
    check_count(len(timings), timings.source)
    if not priors:
        raise HwnasError("a fit needs at least one prior (a table, or the roofline)")
    selection = select(candidates_of(priors, timings.specs, space), timings.ms, seed)
    best = selection.candidate
    if isinstance(best, BasisCandidate):
        weights, offset = selection.fitted
        values = np.maximum(best.prior.models[best.model] @ weights, MIN_ENTRY_MS)
        rows = [_row(key, value) for key, value in zip(best.prior.keys, values, strict=True)]
        calibration: dict[str, Any] = {"scale": 1.0, "offset_ms": round(offset, 6),
                                       "weights": dict(zip(
                                           best.prior.basis_names[best.model],
                                           map(float, weights), strict=True))}
    else:
        assert best.prior.table is not None
        lookup = best.prior.table.lookup()
        rows = [_row(key, lookup[key]) for key in required_keys(space)]
        calibration = selection.fitted.record()
    seconds = time.perf_counter() - start
    calibration.update(_error_record(selection, timings))
    table = make_table(rows, _metadata(timings, space, selection, calibration, device, runtime,
                                       seconds), name)
    return FitResult(table, best.label, selection.choice.scores, selection.error,
                     time.perf_counter() - start)


def _row(key: tuple, ms: float) -> dict[str, Any]:
    return {**dict(zip(KEY_COLUMNS, key, strict=True)), "mean_ms": float(ms),
            "median_ms": float(ms), "std_ms": 0.0, "samples": 1}


def _error_record(selection: Selection, timings: Timings) -> dict[str, Any]:
    best = selection.candidate
    return {"model": best.model, "prior": best.prior.name, "applied": best.model != "none",
            "fitted_on_n": len(timings), "mape_after": round(selection.error.mape, 3),
            "fit_mape_in_sample": mape(selection.in_sample, timings.ms),
            "cv_ratios": [round(float(r), 5) for r in selection.error.ratios],
            "cv_what": selection.error.what,
            "measured_ms_range": [round(float(timings.ms.min()), 4),
                                  round(float(timings.ms.max()), 4)]}


def _metadata(timings: Timings, space: Space, selection: Selection,
              calibration: dict[str, Any], device: str, runtime: str,
              seconds: float) -> dict[str, Any]:
    best = selection.candidate
    source = Path(timings.source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None
    fit = {"timings": str(source), "timings_sha256": digest, "n": len(timings),
           "prior": best.prior.name, "prior_kind": best.prior.kind, "model": best.model,
           "candidates_cv_mape": {k: round(v, 3) for k, v in selection.choice.scores.items()
                                  if math.isfinite(v)},
           "seconds": round(seconds, 3)}
    return new_metadata(
        device, "fitted", runtime=runtime, runtime_version="unknown", mode="whole-net timings",
        threads=0, spaces=[space.name], calibration={space.name: calibration}, fit=fit,
        notes=(f"fitted by `hwnas tables fit` on {len(timings)} whole-net timings "
               f"({source.name}) from the prior {best.label} ({best.prior.kind})"))


def load_priors(space: Space, names: Sequence[str] | None, roofline: bool = True
                ) -> list[Prior]:
    """The priors of a fit: the tables ``names`` (None: every table hwnas knows that covers
    ``space``), then the roofline unless ``roofline`` is False."""
    from ..store import known_tables, load_table

    priors = []
    for name in (known_tables() if names is None else names):
        table = load_table(name)
        if names is None:
            try:
                check_coverage(space, table)
            except HwnasError:
                continue
        priors.append(table_prior(table, space))
    if roofline:
        priors.append(roofline_prior(space))
    if not priors:
        raise HwnasError(f"no prior for {space.name!r}: no table covers it and --no-roofline "
                         "was given")
    return priors
