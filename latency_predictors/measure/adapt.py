"""Few-shot adaptation of a measured table to this host (``hwnas tables adapt``).

A shipped per-op table was measured on someone else's machine. Re-profiling every op here
takes minutes; most of the error between two hosts is a speed factor per op group plus an
offset (the ratio measured/predicted of the shipped `cpu` table on another host ran from 0.60
to 0.74). Adaptation keeps the per-op table and refits only its whole-network calibration on
a few spread networks measured end to end here (per space: ``none`` / ``affine`` /
``per-class`` / ``per-kernel`` / ``per-kernel-branch``, chosen by cross-validation, as
:func:`latency_predictors.measure.calibrate.calibrate` does; between a Zen 3 and a Zen 5 host the
per-op speed-up depends mostly on the kernel size: k3 ops ×0.40, k5 ×0.38, k7 ×0.32, and on
whether the block has r branches). This
is the transfer idea of HELP (Lee et al., NeurIPS 2021: 10 samples on a new device) and
LitePred (Feng et al., NSDI 2024), on the simplest model that keeps the knapsack and the
expected latency exact. The networks are measured at this host's speed during the adaptation
(the reference kernel timed around them becomes the adapted table's ``reference``; the source
table's stays in ``adapted_from``). The adapted table records this host's fingerprint and where it
came from, and covers the adapted spaces only.

Host-true by default (:func:`host_true_table`): ``search``, ``predict``, ``measure`` and
``sweep`` adapt a measured table of another host for the spaces in use before they use it, and
cache the result in the user's table folder (``adapted/``), keyed by the source table's digest
and this host, so a budget means milliseconds on the machine the command runs on.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwnas_common.errors import HwnasError

from ..store import load_table, save_table, table_dirs, table_paths
from ..table import LatencyTable, table_digest
from .backends import Backend
from .calibrate import calibrate, check_calibration_size
from .host import IDENTITY, describe_host, host_fingerprint, host_note, same_host
from .networks import backend_for

ADAPT_NETS = 25  # networks measured per space (the all-skip one and spread ones)
ADAPT_REPEATS = 20  # timed runs per network and pass (6 passes, the fastest kept)
ADAPTED_DIR = "adapted"  # host-true tables cached under the user's table directory
NO_ADAPT_HELP = ("use a measured table of another host as it is, not adapted to this one: "
                 "latencies and budgets are then milliseconds on the machine that profiled it")
ESTIMATED_NOT_ADAPTED = ("not adapted to this host (nothing measured to refit): its latencies "
                         "and budgets are the modelled device's milliseconds")


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


def adapt_table(table: LatencyTable, spaces: Sequence[str], n: int = ADAPT_NETS, seed: int = 7,
                progress: bool = True, backend: Backend | None = None,
                reference: dict[str, Any] | None = None) -> LatencyTable:
    """``table`` with each space's calibration refitted on ``n`` networks measured here
    (with the table's own runtime settings, or ``backend``). The first space's networks are
    kept as measured, and the reference kernel's speed during their measurement becomes the
    table's ``reference``, to which later spaces are normalised (or all of them to
    ``reference``, an earlier adaptation's). A reference timed on its own before the networks
    is not used: on a Zen 3 guest (family 25 model 1) the first timings after start-up ran ~40 %
    slower than the ones around the networks, and an adaptation normalised to them predicted
    25-70 % too slow. The adapted table covers ``spaces`` only: the other spaces'
    calibrations belong to the source host."""
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
    backend = backend or adapt_backend(table)
    start = time.perf_counter()
    calibrations = {s: c for s, c in (table.metadata.get("calibration") or {}).items()
                    if s in spaces}
    meta = {k: v for k, v in table.metadata.items() if k != "reference"}
    if reference is not None:
        meta["reference"] = reference
    adapted = LatencyTable(table.frame, {**meta, "calibration": calibrations,
                                         "spaces": list(spaces)}, table.name)
    for space in spaces:
        adapted = calibrate(adapted, space, n=n, seed=seed, backend=backend, progress=progress)
        # the first space's networks are kept as measured, at this host's speed during their
        # measurement; that speed becomes the table's reference, and later spaces (and later
        # adaptations added to this one) are normalised to it
        adapted.metadata.setdefault(
            "reference", adapted.metadata["calibration"][space]["reference_during"])
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



def adapt_backend(table: LatencyTable) -> Backend:
    """The table's own runtime settings, here, timing :data:`ADAPT_REPEATS` runs per network
    and pass; one clear error when they cannot run here.

    On a Zen 3 guest (AMD EPYC, family 25 model 1), fitting on 25 networks instead of 15 cut
    the error on fresh ones from 5.2 to 3.8 % (mean over 150 draws from 80 measured networks),
    and 20 runs a pass instead of 30 keep the adaptation near 20 s."""
    try:
        return backend_for(table, repeats=ADAPT_REPEATS)
    except HwnasError:
        raise
    except Exception as err:  # the table's runtime or provider is not usable here
        raise HwnasError(f"table {table.name or table.device!r} was measured with "
                         f"{table.metadata['runtime']} ({table.metadata['mode']}), which cannot "
                         f"run here: {type(err).__name__}: {str(err).splitlines()[0]}") from None


def adaptation_path(table: LatencyTable, here: dict[str, Any], runtime_version: str) -> Path:
    """Where the adaptation of ``table`` to the host ``here`` is cached: the user's table
    directory, ``adapted/NAME-SOURCE-HOST.csv``, keyed by the source table's digest and this
    host's identity (CPU, vector flags, cores) and runtime version."""
    host = {key: here.get(key) for key in IDENTITY}
    host["runtime_version"] = runtime_version
    host_key = hashlib.sha256(json.dumps(host, sort_keys=True).encode()).hexdigest()[:10]
    name = table.name or table.device
    return table_dirs()[0] / ADAPTED_DIR / f"{name}-{table_digest(table)[:12]}-{host_key}.csv"


@dataclass(frozen=True)
class HostTable:
    """The table a command uses on this host, and the one line that says how it got it."""

    table: LatencyTable
    note: str | None  # None: a table of this host, used as it is
    path: Path | None = None  # the cached adaptation, when the table was adapted


def host_true_table(table: LatencyTable, spaces: Sequence[str], adapt: bool = True,
                    progress: bool = True, measure: bool = True,
                    backend: Backend | None = None,
                    here: dict[str, Any] | None = None) -> HostTable:
    """``table`` as it holds on this host: a measured table profiled on another host is
    adapted for ``spaces`` (the ones it covers) by :func:`adapt_table`, once per source table
    and host (cached by :func:`adaptation_path`), so that its milliseconds, and a budget, are
    this machine's. ``adapt=False`` (``--no-adapt``) keeps it as measured; ``measure=False``
    uses a cached adaptation only. Estimated tables, tables without a host fingerprint and
    runtimes missing here are used as they are; the note says so (for an estimated table, the
    ESTIMATED line of the command: :data:`ESTIMATED_NOT_ADAPTED`)."""
    name = table.name or table.device
    if table.estimated:  # the commands' ESTIMATED line says it (ESTIMATED_NOT_ADAPTED)
        return HostTable(table, None)
    here = here or host_fingerprint()
    recorded = table.metadata.get("host_fingerprint")
    if recorded is None or same_host(recorded, here):
        return HostTable(table, host_note(name, table.metadata, here))
    there = f"table {name!r} was measured on {describe_host(recorded)}"
    if not adapt:
        return HostTable(table, f"--no-adapt: {there}, and is used as measured there: its "
                                "latencies, and so a budget, are milliseconds on that machine, "
                                f"not on this one ({describe_host(here)})")
    spaces = [s for s in spaces if s in table.metadata["spaces"]]
    if not spaces:  # nothing to adapt: the command's coverage error names the missing rows
        return HostTable(table, None)
    try:
        backend = backend or adapt_backend(table)
    except HwnasError as err:
        return HostTable(table, f"note: {there} and cannot be adapted here ({err}); its "
                                "latencies are milliseconds on that machine")
    path = adaptation_path(table, here, backend.runtime_version)
    cached = load_table(path) if path.is_file() else None
    missing = [s for s in spaces if cached is None or s not in cached.metadata["spaces"]]
    if not missing and cached is not None:
        return HostTable(LatencyTable(cached.frame, cached.metadata, table.name),
                         f"note: {there}; using its adaptation to this host, {path} "
                         "(--no-adapt: the table as measured)", path)
    if not measure:
        return HostTable(table, f"note: {there}, and is not adapted to this host for "
                                f"{missing} (adapt it first in one process: hwnas tables "
                                f"adapt {name} --space {','.join(missing)} --name NAME); its "
                                "latencies are milliseconds on that machine", None)
    start = time.perf_counter()
    reference = cached.metadata["reference"] if cached is not None else None
    adapted = adapt_table(table, missing, progress=progress, backend=backend,
                          reference=reference)
    if cached is not None:  # add the new spaces to the ones adapted before
        meta = adapted.metadata
        meta["calibration"] = {**cached.metadata.get("calibration", {}), **meta["calibration"]}
        meta["spaces"] = [*cached.metadata["spaces"], *missing]
        adapted = LatencyTable(adapted.frame, meta, table.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_table(adapted, path)
    return HostTable(adapted, f"note: {there}; adapted to this host ({describe_host(here)}) "
                              f"for {', '.join(missing)} in {time.perf_counter() - start:.0f} s "
                              f"on {ADAPT_NETS} networks per space measured here, cached in "
                              f"{path}: budgets and latencies are milliseconds on this machine "
                              "(--no-adapt: the table as measured)", path)
