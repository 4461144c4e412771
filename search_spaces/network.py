"""The networks of a space: standalone children (``build``) and the supernet.

Both share one skeleton walk (stem → stages of searchable layers, with downsamples between in
a classic skeleton → head) and one parameter naming, so a child's state dict is the supernet's
with the chosen candidate's weights renamed to ``layers.{i}.``.

The supernet holds its candidates' weights in one of two ways (``WEIGHT_MODES``; a search's
``--weights`` is checked once, by :class:`nas.core.config.SearchConfig`):

- ``shared`` (weight entanglement; Single-Path NAS's superkernel, Stamoulis et al. 2019, and
  Once-for-All's elastic kernel and width, Cai et al. 2020): per layer one module per family
  (interaction type, or MBConv) at the family's largest kernel and expansion. A candidate
  ``(family, k, e)`` runs the same module code on slices of those weights: a k×k kernel is the
  centred k×k window of the largest kernel, and expansion e keeps the first ``e·C`` hidden
  channels (and their BatchNorm entries). Each family's weights see every step that samples
  any of its sizes, instead of 1 in 31. A candidate without a family that has weights (the
  projection skip of a layer that changes the shape) holds its own module.
- ``separate``: one independent module per candidate (ProxylessNAS's original supernet).

Either way ``Supernet.child(spec)`` gives a plain network whose output equals the supernet
path's output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import nn
from torch.func import functional_call

from hwnas_common import HwnasError, Registry

from .blocks import slot_candidate
from .choices import ChoiceTree
from .space import FixedPart, LayerSlot, Space, get_space
from .spec import ArchSpec, LayerSpec

WeightMode = Literal["shared", "separate"]
WEIGHT_MODES: tuple[WeightMode, ...] = get_args(WeightMode)


FixedPartBuilder = Callable[[FixedPart], nn.Module]
FIXED_PARTS: Registry[FixedPartBuilder] = Registry("fixed part")


def make_fixed_part(part: FixedPart) -> nn.Module:
    """The module of a fixed part of the skeleton (also profiled alone by latency tables).

    The stem and every downsample end in BatchNorm + GELU (ReLU in the FBNet skeleton), so a
    net whose searchable layers are all ``skip`` is still a nonlinear CNN (a linear skeleton
    made every skip remove the only nonlinearity of its stage)."""
    return FIXED_PARTS[part.kind](part)


@FIXED_PARTS.decorator("stem:conv3x3")
def _conv_stem(part: FixedPart) -> nn.Module:
    return nn.Sequential(nn.Conv2d(part.c_in, part.c_out, 3, part.stride, padding=1),
                         nn.BatchNorm2d(part.c_out), nn.GELU())


@FIXED_PARTS.decorator("stem:conv3x3-relu")
def _conv_relu_stem(part: FixedPart) -> nn.Module:
    """FBNet's stem: 3×3 conv without bias → BN → ReLU."""
    return nn.Sequential(nn.Conv2d(part.c_in, part.c_out, 3, part.stride, padding=1, bias=False),
                         nn.BatchNorm2d(part.c_out), nn.ReLU())


@FIXED_PARTS.decorator("stem:patch4")
def _patch_stem(part: FixedPart) -> nn.Module:
    return nn.Sequential(nn.Conv2d(part.c_in, part.c_out, part.stride, part.stride),
                         nn.BatchNorm2d(part.c_out), nn.GELU())


@FIXED_PARTS.decorator("downsample")
def _downsample(part: FixedPart) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(part.c_in), nn.Conv2d(part.c_in, part.c_out, 2, 2),
                         nn.BatchNorm2d(part.c_out), nn.GELU())


@FIXED_PARTS.decorator("head")
def _head(part: FixedPart) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(part.c_in), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(part.c_in, part.c_out))


def _conv_head(width: int) -> FixedPartBuilder:
    """FBNet's head: 1×1 conv to ``width`` channels (no bias) → BN → ReLU → global average
    pool → linear."""
    def build(part: FixedPart) -> nn.Module:
        return nn.Sequential(nn.Conv2d(part.c_in, width, 1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, part.c_out))
    return build


FIXED_PARTS.register("head:conv1x1-1504", _conv_head(1504))


