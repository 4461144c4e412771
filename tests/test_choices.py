"""Factorised architecture choices (search_spaces/choices.py): the tree's probabilities, the
gate gradient carried through it against autograd, the knapsack on its normalised scores
against brute force (uniform α included), and the engine's architecture step with it."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from latency_predictors import LatencyMatrix
from nas.core.constraints import Constraint
from nas.core.derive import FLOOR_NODE_LIMIT, _BranchAndBound, solve
from nas.core.gradient import pair_alpha_grad
from search_spaces import ChoiceTree, LayerSpec, MixedOp, Space, get_space

TREE_TINY = Space("test-choices-tiny", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1,),
                  candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                              LayerSpec("block", 5, 2, "sum"), LayerSpec("block", 3, 2, "quad"),
                              LayerSpec("mbconv", 3, 3), LayerSpec("mbconv", 5, 3)))


def test_flat_tree_is_the_softmax_over_candidates() -> None:
    tree = ChoiceTree.of(get_space("cifar").candidates, "flat")
    alpha = torch.randn(tree.num_edges, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tree.log_probs(alpha), torch.log_softmax(alpha, 0))
    scores = tree.derive_scores(alpha)
    torch.testing.assert_close(scores, torch.log_softmax(alpha.double(), 0) + math.log(31))


def test_family_tree_of_the_hybrid_space() -> None:
    space = get_space("hybrid-cifar")
    tree = ChoiceTree.of(space.candidates, "family")
    # root {skip, interaction, mbconv}; interaction {5 types}; 5 × 6 sizes; mbconv 6 sizes
    assert sorted(len(g) for g in tree.groups) == [3, 5, 6, 6, 6, 6, 6, 6]
    p = tree.log_probs(torch.zeros(tree.num_edges)).exp()
    tokens = space.tokens
    assert p[tokens.index("skip")] == pytest.approx(1 / 3)
    assert p[tokens.index("mb_k3_e3")] == pytest.approx(1 / 18)
    assert p[tokens.index("quad_k5_e2")] == pytest.approx(1 / 90)
    assert float(p.sum()) == pytest.approx(1.0)
    alpha = torch.randn(tree.num_edges, generator=torch.Generator().manual_seed(1))
    assert float(tree.log_probs(alpha).exp().sum()) == pytest.approx(1.0)
    # every candidate scores 0 at a uniform α: skip has no edge over a 1-in-90 block
    assert torch.count_nonzero(tree.derive_scores(torch.zeros(tree.num_edges))) == 0


def _layer() -> tuple[MixedOp, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    op = MixedOp(TREE_TINY, TREE_TINY.layer_slots()[0], choices="family").eval()
    with torch.no_grad():
        op.alpha.copy_(torch.randn(op.alpha.shape, generator=torch.Generator().manual_seed(3)))
    return op, torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)


def _tree_estimate(op: MixedOp, x, w, paths: list[int], gates: torch.Tensor) -> torch.Tensor:
    """What SearchEngine.arch_step does for one layer: the pair estimator on log p, then the
    chain rule to the tree's logits."""
    gates = gates.clone().requires_grad_(True)
    gate_grad = torch.autograd.grad((w * op(x, paths, gates)).sum(), gates)[0]
    log_probs = op.log_probs()
    return torch.autograd.grad(log_probs, op.alpha,
                               pair_alpha_grad(log_probs, paths, gate_grad).to(log_probs))[0]


def _losses(op: MixedOp, x, w) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([(w * op(x, j)).sum() for j in range(len(TREE_TINY.candidates))])


