"""The fit: whole-net timings refit a prior into a table of the timed device.

For every prior and every model of it (:mod:`.priors`), a net's features are the sums of its
ops' basis values, and ::

    measured ≈ Σ_j w_j · feature_j + offset_ms,   w_j ≥ 0

is fitted by non-negative least squares on the relative error (weights 1/measured: small and
large nets count alike, as in MAPE). Non-negative weights keep every op's latency ≥ 0, so a
fitted table is a table like any other: the entry of an op is ``Σ_j w_j · basis_j[op]``, the
offset is its calibration offset, and whole-net latency stays a plain sum.

Which prior and which model: the one with the lowest cross-validated MAPE on the timings
(:data:`FOLDS`-fold, leave-one-out for fewer nets; the simpler one on a tie, the order of the
priors given, then of their models). That choice looks at the same nets, so the error the
table states is measured one level out (**nested** cross-validation): each net is predicted by a
fit whose prior and model were chosen without it. Those out-of-sample ratios
measured/predicted are the table's error distribution (:mod:`.error`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from hwnas_common.errors import HwnasError
from search_spaces import Space

from ..metadata import new_metadata
from ..table import LatencyTable, make_table
from .error import TableError
from .priors import Prior
from .timings import Timings, check_count

FOLDS = 10  # cross-validation folds (leave-one-out below this many nets)
TIE_MAPE = 0.1  # percentage points within which the simpler candidate wins
MIN_ENTRY_MS = 1e-6  # a table entry must be > 0; an op whose bases all got weight 0 gets this


@dataclass(frozen=True)
class Candidate:
    """One prior's model: its (nets × bases) features and where they come from."""

    prior: Prior
    model: str
    features: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.prior.name}/{self.model}"


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


