"""Which machine a measured table belongs to: a host fingerprint, and the check against this host.

A per-op table is a property of one CPU model, core count, runtime and execution provider: the
`cpu` table profiled on one 2-vCPU AMD EPYC guest predicted nets on an Intel Xeon guest of the
same VM kind 48 % off, and on a Zen 5 EPYC guest about 3× off. Every measured table records
``host_fingerprint`` (CPU model, family/model numbers, vector flags, logical cores, OS; the
runtime, provider and threads are in the table's own metadata). The commands that use a table
adapt one measured elsewhere to this host first
(:func:`latency_predictors.measure.adapt.host_true_table`); a table that records no fingerprint
is used as it is, with one line saying how to adapt it (``hwnas tables adapt``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from ..metadata import precision_of
from ..store import known_tables, load_table
from ..table import LatencyTable

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                "amx_bf16", "asimd", "sve")
IDENTITY = ("cpu_model", "cpu_family", "cpu_model_number", "vector_flags", "logical_cores")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def host_fingerprint(cpuinfo: dict[str, str] | None = None) -> dict[str, Any]:
    """This machine: CPU model and numbers, the vector flags latency depends on, logical
    cores and OS. A VM may show a generic model name ("AMD EPYC"): family and model numbers
    then still tell CPU generations apart (Zen 3 is family 25, Zen 5 family 26)."""
    info = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"cpu_model": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_family": info.get("cpu family", ""),
            "cpu_model_number": info.get("model", ""),
            "vector_flags": [f for f in VECTOR_FLAGS if f in flags],
            "logical_cores": os.cpu_count() or 0, "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}"}


def describe_host(fingerprint: dict[str, Any]) -> str:
    """``AMD EPYC (family 26 model 2), 2 logical cores, avx2 fma avx512f``"""
    numbers = ""
    if fingerprint.get("cpu_family"):
        numbers = f" (family {fingerprint['cpu_family']} model {fingerprint['cpu_model_number']})"
    flags = " ".join(fingerprint.get("vector_flags") or []) or "no vector flags recorded"
    return (f"{fingerprint.get('cpu_model', 'unknown CPU')}{numbers}, "
            f"{fingerprint.get('logical_cores', '?')} logical cores, {flags}")


def same_host(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same CPU model, generation, vector flags and core count (OS and kernel may differ)."""
    return all(a.get(key) == b.get(key) for key in IDENTITY)


def host_mismatch(table: LatencyTable, here: dict[str, Any] | None = None) -> str | None:
    """One line when a measured ``table`` was not measured on this host, else None."""
    return host_note(table.name or table.device, table.metadata, here)


def host_note(name: str, metadata: dict[str, Any],
              here: dict[str, Any] | None = None) -> str | None:
    """:func:`host_mismatch` from a table's name and metadata (or the ``provenance`` and
    ``host_fingerprint`` of it a run keeps), so a loaded table need not be read again."""
    if metadata.get("provenance") != "measured":  # estimated or fitted: timed nowhere here
        return None
    recorded = metadata.get("host_fingerprint")
    here = here or host_fingerprint()
    adapt = (f"`hwnas tables adapt {name} --name {name}-here` refits it to this host "
             "(10-35 s a space)")
    if recorded is None:
        return (f"note: table {name!r} records no host fingerprint, so it may come from "
                f"another machine than this one ({describe_host(here)}); {adapt}")
    if same_host(recorded, here):
        return None
    return (f"note: table {name!r} was measured on {describe_host(recorded)}; this host is "
            f"{describe_host(here)}, so its latencies may be off here; {adapt}")


def table_of_this_host(space: str, precision: str = "fp32") -> LatencyTable | None:
    """The first known measured table profiled on this host that covers ``space`` in
    ``precision`` (``fp32``, ``int8``: :func:`latency_predictors.metadata.precision_of`)."""
    here = host_fingerprint()
    for name in known_tables():
        table = load_table(name)
        recorded = table.metadata.get("host_fingerprint")
        if (not table.estimated and recorded and same_host(recorded, here)
                and space in table.metadata["spaces"]
                and precision_of(table.metadata) == precision):
            return table
    return None
