"""Latency lookup tables: a pandas DataFrame of per-op latencies plus a metadata dict.

On disk a table ``NAME`` is two files side by side (DESIGN §4; never pickles):

- ``NAME.csv``: one row per op key ``(op, c_in, c_out, height, width, stride, branches)`` with
  the latency statistics of one batch-1 forward pass, in milliseconds::

      op,c_in,c_out,height,width,stride,branches,mean_ms,median_ms,std_ms,samples
      quad_k7_e4,64,64,16,16,1,0,0.412,0.405,0.021,200
      rbf_k3_e2,64,64,16,16,1,4,0.731,0.722,0.030,200
      stem:conv3x3,3,32,32,32,1,0,0.051,0.050,0.002,200

  ``op`` is a candidate token of a space (``quad_k7_e4``, ``mb_k3_e6``; never ``skip``, whose
  latency is 0 by definition) or a fixed-part kind (``stem:conv3x3``, ``stem:patch4``,
  ``downsample``, ``head``). ``branches`` is the r of the poly2/rbf interactions, whose cost
  depends on it, and 0 for every other op. The predictor uses ``median_ms``.
- ``NAME.json``: the metadata (see :data:`REQUIRED_METADATA`): device, provenance
  (``measured`` or ``estimated``), runtime and version, execution mode, threads, batch size,
  dtype, warm-up and repeat counts, host, date, tool version, spaces covered; optionally
  ``calibration`` (per space: ``{scale, offset_ms, fitted_on_n, mape_before, mape_after, ...}``)
  and, for estimated tables, ``analytical_error`` and ``anchoring`` (the fit on published
  latencies: anchors, parameters, leave-one-out MAPE; absent for an a-priori table).

Loading is strict: any malformed file raises :class:`HwnasError` in one line.

Saving is atomic for the pair: the new CSV is first written whole under a temporary name
(``.NAME.csv.hwnas-DIGEST.tmp``), then ``NAME.json``, which records the CSV's SHA-256
(``rows_sha256``), replaces the old one (the commit), then the CSV is renamed into place. A kill
before the commit leaves the old table; a kill after it leaves a pending CSV that the next load
renames into place (:func:`settle_table`). Tables without ``rows_sha256`` (the shipped ones,
hand-made ones) load as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas_common.errors import HwnasError
from hwnas_common.fileio import (
    TEMP_SUFFIX,
    atomic_write_text,
    fsync_path,
    temporary_name,
)

KEY_COLUMNS = ("op", "c_in", "c_out", "height", "width", "stride", "branches")
STAT_COLUMNS = ("mean_ms", "median_ms", "std_ms", "samples")
COLUMNS = KEY_COLUMNS + STAT_COLUMNS
PROVENANCES = ("measured", "estimated")
SHIPPED_DIR = Path(__file__).resolve().parent / "tables"
USER_DIR_ENV = "HWNAS_TABLES"

# field -> expected JSON type(s)
REQUIRED_METADATA: dict[str, type | tuple[type, ...]] = {
    "device": str, "provenance": str, "runtime": str, "runtime_version": str, "mode": str,
    "threads": int, "batch_size": int, "dtype": str, "warmup": int, "repeats": int,
    "host": str, "date": str, "tool_version": str, "spaces": list,
}
GROUPINGS = ("class", "kernel", "kernel-branch")  # how a per-group calibration groups
# candidates (keys.op_group)
OPTIONAL_METADATA: dict[str, type | tuple[type, ...]] = {
    "calibration": dict,  # space -> {scale, offset_ms, fitted_on_n, mape_before, ...}
    "analytical_error": dict,  # estimated tables: the model's error on a device we have
    "anchoring": dict,  # estimated tables: the fit on published latencies (anchors.py)
    "profile_seconds": dict,  # space -> wall seconds the profile took
    "pass_spread": dict,  # space -> how far ops' normalised passes disagree (%)
    "reference": dict,  # the reference kernel's time the rows are normalised to (profile.py)
    "model": dict,  # estimated tables: the analytical device parameters
    "backend": str, "ep": str,  # how to re-profile: hwnas profile --backend B --ep E
    "passes": int,  # profiling passes over the op list (each op keeps its median)
    "method": str,  # profiling method: "chain" (in-context difference) or "alone"
    "clock": str,  # "wall" or "thread-cpu" (1-thread CPU timing immune to other processes)
    "notes": str,
    "host_fingerprint": dict,  # the machine measured on (latency_predictors.measure.host)
    "adapted_from": dict,  # `hwnas tables adapt`: the source table and its host
    "rows_sha256": str,  # SHA-256 of NAME.csv as saved (the pair's commit record)
}

OpKey = tuple[str, int, int, int, int, int, int]


@dataclass
class LatencyTable:
    """Per-op latencies of one device (``frame``) and how they were obtained (``metadata``)."""

    frame: pd.DataFrame
    metadata: dict[str, Any]
    name: str = ""
    _lookup: dict[OpKey, float] | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> str:
        return str(self.metadata["device"])

    @property
    def provenance(self) -> str:
        return str(self.metadata["provenance"])

    @property
    def estimated(self) -> bool:
        return self.provenance == "estimated"

    def calibration(self, space: str) -> dict[str, Any] | None:
        """The affine calibration fitted for ``space``, or None."""
        return (self.metadata.get("calibration") or {}).get(space)

    def lookup(self) -> dict[OpKey, float]:
        """``{op key: median_ms}``."""
        if self._lookup is None:
            keys = self.frame[list(KEY_COLUMNS)].itertuples(index=False, name=None)
            self._lookup = {_key(k): float(v) for k, v in
                            zip(keys, self.frame["median_ms"], strict=True)}
        return self._lookup

    def describe(self) -> str:
        """One line: name, device, provenance (estimated tables: anchored or a-priori) and
        runtime."""
        tag = (f"ESTIMATED ({describe_anchoring(self.metadata.get('anchoring'))})"
               if self.estimated else "measured")
        threads = "" if self.estimated else f", {self.metadata['threads']} threads"
        return (f"{self.name or self.device}: device {self.device}, {tag}, "
                f"{self.metadata['runtime']} {self.metadata['runtime_version']} "
                f"({self.metadata['mode']}{threads}), "
                f"{len(self.frame)} rows, spaces {self.metadata['spaces']}")


def describe_anchoring(anchoring: dict[str, Any] | None) -> str:
    """The label an estimated table carries: anchored (N, LOO MAPE) or a-priori (its
    ``anchoring`` metadata, written by :mod:`latency_predictors.estimate.anchors`)."""
    if not anchoring:
        return "a-priori, unanchored"
    return (f"anchored on {anchoring['n_anchors']} {anchoring.get('what', 'published figures')}"
            f", leave-one-out MAPE {anchoring['loo_mape']:.1f} %")


def table_digest(table: LatencyTable) -> str:
    """SHA-256 of a table's rows and metadata: which table a run or an adaptation used."""
    digest = hashlib.sha256(table.frame.to_csv(index=False).encode())
    digest.update(json.dumps(table.metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


IDENTITY_FIELDS = ("device", "provenance", "runtime", "runtime_version", "mode", "threads",
                   "host", "host_fingerprint", "date", "tool_version", "adapted_from")


def table_identity(table: LatencyTable, space: str) -> dict[str, Any]:
    """What identifies a table in a run summary: its provenance fields, a SHA-256 of its rows
    and metadata (:func:`table_digest`), and this space's calibration model without its fit
    points."""
    meta = table.metadata
    identity = {k: meta[k] for k in IDENTITY_FIELDS if k in meta}
    if table.estimated:  # "anchored on N published figures, ..." or "a-priori, unanchored"
        identity["anchoring"] = describe_anchoring(meta.get("anchoring"))
    calib = table.calibration(space)
    if calib is not None:
        identity["calibration"] = {k: v for k, v in calib.items()
                                   if k not in ("fit_points", "fit_columns", "fitted")}
    return {**identity, "sha256": table_digest(table)}


def _key(values: tuple) -> OpKey:
    op, *ints = values
    return (str(op), *(int(v) for v in ints))


def op_key(op: str, c_in: int, c_out: int, height: int, width: int, stride: int,
           branches: int = 0) -> OpKey:
    """The table key of one op at one input shape."""
    return (op, int(c_in), int(c_out), int(height), int(width), int(stride), int(branches))


def new_metadata(device: str, provenance: str, **fields: Any) -> dict[str, Any]:
    """Metadata with this host, the current UTC date and the tool version filled in.

    Defaults for an uncalibrated 1-thread onnxruntime CPU table; ``fields`` override them.
    """
    import platform
    from datetime import datetime, timezone

    meta: dict[str, Any] = {
        "device": device, "provenance": provenance, "runtime": "onnxruntime",
        "runtime_version": "unknown", "mode": "CPUExecutionProvider", "threads": 1,
        "batch_size": 1, "dtype": "float32", "warmup": 0, "repeats": 0,
        "host": platform.node() or "unknown",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool_version": tool_version(), "spaces": []}
    meta.update(fields)
    return meta


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hwnas")
    except PackageNotFoundError:
        return "unknown"


def make_table(rows: list[dict[str, Any]], metadata: dict[str, Any], name: str = "",
               ) -> LatencyTable:
    """A validated table from row dicts (keys: :data:`COLUMNS`) and metadata."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    table = LatencyTable(_validate_frame(frame, name or "table"), dict(metadata), name)
    _validate_metadata(table.metadata, name or "table")
    return table


def save_table(table: LatencyTable, path: str | os.PathLike) -> Path:
    """Write ``NAME.csv`` and ``NAME.json`` as one atomic unit (see the module's docstring);
    returns the CSV path."""
    csv_path, json_path = table_paths(path)
    _validate_frame(table.frame, str(csv_path))
    _validate_metadata(table.metadata, str(csv_path))
    frame = table.frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    text = frame.to_csv(index=False, float_format="%.6g")
    digest = hashlib.sha256(text.encode()).hexdigest()
    pending = _pending_csv(csv_path, digest)
    atomic_write_text(pending, text)
    atomic_write_text(json_path, json.dumps({**table.metadata, "rows_sha256": digest},
                                            indent=2, sort_keys=True) + "\n")
    os.replace(pending, csv_path)
    fsync_path(csv_path.parent)
    return csv_path


def _pending_csv(csv_path: Path, digest: str) -> Path:
    return csv_path.with_name(f"{temporary_name(csv_path.name)}{digest[:16]}{TEMP_SUFFIX}")


def settle_table(path: str | os.PathLike) -> None:
    """Finish a save that a kill interrupted after its commit: move the pending CSV that
    ``NAME.json`` records into place (nothing to do for a whole table)."""
    csv_path, json_path = table_paths(path)
    try:
        digest = json.loads(json_path.read_text()).get("rows_sha256")
    except (OSError, ValueError, AttributeError):
        return  # no JSON, or a malformed one: reading the table says so
    if not isinstance(digest, str):
        return
    pending = _pending_csv(csv_path, digest)
    if pending.is_file() and hashlib.sha256(pending.read_bytes()).hexdigest() == digest:
        os.replace(pending, csv_path)
        fsync_path(csv_path.parent)


def table_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(``NAME.csv``, ``NAME.json``) for a path given with or without a suffix."""
    base = Path(path)
    if base.suffix in (".csv", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".json")


def table_dirs() -> list[Path]:
    """Where names are looked up: the user's tables, then the shipped ones.

    The user's are ``$HWNAS_TABLES`` (os.pathsep-separated folders) or, without it,
    ``~/.hwnas/tables`` (where ``hwnas profile`` writes by default).
    """
    user = [Path(p) for p in os.environ.get(USER_DIR_ENV, "").split(os.pathsep) if p]
    return [*(user or [Path.home() / ".hwnas" / "tables"]), SHIPPED_DIR]


def known_tables() -> list[str]:
    """Names loadable by :func:`load_table` (user directories first, then shipped)."""
    names: list[str] = []
    for folder in table_dirs():
        if folder.is_dir():
            names += [p.stem for p in sorted(folder.glob("*.csv"))
                      if p.with_suffix(".json").exists() and p.stem not in names]
    return names


def check_table_name(name: str) -> str:
    """``name`` if it is a table name (no folder separator, not ``.`` or ``..``, not empty)."""
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    if not name or name in (".", "..") or any(s in name for s in separators):
        raise HwnasError(f"table name {name!r} must be a name, not a path (no {'/'} or '..'); "
                         "give a file with --out instead")
    return name


def _is_path(text: str) -> bool:
    """A table argument is a file path when it has a separator or a .csv/.json suffix; a bare
    name is always a table name, even when a file or folder of that name is in the working
    directory."""
    return any(s in text for s in (os.sep, os.altsep, "/") if s) or text.endswith(
        (".csv", ".json"))


def load_table(name_or_path: str | os.PathLike) -> LatencyTable:
    """Load a latency table by device name or by file path, strictly.

    Parameters
    ----------
    name_or_path
        A table name (:func:`known_tables`: the user's tables in ``$HWNAS_TABLES`` or
        ``~/.hwnas/tables`` first, then the shipped ones), or a path to ``NAME.csv`` /
        ``NAME.json`` (one with a folder separator or a ``.csv``/``.json`` suffix). A user's
        table that takes the name of a shipped one says on stderr which file it loaded.

    Returns
    -------
    LatencyTable
        The rows (``frame``) and metadata (provenance, runtime, host, calibrations). A save
        that a kill interrupted after its commit is finished first (:func:`settle_table`).

    Raises
    ------
    HwnasError
        In one line, for an unknown name, a missing file, or a malformed CSV or metadata.

    Examples
    --------
    >>> from latency_predictors import load_table
    >>> table = load_table("vpu")
    >>> table.device, table.estimated
    ('vpu', True)
    """
    text = str(name_or_path)
    if not _is_path(text):
        for folder in table_dirs():
            if (folder / f"{text}.json").exists():
                settle_table(folder / text)
            if (folder / f"{text}.csv").exists():
                if folder != SHIPPED_DIR and (SHIPPED_DIR / f"{text}.csv").exists():
                    print(f"note: table {text!r} is {folder / text}.csv (not the shipped one)",
                          file=sys.stderr)
                return _read(folder / text, text)
        raise HwnasError(f"unknown device {text!r}; known devices: {known_tables()} "
                         "(or give a table file path)")
    csv_path, json_path = table_paths(text)
    settle_table(csv_path)
    for required in (csv_path, json_path):
        if not required.exists():
            raise HwnasError(f"latency table file {required} does not exist "
                             f"(a table is NAME.csv + NAME.json)")
    return _read(csv_path.with_suffix(""), csv_path.stem)


def _read(base: Path, name: str) -> LatencyTable:
    csv_path, json_path = table_paths(base)
    try:
        metadata = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HwnasError(f"{json_path}: metadata is not valid JSON ({err})") from None
    _validate_metadata(metadata, str(json_path))
    metadata.pop("rows_sha256", None)  # the pair's commit record, not a property of the table
    try:
        frame = pd.read_csv(csv_path, dtype={"op": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HwnasError(f"{csv_path}: malformed CSV ({first})") from None
    return LatencyTable(_validate_frame(frame, str(csv_path)), metadata, name)


def _validate_metadata(metadata: Any, where: str) -> None:
    if not isinstance(metadata, dict):
        raise HwnasError(f"{where}: metadata must be a JSON object, got {type(metadata).__name__}")
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise HwnasError(f"{where}: metadata lacks fields {missing}; "
                         f"required: {list(REQUIRED_METADATA)}")
    unknown = sorted(set(metadata) - set(REQUIRED_METADATA) - set(OPTIONAL_METADATA))
    if unknown:
        raise HwnasError(f"{where}: unknown metadata fields {unknown}; valid: "
                         f"{list(REQUIRED_METADATA) + list(OPTIONAL_METADATA)}")
    for fields in (REQUIRED_METADATA, OPTIONAL_METADATA):
        for key, kind in fields.items():
            value = metadata.get(key)
            if key in metadata and (not isinstance(value, kind) or isinstance(value, bool)):
                expected = kind.__name__ if isinstance(kind, type) else kind
                raise HwnasError(f"{where}: metadata field {key!r} must be {expected}, "
                                 f"got {value!r}")
    if metadata["provenance"] not in PROVENANCES:
        raise HwnasError(f"{where}: unknown provenance {metadata['provenance']!r}; "
                         f"valid: {list(PROVENANCES)}")
    if not metadata["device"]:
        raise HwnasError(f"{where}: metadata field 'device' is empty")
    if metadata["batch_size"] != 1:
        raise HwnasError(f"{where}: batch_size must be 1 (latency tables are batch-1), "
                         f"got {metadata['batch_size']}")
    for space, calib in (metadata.get("calibration") or {}).items():
        _validate_calibration(calib, f"{where}: calibration of {space!r}")


def _validate_calibration(calib: Any, where: str) -> None:
    if not isinstance(calib, dict) or not {"scale", "offset_ms"} <= set(calib):
        raise HwnasError(f"{where} must be an object with 'scale' and 'offset_ms', got {calib!r}")
    for key in ("scale", "offset_ms"):
        value = calib[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise HwnasError(f"{where}: {key} must be a finite number, got {value!r}")
    if calib["scale"] <= 0:
        raise HwnasError(f"{where}: scale must be > 0, got {calib['scale']}")
    class_scales = calib.get("class_scales", {})
    if not isinstance(class_scales, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and v > 0 for v in class_scales.values()):
        raise HwnasError(f"{where}: class_scales must map op classes to finite numbers > 0, "
                         f"got {class_scales!r}")
    if calib.get("groups", "class") not in GROUPINGS:
        raise HwnasError(f"{where}: groups must be one of {list(GROUPINGS)}, got "
                         f"{calib['groups']!r}")


def _validate_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise HwnasError(f"{where}: missing columns {missing}; expected {list(COLUMNS)}, "
                         f"got {list(frame.columns)}")
    if frame.empty:
        raise HwnasError(f"{where}: the table has no rows")
    frame = frame.copy()
    for row, value in enumerate(frame["op"]):
        if not isinstance(value, str) or not value or value == "skip":
            raise HwnasError(f"{where}: row {row + 2}: bad op {value!r}; expected a candidate "
                             "token or fixed-part kind (skip is never stored)")
    for column in KEY_COLUMNS[1:] + ("samples",):
        frame[column] = _int_column(frame[column], column, where)
    for column in STAT_COLUMNS[:3]:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~values.map(math.isfinite) | (
            values < 0 if column == "std_ms" else values <= 0)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            need = ">= 0" if column == "std_ms" else "> 0"
            raise HwnasError(f"{where}: row {row + 2}: {column} must be a finite number "
                             f"{need}, got {frame[column].iloc[row]!r}")
        frame[column] = values.astype(float)
    duplicated = frame.duplicated(list(KEY_COLUMNS))
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        key = tuple(frame[list(KEY_COLUMNS)].iloc[row])
        raise HwnasError(f"{where}: row {row + 2}: duplicate key {_key(key)} "
                         f"({int(duplicated.sum())} duplicates)")
    return frame[list(COLUMNS)].reset_index(drop=True)


def _int_column(series: pd.Series, column: str, where: str) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    minimum = 0 if column == "branches" else 1
    bad = values.isna() | (values != values.round()) | (values < minimum)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise HwnasError(f"{where}: row {row + 2}: {column} must be an integer >= {minimum}, "
                         f"got {series.iloc[row]!r}")
    return values.astype(int)
