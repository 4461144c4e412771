"""Budget-constrained derivation: an exact multiple-choice knapsack over the layers.

``derive_arch(supernet, constraints, floor)`` is what a search ends with; ``solve`` is the
knapsack on any scores; ``check_feasible`` is its infeasibility test before a search starts.
Every device enters as a :class:`nas.core.constraints.Constraint`: its latency matrix (the one
latency record, :class:`latency_predictors.LatencyMatrix`) and its budget.

Pick one candidate ``c_l`` per layer to maximise ``Σ_l log p_l[c_l]`` subject to, for every
device d, ``fixed_d + Σ_l LAT_d(l, c_l) ≤ budget_d``. ProxylessNAS (Cai et al., ICLR 2019)
takes the argmax of every layer and gives no guarantee; this derivation always meets the budgets.

With a ``floor`` (the search's default is 0.9) the net must also use at least ``floor ·
budget_d`` on every device, whenever some net of the space can: the most probable net of the
band ``[floor · budget, budget]``. Short searches leave p diffuse, and then skip (one candidate
against 30 blocks) often wins its layer's argmax although most of the layer's mass is on
blocks: the plain optimum used 38-96 % of its budget in 9 short searches.

Method: depth-first branch and bound over the layers, on the original floating-point latencies
(no discretisation, so no rounding can turn an infeasible choice feasible or the reverse).

Why it is exact:

1. Admissible bounds. For a prefix (layers ``< l`` chosen), ``U = score + min_d V_d(l, r_d)``
   where ``V_d(l, r)`` is the best suffix score with suffix latency ≤ r on device d alone, and
   ``r_d`` is what is left of device d's budget. Every feasible completion satisfies each
   device's constraint, so its score is ≤ every ``V_d``: U never under-estimates. ``V_d`` is
   computed exactly by a one-device Pareto-frontier DP (states ``(latency, score)`` kept only
   when no other state has latency ≤ and score ≥; no discretisation). A prefix whose latency
   plus the smallest possible latency of the remaining layers exceeds a budget has no
   feasible completion (``V_d = -inf``).
2. Pruning only drops a subtree when its bound cannot beat the incumbent by more than the
   1e-9 relative rounding of summed log-probabilities; so ties (a uniform p after warm-up,
   where every net scores the same) are not explored one by one.
3. Within a layer, a candidate dominated by another one (score ≥ and latency ≤ on every
   device) is dropped: swapping it for its dominator never hurts score or feasibility. (Not
   with a floor, where a slower candidate may be needed to reach it.)
4. Leaves are accepted with the exact ``≤ budget`` test (and ``≥ floor · budget``) on the same
   left-to-right sums as :meth:`latency_predictors.LatencyMatrix.total`, so the result is
   feasible by construction and optimal among all feasible choices (up to the 1e-9 relative
   rounding of summed log-probabilities).
5. With a floor, a prefix is also dropped when even the slowest completion stays below the
   floor on some device; the bound of 1. ignores the floor, so it stays admissible but can be
   loose: the band search stops after ``FLOOR_NODE_LIMIT`` visits with the best band choice
   found (exact when it ends sooner, as on every brute-force test instance).

With one device ``V_1`` is the exact value-to-go, so the search walks straight to the optimum;
with several devices the bound is the tightest single-device relaxation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch

from hwnas_common import HwnasError
from nas.core.constraints import Constraint
from search_spaces import ArchSpec, Space, Supernet

_MARGIN = 1e-9  # relative rounding margin of the pruning tests (keeps more, never fewer)


def min_latency(budget: Constraint) -> float:
    """The smallest latency any architecture can reach on this device."""
    return budget.matrix.fastest_ms()


def _check_shapes(scores: Sequence[Sequence[float]], budgets: Sequence[Constraint]) -> None:
    if not budgets:
        raise HwnasError("derivation needs at least one (device, budget) pair")
    shape = [len(row) for row in scores]
    for budget in budgets:
        if [len(row) for row in budget.matrix.per_layer] != shape:
            raise HwnasError(f"latency matrix of {budget.source!r} has shape "
                             f"{[len(r) for r in budget.matrix.per_layer]}, scores have {shape}")
    if any(not math.isfinite(s) for row in scores for s in row):
        raise HwnasError("derivation scores must be finite log-probabilities")


def _layer_options(layer: int, scores: Sequence[Sequence[float]],
                   budgets: Sequence[Constraint], prune: bool = True
                   ) -> list[tuple[float, tuple[float, ...], int]]:
    """The candidates of one layer (with ``prune``: those not dominated by another), as
    (score, latencies, index)."""
    options = sorted(((scores[layer][c], tuple(b.matrix.per_layer[layer][c] for b in budgets), c)
                      for c in range(len(scores[layer]))), key=lambda o: (-o[0], o[1], o[2]))
    if not prune:
        return options
    kept: list[tuple[float, tuple[float, ...], int]] = []
    for option in options:  # sorted by score, so a kept option has score >= this one
        if not any(all(k <= v for k, v in zip(other[1], option[1], strict=True))
                   for other in kept):
            kept.append(option)
    return kept


def _value_to_go(scores: Sequence[Sequence[float]], budget: Constraint,
                 cap: float) -> list[tuple[list[float], list[float]]]:
    """Per layer l: the exact frontier of (suffix latency, best suffix score) on one device.

    Entry l holds ascending latencies and strictly increasing scores of the non-dominated
    choices for layers ``>= l`` with suffix latency ≤ ``cap``.
    """
    frontier: list[tuple[float, float]] = [(0.0, 0.0)]
    result = [([0.0], [0.0])]
    for layer in reversed(range(len(scores))):
        row = budget.matrix.per_layer[layer]
        grown = sorted(((row[c] + lat, scores[layer][c] + score)
                        for c in range(len(row)) for lat, score in frontier
                        if row[c] + lat <= cap), key=lambda s: (s[0], -s[1]))
        frontier = []
        for lat, score in grown:
            if not frontier or score > frontier[-1][1]:
                frontier.append((lat, score))
        result.append(([lat for lat, _ in frontier], [score for _, score in frontier]))
    return result[::-1]


class _BranchAndBound:
    """Depth-first search over layers, options in order of their bound (see module doc)."""

    def __init__(self, scores: Sequence[Sequence[float]], budgets: Sequence[Constraint],
                 floor: float = 0.0):
        self.budgets = budgets
        self.layers = len(scores)
        self.node_limit: int | None = None
        self.options = [_layer_options(layer, scores, budgets, prune=not floor)
                        for layer in range(self.layers)]
        self.lower = [floor * b.budget_ms for b in budgets]
        self.slowest_togo = [[b.matrix.slowest_from(layer) for layer in range(self.layers + 1)]
                             for b in budgets]
        self.togo = [_value_to_go(scores, b, (b.budget_ms - b.matrix.fixed_ms) * (1 + _MARGIN)
                                  + _MARGIN) for b in budgets]
        self.best_score = -math.inf
        self.best: list[int] | None = None
        self.nodes = 0  # visits so far; the search stops after node_limit

    def start(self, node_limit: int | None = None) -> bool:
        """Search from the root; False when stopped at ``node_limit`` visits, with ``best`` the
        best choice found until then."""
        self.node_limit = node_limit
        try:
            self.visit(0, 0.0, tuple(b.matrix.fixed_ms for b in self.budgets), [])
        except _NodeLimit:
            return False
        return True

    def bound(self, layer: int, lat: tuple[float, ...]) -> float:
        """min over devices of the best suffix score that fits the rest of its budget."""
        value = math.inf
        for d, budget in enumerate(self.budgets):
            lats, best = self.togo[d][layer]
            room = (budget.budget_ms - lat[d]) * (1 + _MARGIN) + _MARGIN
            index = bisect.bisect_right(lats, room)
            value = min(value, best[index - 1] if index else -math.inf)
        return value

    def visit(self, layer: int, score: float, lat: tuple[float, ...], choice: list[int]) -> None:
        self.nodes += 1
        if self.node_limit is not None and self.nodes > self.node_limit:
            raise _NodeLimit
        if layer == self.layers:
            if score > self.best_score and all(
                    low <= v <= b.budget_ms
                    for v, low, b in zip(lat, self.lower, self.budgets, strict=True)):
                self.best_score, self.best = score, list(choice)
            return
        children = []
        for o_score, o_lat, index in self.options[layer]:
            new_lat = tuple(a + b for a, b in zip(lat, o_lat, strict=True))
            if any(v + togo[layer + 1] < low for v, togo, low in
                   zip(new_lat, self.slowest_togo, self.lower, strict=True)):
                continue  # even the slowest completion stays below the floor
            bound = score + o_score + self.bound(layer + 1, new_lat)
            if bound > -math.inf:
                children.append((bound, o_score, new_lat, index))
        children.sort(key=lambda c: -c[0])
        for bound, o_score, new_lat, index in children:
            if bound <= self.best_score + _MARGIN * (1 + abs(self.best_score)):
                break  # cannot beat the incumbent by more than rounding
            choice.append(index)
            self.visit(layer + 1, score + o_score, new_lat, choice)
            choice.pop()


def _infeasible(budgets: Sequence[Constraint]) -> HwnasError:
    parts = [f"{b.source}: smallest achievable {min_latency(b):.4g} ms vs budget "
             f"{b.budget_ms:.4g} ms" for b in budgets]
    alone = all(min_latency(b) <= b.budget_ms for b in budgets)
    head = ("no architecture meets all budgets at once" if alone
            else "no architecture in the space fits the budget")
    return HwnasError(f"{head} ({'; '.join(parts)})")


class _NodeLimit(Exception):
    """The branch and bound has visited its node limit."""


FLOOR_NODE_LIMIT = 20_000  # a band search stops here (~1 s) with the best band net found


def _meets_floor(choice: Sequence[int], budgets: Sequence[Constraint], floor: float) -> bool:
    return all(b.matrix.total(choice) >= floor * b.budget_ms for b in budgets)


def solve(scores: Sequence[Sequence[float]], budgets: Sequence[Constraint],
          floor: float = 0.0) -> list[int]:
    """The candidate index per layer maximising Σ scores under every device budget (exact).

    Maximises ``Σ_l scores[l][c_l]`` subject to ``fixed_d + Σ_l LAT_d(l, c_l) ≤ budget_d`` for
    every device d (the module docstring says why the branch and bound is exact).

    Parameters
    ----------
    scores
        ``scores[l][i]``: the score of candidate i at layer l (log-probabilities), finite.
    budgets
        One :class:`nas.core.constraints.Constraint` per device; each latency matrix has the
        shape of ``scores``.
    floor
        In [0, 1). When the optimum uses less than ``floor`` of some budget: the best choice
        that also uses at least ``floor`` of every budget. That band search is exact when it
        ends within :data:`FLOOR_NODE_LIMIT` visits (it ignores the floor in its bound, so a
        diffuse p on a large space can need more); otherwise it returns the best band choice
        it found. When it finds none, the floor is dropped.

    Returns
    -------
    list of int
        The chosen candidate index per layer (``space.candidates`` order).

    Raises
    ------
    HwnasError
        Naming the smallest achievable latency per device when no choice meets every budget;
        on shapes that differ or scores that are not finite.

    Examples
    --------
    >>> from nas.core.constraints import Constraint
    >>> from latency_predictors import LatencyMatrix
    >>> matrix = LatencyMatrix("toy", "toy", "measured", False, 0.5, [[0.0, 1.0], [0.0, 2.0]])
    >>> solve([[-1.0, -0.1], [-1.0, -0.2]], [Constraint(matrix, 2.0, "toy")])
    [1, 0]
    """
    _check_shapes(scores, budgets)
    if not 0 <= floor < 1:
        raise HwnasError(f"the budget floor must be in [0, 1), got {floor}")
    plain = _BranchAndBound(scores, budgets)
    plain.start()
    if plain.best is None:
        raise _infeasible(budgets)
    if not floor or _meets_floor(plain.best, budgets, floor):
        return plain.best
    band = _BranchAndBound(scores, budgets, floor)
    band.start(node_limit=FLOOR_NODE_LIMIT)
    return band.best if band.best is not None else plain.best


def derive_arch(supernet: Supernet, constraints: Sequence[Constraint],
                floor: float = 0.0) -> ArchSpec:
    """The most probable architecture of ``supernet`` that meets every budget.

    The exact knapsack (:func:`solve`) on the supernet's derivation scores
    (``Supernet.derive_scores``: log p, normalised per step of a factorised choice).

    Parameters
    ----------
    supernet
        The searched supernet; its α give the scores.
    constraints
        One :class:`nas.core.constraints.Constraint` per device, for the supernet's space.
    floor
        In [0, 1): when some net can, the derived net uses at least this share of every
        budget (see :func:`solve`).

    Returns
    -------
    ArchSpec
        The derived architecture of ``supernet.space``.

    Raises
    ------
    HwnasError
        When no architecture of the space meets every budget.
    """
    return supernet.space.spec_from_indices(solve(supernet.derive_scores(), constraints, floor))


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """i.i.d. standard Gumbel draws (float64): the perturbation of perturb-and-MAP."""
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))


def check_feasible(space: Space, constraints: Sequence[Constraint]) -> None:
    """Raise the knapsack's infeasibility error if no architecture of ``space`` meets every
    budget: the first check of a search (:func:`nas.run.search.search`)."""
    solve([[0.0] * len(space.candidates) for _ in range(space.num_layers)], constraints)
