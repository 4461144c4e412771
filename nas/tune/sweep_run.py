"""``hwnas sweep RUN_DIR``: a budget sweep on the supernet a search trained, written to disk.

Loads the run's supernet and its data splits exactly as the search saw them, scores each trial
by the inherited-weight child (BatchNorm re-estimated on ``calibration_images`` weight-split
images) on ``eval_images`` held-out (architecture-split) images, and writes:
``trials.csv``, ``pareto.csv``, ``pareto.png``, ``best_<budget>ms.json`` (one ArchSpec per budget,
exportable with ``hwnas export``) and ``sweep.json`` (settings, table provenance, and for each
budget the supernet's ProxylessNAS derivation scored by the same evaluator, for comparison).
Those derivations also seed the study's first generation.

Without ``--storage`` the study is ``OUT/study.db`` (sqlite), where every trial is saved as it
finishes: a killed sweep loses only the trial in flight, and running it again adds its trials to
the ones kept. A study records the device and budgets it sweeps; another sweep into it is
refused, as is an ``OUT`` that holds a search run or another program's files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_text, atomic_write_with
from hwnas_common.outputs import check_not_a_run
from latency_predictors import LatencyMatrix, latency_matrix, load_table
from nas.core.config import SearchConfig
from nas.core.constraints import Constraint
from nas.core.derive import derive_arch
from nas.run import checkpoint
from nas.run.batches import prepare_data
from nas.tune.storage import redact_url, sqlite_url
from nas.tune.sweep import SweepPoint, SweepResult, supernet_evaluator, sweep
from search_spaces import ArchSpec, Supernet

STUDY_FILE = "study.db"
OUTPUT_FILES = ("trials.csv", "pareto.csv", "pareto.png", "sweep.json")


def check_sweep_out(out: Path) -> None:
    """One clear error when ``out`` holds a search run, or a sweep's file names without being a
    sweep's folder (no ``study.db`` or ``sweep.json``: another program's files)."""
    check_not_a_run(out, "the sweep")
    if not out.is_dir() or (out / STUDY_FILE).is_file() or (out / "sweep.json").is_file():
        return
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name in OUTPUT_FILES or (p.name.startswith("best_")
                                                   and p.name.endswith("ms.json")))
    if foreign:
        raise HwnasError(f"{out} holds {', '.join(foreign)} but no sweep ({STUDY_FILE} or "
                         "sweep.json); the sweep would replace them: choose another --out")


def study_settings(device: str, budgets: Sequence[float]) -> dict:
    """What a sweep's study records of the sweep, to refuse adding another sweep's trials."""
    return {"device": device, "budgets_ms": [float(b) for b in budgets]}


@dataclass(frozen=True)
class SweepRun:
    out: Path
    result: SweepResult
    estimated: bool  # the latency table is an analytical estimate
    derived: dict[float, SweepPoint | None]  # ProxylessNAS derivation per budget, same scoring


def _load_run(run_dir: Path) -> tuple[SearchConfig, Supernet]:
    state = checkpoint.load_checkpoint(run_dir)
    fields = checkpoint.checkpoint_config(state)
    config = SearchConfig(**{**fields, "devices": tuple(fields["devices"]),
                             "budgets_ms": tuple(fields["budgets_ms"]), "progress": False})
    return config, checkpoint.load_supernet(run_dir, state)


def _derived_per_budget(supernet: Supernet, matrix: LatencyMatrix, budgets: Sequence[float],
                        floor: float) -> dict[float, ArchSpec | None]:
    """The search's derivation at each budget (:func:`nas.core.derive.derive_arch`); None where
    the budget is below the smallest achievable latency."""
    derived: dict[float, ArchSpec | None] = {}
    for budget in budgets:
        try:
            derived[budget] = derive_arch(supernet, [Constraint(matrix, budget, matrix.device)],
                                          floor)
        except HwnasError:
            derived[budget] = None
    return derived


def _points_csv(points: Sequence[SweepPoint]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "accuracy", "latency_ms", "arch"])
    for p in points:
        writer.writerow([p.trial, p.accuracy, p.latency_ms, p.spec.to_string()])
    return buffer.getvalue()


def _plot(path: Path, result: SweepResult, budgets: Sequence[float], device: str,
          derived: Sequence[SweepPoint]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    largest = max(budgets)
    inside = [p for p in result.points if p.latency_ms <= largest]
    over = [p for p in result.points if p.latency_ms > largest]
    ax.scatter([p.latency_ms for p in inside], [p.accuracy for p in inside],
               s=8, alpha=0.4, label="trials")
    if over:
        ax.scatter([p.latency_ms for p in over], [p.accuracy for p in over], s=10, marker="x",
                   c="gray", alpha=0.5, label="trials over every budget")
    ax.plot([p.latency_ms for p in result.pareto], [p.accuracy for p in result.pareto], "r.-",
            label="Pareto front")
    if derived:
        ax.scatter([p.latency_ms for p in derived], [p.accuracy for p in derived], marker="*",
                   s=120, c="k", label="ProxylessNAS-derived per budget")
    for i, budget in enumerate(budgets):
        ax.axvline(budget, ls="--", c="gray", lw=0.8, label="budgets" if i == 0 else None)
    ax.set_xlabel(f"predicted latency on {device} (ms)")
    ax.set_ylabel("held-out accuracy (inherited weights)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def sweep_run(run_dir: str | Path, device: str, budgets: Sequence[float], n_trials: int,
              out: str | Path | None = None, seed: int = 0, storage: str | None = None,
              study_name: str | None = None, calibration_images: int = 512,
              eval_images: int = 2000) -> SweepRun:
    """Sweep ``budgets`` on ``device`` over the supernet of ``run_dir``; write the results."""
    run_dir = Path(run_dir)
    config, supernet = _load_run(run_dir)
    space = supernet.space
    table = load_table(device)
    matrix = latency_matrix(space, table)
    out = Path(out) if out else run_dir / f"sweep-{table.device}"
    check_sweep_out(out)
    if storage is None:  # trials are kept as they finish, in the sweep's own folder
        out.mkdir(parents=True, exist_ok=True)
        storage = sqlite_url(out / STUDY_FILE)
    study_name = study_name or f"sweep-{table.device}"
    splits = prepare_data(config, torch.device("cpu"))
    calibration = list(splits.weight.in_order(limit=calibration_images))
    evaluation = list(splits.arch.in_order(limit=eval_images))
    if not calibration or not evaluation:
        raise HwnasError("the run's data split is empty")
    evaluate = supernet_evaluator(supernet, calibration, evaluation)
    derived = _derived_per_budget(supernet, matrix, budgets, config.budget_floor)
    result = sweep(space, matrix, budgets, evaluate, n_trials, seed, storage, study_name,
                   progress=True, seeds=[spec for spec in derived.values() if spec is not None],
                   settings=study_settings(table.device, budgets))
    scored = {p.spec: p for p in result.points}

    def point(spec: ArchSpec) -> SweepPoint:
        choice = [space.candidate_index(layer) for layer in spec.layers]
        return scored.get(spec) or SweepPoint(spec, evaluate(spec), matrix.total(choice), -1)

    derived_points = {b: None if spec is None else point(spec) for b, spec in derived.items()}
    atomic_write_text(out / "trials.csv", _points_csv(result.points))
    atomic_write_text(out / "pareto.csv", _points_csv(result.pareto))
    for budget, best in result.best.items():
        if best is not None:
            atomic_write_text(out / f"best_{budget:g}ms.json", best.spec.to_json() + "\n")
    _plot(out / "pareto.png", result, budgets, table.device,
          [p for p in derived_points.values() if p is not None])
    summary = {"run_dir": str(run_dir), "device": table.device, "provenance": table.provenance,
               "budgets_ms": list(budgets), "trials_in_study": len(result.points),
               "seed": seed, "storage": redact_url(storage), "study_name": study_name,
               "calibration_images": calibration_images, "eval_images": eval_images,
               "best": {f"{b:g}ms": None if p is None else {
                   "arch": p.spec.to_string(), "accuracy": p.accuracy, "latency_ms": p.latency_ms}
                   for b, p in result.best.items()},
               "proxyless_derived": {f"{b:g}ms": None if p is None else {
                   "arch": p.spec.to_string(), "accuracy": p.accuracy, "latency_ms": p.latency_ms}
                   for b, p in derived_points.items()}}
    atomic_write_text(out / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return SweepRun(out, result, table.estimated, derived_points)
