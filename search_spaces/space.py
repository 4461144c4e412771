"""Search spaces: a macro skeleton plus the candidate list of every searchable layer.

Skeleton (ConvNeXt/QuadraNet style; ``docs/search.md``, "The search space"): stem, 4 stages of
widths [C, 2C, 4C, 8C] with ``depths[s]`` searchable layers each, a fixed stride-2 downsample
between stages, and a global-pool + linear head. Searchable layers keep channels and
resolution, so a space knows every layer's input shape, which is what latency tables are keyed by.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from hwnas_common import HwnasError, Registry

from .interactions import INTERACTIONS
from .spec import ArchSpec, LayerSpec

STEMS = {"conv3x3": 1, "patch4": 4}  # stem kind -> stride


@dataclass(frozen=True)
class LayerSlot:
    """One searchable layer: its position and input shape (C, H, W); stride is always 1."""

    index: int
    stage: int
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class FixedPart:
    """A non-searchable part of the skeleton (stem, downsample, head) and its input shape."""

    name: str  # "stem", "downsample1".."downsample3", "head"
    kind: str  # "stem:conv3x3", "stem:patch4", "downsample", "head"
    c_in: int
    c_out: int
    height: int
    width: int
    stride: int


@dataclass(frozen=True)
class Space:
    """A search space: skeleton hyper-parameters and the ordered candidate list of each layer."""

    name: str
    input: tuple[int, int, int]
    stem: str
    width: int
    depths: tuple[int, ...]
    candidates: tuple[LayerSpec, ...]
    branches: int = 4  # r of the poly2/rbf interactions (InfiNet uses 7; 4 suits small nets)
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise HwnasError(f"unknown stem {self.stem!r}; valid: {sorted(STEMS)}")
        if len(set(self.candidates)) != len(self.candidates):
            raise HwnasError(f"space {self.name!r} lists a candidate twice")
        reduction = STEMS[self.stem] * 2 ** (len(self.depths) - 1)
        if self.input[1] % reduction or self.input[2] % reduction:
            raise HwnasError(f"input {self.input} is not divisible by the total stride {reduction}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.width * 2**stage for stage in range(len(self.depths)))

    @property
    def num_layers(self) -> int:
        return sum(self.depths)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(candidate.token for candidate in self.candidates)

    def stage_shape(self, stage: int) -> tuple[int, int, int]:
        """(C, H, W) of the feature map inside ``stage``."""
        scale = STEMS[self.stem] * 2**stage
        return self.widths[stage], self.input[1] // scale, self.input[2] // scale

    def layer_slots(self) -> list[LayerSlot]:
        slots = []
        for stage, depth in enumerate(self.depths):
            channels, height, width = self.stage_shape(stage)
            for _ in range(depth):
                slots.append(LayerSlot(len(slots), stage, channels, height, width))
        return slots

    def fixed_parts(self) -> list[FixedPart]:
        c_in, height, width = self.input
        parts = [FixedPart("stem", f"stem:{self.stem}", c_in, self.width, height, width,
                           STEMS[self.stem])]
        for stage in range(1, len(self.depths)):
            channels, height, width = self.stage_shape(stage - 1)
            parts.append(FixedPart(f"downsample{stage}", "downsample", channels,
                                   self.widths[stage], height, width, 2))
        channels, height, width = self.stage_shape(len(self.depths) - 1)
        parts.append(FixedPart("head", "head", channels, self.num_classes, height, width, 1))
        return parts

    def candidate_index(self, layer: LayerSpec) -> int:
        try:
            return self.candidates.index(layer)
        except ValueError:
            raise HwnasError(f"layer {layer.token!r} is not a candidate of space {self.name!r}; "
                             f"valid: {list(self.tokens)}") from None

    def validate(self, spec: ArchSpec) -> ArchSpec:
        """Check that ``spec`` belongs to this space; returns it unchanged."""
        if spec.space != self.name:
            raise HwnasError(f"ArchSpec is for space {spec.space!r}, not {self.name!r}")
        if spec.input != self.input:
            raise HwnasError(f"ArchSpec input {list(spec.input)} does not match space "
                             f"{self.name!r} input {list(self.input)}")
        if len(spec.layers) != self.num_layers:
            raise HwnasError(f"space {self.name!r} has {self.num_layers} searchable layers, "
                             f"the ArchSpec has {len(spec.layers)}")
        for layer in spec.layers:
            self.candidate_index(layer)
        return spec

    def spec(self, layers: list[LayerSpec] | tuple[LayerSpec, ...]) -> ArchSpec:
        return self.validate(ArchSpec(self.name, self.input, tuple(layers)))

    def spec_from_indices(self, indices: list[int]) -> ArchSpec:
        return self.spec([self.candidates[i] for i in indices])

    def spec_from_string(self, text: str) -> ArchSpec:
        return self.validate(ArchSpec.from_string(text, self.name, self.input))

    def sample(self, generator: torch.Generator | None = None) -> ArchSpec:
        """A uniformly random architecture of this space."""
        picks = torch.randint(len(self.candidates), (self.num_layers,), generator=generator)
        return self.spec_from_indices(picks.tolist())


def interaction_candidates(kernels=(3, 5, 7), expansions=(2, 4)) -> tuple[LayerSpec, ...]:
    """skip + one interaction block per (interaction, kernel, expansion)."""
    blocks = [LayerSpec("block", k, e, i)
              for i, k, e in itertools.product(INTERACTIONS, kernels, expansions)]
    return (LayerSpec("skip"), *blocks)


def mbconv_candidates(kernels=(3, 5, 7), expansions=(3, 6)) -> tuple[LayerSpec, ...]:
    """skip + ProxylessNAS MBConv blocks."""
    return (LayerSpec("skip"),
            *[LayerSpec("mbconv", k, e) for k, e in itertools.product(kernels, expansions)])


def hybrid_candidates() -> tuple[LayerSpec, ...]:
    """skip + every interaction block + every MBConv block: the search picks the family per
    layer (the MBConv space beat the interaction space in the CPU pilot; a hybrid space never
    has to choose between them)."""
    return (*interaction_candidates(), *mbconv_candidates()[1:])


SPACES: Registry[Space] = Registry("space")


def register_space(space: Space) -> Space:
    """Add ``space`` under its name (a name already taken is an error)."""
    return SPACES.register(space.name, space)


def get_space(name: str) -> Space:
    """The space registered as ``name`` (one error naming the valid ones otherwise)."""
    return SPACES[name]


_CIFAR = dict(input=(3, 32, 32), stem="conv3x3", width=32, depths=(2, 2, 3, 2), num_classes=10)
_IMAGENET = dict(input=(3, 224, 224), stem="patch4", width=32, depths=(2, 2, 6, 2),
                 num_classes=1000)
register_space(Space("cifar", candidates=interaction_candidates(), **_CIFAR))
register_space(Space("imagenet", candidates=interaction_candidates(), **_IMAGENET))
register_space(Space("proxyless-cifar", candidates=mbconv_candidates(), **_CIFAR))
register_space(Space("proxyless-imagenet", candidates=mbconv_candidates(), **_IMAGENET))
register_space(Space("hybrid-cifar", candidates=hybrid_candidates(), **_CIFAR))
register_space(Space("hybrid-imagenet", candidates=hybrid_candidates(), **_IMAGENET))
