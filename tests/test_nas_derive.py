"""Budgets and the exact knapsack derivation, checked against brute force."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

import cli
from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix
from nas.core.budget import (
    RelativeBudget,
    parse_budget,
    parse_budget_request,
    parse_budget_requests,
    parse_budgets,
)
from nas.core.constraints import Constraint, load_constraints
from nas.core.derive import min_latency, solve
from tests.helpers import SEARCH_TINY, search_argv, tiny_table


@pytest.mark.parametrize(("text", "ms"), [("30ms", 30.0), ("1.5s", 1500.0), ("800us", 0.8),
                                          (" 2 ms ", 2.0), ("1e-1ms", 0.1)])
def test_parse_budget(text: str, ms: float) -> None:
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["abc", "-3ms", "0", "0ms", "nan", "nanms", "inf ms", "30",
                                  "30 kb", ""])
def test_parse_budget_rejects(text: str) -> None:
    with pytest.raises(HwnasError, match="budget"):
        parse_budget(text)


def test_parse_budgets_list() -> None:
    assert parse_budgets("30ms,3ms") == [30.0, 3.0]


def test_relative_budgets_parse_and_resolve() -> None:
    assert parse_budget_requests("15%,3ms") == [RelativeBudget(0.15), 3.0]
    assert parse_budget_request(" 100 % ") == RelativeBudget(1.0)
    assert RelativeBudget(0.25).resolve(1.0, 5.0) == pytest.approx(2.0)
    assert str(RelativeBudget(0.15)) == "15%"
    for bad in ("0%", "150%", "-5%", "abc%", "5%ms"):
        with pytest.raises(HwnasError, match="relative budget"):
            parse_budget_request(bad)


def test_relative_budget_resolves_on_the_space_of_the_table(tmp_path) -> None:
    """15 % is 15 % of the way from the space's fastest net to its slowest on that table."""
    table = tiny_table(tmp_path)
    (limit,) = load_constraints(SEARCH_TINY, [str(table)], [RelativeBudget(0.15)])
    fastest, slowest = limit.matrix.fastest_ms(), limit.matrix.slowest_ms()
    assert fastest == pytest.approx(min_latency(limit)) and fastest < slowest
    assert limit.budget_ms == pytest.approx(fastest + 0.15 * (slowest - fastest))
    assert limit.requested == "15%" and limit.describe()["budget_requested"] == "15%"
    assert f"= {limit.budget_ms:.4g} ms" in limit.budget_line()


def _device(name: str, budget_ms: float, fixed_ms: float, rows) -> Constraint:
    """A device of a made-up space: its latency rows and its budget."""
    matrix = LatencyMatrix("toy", name, "measured", False, fixed_ms, [list(r) for r in rows])
    return Constraint(matrix, budget_ms, name)


def total_latency(budget: Constraint, choice) -> float:
    return budget.matrix.total(choice)


def _instance(rng: random.Random, layers: int, cands: int, devices: int):
    scores = [[math.log(rng.random() + 1e-9) for _ in range(cands)] for _ in range(layers)]
    budgets = []
    for d in range(devices):
        rows = tuple(tuple([0.0] + [round(rng.uniform(0.05, 1.0), rng.choice([1, 3, 6]))
                                    for _ in range(cands - 1)]) for _ in range(layers))
        base = _device(f"dev{d}", 0.0, rng.uniform(0, 0.5), rows)
        lo, hi = min_latency(base), base.matrix.fixed_ms + sum(max(r) for r in rows)
        budgets.append(_device(f"dev{d}", rng.uniform(0.95 * lo, lo + 0.5 * (hi - lo)),
                                    base.matrix.fixed_ms, rows))
    return scores, budgets


def _brute_force(scores, budgets, floor: float = 0.0) -> float | None:
    best = None
    for choice in itertools.product(*[range(len(row)) for row in scores]):
        if all(floor * b.budget_ms <= total_latency(b, choice) <= b.budget_ms
               for b in budgets):
            value = sum(row[c] for row, c in zip(scores, choice, strict=True))
            best = value if best is None else max(best, value)
    return best


@pytest.mark.parametrize("devices", [1, 2, 3])
def test_knapsack_matches_brute_force(devices: int) -> None:
    rng = random.Random(devices)
    checked_infeasible = 0
    for _ in range(60):
        scores, budgets = _instance(rng, rng.randint(1, 5), rng.randint(2, 5), devices)
        want = _brute_force(scores, budgets)
        if want is None:
            with pytest.raises(HwnasError, match="smallest achievable"):
                solve(scores, budgets)
            checked_infeasible += 1
            continue
        choice = solve(scores, budgets)
        assert all(total_latency(b, choice) <= b.budget_ms for b in budgets)
        got = sum(row[c] for row, c in zip(scores, choice, strict=True))
        assert got == pytest.approx(want, abs=1e-9)
    assert devices == 1 or checked_infeasible > 0  # jointly infeasible cases were exercised


