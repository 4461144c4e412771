"""The networks of a space: standalone children (``build``) and the supernet.

Both share one skeleton walk (stem → stages of searchable layers with downsamples between →
head) and one parameter naming, so a child's state dict is the supernet's with
``layers.{i}.candidates.{j}.`` renamed to ``layers.{i}.``: weight inheritance is a rename.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .blocks import make_candidate
from .errors import HwnasError
from .space import FixedPart, Space, get_space
from .spec import ArchSpec


def make_fixed_part(part: FixedPart) -> nn.Module:
    """The module of a fixed part of the skeleton (also profiled alone by latency tables)."""
    if part.kind.startswith("stem:"):
        k = 3 if part.kind == "stem:conv3x3" else part.stride
        return nn.Sequential(nn.Conv2d(part.c_in, part.c_out, k, part.stride, padding=k // 2 if
                                       part.stride == 1 else 0), nn.BatchNorm2d(part.c_out))
    if part.kind == "downsample":
        return nn.Sequential(nn.BatchNorm2d(part.c_in), nn.Conv2d(part.c_in, part.c_out, 2, 2))
    if part.kind == "head":
        return nn.Sequential(nn.BatchNorm2d(part.c_in), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(part.c_in, part.c_out))
    raise HwnasError(f"unknown fixed part kind {part.kind!r}")


class _Skeleton(nn.Module):
    def __init__(self, space: Space, layers: list[nn.Module]) -> None:
        super().__init__()
        self.space = space
        parts = {part.name: make_fixed_part(part) for part in space.fixed_parts()}
        self.stem = parts["stem"]
        self.layers = nn.ModuleList(layers)
        self.downsamples = nn.ModuleList(parts[f"downsample{s}"] for s in
                                         range(1, len(space.depths)))
        self.head = parts["head"]

    def _walk(self, x: torch.Tensor, layer: Callable[[int, torch.Tensor], torch.Tensor]):
        return walk_skeleton(self, x, layer)


def walk_skeleton(net: nn.Module, x: torch.Tensor,
                  layer: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """stem → stages of searchable layers (``layer(i, x)``) with downsamples between → head.

    ``net`` has ``space``, ``stem``, ``downsamples`` and ``head`` (children, the supernet and
    the NNI model space all share this walk).
    """
    x = net.stem(x)
    index = 0
    for stage, depth in enumerate(net.space.depths):
        if stage > 0:
            x = net.downsamples[stage - 1](x)
        for _ in range(depth):
            x = layer(index, x)
            index += 1
    return net.head(x)


class ChildNet(_Skeleton):
    """A plain network for one ArchSpec: no NAS machinery inside."""

    def __init__(self, spec: ArchSpec, space: Space) -> None:
        space.validate(spec)
        slots = space.layer_slots()
        super().__init__(space, [make_candidate(layer, slot.channels, space.branches)
                                 for layer, slot in zip(spec.layers, slots, strict=True)])
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._walk(x, lambda i, h: self.layers[i](h))


def build(spec: ArchSpec) -> ChildNet:
    """The standalone child network of ``spec`` (randomly initialised)."""
    return ChildNet(spec, get_space(spec.space))


class MixedOp(nn.Module):
    """All candidates of one searchable layer and their architecture logits α."""

    def __init__(self, space: Space, channels: int) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(make_candidate(c, channels, space.branches)
                                        for c in space.candidates)
        self.alpha = nn.Parameter(torch.zeros(len(space.candidates)))

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=0)

    def forward(self, x: torch.Tensor, path: int | Sequence[int],
                gates: torch.Tensor | None = None) -> torch.Tensor:
        """Run one path (binarized), or ``Σ_j gates[j] · candidate_{path[j]}(x)`` with gates.

        A path whose gate is 0 adds no gradient to ``x`` or to its weights; only its gate needs
        ``∂L/∂g = <∂L/∂y, candidate(x)>``. It therefore runs without autograd and keeps none of
        its activations, so an architecture step costs about one child's memory (ProxylessNAS).
        """
        if gates is None:
            return self.candidates[path](x)
        out = torch.zeros((), dtype=x.dtype, device=x.device)
        for j, gate in zip(path, gates, strict=True):
            if bool(gate.detach() == 0):
                with torch.no_grad():
                    branch = self.candidates[j](x)
            else:
                branch = self.candidates[j](x)
            out = out + gate * branch
        return out


class Supernet(_Skeleton):
    """One MixedOp per searchable layer; runs the sampled path of each layer only."""

    def __init__(self, space: Space) -> None:
        super().__init__(space, [MixedOp(space, slot.channels) for slot in space.layer_slots()])

    def forward(self, x: torch.Tensor, paths: Sequence, gates: Sequence | None = None):
        """``paths[i]``: candidate index of layer i (or indices, with ``gates[i]``)."""
        if len(paths) != len(self.layers):
            raise HwnasError(f"need {len(self.layers)} paths, got {len(paths)}")
        if gates is None:
            return self._walk(x, lambda i, h: self.layers[i](h, paths[i]))
        return self._walk(x, lambda i, h: self.layers[i](h, paths[i], gates[i]))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [layer.alpha for layer in self.layers]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probs(self) -> list[torch.Tensor]:
        return [layer.probs() for layer in self.layers]

    def derive(self) -> ArchSpec:
        """The most probable candidate per layer (no budget; see ``nas.derive`` for that)."""
        return self.space.spec_from_indices([int(layer.alpha.argmax()) for layer in self.layers])

    def child_state_dict(self, spec: ArchSpec) -> dict[str, torch.Tensor]:
        """The state dict of ``build(spec)`` taken from this supernet's weights."""
        self.space.validate(spec)
        chosen = [self.space.candidate_index(layer) for layer in spec.layers]
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("layers."):
                _, layer, rest = key.split(".", 2)
                if rest == "alpha":
                    continue
                _, candidate, rest = rest.split(".", 2)
                if int(candidate) != chosen[int(layer)]:
                    continue
                key = f"layers.{layer}.{rest}"
            state[key] = value.clone()
        return state

    def child(self, spec: ArchSpec) -> ChildNet:
        """A standalone child network of ``spec`` inheriting this supernet's weights."""
        net = ChildNet(spec, self.space)
        net.load_state_dict(self.child_state_dict(spec))
        return net.train(self.training)
