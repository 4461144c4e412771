"""Whole-network measurement: an architecture built and timed end to end with a table's own
backend, and how far predictions are from such measurements.

Each network is measured in short round-robin passes with the backend's reference kernel timed
around it and keeps its fastest pass; the reference's median over the measurement gives the
machine's speed, to which a table's measurements are normalised (:func:`measure_archs`).
Calibration (:mod:`latency_predictors.measure.calibrate`), adaptation and validation measure
through it; :func:`errors` is their figure of merit (MAPE and the share within ±10 %).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from hwnas_common.errors import HwnasError
from search_spaces import ArchSpec, Space, build

from ..metadata import precision_of
from ..table import LatencyTable
from .backends import Backend, make_backend, summarize, with_reference

WHOLE_NETWORK_REPEATS = 30  # timed runs per pass; a cifar network takes 1-15 ms on one core
WHOLE_NETWORK_PASSES = 6  # round-robin passes; each network keeps its fastest


def backend_for(table: LatencyTable, repeats: int | None = None) -> Backend:
    """A backend with the settings the table was measured with, in its precision (an int8
    table's nets are quantized as it times them); estimated tables: an error."""
    meta = table.metadata
    if table.estimated or "backend" not in meta:
        raise HwnasError(f"table {table.name or table.device!r} is {table.provenance} (no "
                         "profiling backend recorded), so it cannot be measured against here; "
                         "use a measured table, e.g. one from `hwnas profile`")
    return make_backend(meta["backend"], meta.get("ep"), meta["threads"],
                        min(meta["warmup"], 10), repeats or WHOLE_NETWORK_REPEATS,
                        precision_of(meta))


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


@dataclass(frozen=True)
class Measurements:
    """End-to-end latencies (ms) of some architectures, one entry each.

    ``raw_ms`` is each network's fastest pass: what this machine does now without the load
    of its neighbours. ``ms`` is the same normalised to the reference speed ``reference_ms``
    (the table's, or this measurement's own), scaled by ``reference_ms / reference_now_ms``.
    """

    ms: list[float]
    raw_ms: list[float]
    reference_ms: float
    reference_now_ms: float  # median reference time during this measurement
    reference_times_ms: list[float] = field(default_factory=list)  # every reference timing


def measure_archs(specs: Sequence[ArchSpec], backend: Backend, desc: str = "measure",
                  progress: bool = True, passes: int = WHOLE_NETWORK_PASSES,
                  reference_ms: float | None = None) -> Measurements:
    """Every architecture measured end to end (``median_ms``), normalised to ``reference_ms``
    (default: the median reference time of this measurement), see :class:`Measurements`.

    Each architecture is measured in ``passes`` short passes over the whole list (round robin,
    as the profiler does), with the backend's reference kernel timed before and after it, and
    keeps its fastest pass: a neighbour's load only ever adds time, and on a shared 2-vCPU
    Zen 3 guest the fastest of 6 passes of 30 runs reproduced a second measurement of the same
    12 networks at 3.3 % MAPE (max 8.3 %), where the median pass normalised pass by pass by the
    reference kernel, a 3 ms timing that itself varied 0.08-0.21 ms, reproduced at 8.9 %
    (max 29 %). The reference's median over the measurement still gives the machine's speed.
    Each network is built and prepared (ONNX export, session) once, in the first pass: that
    took 0.1-0.8 s a net there, longer than timing it; torch runs on one thread meanwhile.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # exporting small nets: an adaptation took 22 s, not 25 s on two
    try:
        return _measure_archs(specs, backend, desc, progress, passes, reference_ms)
    finally:
        torch.set_num_threads(previous_threads)


def _measure_archs(specs: Sequence[ArchSpec], backend: Backend, desc: str, progress: bool,
                   passes: int, reference_ms: float | None) -> Measurements:
    runs: list[list[tuple[float, float]]] = [[] for _ in specs]
    prepared: dict[int, Callable[[], object]] = {}
    bar = tqdm(total=passes * len(specs), desc=f"{desc} ({len(specs)} nets × {passes} passes)",
               unit="run", file=sys.stderr, disable=not progress)
    for _ in range(passes):
        for i, spec in enumerate(specs):
            if i not in prepared:
                prepared[i] = backend.prepare(build(spec).eval(), tuple(spec.input))
            stats, reference = with_reference(
                backend, lambda run=prepared[i]: summarize(backend.time_run(run)))
            runs[i].append((float(stats["median_ms"]), reference))
            bar.update()
    bar.close()
    references = [ref for r in runs for _, ref in r]
    now = float(np.median(references))
    base = reference_ms or now
    fastest = [min(value for value, _ in r) for r in runs]
    return Measurements([value * base / now for value in fastest], fastest, base, now,
                        references)


def table_reference_ms(table: LatencyTable) -> float | None:
    """The reference speed a measured table was profiled at (None for older tables)."""
    reference = table.metadata.get("reference")
    return float(reference["ms"]) if reference else None


def errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%) and the share (%) of predictions within ±10 % of the measurement."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    return {"mape": round(float(rel.mean() * 100), 3),
            "within_10pct": round(float((rel <= 0.10).mean() * 100), 2),
            "max_error": round(float(rel.max() * 100), 3)}