def cv_predictions(features: np.ndarray, ms: np.ndarray, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of one candidate."""
    out = np.empty(len(ms))
    for held in _folds(len(ms), seed):
        train = np.setdiff1d(np.arange(len(ms)), held)
        w, offset = solve(features[train], ms[train])
        out[held] = features[held] @ w + offset
    return out


def mape(predicted: np.ndarray, ms: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - ms) / ms) * 100)


def fits_on(candidate: Candidate, n: int) -> bool:
    """Whether a candidate's bases and offset leave at least one degree of freedom on the
    smallest training fold of ``n`` nets (a model as wide as its data extrapolates wildly: on
    5 timed nets, per-class models predicted held-out nets thousands of percent off)."""
    train = n - -(-n // min(n, FOLDS))
    return candidate.features.shape[1] + 1 < train


def choose(candidates: Sequence[Candidate], index: np.ndarray, ms: np.ndarray,
           seed: int = 0) -> tuple[int, dict[str, float]]:
    """The candidate with the lowest cross-validated MAPE on the nets ``index`` (the first
    within :data:`TIE_MAPE`) among those that :func:`fits_on` them, and every candidate's
    score (infinite for the others)."""
    scores = {c.label: (mape(cv_predictions(c.features[index], ms[index], seed), ms[index])
                        if fits_on(c, len(index)) else math.inf) for c in candidates}
    best = min(scores.values())
    if not math.isfinite(best):
        raise HwnasError(f"{len(index)} timed nets are too few for every prior's models (the "
                         "narrowest needs 3 nets plus one per basis); time more nets")
    chosen = next(i for i, c in enumerate(candidates) if scores[c.label] <= best + TIE_MAPE)
    return chosen, scores


def nested_predictions(candidates: Sequence[Candidate], ms: np.ndarray,
                       seed: int = 0) -> np.ndarray:
    """Each net predicted by the candidate chosen, and fitted, without it."""
    out = np.empty(len(ms))
    for held in _folds(len(ms), seed):
        train = np.setdiff1d(np.arange(len(ms)), held)
        chosen, _ = choose(candidates, train, ms, seed)
        w, offset = solve(candidates[chosen].features[train], ms[train])
        out[held] = candidates[chosen].features[held] @ w + offset
    return out


@dataclass(frozen=True)
class FitResult:
    """A fitted table and how it was chosen."""

    table: LatencyTable
    chosen: str  # "prior/model"
    scores: dict[str, float]  # cross-validated MAPE of every candidate (%)
    error: TableError  # nested cross-validated ratios measured / predicted
    seconds: float


def candidates_of(priors: Sequence[Prior], timings: Timings, space: Space) -> list[Candidate]:
    out = []
    for prior in priors:
        counts = prior.incidence(list(timings.specs), space)
        out += [Candidate(prior, model, counts @ basis) for model, basis in prior.models.items()]
    return out


def fit_table(timings: Timings, space: Space, priors: Sequence[Prior], device: str,
              name: str = "", runtime: str = "unknown", seed: int = 0) -> FitResult:
    """The table of ``device`` for ``space`` fitted on ``timings`` from the best of ``priors``
    (module docstring)."""
    start = time.perf_counter()
    check_count(len(timings), timings.source)
    if not priors:
        raise HwnasError("a fit needs at least one prior (a table, or the roofline)")
    candidates = candidates_of(priors, timings, space)
    ms = timings.ms
    chosen, scores = choose(candidates, np.arange(len(ms)), ms, seed)
    best = candidates[chosen]
    weights, offset = solve(best.features, ms)
    # a held-out net predicted at <= 0 ms is a miss without bound: its ratio is huge
    ratios = ms / np.maximum(nested_predictions(candidates, ms, seed), MIN_ENTRY_MS)
    error = TableError(ratios, f"nested {min(len(ms), FOLDS)}-fold cross-validation on "
                               f"{len(ms)} timed nets")
    in_sample = best.features @ weights + offset
    rows = np.maximum(best.prior.models[best.model] @ weights, MIN_ENTRY_MS)
    table = make_table(
        [_row(key, value) for key, value in zip(best.prior.keys, rows, strict=True)],
        _metadata(timings, space, best, weights, offset, scores, error, in_sample, device,
                  runtime, time.perf_counter() - start), name)
    return FitResult(table, best.label, scores, error, time.perf_counter() - start)


def _row(key: tuple, ms: float) -> dict[str, Any]:
    op, c_in, c_out, height, width, stride, branches = key
    return {"op": op, "c_in": c_in, "c_out": c_out, "height": height, "width": width,
            "stride": stride, "branches": branches, "mean_ms": float(ms),
            "median_ms": float(ms), "std_ms": 0.0, "samples": 1}


def _metadata(timings: Timings, space: Space, best: Candidate, weights: np.ndarray,
              offset: float, scores: dict[str, float], error: TableError,
              in_sample: np.ndarray, device: str, runtime: str,
              seconds: float) -> dict[str, Any]:
    source = Path(timings.source)
    digest = (hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None)
    calibration = {
        "model": f"fit:{best.label}", "scale": 1.0, "offset_ms": round(offset, 6),
        "applied": True, "fitted_on_n": len(timings),
        "mape_after": round(error.mape, 3), "fit_mape_in_sample": mape(in_sample, timings.ms),
        "cv_ratios": [round(float(r), 5) for r in error.ratios], "cv_what": error.what,
        "measured_ms_range": [round(float(timings.ms.min()), 4),
                              round(float(timings.ms.max()), 4)]}
    fit = {"timings": str(source), "timings_sha256": digest, "n": len(timings),
           "prior": best.prior.name, "prior_kind": best.prior.kind, "model": best.model,
           "weights": {name: float(w) for name, w in
                       zip(best.prior.basis_names[best.model], weights, strict=True)},
           "candidates_cv_mape": {k: round(v, 3) for k, v in scores.items() if math.isfinite(v)},
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
    from ..predictor import check_coverage
    from ..store import known_tables, load_table
    from .priors import roofline_prior, table_prior

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
