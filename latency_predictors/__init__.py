"""Latency lookup tables, profilers, analytical device models and the latency predictor.

Three rooms: the table and its predictor here (``table``, ``metadata``, ``store``, ``keys``,
``predictor``); measuring on a real machine in :mod:`latency_predictors.measure`; estimating a
device we do not have in :mod:`latency_predictors.estimate` (``docs/layout.md``). Public API::

    from latency_predictors import load_table, predict_latency, latency_matrix, expected_latency
    table = load_table("cpu")                 # a user/shipped device name or a file path
    predict_latency(spec, table).total_ms     # per-layer breakdown in .layers
    matrix = latency_matrix(space, table)     # fixed_ms + per_layer[l][i]
    expected_latency(probs, matrix)           # differentiable E[LAT] for the search loss

    table = profile_table("cifar", "onnxruntime", ep="cpu", name="mycpu")   # measure
    table = calibrate(table, "cifar", n=20)   # whole-network correction (affine or per class)
    validate_table(table, "cifar", n=50)      # MAPE and share within ±10 %, out of sample
    estimate_table("vpu", ["cifar"])          # analytical roofline estimate (ESTIMATED)
"""

from __future__ import annotations

from .estimate.devices import DEVICE_MODELS
from .estimate.tables import estimate_table
from .keys import key_label, required_keys
from .measure.backends import BACKENDS, make_backend
from .measure.calibrate import calibrate
from .measure.networks import measure_latency
from .measure.profile import profile_table
from .measure.validate import ValidationResult, validate_table
from .metadata import PROVENANCES, new_metadata
from .predictor import (
    LatencyMatrix,
    LatencyPrediction,
    check_coverage,
    expected_latency,
    latency_matrix,
    predict_latency,
)
from .store import known_tables, load_table, save_table
from .table import COLUMNS, KEY_COLUMNS, LatencyTable, make_table, op_key

__all__ = [
    "BACKENDS", "COLUMNS", "DEVICE_MODELS", "KEY_COLUMNS", "PROVENANCES", "LatencyMatrix",
    "LatencyPrediction", "LatencyTable", "ValidationResult", "calibrate", "check_coverage",
    "estimate_table", "expected_latency", "key_label", "known_tables", "latency_matrix",
    "load_table", "make_backend", "make_table", "measure_latency", "new_metadata", "op_key",
    "predict_latency", "profile_table", "required_keys", "save_table", "validate_table",
]
