"""Search spaces: a macro skeleton plus the candidate list of every searchable layer.

Two skeletons (``docs/search.md``, "The search space"):

- classic (ConvNeXt/QuadraNet style): stem, 4 stages of widths [C, 2C, 4C, 8C] with
  ``depths[s]`` searchable layers each, a fixed stride-2 downsample between stages, and a
  global-pool + linear head. Searchable layers keep channels and resolution.
- staged (FBNet, MobileNetV2 style; ``stage_widths`` and ``stage_strides`` given): stem, then
  stages whose first searchable layer changes the width to ``stage_widths[s]`` with stride
  ``stage_strides[s]`` and whose other layers keep it, no fixed part between stages, then the
  head of ``head``.

Either way a space knows every layer's input shape, output width and stride
(:class:`LayerSlot`), which is what latency tables are keyed by.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from hwnas_common import HwnasError, Registry

from .interactions import INTERACTIONS
from .spec import ArchSpec, LayerSpec

STEMS = {"conv3x3": 1, "patch4": 4, "conv3x3-relu": 1}  # stem kind -> stride
HEADS = ("head", "head:conv1x1-1504")  # head kinds (fixed parts of search_spaces.network)


@dataclass(frozen=True)
class LayerSlot:
    """One searchable layer: its position, input shape (C, H, W), output channels and stride.

    ``c_out`` is the input's ``channels`` when not given; only the first layer of a stage of
    a staged space changes channels or resolution."""

    index: int
    stage: int
    channels: int
    height: int
    width: int
    c_out: int | None = None  # None: ``channels`` (an int once the slot is built)
    stride: int = 1

    def __post_init__(self) -> None:
        if self.c_out is None:
            object.__setattr__(self, "c_out", self.channels)

    @property
    def keeps_shape(self) -> bool:
        """Whether the layer's output has its input's shape (then ``skip`` is an identity)."""
        return self.c_out == self.channels and self.stride == 1


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
    """A search space: skeleton hyper-parameters and the ordered candidate list of each layer.

    ``width`` is the stem's output width (and a classic skeleton's first stage width);
    ``stage_widths`` and ``stage_strides`` make the skeleton staged (module docstring)."""

    name: str
    input: tuple[int, int, int]
    stem: str
    width: int
    depths: tuple[int, ...]
    candidates: tuple[LayerSpec, ...]
    branches: int = 4  # r of the poly2/rbf interactions (InfiNet uses 7; 4 suits small nets)
    num_classes: int = 10
    stage_widths: tuple[int, ...] = ()  # staged skeleton: each stage's output channels
    stage_strides: tuple[int, ...] = ()  # staged skeleton: the stride of each stage's first layer
    head: str = "head"  # the head's fixed-part kind (one of HEADS)

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise HwnasError(f"unknown stem {self.stem!r}; valid: {sorted(STEMS)}")
        if self.head not in HEADS:
            raise HwnasError(f"unknown head {self.head!r}; valid: {list(HEADS)}")
        if len(set(self.candidates)) != len(self.candidates):
            raise HwnasError(f"space {self.name!r} lists a candidate twice")
        if self.staged and not (len(self.stage_widths) == len(self.stage_strides)
                                == len(self.depths)):
            raise HwnasError(f"space {self.name!r}: stage_widths {list(self.stage_widths)} and "
                             f"stage_strides {list(self.stage_strides)} need one entry per "
                             f"stage ({len(self.depths)})")
        if self.staged and min(self.depths) < 1:
            raise HwnasError(f"space {self.name!r}: every stage of a staged skeleton needs a "
                             f"searchable layer, got depths {list(self.depths)}")
        reduction = STEMS[self.stem] * math.prod(self.strides)
        if self.input[1] % reduction or self.input[2] % reduction:
            raise HwnasError(f"input {self.input} is not divisible by the total stride {reduction}")

    @property
    def staged(self) -> bool:
        """Whether stages change width and resolution in their first searchable layer (else
        fixed downsample parts sit between the stages)."""
        return bool(self.stage_widths or self.stage_strides)

    @property
    def widths(self) -> tuple[int, ...]:
        if self.staged:
            return self.stage_widths
        return tuple(self.width * 2**stage for stage in range(len(self.depths)))

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride by which each stage reduces the resolution (a classic skeleton's
        downsamples: 2 from the second stage on)."""
        if self.staged:
            return self.stage_strides
        return tuple(1 if stage == 0 else 2 for stage in range(len(self.depths)))

    @property
    def num_layers(self) -> int:
        return sum(self.depths)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(candidate.token for candidate in self.candidates)

    def stage_shape(self, stage: int) -> tuple[int, int, int]:
        """(C, H, W) of the feature map a stage outputs (inside a classic stage: throughout)."""
        scale = STEMS[self.stem] * math.prod(self.strides[:stage + 1])
        return self.widths[stage], self.input[1] // scale, self.input[2] // scale

    def stage_input(self, stage: int) -> tuple[int, int, int]:
        """(C, H, W) of the feature map entering ``stage`` (the stem's or the stage before's
        output; a classic stage's downsample comes after it)."""
        if stage:
            return self.stage_shape(stage - 1)
        scale = STEMS[self.stem]
        return self.width, self.input[1] // scale, self.input[2] // scale

    def layer_slots(self) -> list[LayerSlot]:
        slots: list[LayerSlot] = []
        for stage, depth in enumerate(self.depths):
            shape = self.stage_shape(stage)
            for layer in range(depth):
                if self.staged and layer == 0:  # the stage's first layer changes the shape
                    slots.append(LayerSlot(len(slots), stage, *self.stage_input(stage),
                                           c_out=shape[0], stride=self.strides[stage]))
                else:
                    slots.append(LayerSlot(len(slots), stage, *shape))
        return slots

    def fixed_parts(self) -> list[FixedPart]:
        """The stem, a classic skeleton's downsamples, and the head, in network order."""
        c_in, height, width = self.input
        parts = [FixedPart("stem", f"stem:{self.stem}", c_in, self.width, height, width,
                           STEMS[self.stem])]
        for stage in range(1, 1 if self.staged else len(self.depths)):
            channels, height, width = self.stage_input(stage)
            parts.append(FixedPart(f"downsample{stage}", "downsample", channels,
                                   self.widths[stage], height, width, 2))
        channels, height, width = self.stage_shape(len(self.depths) - 1)
        parts.append(FixedPart("head", self.head, channels, self.num_classes, height, width, 1))
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


def fbnet_candidates() -> tuple[LayerSpec, ...]:
    """FBNet's 9 blocks (Wu et al., CVPR 2019, Table 2) in HW-NAS-Bench's ``PRIMITIVES`` order,
    so its op indices are ours: ``k{3,5}`` × (``e1``, ``e1_g2``, ``e3``, ``e6``), then skip."""
    blocks = [LayerSpec("fbnet", k, e, groups=g)
              for k in (3, 5) for e, g in ((1, 1), (1, 2), (3, 1), (6, 1))]
    return (*blocks, LayerSpec("skip"))


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
# HW-NAS-Bench's FBNet_Infer for CIFAR-100 (Li et al., ICLR 2021), after FBNet-v1's macro
# structure (Wu et al., CVPR 2019, Table 1) with a stride-1 stem and the strides of its CIFAR
# setting
register_space(Space("fbnet-cifar", input=(3, 32, 32), stem="conv3x3-relu", width=16,
                     depths=(1, 4, 4, 4, 4, 4, 1), candidates=fbnet_candidates(),
                     num_classes=100, stage_widths=(16, 24, 32, 64, 112, 184, 352),
                     stage_strides=(1, 1, 2, 2, 1, 2, 1), head="head:conv1x1-1504"))
