"""Few-shot adaptation of a measured table to this host (``hwnas tables adapt``).

A shipped per-op table was measured on someone else's machine. Re-profiling every op here
takes minutes; most of the error between two hosts is a speed factor per op group plus an
offset (the ratio measured/predicted of the shipped `cpu` table on another host ran from 0.60
to 0.74). Adaptation keeps the per-op table and refits only its whole-network calibration on
a few spread networks measured end to end here (per space: ``none`` / ``affine`` /
``per-class`` / ``per-kernel``, chosen by cross-validation, as
:func:`latency_predictors.calibrate.calibrate` does; between a Zen 3 and a Zen 5 host the
per-op speed-up depends mostly on the kernel size: k3 ops ×0.40, k5 ×0.38, k7 ×0.32). This
is the transfer idea of HELP (Lee et al., NeurIPS 2021: 10 samples on a new device) and
LitePred (Feng et al., NSDI 2024), on the simplest model that keeps the knapsack and the
expected latency exact. The networks are measured drift-normalised to this host's reference
speed (timed first, and recorded as the adapted table's ``reference``; the source table's
stays in ``adapted_from``). The adapted table records this host's fingerprint and where it
came from.
"""

from __future__ import annotations

import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from hwnas_common.errors import HwnasError

from .backends import Backend, reference_summary
from .calibrate import backend_for, calibrate, check_calibration_size
from .host import host_fingerprint
from .table import LatencyTable, table_paths

ADAPT_NETS = 15  # spread networks measured per space


def check_writable(out: Path) -> None:
    """One clear error, before any measuring, when ``out`` cannot be written or exists."""
    csv_path, json_path = table_paths(out)
    if csv_path.exists() or json_path.exists():
        raise HwnasError(f"{csv_path} already exists; choose another --name or --out, or "
                         "delete it")
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=csv_path.parent, prefix=".hwnas-write-test-"):
            pass
    except OSError as err:
        raise HwnasError(f"cannot write tables to {csv_path.parent}: {err.strerror or err}"
                         ) from None


def adapt_table(table: LatencyTable, spaces: list[str], n: int = ADAPT_NETS, seed: int = 7,
                progress: bool = True, backend: Backend | None = None) -> LatencyTable:
    """``table`` with each space's calibration refitted on ``n`` networks measured here
    (with the table's own runtime settings, or ``backend``)."""
    check_calibration_size(n)
    name = table.name or table.device
    if table.estimated:
        raise HwnasError(f"table {name!r} is ESTIMATED by an analytical model, not measured: "
                         "there is no runtime to measure against; profile this host instead "
                         "(`hwnas profile --backend onnxruntime --ep cpu --name NAME`)")
    missing = [s for s in spaces if s not in table.metadata["spaces"]]
    if missing:
        raise HwnasError(f"table {name!r} does not cover {missing}; it covers "
                         f"{table.metadata['spaces']}")
    try:
        backend = backend or backend_for(table)
    except HwnasError:
        raise
    except Exception as err:  # the table's runtime or provider is not usable here
        raise HwnasError(f"table {name!r} was measured with {table.metadata['runtime']} "
                         f"({table.metadata['mode']}), which cannot run here: "
                         f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    start = time.perf_counter()
    here = reference_summary([backend.reference_ms() for _ in range(9)])
    adapted = LatencyTable(table.frame, {**table.metadata, "reference": here}, table.name)
    for space in spaces:
        adapted = calibrate(adapted, space, n=n, seed=seed, backend=backend, progress=progress)
    meta = adapted.metadata
    meta["adapted_from"] = {
        "table": name, "host_fingerprint": table.metadata.get("host_fingerprint"),
        "host": table.metadata["host"], "date": table.metadata["date"], "nets_per_space": n,
        "reference": table.metadata.get("reference"),
        "seconds": round(time.perf_counter() - start, 1)}
    meta["host_fingerprint"] = host_fingerprint()
    meta["host"] = platform.node() or "unknown"  # as new_metadata records it
    meta["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta["notes"] = (f"per-op rows measured on another host (table {name!r}); calibration "
                     f"refitted here on {n} networks per space by `hwnas tables adapt`")
    return LatencyTable(adapted.frame, meta, table.name)