@pytest.mark.parametrize("devices", [1, 2])
def test_knapsack_with_a_budget_floor_matches_brute_force(devices: int) -> None:
    rng = random.Random(10 + devices)
    filled = fell_back = 0
    for _ in range(80):
        scores, budgets = _instance(rng, rng.randint(1, 5), rng.randint(2, 5), devices)
        if _brute_force(scores, budgets) is None:
            continue
        floor = rng.choice([0.5, 0.8, 0.9, 0.97])
        choice = solve(scores, budgets, floor)
        got = sum(row[c] for row, c in zip(scores, choice, strict=True))
        in_band = _brute_force(scores, budgets, floor)
        if in_band is None:  # no net reaches the floor: the plain optimum
            assert got == pytest.approx(_brute_force(scores, budgets), abs=1e-9)
            fell_back += 1
        else:
            assert all(floor * b.budget_ms <= total_latency(b, choice) <= b.budget_ms
                       for b in budgets)
            assert got == pytest.approx(in_band, abs=1e-9)
            filled += 1
    assert filled > 10 and fell_back > 0
    with pytest.raises(HwnasError, match="floor must be in"):
        solve(scores, budgets, 1.0)


def test_knapsack_budget_exactly_reachable() -> None:
    # The only feasible choice sits exactly on the budget: no rounding may drop it.
    rows = ((0.1, 0.2), (0.2, 0.1), (0.3, 0.7))
    budget = _device("d", 0.1 + 0.2 + 0.1 + 0.3, 0.1, rows)
    scores = [[0.0, 1.0], [1.0, 0.0], [0.0, 5.0]]
    choice = solve(scores, [budget])
    assert total_latency(budget, choice) <= budget.budget_ms
    assert choice[2] == 0


def test_infeasible_names_smallest_latency_per_device() -> None:
    rows = ((0.0, 1.0), (0.5, 2.0))
    budgets = [_device("vpu", 0.4, 0.2, rows), _device("cpu", 10.0, 0.2, rows)]
    with pytest.raises(HwnasError) as err:
        solve([[0.0, 0.0], [0.0, 0.0]], budgets)
    message = str(err.value)
    assert "vpu: smallest achievable 0.7 ms" in message and "cpu" in message
    assert "\n" not in message


@pytest.mark.parametrize(("layers", "cands", "devices", "floor", "uniform"),
                         [(12, 31, 2, 0.0, False), (12, 31, 2, 0.9, False),
                          (21, 37, 1, 0.9, False), (12, 31, 1, 0.9, True),
                          (21, 37, 1, 0.9, True)])
def test_knapsack_is_fast_on_a_realistic_size(layers: int, cands: int, devices: int,
                                              floor: float, uniform: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with a uniform p (after warm-up every net scores the same: ties must be pruned).
    Counted in branch-and-bound visits, not seconds: the bound prunes all but a few of the
    cands^layers nets (88 visits at most here; each visit costs O(cands · devices))."""
    from nas.core import derive

    visits: list[int] = []
    start = derive._BranchAndBound.start

    def counted(self: derive._BranchAndBound, node_limit: int | None = None) -> bool:
        try:
            return start(self, node_limit)
        finally:
            visits.append(self.nodes)

    monkeypatch.setattr(derive._BranchAndBound, "start", counted)
    rng = random.Random(7)
    scores, budgets = _instance(rng, layers, cands, devices)
    if uniform:
        scores = [[-math.log(cands)] * cands for _ in range(layers)]
    budgets = [_device(b.source, (min_latency(b) + b.budget_ms) / 2, b.matrix.fixed_ms,
                       b.matrix.per_layer) for b in budgets]
    choice = solve(scores, budgets, floor)
    assert visits and sum(visits) <= 1_000  # a search derives after every epoch
    assert all(total_latency(b, choice) <= b.budget_ms for b in budgets)


def test_search_prints_and_saves_how_a_relative_budget_resolved(tmp_path, capsys) -> None:
    table = str(tiny_table(tmp_path / "tables"))
    argv = search_argv(tmp_path / "run", table, "--budget", "60%", "--verdict-nets", "0",
                       "--select-top", "1")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"budget 60% on {table!r} = 1.5 ms" in out  # 0.3 + 0.6 × (2.3 − 0.3)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["budgets_ms"][table] == pytest.approx(1.5)
    assert summary["tables"][0]["budget_requested"] == "60%"
    assert summary["predicted_latency_ms"][table] <= 1.5