def slice_weight(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The view of ``tensor`` that a smaller candidate uses: leading entries along channel dims
    (0 and 1), the centred window along kernel dims (2 and 3 of a conv weight)."""
    if len(shape) != tensor.dim() or any(w > h for w, h in zip(shape, tensor.shape,
                                                                strict=True)):
        raise HwnasError(f"cannot slice a {list(tensor.shape)} tensor to {list(shape)}")
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape, strict=True)):
        start = (have - want) // 2 if dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


class _Skeleton(nn.Module):
    def __init__(self, space: Space, layers: list[nn.Module]) -> None:
        super().__init__()
        self.space = space
        parts = {part.name: make_fixed_part(part) for part in space.fixed_parts()}
        self.stem = parts["stem"]
        self.layers = nn.ModuleList(layers)
        self.downsamples = nn.ModuleList(parts[f"downsample{s}"] for s in
                                         range(1, len(space.depths)) if not space.staged)
        self.head = parts["head"]

    def _walk(self, x: torch.Tensor, layer: Callable[[int, torch.Tensor], torch.Tensor]):
        return walk_skeleton(self, x, layer)


def walk_skeleton(net: nn.Module, x: torch.Tensor,
                  layer: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """stem → stages of searchable layers (``layer(i, x)``) with a classic skeleton's
    downsamples between → head.

    ``net`` has ``space``, ``stem``, ``downsamples`` (empty for a staged skeleton) and ``head``
    (children, the supernet and the NNI model space all share this walk).
    """
    x = net.stem(x)
    index = 0
    for stage, depth in enumerate(net.space.depths):
        if stage > 0 and not net.space.staged:
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
        super().__init__(space, [slot_candidate(layer, slot, space.branches)
                                 for layer, slot in zip(spec.layers, slots, strict=True)])
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._walk(x, lambda i, h: self.layers[i](h))


def build(spec: ArchSpec) -> ChildNet:
    """The standalone child network of ``spec`` (randomly initialised)."""
    return ChildNet(spec, get_space(spec.space))


def _module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by state-dict name (the tensors themselves, not copies)."""
    return module.state_dict(keep_vars=True)


class MixedOp(nn.Module):
    """All candidates of one searchable layer (built for its ``slot``) and their architecture
    logits α (the edges of the layer's choice tree, :mod:`search_spaces.choices`)."""

    def __init__(self, space: Space, slot: LayerSlot, weights: WeightMode = "shared",
                 choices: str = "flat") -> None:
        super().__init__()
        self.weights = weights
        self.space = space
        self.tree = ChoiceTree.of(space.candidates, choices)
        self.alpha = nn.Parameter(torch.zeros(self.tree.num_edges))
        if weights == "separate":
            self.candidates = nn.ModuleList(slot_candidate(c, slot, space.branches)
                                            for c in space.candidates)
            return
        largest: dict[str, LayerSpec] = {}
        for c in space.candidates:
            if c.family is not None:
                big = largest.get(c.family, c)
                largest[c.family] = dataclasses.replace(
                    c, kernel=max(c.kernel, big.kernel), expansion=max(c.expansion, big.expansion))
        modules = {family: slot_candidate(layer, slot, space.branches)
                   for family, layer in largest.items()}
        for c in space.candidates:  # a candidate without a family keeps its own weights, if any
            if c.family is None:
                own = slot_candidate(c, slot, space.branches)
                if _module_state(own):
                    modules[c.token] = own
        self.families = nn.ModuleDict(modules)
        # Weightless copies of every candidate (meta device): the code each path runs on
        # slices of its family's weights. A plain list, so they are not part of the state.
        with torch.device("meta"):
            self._shapes = [slot_candidate(c, slot, space.branches) for c in space.candidates]

    def train(self, mode: bool = True) -> MixedOp:
        """Also switch the weightless candidate copies (not submodules) to train / eval."""
        super().train(mode)
        for module in getattr(self, "_shapes", ()):
            module.train(mode)
        return self

    def log_probs(self) -> torch.Tensor:
        """log p of every candidate, differentiable in α."""
        return self.tree.log_probs(self.alpha)

    def probs(self) -> torch.Tensor:
        return self.log_probs().exp()

    def candidate_state(self, index: int) -> dict[str, torch.Tensor]:
        """The weights and buffers candidate ``index`` runs with, by the names a standalone
        candidate module has (views into the shared weights in ``shared`` mode)."""
        if self.weights == "separate":
            return _module_state(self.candidates[index])
        candidate = self.space.candidates[index]
        family = candidate.family or candidate.token
        if family not in self.families:  # an identity skip
            return {}
        shared = _module_state(self.families[family])
        return {name: slice_weight(shared[name], meta.shape)
                for name, meta in _module_state(self._shapes[index]).items()}

    def run(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """The output of candidate ``index`` alone."""
        if self.weights == "separate":
            return self.candidates[index](x)
        return functional_call(self._shapes[index], self.candidate_state(index), (x,))

    def forward(self, x: torch.Tensor, path: int | Sequence[int],
                gates: torch.Tensor | None = None) -> torch.Tensor:
        """Run one path (binarized), or ``Σ_j gates[j] · candidate_{path[j]}(x)`` with gates.

        A path whose gate is 0 adds no gradient to ``x`` or to its weights; only its gate needs
        ``∂L/∂g = <∂L/∂y, candidate(x)>``. It therefore runs without autograd and keeps none of
        its activations, so an architecture step costs about one child's memory (ProxylessNAS).
        """
        if gates is None:
            return self.run(path, x)
        out = torch.zeros((), dtype=x.dtype, device=x.device)
        for j, gate in zip(path, gates, strict=True):
            if bool(gate.detach() == 0):
                with torch.no_grad():
                    branch = self.run(j, x)
            else:
                branch = self.run(j, x)
            out = out + gate * branch
        return out


class Supernet(_Skeleton):
    """One MixedOp per searchable layer; runs the sampled path of each layer only.

    Its convolution weights are kept in ``channels_last`` memory format, so every activation
    after the stem is too (a contiguous input is fine): on a 2-vCPU Zen 3 guest (family 25 model 1)
    a weight step of the `cifar` supernet at batch 64 took 1.0-1.35 s instead of 1.7-2.0 s
    (the depthwise k×k convolutions' backward dominates it)."""

    def __init__(self, space: Space, weights: WeightMode = "shared",
                 choices: str = "flat") -> None:
        super().__init__(space, [MixedOp(space, slot, weights, choices)
                                 for slot in space.layer_slots()])
        self.weights = weights
        self.choices = choices
        self.to(memory_format=torch.channels_last)

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

    def derive_scores(self) -> list[list[float]]:
        """Per layer and candidate, the derivation's score: log p against a uniform choice at
        every step of the choice tree (:meth:`ChoiceTree.derive_scores`)."""
        with torch.no_grad():
            return [layer.tree.derive_scores(layer.alpha).tolist() for layer in self.layers]

    def derive(self) -> ArchSpec:
        """The best-scoring candidate per layer (no budget; ``nas.core.derive`` meets one)."""
        return self.space.spec_from_indices([max(range(len(row)), key=row.__getitem__)
                                             for row in self.derive_scores()])

    def child_state_dict(self, spec: ArchSpec) -> dict[str, torch.Tensor]:
        """The state dict of ``build(spec)`` taken from this supernet's weights (copies)."""
        self.space.validate(spec)
        state = {key: value.clone() for key, value in self.state_dict().items()
                 if not key.startswith("layers.")}
        for i, (mixed, layer) in enumerate(zip(self.layers, spec.layers, strict=True)):
            chosen = mixed.candidate_state(self.space.candidate_index(layer))
            state.update({f"layers.{i}.{name}": value.detach().clone()
                          for name, value in chosen.items()})
        return state

    def child(self, spec: ArchSpec) -> ChildNet:
        """A standalone child network of ``spec`` inheriting this supernet's weights.

        With shared weights a candidate's weights are the slices it runs on (the centred k×k
        window, the first ``e·C`` hidden channels and their BatchNorm entries). The child is in
        the supernet's memory format (``channels_last``), so its output equals the supernet
        path's bit for bit.

        Parameters
        ----------
        spec
            An architecture of this supernet's space.

        Returns
        -------
        ChildNet
            ``build(spec)`` holding copies of the chosen candidates' weights and buffers, in
            this supernet's memory format and train/eval mode.

        Raises
        ------
        HwnasError
            When ``spec`` is not an architecture of this space.

        Examples
        --------
        >>> import torch
        >>> from search_spaces import Supernet, get_space
        >>> space = get_space("cifar")
        >>> supernet = Supernet(space).eval()
        >>> spec = space.sample(torch.Generator().manual_seed(0))
        >>> x = torch.randn(1, *space.input)
        >>> paths = [space.candidate_index(layer) for layer in spec.layers]
        >>> torch.equal(supernet.child(spec)(x), supernet(x, paths))
        True
        """
        net = ChildNet(spec, self.space).to(memory_format=torch.channels_last)
        net.load_state_dict(self.child_state_dict(spec))
        return net.train(self.training)