def test_tree_gate_gradient_is_exact_gradient_of_pair_expectation() -> None:
    op, x, w = _layer()
    losses = _losses(op, x, w)
    for pair in map(list, itertools.permutations(range(len(TREE_TINY.candidates)), 2)):
        estimate = _tree_estimate(op, x, w, pair, torch.tensor([1.0, 0.0]))
        alpha = op.alpha.detach().clone().requires_grad_(True)
        log_p = op.tree.log_probs(alpha)
        exact = torch.autograd.grad((torch.softmax(log_p[pair], 0) * losses[pair]).sum(),
                                    alpha)[0]
        torch.testing.assert_close(estimate, exact, rtol=1e-4, atol=1e-5)


def test_tree_gate_gradient_with_all_paths_is_the_expected_loss_gradient() -> None:
    op, x, w = _layer()
    paths = list(range(len(TREE_TINY.candidates)))
    gates = torch.zeros(len(paths))
    gates[2] = 1.0
    estimate = _tree_estimate(op, x, w, paths, gates)
    alpha = op.alpha.detach().clone().requires_grad_(True)
    expected = (op.tree.log_probs(alpha).exp() * _losses(op, x, w)).sum()
    torch.testing.assert_close(estimate, torch.autograd.grad(expected, alpha)[0],
                               rtol=1e-4, atol=1e-5)


def _constraint(rows: list[list[float]], budget: float) -> Constraint:
    return Constraint(LatencyMatrix("toy", "toy", "measured", False, 0.2, rows), budget, "toy")


def _brute_force(scores, limit: Constraint, floor: float) -> float | None:
    best = None
    for choice in itertools.product(*[range(len(row)) for row in scores]):
        if floor * limit.budget_ms <= limit.matrix.total(choice) <= limit.budget_ms:
            value = sum(row[c] for row, c in zip(scores, choice, strict=True))
            best = value if best is None else max(best, value)
    return best


@pytest.mark.parametrize("uniform", [False, True])
def test_knapsack_on_family_scores_matches_brute_force(uniform: bool) -> None:
    rng = random.Random(0)
    tree = ChoiceTree.of(TREE_TINY.candidates, "family")
    for _ in range(20):
        layers = 3
        alphas = [torch.zeros(tree.num_edges) if uniform else
                  torch.randn(tree.num_edges, generator=torch.Generator().manual_seed(
                      rng.randrange(10**6))) * 2 for _ in range(layers)]
        scores = [tree.derive_scores(a).tolist() for a in alphas]
        rows = [[0.0] + [round(rng.uniform(0.05, 1.0), 3) for _ in range(5)]
                for _ in range(layers)]
        top = 0.2 + sum(max(r) for r in rows)
        limit = _constraint(rows, rng.uniform(0.4, 0.9) * top)
        for floor in (0.0, 0.9):
            want = _brute_force(scores, limit, floor)
            if want is None:
                continue
            got = solve(scores, [limit], floor)
            assert floor * limit.budget_ms <= limit.matrix.total(got) <= limit.budget_ms
            assert sum(row[c] for row, c in zip(scores, got, strict=True)) == pytest.approx(
                want, abs=1e-9)


def test_band_search_on_uniform_family_scores_of_the_hybrid_space_is_cheap() -> None:
    """A fresh factorised search (α = 0 in every layer) ties every candidate: the band search
    must still end well within its node limit with a net in the band."""
    space = get_space("hybrid-cifar")
    tree = ChoiceTree.of(space.candidates, "family")
    scores = [tree.derive_scores(torch.zeros(tree.num_edges)).tolist()] * space.num_layers
    rng = random.Random(1)
    rows = [[0.0] + [rng.uniform(0.01, 0.2) for _ in range(len(space.candidates) - 1)]
            for _ in range(space.num_layers)]
    limit = _constraint(rows, 0.2 + 0.3 * sum(max(r) for r in rows))
    search = _BranchAndBound(scores, [limit], 0.9)
    assert search.start(node_limit=FLOOR_NODE_LIMIT)
    assert search.nodes < FLOOR_NODE_LIMIT // 10
    assert 0.9 * limit.budget_ms <= limit.matrix.total(search.best) <= limit.budget_ms
