"""Optuna budget sweep: NSGA-II constraint wiring, Pareto front, BN recalibration, shared study."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix
from nas.run.evaluate import recalibrate_batchnorm
from nas.tune.sweep import (
    CONSTRAINT,
    SweepPoint,
    best_per_budget,
    create_study,
    pareto_front,
    study_points,
    sweep,
)
from search_spaces import build, get_space

SPACE = get_space("proxyless-cifar")


def toy_matrix(seed: int = 0) -> LatencyMatrix:
    generator = torch.Generator().manual_seed(seed)
    rows = [[0.0] + (torch.rand(len(SPACE.candidates) - 1, generator=generator) + 0.1).tolist()
            for _ in range(SPACE.num_layers)]
    return LatencyMatrix(SPACE.name, "toy", "measured", False, 1.0, rows)


def toy_accuracy(spec) -> float:
    """Accuracy that grows with depth and expansion: trades off against latency."""
    return sum(0 if layer.op == "skip" else layer.expansion / 6 for layer in spec.layers) / 9


def test_sweep_respects_constraints_and_budgets() -> None:
    matrix = toy_matrix()
    budgets = [4.5, 6.0]
    result = sweep(SPACE, matrix, budgets, toy_accuracy, n_trials=60, seed=1, population=12)
    assert len(result.points) == 60
    for point in result.points:
        indices = [SPACE.candidate_index(layer) for layer in point.spec.layers]
        assert point.latency_ms == pytest.approx(matrix.total(indices))
        assert point.accuracy == pytest.approx(toy_accuracy(point.spec))
    for budget, best in result.best.items():
        fitting = [p for p in result.points if p.latency_ms <= budget]
        assert best is not None and best.latency_ms <= budget
        assert best.accuracy == max(p.accuracy for p in fitting)
    assert all(p.latency_ms <= max(budgets) for p in result.pareto)


def test_constraint_values_are_recorded_by_optuna(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep(SPACE, toy_matrix(), [4.0, 5.0], toy_accuracy, n_trials=8, seed=0, population=4,
          storage=storage, study_name="c")
    study = optuna.load_study(study_name="c", storage=storage)
    assert len(study.trials) == 8
    for trial in study.trials:  # latency minus the largest budget, where NSGA-II reads it
        assert trial.constraints == {CONSTRAINT: pytest.approx(trial.values[1] - 5.0)}


def test_pareto_front_and_best_per_budget_vs_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    spec = SPACE.sample(generator)
    for _ in range(20):
        values = torch.randint(0, 6, (12, 2), generator=generator).tolist()
        points = [SweepPoint(spec, a / 5, lat + 1.0, i) for i, (a, lat) in enumerate(values)]
        front = pareto_front(points)
        dominated = {p.trial for p, q in itertools.product(points, points)
                     if q.accuracy >= p.accuracy and q.latency_ms <= p.latency_ms
                     and (q.accuracy, q.latency_ms) != (p.accuracy, p.latency_ms)}
        undominated = {(p.accuracy, p.latency_ms) for p in points if p.trial not in dominated}
        assert {(p.accuracy, p.latency_ms) for p in front} == undominated
        for budget, best in best_per_budget(points, [2.0, 4.0, 0.5]).items():
            fitting = [p.accuracy for p in points if p.latency_ms <= budget]
            assert (best is None) == (not fitting)
            assert best is None or best.accuracy == max(fitting)
    with pytest.raises(HwnasError, match="budgets must be positive"):
        create_study([0.0], seed=0)


def test_batchnorm_recalibration_is_an_exact_average() -> None:
    child = build(SPACE.sample(torch.Generator().manual_seed(0)))
    batches = [(torch.randn(4, 3, 32, 32) * 2 + 1, torch.zeros(4, dtype=torch.long))
               for _ in range(3)]
    recalibrate_batchnorm(child, batches)
    assert not child.training
    conv, norm = child.stem[0], child.stem[1]
    with torch.no_grad():
        features = torch.cat([conv(x) for x, _ in batches])
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)))
    assert norm.momentum == 0.1


WORKER = """
import sys
from nas.tune.sweep import sweep
from tests.test_sweep import SPACE, toy_accuracy, toy_matrix
sweep(SPACE, toy_matrix(), [4.0], toy_accuracy, n_trials=8, seed=int(sys.argv[2]),
      storage=sys.argv[1], study_name="shared", population=4)
"""


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    root = Path(__file__).resolve().parents[1]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, storage, str(seed)], cwd=root)
               for seed in (1, 2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=storage)
    points = study_points(study, SPACE)
    assert len(points) == 16 and len({p.trial for p in points}) == 16


def test_seed_architectures_are_evaluated_first() -> None:
    seeds = [SPACE.spec_from_string("|".join(["skip"] * 9)),
             SPACE.sample(torch.Generator().manual_seed(4))]
    result = sweep(SPACE, toy_matrix(), [6.0], toy_accuracy, n_trials=5, seed=0, population=4,
                   seeds=seeds)
    assert [p.spec for p in sorted(result.points, key=lambda p: p.trial)[:2]] == seeds
