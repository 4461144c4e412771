"""Latency lookup tables, profilers, analytical device models and the latency predictor.

Public API (DESIGN §4)::

    from latency_predictors import load_table, predict_latency, latency_matrix, expected_latency
    table = load_table("cpu")                 # a shipped/user device name or a file path
    predict_latency(spec, table).total_ms     # per-layer breakdown in .layers
    matrix = latency_matrix(space, table)     # fixed_ms + per_layer[l][i]
    expected_latency(probs, matrix)           # differentiable E[LAT] for the search loss
"""

from __future__ import annotations

from .keys import key_label, required_keys
from .predictor import (
    LatencyMatrix,
    LatencyPrediction,
    check_coverage,
    expected_latency,
    latency_matrix,
    predict_latency,
)
from .table import (
    COLUMNS,
    KEY_COLUMNS,
    PROVENANCES,
    LatencyTable,
    known_tables,
    load_table,
    make_table,
    new_metadata,
    op_key,
    save_table,
)

__all__ = [
    "COLUMNS", "KEY_COLUMNS", "PROVENANCES", "LatencyMatrix", "LatencyPrediction",
    "LatencyTable", "check_coverage", "expected_latency", "key_label", "known_tables",
    "latency_matrix", "load_table", "make_table", "new_metadata", "op_key", "predict_latency",
    "required_keys", "save_table",
]
