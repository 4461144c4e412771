"""A latency table: per-op latencies (a pandas DataFrame) plus its metadata, and what a run
records of it.

``frame`` has one row per op key ``(op, c_in, c_out, height, width, stride, branches)`` with
the latency statistics of one batch-1 forward pass, in milliseconds::

    op,c_in,c_out,height,width,stride,branches,mean_ms,median_ms,std_ms,samples
    quad_k7_e4,64,64,16,16,1,0,0.412,0.405,0.021,200
    rbf_k3_e2,64,64,16,16,1,4,0.731,0.722,0.030,200
    stem:conv3x3,3,32,32,32,1,0,0.051,0.050,0.002,200

``op`` is a candidate token of a space (``quad_k7_e4``, ``mb_k3_e6``, ``fb_k5_e1_g2``; never
``skip``: an identity skip's latency is 0 by definition, and a skip that changes the shape is
``skip:proj``) or a fixed-part kind (``stem:conv3x3``, ``stem:patch4``, ``stem:conv3x3-relu``,
``downsample``, ``head``, ``head:conv1x1-1504``). ``branches`` is the r of the poly2/rbf
interactions, whose cost depends on it, and 0 for every other op. The predictor uses
``median_ms``. ``metadata`` is described, and checked, by :mod:`latency_predictors.metadata`;
a table's files by :mod:`latency_predictors.store`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hwnas_common.errors import HwnasError

from .metadata import precision_of, validate_metadata

KEY_COLUMNS = ("op", "c_in", "c_out", "height", "width", "stride", "branches")
STAT_COLUMNS = ("mean_ms", "median_ms", "std_ms", "samples")
COLUMNS = KEY_COLUMNS + STAT_COLUMNS

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
        """One line: name, device, provenance (estimated tables: anchored or a-priori),
        runtime and the precision it times or estimates (``fp32``, ``fp16``, ``int8``)."""
        tag = (f"ESTIMATED ({describe_anchoring(self.metadata.get('anchoring'))})"
               if self.estimated else describe_fit(self.metadata["fit"])
               if self.provenance == "fitted" else "measured")
        threads = ("" if self.provenance != "measured"
                   else f", {self.metadata['threads']} threads")
        version = ("" if self.provenance == "fitted"
                   else f" {self.metadata['runtime_version']}")
        return (f"{self.name or self.device}: device {self.device}, {tag}, "
                f"{self.metadata['runtime']}{version} ({self.metadata['mode']}{threads}), "
                f"{precision_of(self.metadata)}, {len(self.frame)} rows, spaces "
                f"{self.metadata['spaces']}")


def describe_anchoring(anchoring: dict[str, Any] | None) -> str:
    """The label an estimated table carries: anchored (N, LOO MAPE) or a-priori (its
    ``anchoring`` metadata, written by :mod:`latency_predictors.estimate.anchors`)."""
    if not anchoring:
        return "a-priori, unanchored"
    return (f"anchored on {anchoring['n_anchors']} {anchoring.get('what', 'published figures')}"
            f", leave-one-out MAPE {anchoring['loo_mape']:.1f} %")


def describe_fit(fit: dict[str, Any]) -> str:
    """The label a fitted table carries (its ``fit`` metadata, written by
    :mod:`latency_predictors.fit.fitting`)."""
    return (f"FITTED on {fit['n']} whole-net timings from the prior {fit['prior']}/"
            f"{fit['model']} ({fit['prior_kind']})")


def table_digest(table: LatencyTable) -> str:
    """SHA-256 of a table's rows and metadata: which table a run or an adaptation used."""
    digest = hashlib.sha256(table.frame.to_csv(index=False).encode())
    digest.update(json.dumps(table.metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


IDENTITY_FIELDS = ("device", "provenance", "runtime", "runtime_version", "mode", "threads",
                   "host", "host_fingerprint", "date", "tool_version", "adapted_from", "fit")


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


def make_table(rows: list[dict[str, Any]], metadata: dict[str, Any], name: str = "",
               ) -> LatencyTable:
    """A validated table from row dicts (keys: :data:`COLUMNS`) and metadata."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    table = LatencyTable(validate_frame(frame, name or "table"), dict(metadata), name)
    validate_metadata(table.metadata, name or "table")
    return table


def validate_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
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
                             "token or fixed-part kind (an identity skip is never stored)")
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
