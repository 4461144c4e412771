"""Tune the latency-loss strength with Optuna so a search's expected latency lands at its budget.

ProxylessNAS's β (``mul_log``) and λ (``add_linear``) were set for one target on ImageNet; on
another device, budget or data set the same strength may leave E[LAT] far above the budget
(the knapsack then has to cut the distribution hard) or far below it (accuracy given away).
``calibrate_strength`` searches the strength on a log scale with Optuna, in the loss's
``search_range`` (:data:`nas.core.latency_loss.LOSSES`); each trial is a whole search with
that strength, scored by ``|max_d E_d / T_d − 1|``: the relative gap between the final
expected latency of the binding device and its budget. Trials are expensive and few, and
the gap is a smooth function of one variable, so the sampler is Optuna's Gaussian-process
sampler after two start-up trials (the paper's value, then one random), not TPE, whose default
start-up alone is ten random trials.

The warm-up epochs do not use the latency loss, so they are run once and every trial continues
from that checkpoint. Everything lives in ``OUT/calibration/``: ``warmup/``, ``trial-NNN/`` (a
complete run directory per trial), ``study.db`` (the Optuna study, sqlite) and
``calibration.csv``. A killed calibration continues with ``resume``: finished trials are kept,
an interrupted trial continues from its last epoch. The best trial's run directory is copied to
``OUT`` (with a ``calibration`` record in ``summary.json``), so ``hwnas export OUT`` works.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_text, atomic_write_with
from hwnas_common.outputs import check_not_a_run
from nas.core.config import SearchConfig
from nas.core.constraints import Constraint
from nas.core.derive import check_feasible
from nas.core.latency_loss import LOSSES
from nas.run import checkpoint, report
from nas.run.distributed import is_distributed
from nas.run.search import RunResult, search
from nas.tune.storage import sqlite_url
from search_spaces import ArchSpec, get_space

STUDY = "loss-strength"


def budget_gap(history_row: dict, constraints: Sequence[Constraint]) -> float:
    """``max_d E_d / T_d − 1`` from an epoch row of ``metrics.csv`` (signed)."""
    expected = report.latency_columns(history_row, "expected")
    return max(expected[c.source] / c.budget_ms for c in constraints) - 1.0


def calibrate_strength(config: SearchConfig, constraints: Sequence[Constraint],
                       trials: int) -> RunResult:
    """Run ``trials`` searches (Optuna) and return the best one, copied to ``config.out``."""
    if trials < 1:
        raise HwnasError(f"--calibrate-budget needs at least 1 trial, got {trials}")
    if is_distributed() or config.loss_strength is not None:
        raise HwnasError("--calibrate-budget runs in one process and chooses the loss "
                         "strength itself; drop torchrun / --loss-strength")
    out = Path(config.out)
    base = out / "calibration"
    if base.exists() and not config.resume:
        raise HwnasError(f"{out} already holds a calibration; pass --resume to continue it or "
                         "choose another --out")
    if not base.exists():  # with one, OUT's run files are the calibration's own best trial
        check_not_a_run(out, "--calibrate-budget")
    check_feasible(get_space(config.space), constraints)  # before anything is written
    if config.resume and not base.exists() and config.progress:
        print(f"--resume: no calibration in {base} yet (killed before it started?); starting "
              "it afresh", file=sys.stderr)
    base.mkdir(parents=True, exist_ok=True)
    warmup = _warm_up(config, constraints, base / "warmup")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=sqlite_url(base / "study.db"), study_name=STUDY,
                                direction="minimize", load_if_exists=True)
    loss = LOSSES[config.loss]
    low, high = loss.search_range  # searched log-uniform
    if not study.trials:
        study.enqueue_trial({"strength": loss.default})  # the paper's value
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "strength" in trial.params:  # interrupted by a kill: continue it
            _run_trial(config, constraints, base, warmup, study, trial.number,
                       trial.params["strength"])
        else:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    while _finished(study) < trials:
        # a sampler seeded by the trials finished so far: its suggestion depends on the study's
        # history alone, so a run resumed after a kill suggests what an uninterrupted one would
        study.sampler = optuna.samplers.GPSampler(seed=config.seed + _finished(study),
                                                  n_startup_trials=2)
        trial = study.ask()
        _run_trial(config, constraints, base, warmup, study, trial.number,
                   trial.suggest_float("strength", low, high, log=True))
    rows = _trial_rows(base, study, constraints)
    _write_csv(base / "calibration.csv", rows)
    best = study.best_trial
    return _adopt(base / _trial_dir(best.number), out, config, best, len(rows))


def _warm_up(config: SearchConfig, constraints: Sequence[Constraint], folder: Path) -> Path:
    """Where the checkpoint after the warm-up epochs is (run once, resumable); with no
    warm-up epochs it does not exist and trials start from scratch."""
    path = folder / checkpoint.CHECKPOINT
    if config.warmup_epochs == 0:
        return path
    done = path.is_file() and checkpoint.load_checkpoint(folder)["epoch"] >= config.warmup_epochs
    if not done:
        search(dataclasses.replace(config, out=str(folder), resume=path.is_file()),
               constraints, stop_after_epoch=config.warmup_epochs)
    return path


def _trial_dir(number: int) -> str:
    return f"trial-{number:03d}"


def _run_trial(config: SearchConfig, constraints: Sequence[Constraint], base: Path,
               warmup: Path, study: optuna.Study, number: int, strength: float) -> None:
    folder = base / _trial_dir(number)
    if not (folder / checkpoint.CHECKPOINT).is_file() and warmup.is_file():
        snapshot = warmup.parent / checkpoint.WARMUP  # what the trial's verdict scores on
        if snapshot.is_file():
            atomic_write_with(folder / checkpoint.WARMUP,
                              lambda tmp: shutil.copyfile(snapshot, tmp))
        atomic_write_with(folder / checkpoint.CHECKPOINT,
                          lambda tmp: shutil.copyfile(warmup, tmp))
    resume = (folder / checkpoint.CHECKPOINT).is_file()
    if config.progress:
        print(f"calibration trial {number}: loss strength {strength:.4g}", flush=True)
    search(dataclasses.replace(config, out=str(folder), resume=resume, loss_strength=strength),
           constraints)
    gap = budget_gap(_last_epoch(folder), constraints)
    study.tell(number, abs(gap))
    if config.progress:
        print(f"calibration trial {number}: max E[LAT]/budget − 1 = {gap:+.3f}", flush=True)


def _last_epoch(folder: Path) -> dict[str, float]:
    """Held-out accuracy and expected latencies of a finished trial's last epoch, read from its
    ``metrics.csv`` (loading the checkpoint for them would read every supernet weight)."""
    with open(folder / "metrics.csv", newline="") as file:
        *_, last = csv.DictReader(file)
    expected = report.latency_columns(last, "expected")
    return {"heldout_acc": float(last["heldout_acc"]),
            **{report.latency_column("expected", t): ms for t, ms in expected.items()}}


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _trial_rows(base: Path, study: optuna.Study,
                constraints: Sequence[Constraint]) -> list[dict]:
    rows = []
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        folder = base / _trial_dir(t.number)
        last = _last_epoch(folder)
        rows.append({"trial": t.number, "strength": t.params["strength"],
                     "gap": budget_gap(last, constraints),
                     **{k: v for k, v in last.items() if k != "heldout_acc"},
                     "heldout_acc": last["heldout_acc"],
                     "arch": ArchSpec.from_json((folder / "arch.json").read_text()).to_string()})
    return rows


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _adopt(trial_dir: Path, out: Path, config: SearchConfig, best: optuna.trial.FrozenTrial,
           trials: int) -> RunResult:
    """Copy the best trial's run directory to ``out`` (summary.json last) and describe it."""
    for source in sorted(trial_dir.iterdir()):
        if source.is_file() and source.name != "summary.json" and not source.name.startswith("."):
            atomic_write_with(out / source.name, lambda tmp, s=source: shutil.copyfile(s, tmp))
    summary = json.loads((trial_dir / "summary.json").read_text())
    summary["calibration"] = {"loss": config.loss, "strength": best.params["strength"],
                              "abs_budget_gap": best.value, "trial": best.number,
                              "trials": trials, "csv": "calibration/calibration.csv"}
    report.write_summary(out, summary)
    return RunResult(out, ArchSpec.from_json((out / "arch.json").read_text()),
                     summary["predicted_latency_ms"], summary["budgets_ms"],
                     summary["test_accuracy_inherited"],
                     [t["table"] for t in summary["tables"] if t["provenance"] == "estimated"],
                     summary.get("test_accuracy_finetuned"), summary.get("verdict"),
                     summary["calibration"])

