"""ProxylessNAS's two-path gate gradient against exact gradients of expected losses.

What is compared, precisely. For one searchable layer ``y = Σ_j g_j o_j(x)`` and a loss that
is *linear in the layer output* (``L = <w, y>``), ``∂L/∂g_j = <w, o_j(x)> = L_j`` whatever the
gates are, so the BinaryConnect estimator is not an approximation there:

1. two sampled paths {a, b}: the estimator equals autograd's ``∂/∂α`` of
   ``Σ_{j∈{a,b}} softmax(α_a, α_b)_j · L_j`` (the expected loss restricted to the pair) —
   for every pair and whichever path is active;
2. all paths gated: it equals autograd's ``∂/∂α Σ_j softmax(α)_j L_j``, the exact gradient of
   the expected loss over the whole layer.

For losses that are nonlinear in the gates the estimator is only a first-order approximation
(ProxylessNAS §3.2.1), so no exact identity is claimed there. The sampler is checked
statistically (frequencies within 5 standard errors), and the offset rescaling exactly.
"""

from __future__ import annotations

import itertools
import math

import torch

from nas.core.gradient import pair_alpha_grad, rescale_logits, sample_pairs
from search_spaces import LayerSpec, MixedOp, Space

TINY = Space("test-gradient-tiny", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1,),
             candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                         LayerSpec("block", 3, 2, "star"), LayerSpec("block", 3, 2, "quad")))


def _layer() -> tuple[MixedOp, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    op = MixedOp(TINY, TINY.layer_slots()[0]).eval()
    with torch.no_grad():
        op.alpha.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    return op, torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)


def _gate_grad(op: MixedOp, x: torch.Tensor, w: torch.Tensor, paths: list[int],
               gates: torch.Tensor) -> torch.Tensor:
    gates = gates.clone().requires_grad_(True)
    loss = (w * op(x, paths, gates)).sum()
    return torch.autograd.grad(loss, gates)[0]


def _path_losses(op: MixedOp, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([(w * op(x, j)).sum() for j in range(len(TINY.candidates))])


def test_two_path_estimator_is_exact_gradient_of_pair_expectation() -> None:
    op, x, w = _layer()
    losses = _path_losses(op, x, w)
    for pair in map(list, itertools.permutations(range(4), 2)):
        for active in (0, 1):
            gates = torch.zeros(2)
            gates[active] = 1.0
            estimate = pair_alpha_grad(op.alpha, pair, _gate_grad(op, x, w, pair, gates))
            alpha = op.alpha.detach().clone().requires_grad_(True)
            expected = (torch.softmax(alpha[pair], 0) * losses[pair]).sum()
            exact = torch.autograd.grad(expected, alpha)[0]
            torch.testing.assert_close(estimate, exact, rtol=1e-4, atol=1e-5)
            if 0 in pair:  # a sampled skip gets a real update
                assert estimate[0].abs() > 0


def test_all_path_estimator_is_exact_gradient_of_expected_loss() -> None:
    op, x, w = _layer()
    paths = list(range(4))
    gate_grad = _gate_grad(op, x, w, paths, torch.tensor([0.0, 1.0, 0.0, 0.0]))
    estimate = pair_alpha_grad(op.alpha, paths, gate_grad)
    alpha = op.alpha.detach().clone().requires_grad_(True)
    exact = torch.autograd.grad((torch.softmax(alpha, 0) * _path_losses(op, x, w)).sum(),
                                alpha)[0]
    torch.testing.assert_close(estimate, exact, rtol=1e-4, atol=1e-5)


def test_sampler_frequencies_match_without_replacement_probabilities() -> None:
    p = torch.tensor([0.4, 0.1, 0.3, 0.2])
    g = torch.Generator().manual_seed(0)
    n = 3000
    pair_counts: dict[frozenset, int] = {}
    first_active = 0
    for _ in range(n):
        pairs, gates = sample_pairs(p[None], g)
        pair, gates = pairs[0], gates[0]
        key = frozenset(pair)
        pair_counts[key] = pair_counts.get(key, 0) + 1
        if key == frozenset((0, 2)) and gates[pair.index(0)] == 1:
            first_active += 1
    for a, b in itertools.combinations(range(4), 2):
        want = float(p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b]))
        sigma = math.sqrt(want * (1 - want) / n)
        assert abs(pair_counts.get(frozenset((a, b)), 0) / n - want) < 5 * sigma
    share = first_active / pair_counts[frozenset((0, 2))]
    want = float(p[0] / (p[0] + p[2]))
    assert abs(share - want) < 5 * math.sqrt(want * (1 - want) / pair_counts[frozenset((0, 2))])


def test_rescale_keeps_unsampled_probabilities() -> None:
    alpha = torch.tensor([0.3, -0.2, 0.5, 0.1])
    before = torch.softmax(alpha, 0)
    before_logits = alpha.clone()
    alpha[1] += 0.7
    alpha[3] -= 0.2
    rescale_logits(alpha, [1, 3], before_logits)
    after = torch.softmax(alpha, 0)
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    assert after[1] > before[1] and after[3] < before[3]
