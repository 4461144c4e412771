"""Whole-network measurement and the affine calibration of a table (DESIGN §4).

The sum of per-op latencies misses what only a whole network shows: one session call instead of
one per op, cache reuse between neighbouring ops, fusions across op boundaries. A calibration
measures random architectures end to end with the table's own backend and fits, by least
squares, ``measured ≈ scale · table_sum + offset_ms``. Affine keeps whole-network latency a
plain sum over layers (the predictor multiplies every entry by ``scale`` and adds ``offset_ms``
to the fixed parts), so the expected latency and the knapsack stay exact.

The fit and its validation use different random architectures (different seeds): the reported
``mape_after`` / ``within_10pct_after`` are out-of-sample; ``fit_mape`` is in-sample and is
labelled so. A fit that does not lower the validation MAPE is recorded (``fitted``) but not
applied (``applied: false``, scale 1, offset 0); since that choice looks at the validation set,
the accuracy to quote comes from ``validate_table`` on a third seed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from search_spaces import ArchSpec, Space, build, get_space
from search_spaces.errors import HwnasError

from .backends import Backend, make_backend, summarize
from .predictor import latency_matrix
from .table import LatencyTable

WHOLE_NETWORK_REPEATS = 100  # a cifar network takes 3-15 ms on one x86 core


def backend_for(table: LatencyTable, repeats: int | None = None) -> Backend:
    """A backend with the settings the table was measured with (estimated tables: an error)."""
    meta = table.metadata
    if table.estimated or "backend" not in meta:
        raise HwnasError(f"table {table.name or table.device!r} is {table.provenance} (no "
                         "profiling backend recorded), so it cannot be measured against here; "
                         "use a measured table, e.g. one from `hwnas profile`")
    return make_backend(meta["backend"], meta.get("ep"), meta["threads"],
                        min(meta["warmup"], 10), repeats or WHOLE_NETWORK_REPEATS)


def measure_latency(spec: ArchSpec, backend: Backend) -> dict[str, float | int]:
    """End-to-end batch-1 latency statistics (ms) of ``build(spec)`` in eval mode."""
    model = build(spec).eval()
    return summarize(backend.time(model, tuple(spec.input)))


def spread_sample(space: Space, generator: torch.Generator) -> ArchSpec:
    """A random architecture whose skip share is itself random in [0, 0.8].

    Uniform sampling rarely picks skip (1 of 31 candidates in ``cifar``), so all its networks
    have nearly the same depth; the calibration fit wants a spread of network sizes.
    """
    skip = space.candidates.index(next(c for c in space.candidates if c.op == "skip"))
    others = [i for i in range(len(space.candidates)) if i != skip]
    p_skip = 0.8 * float(torch.rand((), generator=generator))
    choices = []
    for _ in range(space.num_layers):
        if float(torch.rand((), generator=generator)) < p_skip:
            choices.append(skip)
        else:
            choices.append(others[int(torch.randint(len(others), (), generator=generator))])
    return space.spec_from_indices(choices)


def measure_archs(specs: Sequence[ArchSpec], backend: Backend, desc: str = "measure",
                  progress: bool = True, passes: int = 2) -> list[float]:
    """``median_ms`` of every architecture, measured end to end.

    Each architecture is measured in ``passes`` passes over the whole list and keeps its
    smallest value: the passes are a minute apart, so a burst of load on a shared machine
    rarely hits the same architecture twice.
    """
    sessions = [_Measured(spec, backend) for spec in specs]
    best = [np.inf] * len(specs)
    bar = tqdm(total=passes * len(specs), desc=desc, unit="arch", file=sys.stderr,
               disable=not progress)
    for _ in range(passes):
        for i, measured in enumerate(sessions):
            best[i] = min(best[i], measured())
            bar.update()
    bar.close()
    return [float(b) for b in best]


class _Measured:
    """One architecture's network, built once and timed on demand."""

    def __init__(self, spec: ArchSpec, backend: Backend) -> None:
        self.spec, self.backend = spec, backend

    def __call__(self) -> float:
        return float(measure_latency(self.spec, self.backend)["median_ms"])


