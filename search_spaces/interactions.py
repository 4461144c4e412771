"""Spatial interaction operators of the interaction block, registered by name.

All operators share one signature, ``Op(channels, kernel, branches)`` and ``forward(t) -> y``
with ``t, y`` of shape (B, C, H, W); ``t`` is the normalised block input. ``f_a, f_b, f_c`` are
depthwise k×k convolutions (``docs/search.md``, "The search space", writes the same formulas).

- ``sum``   f_a(t) + f_b(t)                      representation space "⊕" (InfiNet Fig. 1a)
- ``star``  act(f_a(t)) * f_b(t)                 StarNet "Rewrite the Stars", §3, eq. (1)
- ``quad``  f_a(t) * f_b(t) + f_c(t)             QuadraNet eq. (7), quadratic depthwise conv
- ``poly2`` (<Za, Zb> + 1)^2 / r + f_c(t)        InfiNet Table 3b, polynomial-kernel ablation
- ``rbf``   exp(-||Za - Zb||^2 / 2r) + f_c(t)    InfiNet eq. (15)-(18)

For the kernel operators ``Za = relu(DWConv_k(W_a t))`` with ``W_a`` a 1×1 projection to r·C
channels (r branches, eq. 16 and 18); inner products and norms run over the r branches.

Numerics: the kernel arithmetic runs in fp32 whatever the input dtype, and the result is cast
back, so bf16/fp16 never overflow in the square nor flush ``exp`` to zero early. The RBF distance
is averaged over the r branches (bandwidth σ² = r instead of InfiNet's σ² = 1; identical
for r = 1). The squared distance is a sum of r terms, so with σ² = 1 the kernel's operating
point slides towards exp's flat tail as r or the activation scale grows. Measured on a fresh
32-channel k7 op (random input of std 1 → 3): r = 7 with σ² = 1 moves the mean kernel value
0.84 → 0.34, with σ² = r 0.97 → 0.82; r = 4: 0.91 → 0.54 vs 0.98 → 0.82.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hwnas_common import HwnasError, Registry

INTERACTIONS: Registry[type[nn.Module]] = Registry("interaction")


def register_interaction(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register an interaction operator under ``name`` (duplicates are errors).
    An operator whose cost depends on the number of branches r sets ``uses_branches = True``."""
    return INTERACTIONS.decorator(name)


def make_interaction(name: str, channels: int, kernel: int, branches: int) -> nn.Module:
    """Instantiate the interaction operator registered as ``name``."""
    return INTERACTIONS[name](channels, kernel, branches)


def uses_branches(name: str) -> bool:
    """Whether interaction ``name`` has r branches (its latency-table rows are keyed by r)."""
    return bool(getattr(INTERACTIONS[name], "uses_branches", False))


def depthwise(channels: int, kernel: int) -> nn.Conv2d:
    """Depthwise k×k convolution, 'same' padding, stride 1."""
    return nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)


@register_interaction("sum")
class SumInteraction(nn.Module):
    """f_a(t) + f_b(t): no interaction, the representation-space baseline."""

    def __init__(self, channels: int, kernel: int, branches: int) -> None:
        super().__init__()
        self.f_a, self.f_b = depthwise(channels, kernel), depthwise(channels, kernel)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.f_a(t) + self.f_b(t)


@register_interaction("star")
class StarInteraction(nn.Module):
    """act(f_a(t)) * f_b(t): StarNet's star operation (ReLU6 as in StarNet's blocks)."""

    def __init__(self, channels: int, kernel: int, branches: int) -> None:
        super().__init__()
        self.f_a, self.f_b = depthwise(channels, kernel), depthwise(channels, kernel)
        self.act = nn.ReLU6()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.act(self.f_a(t)) * self.f_b(t)


@register_interaction("quad")
class QuadInteraction(nn.Module):
    """f_a(t) * f_b(t) + f_c(t): QuadraNet's quadratic convolution, eq. (7)."""

    def __init__(self, channels: int, kernel: int, branches: int) -> None:
        super().__init__()
        self.f_a, self.f_b = depthwise(channels, kernel), depthwise(channels, kernel)
        self.f_c = depthwise(channels, kernel)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.f_a(t) * self.f_b(t) + self.f_c(t)


class _KernelInteraction(nn.Module):
    """Shared part of the InfiNet kernel operators: r-branch features Za, Zb and the linear path."""

    uses_branches = True

    def __init__(self, channels: int, kernel: int, branches: int) -> None:
        super().__init__()
        if branches < 1:
            raise HwnasError(f"kernel interactions need branches >= 1, got {branches}")
        self.branches = branches
        width = branches * channels
        self.proj_a = nn.Conv2d(channels, width, 1)  # W_a
        self.proj_b = nn.Conv2d(channels, width, 1)  # W_b
        self.dw_a, self.dw_b = depthwise(width, kernel), depthwise(width, kernel)
        self.f_c = depthwise(channels, kernel)

    def branch_features(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Za, Zb of shape (B, r, C, H, W), in fp32."""
        b, c, h, w = t.shape
        za = torch.relu(self.dw_a(self.proj_a(t))).float().view(b, self.branches, c, h, w)
        zb = torch.relu(self.dw_b(self.proj_b(t))).float().view(b, self.branches, c, h, w)
        return za, zb


@register_interaction("poly2")
class Poly2Interaction(_KernelInteraction):
    """(<Za, Zb> + 1)^2 / r + f_c(t): quadratic polynomial kernel over r branches."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        za, zb = self.branch_features(t)
        kernel = ((za * zb).sum(dim=1) + 1.0).square() / self.branches
        return kernel.to(t.dtype) + self.f_c(t)


@register_interaction("rbf")
class RbfInteraction(_KernelInteraction):
    """exp(-||Za - Zb||^2 / (2r)) + f_c(t): InfiNet's RBF-kernel interaction, eq. (17)."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        za, zb = self.branch_features(t)
        kernel = torch.exp(-0.5 * (za - zb).square().mean(dim=1))
        return kernel.to(t.dtype) + self.f_c(t)
