"""The exact budget sampler of the weight steps, checked against brute-force enumeration."""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest
import torch
from scipy import stats

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix, latency_matrix, load_table
from nas.core.constraints import Constraint
from nas.core.sampler import BudgetSampler, band_floor, random_band_nets
from search_spaces import get_space


def _device(name: str, budget_ms: float, fixed_ms: float, rows) -> Constraint:
    matrix = LatencyMatrix("toy", name, "measured", False, fixed_ms, [list(r) for r in rows])
    return Constraint(matrix, budget_ms, name)


def _toy(seed: int, devices: int, layers: int = 4, cands: int = 4) -> list[Constraint]:
    """Random latencies (skip = 0) on a made-up space, budgets inside its range."""
    rng = random.Random(seed)
    constraints = []
    for d in range(devices):
        rows = [[0.0] + [rng.uniform(0.05, 1.0) for _ in range(cands - 1)] for _ in range(layers)]
        fixed = rng.uniform(0.1, 0.3)
        top = fixed + sum(max(r) for r in rows)
        constraints.append(_device(f"dev{d}", fixed + 0.45 * (top - fixed), fixed, rows))
    return constraints


def _brute_force(constraints: list[Constraint], weights: np.ndarray,
                 floor: float) -> dict[tuple[int, ...], float]:
    """Every admitted net and its normalised probability."""
    found = {}
    for choice in itertools.product(*[range(len(row)) for row in weights]):
        totals = [c.matrix.total(choice) for c in constraints]
        if all(floor * c.budget_ms <= t <= c.budget_ms
               for c, t in zip(constraints, totals, strict=True)):
            found[choice] = float(np.prod([weights[layer][i] for layer, i in enumerate(choice)]))
    norm = sum(found.values())
    return {k: v / norm for k, v in found.items()}


def _chi2_pvalue(sampler: BudgetSampler, truth: dict[tuple[int, ...], float],
                 draws: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    counts = dict.fromkeys(truth, 0)
    for _ in range(draws):
        choice = tuple(sampler.sample(generator))
        assert choice in counts, f"drew {choice}, which is not admitted"
        counts[choice] += 1
    keys = sorted(truth)
    return stats.chisquare([counts[k] for k in keys], [draws * truth[k] for k in keys]).pvalue


@pytest.mark.parametrize(("devices", "floor", "prior"), [
    (1, 0.0, "uniform"), (1, 0.9, "uniform"), (1, 0.7, "weighted"),
    (2, 0.0, "uniform"), (2, 0.6, "weighted")])
def test_draws_match_brute_force(devices: int, floor: float, prior: str) -> None:
    constraints = _toy(devices * 10 + int(floor * 10), devices)
    rng = np.random.default_rng(1)
    weights = (np.ones((4, 4)) if prior == "uniform"
               else rng.uniform(0.2, 1.0, size=(4, 4)))
    truth = _brute_force(constraints, weights, floor)
    assert 8 <= len(truth) < 4 ** 4  # the budget binds and the band is not trivial
    sampler = BudgetSampler(constraints, weights, floor, cells=64)  # a coarse grid: rejections
    assert _chi2_pvalue(sampler, truth, 40 * len(truth), seed=devices) > 1e-3


def test_a_biased_sampler_fails_the_check() -> None:
    """The χ² check can fail: uniform draws judged against a weighted truth."""
    constraints = _toy(3, 1)
    weights = np.ones((4, 4))
    weights[:, 1] = 5.0
    truth = _brute_force(constraints, weights, 0.0)
    sampler = BudgetSampler(constraints, np.ones((4, 4)), 0.0)
    assert _chi2_pvalue(sampler, truth, 40 * len(truth), seed=0) < 1e-6


def test_zero_weight_candidates_are_never_drawn() -> None:
    constraints = _toy(5, 1)
    weights = np.ones((4, 4))
    weights[2, :] = [0.0, 1.0, 0.0, 1.0]
    sampler = BudgetSampler(constraints, weights, 0.0)
    generator = torch.Generator().manual_seed(0)
    assert all(sampler.sample(generator)[2] in (1, 3) for _ in range(300))


def test_empty_band_is_one_clear_error() -> None:
    constraints = [_device("dev", 0.25, 0.2, [[0.0, 1.0], [0.0, 2.0]])]  # only all-skip fits
    assert band_floor(constraints, 0.9) == 0.0
    with pytest.raises(HwnasError, match=r"no net of the space .* lies in"):
        BudgetSampler(constraints, np.ones((2, 2)), 0.9)
    assert BudgetSampler(constraints, np.ones((2, 2)), 0.0).sample(
        torch.Generator().manual_seed(0)) == [0, 0]


def test_hybrid_space_draws_are_admitted_and_fast() -> None:
    """On the real hybrid space at a tight budget (a uniform net lands in its band about 1 time
    in 10,000), every draw is in the band, and a draw takes well under a millisecond."""
    space = get_space("hybrid-cifar")
    matrix = latency_matrix(space, load_table("cpu"))
    budget = 0.15 * matrix.slowest_ms() + 0.85 * (matrix.fixed_ms + sum(
        min(row) for row in matrix.per_layer))
    limit = Constraint(matrix, budget, "cpu")
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    nets = random_band_nets(space, [limit], 0.9, 200, generator)
    per_draw = (time.perf_counter() - start) / 200
    lats = [matrix.total([space.candidate_index(layer) for layer in net.layers]) for net in nets]
    assert all(0.9 * budget <= lat <= budget for lat in lats)
    assert len({net.to_string() for net in nets}) > 190  # a large band: draws rarely repeat
    assert per_draw < 5e-3
