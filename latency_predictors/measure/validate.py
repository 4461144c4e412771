"""Predictor accuracy, measured: random architectures, measured vs predicted (``hwnas validate``;
``docs/results.md``, "Latency predictor").

``validate_table`` samples N random architectures of a space (a seed distinct from the
calibration's) — ``uniform`` over candidates, or ``spread``, whose skip share is itself random
as in searched networks (uniform sampling almost never picks skip) —, measures each end to end
with the table's backend and compares with ``predict_latency``: MAPE and the share within ±10 %
(nn-Meter's figure of merit). The table is judged by the raw error: the latency a user measures
on this machine now. Only where the table was profiled on this host (same fingerprint) is the
drift-normalised error (measurements scaled to the reference speed the table was profiled at,
:func:`latency_predictors.measure.networks.measure_archs`) a second, labelled figure:
normalising cancels drift on one host, and would hide the gap between two hosts (a Zen 5 table
on a Zen 4 guest: 7.8 % normalised, 45-50 % raw). On a foreign host the result says so, with the
ratio of the reference kernel's times here and there.
Results can be written as a CSV and a scatter plot PNG (atomically).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_path, atomic_write_text
from search_spaces import Space, get_space

from ..predictor import predict_latency
from ..table import LatencyTable
from .backends import Backend
from .host import describe_host, host_fingerprint, same_host
from .networks import backend_for, errors, measure_archs, spread_sample, table_reference_ms

VALIDATION_SEED = 1000  # far from the calibration seeds (0 and 1 by default)
SAMPLERS = ("uniform", "spread")


@dataclass(frozen=True)
class ValidationResult:
    device: str
    space: str
    provenance: str
    calibrated: bool
    # arch, predicted_ms, raw_ms (measured here now), error_pct (vs raw), measured_ms
    # (drift-normalised to the table's reference speed), error_normalised_pct
    frame: pd.DataFrame
    mape: float  # raw: the prediction against what this machine measures now
    within_10pct: float
    max_error: float
    reference_ms: float  # the reference speed the normalised measurements are scaled to
    reference_now_ms: float  # the reference kernel's time during this validation
    normalised: dict[str, float] | None  # errors(drift-normalised); None on a foreign host
    foreign: str | None = None  # the table's host, where it is not this one

    def format(self) -> str:
        tag = "ESTIMATED table" if self.provenance == "estimated" else "measured table"
        calib = "calibrated" if self.calibrated else "uncalibrated"
        line = (f"{self.device} ({tag}, {calib}) on {len(self.frame)} random {self.space} "
                f"architectures, measured here now: MAPE {self.mape:.2f} %, within ±10 %: "
                f"{self.within_10pct:.1f} %, max error {self.max_error:.1f} %, measured "
                f"{self.frame['raw_ms'].min():.3f}-{self.frame['raw_ms'].max():.3f} ms")
        ratio = self.reference_now_ms / self.reference_ms
        if self.normalised is not None:
            n = self.normalised
            line += (f"\n  drift-normalised (reference kernel {self.reference_now_ms:.4f} ms "
                     f"now, {self.reference_ms:.4f} ms when profiled on this host): MAPE "
                     f"{n['mape']:.2f} %, within ±10 %: {n['within_10pct']:.1f} %, max error "
                     f"{n['max_error']:.1f} %")
        elif self.foreign is not None:
            line += (f"\n  the table is foreign: profiled on {self.foreign}; its reference "
                     f"kernel took {self.reference_ms:.4f} ms there and "
                     f"{self.reference_now_ms:.4f} ms here ({ratio:.2f}×)")
        return line

    def save(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``validation.csv`` and ``validation.png`` into ``folder``."""
        folder = Path(folder)
        csv_path, png_path = folder / "validation.csv", folder / "validation.png"
        atomic_write_text(csv_path, self.frame.to_csv(index=False, float_format="%.6g"))
        with atomic_path(png_path) as tmp:
            self._plot(tmp)
        return csv_path, png_path

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        m, p = self.frame["raw_ms"], self.frame["predicted_ms"]
        low, high = min(m.min(), p.min()) * 0.95, max(m.max(), p.max()) * 1.05
        ax.plot([low, high], [low, high], "k-", lw=1, label="exact")
        for f in (0.9, 1.1):
            ax.plot([low, high], [low * f, high * f], "k--", lw=0.7)
        ax.scatter(m, p, s=14)
        ax.set(xlabel="measured end-to-end latency here (ms)", ylabel="predicted latency (ms)",
               title=f"{self.device} / {self.space}: MAPE {self.mape:.2f} %, "
                     f"{self.within_10pct:.0f} % within ±10 %")
        ax.legend(["exact", "±10 %"], loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)


def validate_table(table: LatencyTable, space: Space | str, n: int = 50,
                   seed: int = VALIDATION_SEED, backend: Backend | None = None,
                   progress: bool = True, sampler: str = "uniform",
                   here: dict | None = None) -> ValidationResult:
    """Measure ``n`` random architectures of ``space`` and compare with the table's prediction."""
    return compare_tables([table], space, n, seed, backend, progress, sampler, here)[0]


def compare_tables(tables: list[LatencyTable], space: Space | str, n: int = 50,
                   seed: int = VALIDATION_SEED, backend: Backend | None = None,
                   progress: bool = True, sampler: str = "uniform",
                   here: dict | None = None) -> list[ValidationResult]:
    """Validate several tables on the same measured architectures (measured with ``backend``,
    by default the first table's own) by the raw error; a table profiled on this host (``here``,
    default this machine's fingerprint) also by the error normalised to its reference speed."""
    if sampler not in SAMPLERS:
        raise HwnasError(f"unknown sampler {sampler!r}; valid: {list(SAMPLERS)}")
    space = get_space(space) if isinstance(space, str) else space
    backend = backend or backend_for(tables[0])
    generator = torch.Generator().manual_seed(seed)
    draw = space.sample if sampler == "uniform" else lambda g: spread_sample(space, g)
    specs = [draw(generator) for _ in range(n)]
    for table in tables:  # fail on a missing row before the long measurement
        predict_latency(specs[0], table)
    measured = measure_archs(specs, backend, f"validate {tables[0].device}", progress)
    here = here or host_fingerprint()
    results = []
    for table in tables:
        recorded = table.metadata.get("host_fingerprint")
        local = recorded is not None and same_host(recorded, here)
        calib = table.calibration(space.name)
        applied = calib is not None and bool(calib.get("applied", True))
        predicted = [predict_latency(spec, table).total_ms for spec in specs]
        base = table_reference_ms(table) or measured.reference_ms
        normalised = [ms * base / measured.reference_ms for ms in measured.ms]
        frame = pd.DataFrame({"arch": [s.to_string() for s in specs],
                              "predicted_ms": predicted, "measured_ms": normalised,
                              "raw_ms": measured.raw_ms})
        frame["error_pct"] = (frame["predicted_ms"] / frame["raw_ms"] - 1) * 100
        frame["error_normalised_pct"] = (frame["predicted_ms"] / frame["measured_ms"] - 1) * 100
        stats = errors(predicted, measured.raw_ms)
        results.append(ValidationResult(
            table.device, space.name, table.provenance, applied,
            frame, stats["mape"], stats["within_10pct"], stats["max_error"],
            base, measured.reference_now_ms, errors(predicted, normalised) if local else None,
            None if local or recorded is None else describe_host(recorded)))
    return results