@dataclass(frozen=True)
class Fit:
    scale: float
    offset_ms: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.scale * x + self.offset_ms


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


def errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%) and the share (%) of predictions within ±10 % of the measurement."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    return {"mape": round(float(rel.mean() * 100), 3),
            "within_10pct": round(float((rel <= 0.10).mean() * 100), 2),
            "max_error": round(float(rel.max() * 100), 3)}


def calibrate(table: LatencyTable, space: Space | str, n: int = 20, n_validate: int | None = None,
              seed: int = 0, backend: Backend | None = None,
              progress: bool = True) -> LatencyTable:
    """Fit the affine calibration of ``table`` for ``space``; returns the calibrated table.

    Fits on ``n`` architectures drawn with ``seed`` and validates on ``n_validate`` (default
    ``n``) drawn with ``seed + 1``, both with :func:`spread_sample`: the accept decision must
    see small, skip-heavy networks like the ones a search returns, which uniform sampling
    almost never draws (it used to validate on those, and rejected fits that corrected them).
    """
    space = get_space(space) if isinstance(space, str) else space
    if n < 2:
        raise HwnasError(f"calibration needs n >= 2 architectures, got {n}")
    backend = backend or backend_for(table)
    uncalibrated = _without_calibration(table, space.name)
    matrix = latency_matrix(space, uncalibrated)
    fit_gen = torch.Generator().manual_seed(seed)
    val_gen = torch.Generator().manual_seed(seed + 1)
    fit_specs = [spread_sample(space, fit_gen) for _ in range(n)]
    val_specs = [spread_sample(space, val_gen) for _ in range(n_validate or n)]

    def sums(specs: list[ArchSpec]) -> np.ndarray:
        return np.array([matrix.total([space.candidate_index(x) for x in s.layers])
                         for s in specs])

    fit_x, val_x = sums(fit_specs), sums(val_specs)
    fit_y = measure_archs(fit_specs, backend, f"calibrate {space.name} (fit)", progress)
    val_y = measure_archs(val_specs, backend, f"calibrate {space.name} (validate)", progress)
    fitted = fit_affine(fit_x, fit_y)
    before, after = errors(val_x, val_y), errors(fitted(val_x), val_y)
    # model selection on the validation set: a fit that does not improve it is not applied
    # (the final accuracy is then measured on a third set: validate_table's seed)
    fit = fitted if after["mape"] < before["mape"] else Fit(1.0, 0.0)
    after = errors(fit(val_x), val_y)
    entry: dict[str, Any] = {
        "scale": round(fit.scale, 6), "offset_ms": round(fit.offset_ms, 6),
        "applied": fit is fitted,
        "fitted": {"scale": round(fitted.scale, 6), "offset_ms": round(fitted.offset_ms, 6)},
        "fitted_on_n": n, "fit_seed": seed, "fit_sampler": "spread_sample",
        "fit_mape_in_sample": errors(fitted(fit_x), fit_y)["mape"],
        "validated_on_n": len(val_specs), "validation_seed": seed + 1,
        "validation_sampler": "spread_sample",
        "mape_before": before["mape"], "mape_after": after["mape"],
        "within_10pct_before": before["within_10pct"],
        "within_10pct_after": after["within_10pct"], "max_error_after": after["max_error"],
        "measured_ms_range": [round(min(val_y), 4), round(max(val_y), 4)],
        "fit_points": [[round(float(a), 4), round(float(b), 4)] for a, b in zip(
            fit_x, fit_y, strict=True)],  # (table sum, measured) ms, for re-fits
        "backend": backend.mode, "repeats": backend.repeats}
    calibrated = _without_calibration(table, space.name)
    calibrated.metadata.setdefault("calibration", {})[space.name] = entry
    return calibrated


def _without_calibration(table: LatencyTable, space: str) -> LatencyTable:
    metadata = {**table.metadata}
    calib = {k: v for k, v in (metadata.get("calibration") or {}).items() if k != space}
    metadata.pop("calibration", None)
    if calib:
        metadata["calibration"] = calib
    return LatencyTable(table.frame, metadata, table.name)
