"""Whole-net timings as a user gives them: a CSV file with a header ``arch,ms``, one timed net
per row, the architecture in the compact form of its space (``fb_k3_e1|skip|...``) or as a JSON
``ArchSpec`` object.

Whatever timed the nets (a phone's benchmark app, OpenVINO's ``benchmark_app`` on a VPU,
``trtexec`` on a GPU, published figures), the file is read strictly: an unknown op, a
non-positive or non-finite time, a net listed twice or too few rows is one
:class:`HwnasError` line naming the row.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas_common.errors import HwnasError
from search_spaces import ArchSpec, Space

MIN_TIMINGS = 5  # fewer nets cannot cross-validate even the one-scale model


@dataclass(frozen=True)
class Timings:
    """Timed nets of one space and their milliseconds."""

    specs: tuple[ArchSpec, ...]
    ms: np.ndarray
    source: str  # where they came from (the file), for the fitted table's provenance

    def __len__(self) -> int:
        return len(self.specs)

    def subset(self, index: np.ndarray) -> Timings:
        return Timings(tuple(self.specs[i] for i in index), self.ms[index], self.source)


def read_timings(path: str | Path, space: Space) -> Timings:
    """The timings of ``path`` for ``space`` (module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise HwnasError(f"cannot read timings {path}: {err.strerror or err}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0]] != ["arch", "ms"]:
        raise HwnasError(f"{path}: the first line must be the header 'arch,ms', got "
                         f"{','.join(rows[0]) if rows else 'an empty file'!r}")
    specs: list[ArchSpec] = []
    ms: list[float] = []
    seen: dict[ArchSpec, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise HwnasError(f"{path}: line {line}: expected 2 fields (arch,ms), got {len(row)}"
                             " (quote a JSON architecture)")
        spec = _arch(row[0].strip(), space, f"{path}: line {line}")
        value = _ms(row[1].strip(), f"{path}: line {line}")
        if spec in seen:
            raise HwnasError(f"{path}: line {line}: the net of line {seen[spec]} is listed "
                             "again; give each net once (average repeated timings first)")
        seen[spec] = line
        specs.append(spec)
        ms.append(value)
    check_count(len(specs), str(path))
    return Timings(tuple(specs), np.asarray(ms, float), str(path))


def check_count(n: int, where: str) -> None:
    if n < MIN_TIMINGS:
        raise HwnasError(f"{where}: {n} timed nets; a fit needs at least {MIN_TIMINGS} "
                         "(10 or more for a useful error estimate)")


def _arch(text: str, space: Space, where: str) -> ArchSpec:
    try:
        if text.startswith("{"):
            json.loads(text)  # a clear line for malformed JSON before the strict decoder
            spec = ArchSpec.from_json(text)
            return space.validate(spec)
        return space.spec_from_string(text)
    except json.JSONDecodeError as err:
        raise HwnasError(f"{where}: the architecture is not valid JSON: {err.msg}") from None
    except HwnasError as err:
        raise HwnasError(f"{where}: {err}") from None


def _ms(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HwnasError(f"{where}: ms must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise HwnasError(f"{where}: ms must be a finite number > 0, got {text!r}")
    return value
