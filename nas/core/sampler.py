"""Exact random draws among the nets that meet every budget: the weight paths of a search.

SPOS (Guo et al., ECCV 2020, §3.3) trains its supernet with *uniform constraint sampling*: only
nets that meet the constraint. A path drawn uniformly over the whole space is almost never such
a net at a tight budget, so the weights and BatchNorm statistics a search scores nets with
would belong to nets it can never choose.

:class:`BudgetSampler` draws a net ``c = (c_1 … c_L)`` with probability proportional to
``Π_l w_l[c_l]`` among the nets whose latency on every device d lies in
``[low_d, budget_d]``, exactly, by a dynamic program over a discretised latency grid:

1. Each device's room above its fixed latency, ``budget_d − fixed_d``, is cut into ``G``
   steps of ``δ_d``; candidate c at layer l costs ``q = ⌊LAT_d(l, c) / δ_d⌋`` steps.
   Since ``Σ ⌊x⌋ ≤ ⌊Σ x⌋`` and ``Σ x < Σ ⌊x⌋ + L``, every net of the true set has
   ``Σ q ≤ G`` and ``Σ q ≥ ⌊(low_d − fixed_d) / δ_d⌋ − L``: the grid set is a superset.
2. Backwards over the layers, ``S_l[s]`` is the weighted number of completions of layers
   ``l … L−1`` from grid position ``s`` (one axis per device) that end in the grid set:
   ``S_L = 1`` on the grid set, ``S_l[s] = Σ_c w_l[c] · S_{l+1}[s + q_l(c)]``.
3. A draw walks forward from ``s = 0``, picking ``c_l`` with probability
   ``w_l[c] · S_{l+1}[s + q_l(c)] / S_l[s]``: exactly proportional to the weight over the grid
   set.
4. The drawn net is accepted when its float latency (the one total of
   :meth:`latency_predictors.LatencyMatrix.total`) meets every ``[low_d, budget_d]``, else
   drawn again. Rejection from a superset keeps the draw exactly proportional to the weight
   over the true set; with the default grid nearly every draw is accepted.

A draw costs one pass over the layers (tens of microseconds); building the tables costs
``L × candidates`` array additions over ``G^D`` cells, about a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hwnas_common import HwnasError
from nas.core.constraints import Constraint
from nas.core.derive import solve
from search_spaces import ArchSpec, Space

GRID_CELLS = 1 << 16  # cells of the grid over all devices together (G = this ** (1 / D))
MAX_REJECTIONS = 10_000  # draws in a row outside the true set before giving up


class BudgetSampler:
    """Draws nets among those with ``low_d ≤ latency_d ≤ budget_d`` on every device ``d``,
    with probability proportional to the product of per-layer ``weights``."""

    def __init__(self, constraints: Sequence[Constraint], weights: Sequence[Sequence[float]],
                 floor: float = 0.0, cells: int = GRID_CELLS) -> None:
        if not constraints:
            raise HwnasError("the budget sampler needs at least one (device, budget) pair")
        if not 0 <= floor < 1:
            raise HwnasError(f"need 0 <= floor < 1, got {floor}")
        self.constraints = list(constraints)
        self.floor = floor
        self.weights = np.asarray(weights, dtype=np.float64)
        layers, count = self.weights.shape
        if any(np.asarray(c.matrix.per_layer).shape != (layers, count) for c in constraints):
            raise HwnasError("the sampler's weights and the latency matrices differ in shape")
        if (self.weights < 0).any() or not np.isfinite(self.weights).all():
            raise HwnasError("the sampler's weights must be finite and non-negative")
        size = max(1, int(round(cells ** (1 / len(constraints)))))
        steps, lows = [], []
        for c in self.constraints:
            room = c.budget_ms - c.matrix.fixed_ms
            if room < 0:
                raise HwnasError(f"no net meets {c.budget_ms:g} ms on {c.source!r}: its fixed "
                                 f"parts alone take {c.matrix.fixed_ms:.4g} ms")
            delta = room / size if room > 0 else 1.0
            lat = np.asarray(c.matrix.per_layer, dtype=np.float64)
            steps.append(np.floor(lat / delta).astype(np.int64))
            low_room = floor * c.budget_ms - c.matrix.fixed_ms
            lows.append(max(0, int(np.floor(low_room / delta)) - layers))
        self.steps = np.stack(steps, axis=-1)  # (layers, candidates, devices)
        shape = (size + 1,) * len(constraints)
        end = np.ones(shape)
        for axis, low in enumerate(lows):  # the grid set: low_d ≤ position_d (≤ size)
            index = [slice(None)] * len(shape)
            index[axis] = slice(0, low)
            end[tuple(index)] = 0.0
        self.tables = [end]  # tables[i] = S_{L−i}; reversed below
        for layer in reversed(range(layers)):
            self.tables.append(self._step(self.tables[-1], layer))
        self.tables.reverse()  # tables[l] = S_l
        self.count = float(self.tables[0][(0,) * len(shape)])
        if self.count <= 0:
            raise HwnasError(self._empty_message())

    def _step(self, after: np.ndarray, layer: int) -> np.ndarray:
        """``S_l`` from ``S_{l+1}``, normalised to a maximum of 1 (only ratios are used)."""
        total = np.zeros_like(after)
        for c, weight in enumerate(self.weights[layer]):
            shift = self.steps[layer, c]
            if weight == 0 or (shift >= after.shape[0]).any():
                continue
            target = tuple(slice(0, n - s) for n, s in zip(after.shape, shift, strict=True))
            source = tuple(slice(s, n) for n, s in zip(after.shape, shift, strict=True))
            total[target] += weight * after[source]
        peak = total.max()
        return total / peak if peak > 0 else total

    def _empty_message(self) -> str:
        bands = ", ".join(f"[{self.floor * c.budget_ms:.4g}, {c.budget_ms:.4g}] ms on "
                          f"{c.source!r}" for c in self.constraints)
        return f"no net of the space (with non-zero weight) lies in {bands}"

    def admits(self, choice: Sequence[int]) -> bool:
        """Whether ``choice`` meets every budget and floor (float latencies)."""
        for c in self.constraints:
            total = c.matrix.total(choice)
            if total > c.budget_ms or total < self.floor * c.budget_ms:
                return False
        return True

    def _walk(self, generator: torch.Generator) -> list[int]:
        position = np.zeros(len(self.constraints), dtype=np.int64)
        limit = self.tables[0].shape[0]
        choice = []
        for layer in range(len(self.weights)):
            after = self.tables[layer + 1]
            targets = position + self.steps[layer]  # (candidates, devices)
            inside = (targets < limit).all(axis=1)
            mass = np.zeros(len(targets))
            mass[inside] = self.weights[layer][inside] * after[tuple(targets[inside].T)]
            cumulative = np.cumsum(mass)
            pick = int(np.searchsorted(cumulative, float(torch.rand((), generator=generator,
                                                                    dtype=torch.float64))
                                       * cumulative[-1], side="right"))
            pick = min(pick, len(mass) - 1)
            while mass[pick] == 0:  # a zero-mass candidate is never chosen
                pick -= 1
            choice.append(pick)
            position = targets[pick]
        return choice

    def sample(self, generator: torch.Generator) -> list[int]:
        """One net (a candidate index per layer), drawn exactly (module docstring)."""
        for _ in range(MAX_REJECTIONS):
            choice = self._walk(generator)
            if self.admits(choice):
                return choice
        raise HwnasError(self._empty_message() + f" (no admitted net in {MAX_REJECTIONS} "
                         "draws from the grid's superset)")


def band_floor(constraints: Sequence[Constraint], floor: float) -> float:
    """``floor`` when some net of the space uses at least ``floor`` of every budget, else 0:
    the band the derivation returns nets from (:func:`nas.core.derive.solve`)."""
    if not floor:
        return 0.0
    layers, count = np.asarray(constraints[0].matrix.per_layer).shape
    choice = solve([[0.0] * count for _ in range(layers)], constraints, floor)
    return floor if all(c.matrix.total(choice) >= floor * c.budget_ms
                        for c in constraints) else 0.0


def random_band_nets(space: Space, constraints: Sequence[Constraint], floor: float, count: int,
                     generator: torch.Generator) -> list[ArchSpec]:
    """``count`` nets drawn independently and uniformly among those of the derivation's band
    (``[floor · B, B]`` on every device, when some net reaches it; else every net under the
    budgets)."""
    sampler = BudgetSampler(constraints, np.ones((space.num_layers, len(space.candidates))),
                            band_floor(constraints, floor))
    return [space.spec_from_indices(sampler.sample(generator)) for _ in range(count)]
