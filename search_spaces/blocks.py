"""Candidate blocks of a searchable layer, registered by op name.

Every builder has the signature ``(LayerSpec, c_in, c_out, stride, branches) -> nn.Module``
mapping (B, c_in, H, W) to (B, c_out, H / stride, W / stride): the layer slot's shape
(:class:`search_spaces.space.LayerSlot`). The interaction and MBConv blocks keep the shape (a
classic skeleton downsamples in fixed parts); FBNet blocks and skip take any.

- ``skip``: identity, QuadraNet's "identity block" that lets the search make the net shallower
  (QuadraNet §III.E); where the slot changes channels or stride, FBNet's projection instead:
  1×1 conv (stride s) → BN → ReLU, with weights and a latency of its own.
- ``block``: the MetaFormer-style interaction block of ``docs/search.md``, "The search space"
  (QuadraNet's QuadraBlock, §III.C; InfiNet's InfiBlock, eq. 15-17; StarNet's star block,
  §3)::

      x = x + Mixer_i(Norm(x))                     spatial interaction, kernel k
      x = x + W_2 GELU(W_1 Norm(x))                channel MLP, expansion e

  Norm is BatchNorm2d: it folds into the neighbouring convolutions at inference, which is what
  the latency tables of CPU/VPU/GPU deployments measure.
- ``mbconv``: ProxylessNAS's inverted bottleneck (Cai et al., ICLR 2019; MobileNetV2):
  1×1 expand → BN → ReLU6 → k×k depthwise → BN → ReLU6 → 1×1 project → BN, plus residual.
- ``fbnet``: FBNet's block (Wu et al., CVPR 2019, Fig. 3; as HW-NAS-Bench builds it): 1×1
  expand (g groups) → BN → ReLU → channel shuffle (g > 1) → k×k depthwise (stride s) → BN →
  ReLU → 1×1 project (g groups) → BN, plus residual when c_in = c_out and s = 1. Convolutions
  have no bias (BN follows each).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hwnas_common import HwnasError, Registry

from .interactions import depthwise, make_interaction
from .space import LayerSlot
from .spec import LayerSpec

CandidateBuilder = Callable[[LayerSpec, int, int, int, int], nn.Module]
CANDIDATE_BUILDERS: Registry[CandidateBuilder] = Registry("candidate op")


def register_candidate(op: str) -> Callable[[CandidateBuilder], CandidateBuilder]:
    """Decorator: register the builder of the candidate op ``op`` (duplicates are errors);
    it is called as ``builder(layer, c_in, c_out, stride, branches)``."""
    return CANDIDATE_BUILDERS.decorator(op)


def make_candidate(layer: LayerSpec, channels: int, branches: int, c_out: int | None = None,
                   stride: int = 1) -> nn.Module:
    """Build the module of one candidate at a layer of ``channels`` input channels, ``c_out``
    output channels (default: ``channels``) and ``stride``."""
    return CANDIDATE_BUILDERS[layer.op](layer, channels, channels if c_out is None else c_out,
                                        stride, branches)


def slot_candidate(layer: LayerSpec, slot: LayerSlot, branches: int) -> nn.Module:
    """The module of candidate ``layer`` at ``slot`` (its input channels, output channels and
    stride)."""
    return make_candidate(layer, slot.channels, branches, slot.c_out, slot.stride)


def _same_shape(layer: LayerSpec, c_in: int, c_out: int, stride: int) -> None:
    if c_out != c_in or stride != 1:
        raise HwnasError(f"candidate {layer.token!r} keeps its input's shape; it cannot map "
                         f"{c_in} to {c_out} channels with stride {stride}")


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


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (Zhang et al., CVPR 2018, §3.1): with g groups of n
    channels, output channel ``j·g + i`` is input channel ``i·n + j``, so the next grouped
    convolution sees channels of every group."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, g·n, H, W) -> (B, g, n, H, W) -> (B, n, g, H, W) -> (B, n·g, H, W); sizes from
        # x.shape, so an ONNX export holds constant shapes: Reshape, Transpose, Reshape
        batch, channels, height, width = x.shape
        x = x.view(batch, self.groups, channels // self.groups, height, width)
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class FBNetBlock(nn.Module):
    """FBNet's inverted residual of ``k``, ``e`` and ``g`` groups (module docstring)."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, expansion: int,
                 groups: int) -> None:
        super().__init__()
        hidden = expansion * c_in
        shuffle = [ChannelShuffle(groups)] if groups > 1 else []
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, groups=groups, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(), *shuffle,
            nn.Conv2d(hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden,
                      bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def skip_projection(c_in: int, c_out: int, stride: int) -> nn.Module:
    """The skip of a layer that changes the shape: 1×1 conv (stride s) → BN → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


@register_candidate("skip")
def _skip(layer: LayerSpec, c_in: int, c_out: int, stride: int, branches: int) -> nn.Module:
    if c_in == c_out and stride == 1:
        return nn.Identity()
    return skip_projection(c_in, c_out, stride)


@register_candidate("block")
def _block(layer: LayerSpec, c_in: int, c_out: int, stride: int, branches: int) -> nn.Module:
    _same_shape(layer, c_in, c_out, stride)
    return InteractionBlock(c_in, layer.kernel, layer.expansion, layer.interaction, branches)


@register_candidate("mbconv")
def _mbconv(layer: LayerSpec, c_in: int, c_out: int, stride: int, branches: int) -> nn.Module:
    _same_shape(layer, c_in, c_out, stride)
    return MBConv(c_in, layer.kernel, layer.expansion)


@register_candidate("fbnet")
def _fbnet(layer: LayerSpec, c_in: int, c_out: int, stride: int, branches: int) -> nn.Module:
    return FBNetBlock(c_in, c_out, stride, layer.kernel, layer.expansion, layer.groups)


__all__ = ["ChannelShuffle", "FBNetBlock", "InteractionBlock", "MBConv", "depthwise",
           "make_candidate", "register_candidate", "skip_projection", "slot_candidate"]
