"""ProxylessNAS's binarized architecture gradient (Cai et al., ICLR 2019, §3.2.1).

Per layer with logits α and p = softmax(α), an architecture step

1. samples two distinct paths ``(a, b)`` from p (multinomial without replacement) and
   renormalises their probabilities: ``p̃ = softmax(α[a], α[b])``;
2. samples the active path from p̃ and runs the layer as ``y = Σ_j g_j · o_j(x)`` with binary
   gates ``g`` one-hot on the active path (``Supernet.forward(x, paths, gates)``);
3. sets ``∂L/∂α_i = Σ_j ∂L/∂g_j · p̃_j (δ_ij − p̃_i)`` for i, j in the sampled pair — the
   BinaryConnect-style estimator, which treats ∂L/∂p̃_j ≈ ∂L/∂g_j;
4. after the optimiser step, shifts the two sampled logits by a common offset so that
   ``exp(α_a) + exp(α_b)`` is unchanged: the unsampled paths keep their probability
   (ProxylessNAS's rescaling, ``rescale_updated_arch_param`` in its code).

With a factorised choice (:mod:`search_spaces.choices`) the same estimator is applied to the
candidates' log-probabilities ``ℓ = log p`` (``softmax(ℓ) = p``, so ``ℓ`` are logits of p) and
carried to the tree's logits by autograd; for a flat tree that chain rule is the identity.

Skip gets a real update. ProxylessNAS's code gives a sampled *zero* op no update at all;
our skip is an identity whose output ``x`` is multiplied by its gate like any other
candidate, so ``∂L/∂g_skip = <∂L/∂y, x>`` is a genuine gradient. Every block is residual
(``o_j(x) = x + f_j(x)``), and ``Σ_j p̃_j(δ_ij − p̃_i) = 0``, so the shared ``x`` cancels in
the estimator: what is compared is ``f_j`` against skip's ``f = 0``.

What holds exactly (tested in ``tests/test_nas_gradient.py``): when the loss is linear in the
layer's gates, ``∂L/∂g_j = L_j`` (the loss with path j alone) and the estimator equals
``∂/∂α_{a,b} Σ_{j∈{a,b}} p̃_j L_j`` — the exact gradient of the expected loss restricted to
the sampled pair; with all paths gated it equals ``∂/∂α Σ_j p_j L_j``. For a loss that is not
linear in the gates the estimator is a first-order (BinaryConnect) approximation.
"""

from __future__ import annotations

import torch


def sample_pairs(probs: torch.Tensor,
                 generator: torch.Generator) -> tuple[list[list[int]], torch.Tensor]:
    """Two distinct paths per layer drawn from ``probs`` (layers × candidates) and gates.

    Returns ``(pairs, gates)``: ``gates`` (layers × 2, float, on the CPU) is one-hot on the
    path drawn from each layer's renormalised pair probabilities.
    """
    p = probs.detach().float().cpu()
    pairs = torch.multinomial(p, 2, replacement=False, generator=generator)
    pair_probs = p.gather(1, pairs)
    active = torch.multinomial(pair_probs / pair_probs.sum(1, keepdim=True), 1,
                               generator=generator)
    gates = torch.zeros(len(p), 2).scatter_(1, active, 1.0)
    return pairs.tolist(), gates


def pair_alpha_grad(alpha: torch.Tensor, pair: list[int],
                    gate_grad: torch.Tensor) -> torch.Tensor:
    """The full-length ∂L/∂α from the gate gradient of a sampled pair (zero elsewhere).

    ``∂L/∂α_i = Σ_j ∂L/∂g_j · p̃_j (δ_ij − p̃_i)`` with p̃ the softmax over the pair's logits.
    """
    p = torch.softmax(alpha.detach()[pair], dim=0)
    g = gate_grad.detach().to(p)
    pair_grad = p * g - p * (p * g).sum()  # Σ_j g_j p_j δ_ij − p_i Σ_j g_j p_j
    grad = torch.zeros_like(alpha, dtype=p.dtype)
    grad[pair] = pair_grad
    return grad


def rescale_logits(alpha: torch.Tensor, indices: list[int], before: torch.Tensor) -> None:
    """Shift ``alpha[indices]`` so their ``logsumexp`` equals that of ``before[indices]``, in
    place (``before``: α before the optimiser step).

    With the logits sampled in an architecture step as ``indices`` (a pair, or the union of
    several comparisons' pairs), every other path keeps the probability it had before the
    step (up to changes the latency term made to those logits themselves).
    """
    with torch.no_grad():
        offset = torch.logsumexp(alpha[indices], 0) - torch.logsumexp(before[indices], 0)
        alpha[indices] -= offset
