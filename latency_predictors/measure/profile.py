"""Profile a device's latency table: every distinct op of a space, built and timed alone.

For each distinct ``(candidate, input shape)`` of the space and each fixed part
(:func:`latency_predictors.keys.space_ops`), the module is built alone (eval mode), handed to a
timing backend (:mod:`latency_predictors.measure.backends`; onnxruntime exports it alone to
ONNX) and timed after warm-up over ``repeats`` runs; the row keeps mean, median, std and the
sample count. With ``method="chain"`` a candidate is timed as chains of 2 and 4 copies and its
row is the difference per copy (see :func:`measure_op`). The default is ``alone``: on 50
held-out `cifar` networks measured in one run it predicted better (MAPE 6.88 % vs 8.73 % for
chain with 2 passes) and profiles ~3.5× faster.

Drift-robust timing (a shared VM's speed drifts with frequency and its neighbours' load):

- Passes are interleaved: the ops are timed round robin, ``passes`` (default 3) passes over the
  whole list, so a slow period hits many ops once rather than one op in every pass.
- The backend's fixed reference kernel
  (:func:`latency_predictors.measure.backends.reference_module`) is timed before and after every
  op. Each pass's op latency is normalised to the profile's reference speed, ``t · ref_base /
  ref_now``, where ``ref_base`` is the median reference time of the whole profile (or of the
  table the rows are added to), so machine-wide drift cancels.
- An op's row is its (lower) median pass after normalisation: a burst that hits the op but not
  the reference in one pass of three is dropped.

``ref_base`` is stored in the metadata (``reference``), and whole-network measurements against
the table (calibration, ``validate``, ``tables adapt``) are normalised to it the same way
(:func:`latency_predictors.measure.networks.measure_archs`).

Resumable: every measurement (its statistics and its reference time) is recorded (atomically)
in ``NAME.partial.json`` next to the output; a rerun with the same settings after a kill
measures only the missing ones. Profiling a new space into an existing table adds its missing
rows and keeps the others (settings must match).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm import tqdm

from hwnas_common.errors import HwnasError
from hwnas_common.fileio import atomic_write_text
from search_spaces import Space, get_space

from ..keys import OpFactory, key_label, space_ops
from ..metadata import new_metadata
from ..store import check_table_name, load_table, save_table, table_dirs, table_paths
from ..table import KEY_COLUMNS, LatencyTable, OpKey, make_table
from .backends import (
    Backend,
    make_backend,
    median_pass,
    reference_summary,
    summarize,
    with_reference,
)
from .calibrate import calibrate, check_calibration_size, describe_calibration
from .host import host_fingerprint

PROFILE_REPEATS = 100  # timed runs per op and pass
PROFILE_PASSES = 3  # passes over the ops; each op keeps its median normalised pass
_SETTINGS = ("device", "runtime", "mode", "dtype", "threads", "warmup", "repeats", "clock",
             "method", "passes")
def default_out(name: str) -> Path:
    """Where ``hwnas profile --name NAME`` writes when no ``--out`` is given."""
    return table_dirs()[0] / f"{check_table_name(name)}.csv"


def partial_path(out: str | os.PathLike) -> Path:
    """The resume file of a profile writing ``out``: every measurement so far."""
    base = table_paths(out)[0].with_suffix("")
    return base.with_name(base.name + ".partial.json")


def _check_settings(found: dict[str, Any], wanted: dict[str, Any], where: Path) -> None:
    diff = {k: (found.get(k), wanted[k]) for k in _SETTINGS if found.get(k) != wanted[k]}
    if diff:
        shown = ", ".join(f"{k}: has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise HwnasError(f"{where} was profiled with other settings ({shown}); use the same "
                         "settings, another --out, or delete it")


def _load_rows(out: Path, settings: dict[str, Any]) -> tuple[list[dict], dict[str, Any],
                                                             dict[str, Any]]:
    """Rows of the complete table at ``out``, its metadata, and the partial file's state
    (settings, seconds, the measurements of every op so far)."""
    rows: list[dict] = []
    old_meta: dict[str, Any] = {}
    csv_path, json_path = table_paths(out)
    if csv_path.exists() or json_path.exists():  # loading finishes a save a kill interrupted
        old = load_table(csv_path)
        _check_settings(old.metadata, settings, csv_path)
        rows, old_meta = old.frame.to_dict("records"), old.metadata
    partial = partial_path(out)
    if not partial.exists():
        return rows, old_meta, {}
    try:
        state = json.loads(partial.read_text())
        if not isinstance(state.get("measured"), dict):
            raise ValueError("no measurements")
    except (ValueError, AttributeError) as err:
        raise HwnasError(f"{partial}: unreadable partial profile ({type(err).__name__}); "
                         "delete it to start over") from None
    _check_settings(state, settings, partial)
    return rows, old_meta, state


METHODS = ("chain", "alone")
CHAIN = (2, 4)  # chain lengths whose difference gives a candidate's in-network latency
_FLOOR_MS = 1e-4


def measure_op(key: OpKey, factory: Callable[[], nn.Module], shape: tuple[int, ...],
               timer: Backend, method: str = "chain") -> dict[str, Any]:
    """One table row: the op's latency statistics (ms).

    ``alone``: the op is timed by itself. ``chain`` (candidates only; fixed parts change the
    shape and are always timed alone): chains of 2 and 4 copies (distinct weights) are timed
    and the row is ``(T4 - T2) / 2``: the per-call overhead cancels and each copy reads its
    input from, and leaves its caches to, a neighbouring op, as inside a network. Measured on
    the x86 host, ``alone`` over-predicts cheap ops (sum) and under-predicts the r-branch ops
    (poly2, rbf) by 5-20 %, which no affine calibration can undo.
    """
    if method not in METHODS:
        raise HwnasError(f"unknown profiling method {method!r}; valid: {list(METHODS)}")
    head = dict(zip(KEY_COLUMNS, key, strict=True))
    if method == "alone" or not _chainable(key):
        return {**head, **summarize(timer.time(factory(), shape))}
    short, long = (summarize(timer.time(nn.Sequential(*[factory() for _ in range(n)]), shape))
                   for n in CHAIN)
    span = CHAIN[1] - CHAIN[0]
    return {**head,
            "mean_ms": max(_FLOOR_MS, (long["mean_ms"] - short["mean_ms"]) / span),
            "median_ms": max(_FLOOR_MS, (long["median_ms"] - short["median_ms"]) / span),
            "std_ms": (long["std_ms"] ** 2 + short["std_ms"] ** 2) ** 0.5 / span,
            "samples": int(short["samples"])}


def _chainable(key: OpKey) -> bool:
    op, c_in, c_out, _, _, stride, _ = key
    return ":" not in op and op not in ("downsample", "head") and c_in == c_out and stride == 1


_RECORD = ("median_ms", "mean_ms", "std_ms", "samples", "reference_ms")  # one measurement


def _measure(todo: list[tuple[OpKey, OpFactory]], timer: Backend, out: Path,
             state: dict[str, Any], desc: str, progress: bool) -> float:
    """Time every op of ``todo`` ``state['passes']`` times, round robin (one pass over the list
    after the other), with the reference kernel timed before and after each op; every
    measurement is recorded in ``state['measured'][label]`` and checkpointed. Returns seconds.
    """
    seconds, start = float(state["seconds"]), time.perf_counter()
    measured: dict[str, list[list[float]]] = state["measured"]
    work = [(p, k, f) for p in range(state["passes"]) for k, f in todo
            if len(measured.get(key_label(k), [])) <= p]
    for _, key, (factory, shape) in tqdm(work, desc=desc, unit="op", file=sys.stderr,
                                         disable=not progress):
        try:
            row, reference = with_reference(
                timer, lambda k=key, f=factory, sh=shape: measure_op(k, f, sh, timer,
                                                                     state["method"]))
        except HwnasError:
            raise
        except Exception as err:  # a runtime failure on one op: name the op
            first = str(err).splitlines()[0] if str(err) else ""
            raise HwnasError(f"profiling {key_label(key)} with {timer.mode} failed: "
                             f"{type(err).__name__}: {first}") from err
        row["reference_ms"] = reference
        measured.setdefault(key_label(key), []).append([row[c] for c in _RECORD])
        state["seconds"] = seconds + time.perf_counter() - start
        atomic_write_text(partial_path(out), json.dumps(state))
    return seconds + time.perf_counter() - start


def normalised_row(key: OpKey, records: list[list[float]], reference_ms: float) -> dict[str, Any]:
    """The table row of ``key`` from its measurements: each pass scaled by ``reference_ms /
    its reference time``, and the (lower) median pass kept."""
    ref = _RECORD.index("reference_ms")
    chosen = dict(zip(_RECORD, records[median_pass([(r[0], r[ref]) for r in records])],
                      strict=True))
    factor = reference_ms / chosen["reference_ms"]
    return {**dict(zip(KEY_COLUMNS, key, strict=True)),
            **{c: chosen[c] * factor for c in ("mean_ms", "median_ms", "std_ms")},
            "samples": int(chosen["samples"])}


def profile_table(space: Space | str, backend: str | Backend = "onnxruntime",
                  ep: str | None = None, name: str | None = None,
                  out: str | os.PathLike | None = None, repeats: int = PROFILE_REPEATS,
                  warmup: int = 10, threads: int = 1, progress: bool = True,
                  method: str = "alone", passes: int = PROFILE_PASSES,
                  precision: str = "fp32") -> LatencyTable:
    """Measure every op of ``space`` missing from the table at ``out``; save and return it.

    ``backend`` is a name of :data:`latency_predictors.measure.backends.BACKENDS` (with ``ep``,
    ``threads``, ``warmup``, ``repeats`` and ``precision``: ``int8`` times each op as
    :mod:`latency_predictors.measure.quantize` quantizes it) or a ready :class:`Backend`.
    ``method``: see :func:`measure_op`; ``passes``: each op is measured once per pass over the
    list and keeps its fastest pass. ``out`` defaults to ``$HWNAS_TABLES/NAME.csv``
    (``~/.hwnas/tables``).
    """
    space = get_space(space) if isinstance(space, str) else space
    timer = backend if isinstance(backend, Backend) else make_backend(
        backend, ep, threads, warmup, repeats, precision)
    suffix = "" if timer.precision == "fp32" else f"-{timer.precision}"
    name = check_table_name(name or f"{timer.name}-{timer.ep}{suffix}")
    out = table_paths(out or default_out(name))[0]
    if method not in METHODS or passes < 1:
        raise HwnasError(f"need method in {list(METHODS)} and passes >= 1, got {method=}, "
                         f"{passes=}")
    settings = {"device": name, **timer.metadata(), "method": method, "passes": passes}
    rows, old_meta, state = _load_rows(out, settings)
    complete = {tuple(r[c] for c in KEY_COLUMNS) for r in rows}
    todo = [(k, v) for k, v in space_ops(space).items() if k not in complete]
    state = {**settings, "seconds": 0.0, "measured": {}, **state}
    elapsed = _measure(todo, timer, out, state, f"profile {space.name} on {name}", progress)
    records = {k: state["measured"][key_label(k)] for k, _ in todo}
    reference = old_meta.get("reference") or reference_summary(
        [r[_RECORD.index("reference_ms")] for rs in records.values() for r in rs])
    new_rows = [normalised_row(k, r, reference["ms"]) for k, r in records.items()]
    meta = _metadata(old_meta, settings, space.name, elapsed, bool(new_rows))
    if new_rows:
        meta["reference"] = reference
        if passes > 1:
            meta.setdefault("pass_spread", {})[space.name] = pass_spread(records)
    table = make_table(rows + new_rows, meta, out.stem)
    save_table(table, out)
    partial_path(out).unlink(missing_ok=True)
    return table


def pass_spread(records: dict[OpKey, list[list[float]]]) -> dict[str, Any]:
    """How far each op's slowest normalised pass was above its fastest (%): a table whose
    passes disagree even after normalisation was profiled on a busy machine."""
    ratio = _RECORD.index("reference_ms")
    spread = {}
    for key, rs in records.items():
        values = [r[0] / r[ratio] for r in rs]
        spread[key_label(key)] = 100 * (max(values) / min(values) - 1)
    worst = max(spread, key=spread.__getitem__)
    return {"median_pct": round(float(np.median(list(spread.values()))), 3),
            "max_pct": round(spread[worst], 3), "max_op": worst,
            "ops_over_10pct": sum(v > 10 for v in spread.values()), "ops": len(spread)}


def describe_pass_spread(spread: dict[str, Any]) -> str:
    """``passes agree within 0.8 % (median), at worst 4.2 % (op); 0 of 29 ops differ by > 10 %``"""
    return (f"passes agree within {spread['median_pct']:.1f} % (median), at worst "
            f"{spread['max_pct']:.1f} % ({spread['max_op']}); {spread['ops_over_10pct']} of "
            f"{spread['ops']} ops differ by > 10 %")


def _metadata(old: dict[str, Any], settings: dict[str, Any], space: str, seconds: float,
              measured: bool) -> dict[str, Any]:
    meta = new_metadata(**{**settings, "provenance": "measured"})
    for key in ("calibration", "profile_seconds", "pass_spread", "notes", "reference"):
        if key in old:
            meta[key] = old[key]
    meta["spaces"] = sorted(set(old.get("spaces", [])) | {space})
    if measured:
        meta.setdefault("profile_seconds", {})[space] = round(seconds, 2)
        meta["host_fingerprint"] = host_fingerprint()
    elif "host_fingerprint" in old:
        meta["host_fingerprint"] = old["host_fingerprint"]
    return meta


@dataclass(frozen=True)
class ProfileResult:
    """What ``hwnas profile`` did: the saved table, where, and per space the pass agreement and
    (with a calibration) the fitted model."""

    table: LatencyTable
    out: Path
    spaces: tuple[str, ...]

    def format(self) -> str:
        lines = []
        for space in self.spaces:
            spread = (self.table.metadata.get("pass_spread") or {}).get(space)
            if spread:
                busy = (": the machine was busy, consider profiling again on a quiet one"
                        if spread["ops_over_10pct"] else "")
                lines.append(f"profiled {space}: {describe_pass_spread(spread)}{busy}")
            calib = self.table.calibration(space)
            if calib:
                lines.append(f"calibrated {space}: {describe_calibration(calib)}; MAPE "
                             f"{calib['mape_before']:.2f} % -> {calib['mape_after']:.2f} %, "
                             f"within ±10 %: {calib['within_10pct_after']:.0f} % "
                             f"({calib['fitted_on_n']} archs, cross-validated)")
        return "\n".join([*lines, f"wrote {self.out}: {self.table.describe()}"])


def profile_device(spaces: Sequence[str], backend: str = "onnxruntime", ep: str | None = None,
                   name: str | None = None, out: str | os.PathLike | None = None,
                   repeats: int = PROFILE_REPEATS, warmup: int = 10, threads: int = 1,
                   method: str = "alone", passes: int = PROFILE_PASSES, calibrate_n: int = 0,
                   progress: bool = True, precision: str = "fp32") -> ProfileResult:
    """``hwnas profile``: profile every space of ``spaces`` into one table (see
    :func:`profile_table`) and, with ``calibrate_n``, fit each space's calibration on that many
    networks; the table is saved after each step, so a kill keeps what is done. ``precision``
    ``int8``: every op and network is timed quantized (the ``cpu-int8`` table)."""
    if calibrate_n:
        check_calibration_size(calibrate_n)  # before a profile that may take minutes
    suffix = "" if precision == "fp32" else f"-{precision}"
    out = table_paths(out or default_out(name or f"{backend}-{ep}{suffix}"))[0]
    table = None
    for space in spaces:
        table = profile_table(get_space(space), backend, ep, name, out, repeats, warmup,
                              threads, progress, method, passes, precision)
        if calibrate_n:
            table = calibrate(table, space, n=calibrate_n, progress=progress)
            save_table(table, out)
    if table is None:
        raise HwnasError("hwnas profile needs at least one space")
    return ProfileResult(table, out, tuple(spaces))
