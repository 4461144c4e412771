"""Candidate blocks of a searchable layer, registered by op name.

Every searchable layer keeps its channel count and resolution (stride 1; downsampling is a fixed
part of the skeleton), so every candidate has the same signature ``(LayerSpec, channels,
branches) -> nn.Module`` mapping (B, C, H, W) to (B, C, H, W).

- ``skip``: identity, QuadraNet's "identity block" that lets the search make the net shallower
  (QuadraNet §III.E).
- ``block``: the MetaFormer-style interaction block of ``docs/search.md``, "The search space"
  (QuadraNet's QuadraBlock, §III.C; InfiNet's InfiBlock, eq. 15-17; StarNet's star block,
  §3)::

      x = x + Mixer_i(Norm(x))                     spatial interaction, kernel k
      x = x + W_2 GELU(W_1 Norm(x))                channel MLP, expansion e

  Norm is BatchNorm2d: it folds into the neighbouring convolutions at inference, which is what
  the latency tables of CPU/VPU/GPU deployments measure.
- ``mbconv``: ProxylessNAS's inverted bottleneck (Cai et al., ICLR 2019; MobileNetV2):
  1×1 expand → BN → ReLU6 → k×k depthwise → BN → ReLU6 → 1×1 project → BN, plus residual.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hwnas_common import Registry

from .interactions import depthwise, make_interaction
from .spec import LayerSpec

CandidateBuilder = Callable[[LayerSpec, int, int], nn.Module]
CANDIDATE_BUILDERS: Registry[CandidateBuilder] = Registry("candidate op")


def register_candidate(op: str) -> Callable[[CandidateBuilder], CandidateBuilder]:
    """Decorator: register the builder of the candidate op ``op`` (duplicates are errors)."""
    return CANDIDATE_BUILDERS.decorator(op)


def make_candidate(layer: LayerSpec, channels: int, branches: int) -> nn.Module:
    """Build the module of one candidate at a layer with ``channels`` channels."""
    return CANDIDATE_BUILDERS[layer.op](layer, channels, branches)


class InteractionBlock(nn.Module):
    """Norm → interaction mixer → residual; Norm → channel MLP (expansion e) → residual."""

    def __init__(self, channels: int, kernel: int, expansion: int, interaction: str,
                 branches: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.mixer = make_interaction(interaction, channels, kernel, branches)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = nn.Sequential(nn.Conv2d(channels, expansion * channels, 1), nn.GELU(),
                                 nn.Conv2d(expansion * channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MBConv(nn.Module):
    """ProxylessNAS / MobileNetV2 inverted bottleneck with residual (stride 1, C_in = C_out)."""

    def __init__(self, channels: int, kernel: int, expansion: int) -> None:
        super().__init__()
        hidden = expansion * channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_candidate("skip")
def _skip(layer: LayerSpec, channels: int, branches: int) -> nn.Module:
    return nn.Identity()


@register_candidate("block")
def _block(layer: LayerSpec, channels: int, branches: int) -> nn.Module:
    return InteractionBlock(channels, layer.kernel, layer.expansion, layer.interaction, branches)


@register_candidate("mbconv")
def _mbconv(layer: LayerSpec, channels: int, branches: int) -> nn.Module:
    return MBConv(channels, layer.kernel, layer.expansion)


__all__ = ["InteractionBlock", "MBConv", "depthwise", "make_candidate", "register_candidate"]
