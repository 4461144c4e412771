"""The metadata of a latency table (``NAME.json`` beside ``NAME.csv``): its fields, how they
are checked, and the fields a new table starts with.

Required (:data:`REQUIRED_METADATA`): device, provenance (``measured``, ``estimated``, or ``fitted``
(on whole-net timings by ``hwnas tables fit``)),
runtime and version, execution mode, threads, batch size, dtype, warm-up and repeat counts,
host, date, tool version, spaces covered. Optional (:data:`OPTIONAL_METADATA`):
``calibration`` (per space: ``{scale, offset_ms, fitted_on_n, mape_before, mape_after,
...}``), the profiling settings and the host fingerprint of a measured table, the
quantization recipe of an int8 one (``dtype`` ``int8``: :func:`precision_of`), and, for
estimated tables, ``analytical_error`` and ``anchoring`` (the fit on published latencies:
anchors, parameters, leave-one-out MAPE; absent for an a-priori table). A field that is
missing, unknown or of the wrong type is one :class:`HwnasError` line.
"""

from __future__ import annotations

import math
from typing import Any

from hwnas_common.errors import HwnasError

PROVENANCES = ("measured", "estimated", "fitted")

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
    "anchoring": dict,  # estimated tables: the fit on published latencies (estimate.anchors)
    "profile_seconds": dict,  # space -> wall seconds the profile took
    "pass_spread": dict,  # space -> how far ops' normalised passes disagree (%)
    "reference": dict,  # the reference kernel's time the rows are normalised to (measure.profile)
    "model": dict,  # estimated tables: the analytical device parameters
    "backend": str, "ep": str,  # how to re-profile: hwnas profile --backend B --ep E
    "passes": int,  # profiling passes over the op list (each op keeps its median)
    "method": str,  # profiling method: "chain" (in-context difference) or "alone"
    "clock": str,  # "wall" or "thread-cpu" (1-thread CPU timing immune to other processes)
    "notes": str,
    "host_fingerprint": dict,  # the machine measured on (latency_predictors.measure.host)
    "adapted_from": dict,  # `hwnas tables adapt`: the source table and its host
    "rows_sha256": str,  # SHA-256 of NAME.csv as saved (the pair's commit record)
    "fit": dict,  # `hwnas tables fit`: the timings, the prior and model chosen, every candidate
    "error": dict,  # a table's error when no fit of its own states it: {ratios, what}
    "quantization": dict,  # int8 tables: the recipe timed (latency_predictors.measure.quantize)
}
# a table's ``dtype`` -> the precision it times or estimates, as commands name it
PRECISIONS = {"float32": "fp32", "float16": "fp16", "int8": "int8"}
DTYPES = {precision: dtype for dtype, precision in PRECISIONS.items()}


def precision_of(metadata: dict[str, Any]) -> str:
    """The precision a table times or estimates (``fp32``, ``fp16``, ``int8``), from its
    ``dtype``: ``vpu`` estimates fp16 (its anchors are OpenVINO FP16 figures), ``cpu-int8``
    times ONNX Runtime's int8 kernels; an unknown dtype is named as it is."""
    dtype = str(metadata.get("dtype", "float32"))
    return PRECISIONS.get(dtype, dtype)


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


def validate_metadata(metadata: Any, where: str) -> None:
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
