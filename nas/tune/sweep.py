"""Budget sweeps on a trained supernet with Optuna's NSGA-II (Once-for-All style).

Each trial picks one candidate per searchable layer (one categorical per layer), scores its
accuracy with an evaluator — by default the child inheriting the supernet's weights, its
BatchNorm statistics re-estimated on training batches, evaluated on the held-out split — and
its latency with the device table. NSGA-II maximises accuracy and minimises latency; the budget
enters as an Optuna trial constraint (``trial.set_constraint``, value ``latency - max budget``,
feasible when ≤ 0; Optuna 5's replacement of ``constraints_func``), which NSGA-II's constrained
domination reads, not through rejection loops, so infeasible trials still inform the search.

Several processes may share one study through Optuna's RDB storage
(``storage="sqlite:///sweep.db"`` here, a PostgreSQL URL across machines).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import torch
from tqdm import tqdm

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix
from nas.run.evaluate import recalibrate_batchnorm, top1_accuracy
from nas.tune.storage import redact_text, redact_url
from search_spaces import ArchSpec, Space, Supernet

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
LATENCY_ATTR = "latency_ms"
CONSTRAINT = "latency_over_budget_ms"  # feasible when <= 0
SETTINGS_ATTR = "hwnas_sweep"  # study user attribute: what the study sweeps
_OPEN_ATTEMPTS = 5


def supernet_evaluator(supernet: Supernet, calibration: Batches, evaluation: Batches
                       ) -> Callable[[ArchSpec], float]:
    """Accuracy of a spec's child with inherited weights and recalibrated BatchNorm."""

    if not evaluation:
        raise HwnasError("no evaluation data")

    def evaluate(spec: ArchSpec) -> float:
        child = recalibrate_batchnorm(supernet.child(spec), calibration)
        return top1_accuracy(child, evaluation)

    return evaluate


@dataclass(frozen=True)
class SweepPoint:
    spec: ArchSpec
    accuracy: float
    latency_ms: float
    trial: int


@dataclass(frozen=True)
class SweepResult:
    points: list[SweepPoint]  # every completed trial
    pareto: list[SweepPoint]  # non-dominated feasible points, by latency
    best: dict[float, SweepPoint | None]  # budget (ms) -> most accurate point within it


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """Points no other point beats on both accuracy (higher) and latency (lower)."""
    front, best_accuracy = [], -math.inf
    for point in sorted(points, key=lambda p: (p.latency_ms, -p.accuracy)):
        if point.accuracy > best_accuracy:
            front.append(point)
            best_accuracy = point.accuracy
    return front


def best_per_budget(points: Sequence[SweepPoint], budgets: Sequence[float]
                    ) -> dict[float, SweepPoint | None]:
    best: dict[float, SweepPoint | None] = {}
    for budget in budgets:
        fitting = [p for p in points if p.latency_ms <= budget]
        best[budget] = max(fitting, key=lambda p: (p.accuracy, -p.latency_ms), default=None)
    return best


def create_study(budgets: Sequence[float], seed: int, storage: str | None = None,
                 study_name: str | None = None, population: int = 24) -> optuna.Study:
    """An NSGA-II study (max accuracy, min latency) constrained to the largest budget."""
    if not budgets or min(budgets) <= 0:
        raise HwnasError(f"budgets must be positive, got {list(budgets)}")
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    from sqlalchemy.exc import SQLAlchemyError

    attempt = 0
    while True:
        try:
            return optuna.create_study(storage=storage, sampler=sampler, study_name=study_name,
                                       directions=["maximize", "minimize"], load_if_exists=True)
        except SQLAlchemyError as err:  # workers started together race to create the schema
            attempt += 1
            if attempt == _OPEN_ATTEMPTS:
                raise HwnasError(f"cannot open Optuna storage {redact_url(storage)!r}: "
                                 f"{redact_text(str(err), storage)}") from None
            time.sleep(0.2 * attempt)
        except (ValueError, ImportError) as err:
            raise HwnasError(f"cannot open Optuna storage {redact_url(storage)!r}: "
                             f"{redact_text(str(err), storage)}") from None


def study_points(study: optuna.Study, space: Space) -> list[SweepPoint]:
    """The completed trials of ``study`` as SweepPoints."""
    points = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        tokens = [trial.params[f"layer{i}"] for i in range(space.num_layers)]
        spec = space.spec_from_string("|".join(tokens))
        points.append(SweepPoint(spec, trial.values[0], trial.values[1], trial.number))
    return points


def sweep(space: Space, matrix: LatencyMatrix, budgets: Sequence[float],
          evaluate: Callable[[ArchSpec], float], n_trials: int, seed: int = 0,
          storage: str | None = None, study_name: str | None = None,
          population: int = 24, progress: bool = False,
          seeds: Sequence[ArchSpec] = (), settings: dict | None = None) -> SweepResult:
    """Run ``n_trials`` NSGA-II trials (added to a shared study when ``storage`` is given).

    ``seeds`` are evaluated first when the study is new (e.g. the supernet's own derivation at
    each budget): random architectures of a large space rarely meet a tight budget, so the first
    NSGA-II generation would otherwise hold no feasible parent. ``settings`` (JSON data) are
    recorded in a new study; a study that records other settings is refused.
    """
    study = create_study(budgets, seed, storage, study_name, population)
    if settings is not None:
        found = study.user_attrs.get(SETTINGS_ATTR)
        if found is None and not study.trials:
            study.set_user_attr(SETTINGS_ATTR, settings)
        elif found != settings:
            raise HwnasError(f"study {study.study_name!r} in {redact_url(storage)} holds a sweep "
                             f"of {found or 'unrecorded settings'}, not {settings}; repeat its "
                             "settings to add trials, or choose another --out or --study")
    tokens = list(space.tokens)
    if not study.trials:
        for spec in seeds:
            study.enqueue_trial({f"layer{i}": layer.token for i, layer in enumerate(spec.layers)})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        choices = [trial.suggest_categorical(f"layer{i}", tokens) for i in range(space.num_layers)]
        spec = space.spec_from_string("|".join(choices))
        latency = matrix.total([space.candidate_index(layer) for layer in spec.layers])
        trial.set_user_attr(LATENCY_ATTR, latency)
        trial.set_constraint(CONSTRAINT, latency - max(budgets))
        return evaluate(spec), latency

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tqdm(total=n_trials, desc="sweep trials (NSGA-II)", unit="trial",
              disable=not progress) as bar:
        study.optimize(objective, n_trials=n_trials, callbacks=[lambda *_: bar.update()])
    points = study_points(study, space)
    feasible = [p for p in points if p.latency_ms <= max(budgets)]
    return SweepResult(points, pareto_front(feasible), best_per_budget(points, budgets))
