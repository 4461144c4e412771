"""Which table rows a space needs: the op key of every (layer slot, candidate) and fixed part,
and the module that each key stands for (:func:`space_ops`: what is profiled or costed)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from search_spaces import (
    FixedPart,
    LayerSlot,
    LayerSpec,
    Space,
    make_candidate,
    make_fixed_part,
)
from search_spaces.interactions import uses_branches

from .metadata import GROUPINGS
from .table import OpKey, op_key


def candidate_key(layer: LayerSpec, slot: LayerSlot, branches: int) -> OpKey | None:
    """The key of ``layer`` at ``slot`` (None for skip, whose latency is 0 by definition)."""
    if layer.op == "skip":
        return None
    r = branches if layer.interaction and uses_branches(layer.interaction) else 0
    return op_key(layer.token, slot.channels, slot.channels, slot.height, slot.width, 1, r)


def op_group(layer: LayerSpec, grouping: str = "class") -> str | None:
    """The calibration group of a candidate, None for skip (0 ms, never scaled). By ``class``:
    its interaction (``sum`` ... ``rbf``) for an interaction block, ``mbconv`` for MBConv; by
    ``kernel``: its kernel size (``k3``, ``k5``, ``k7``), which decides most of how an op's
    speed changes between two CPUs (Zen 3 to Zen 5: k3 ops ×0.40, k7 ×0.32, any class); by
    ``kernel-branch``: the kernel size, with ``r`` appended for the r-branch interactions
    (``poly2``, ``rbf``: ``k3r``), whose many small element-wise ops change speed between
    two CPUs unlike one depthwise convolution does."""
    if layer.op == "skip":
        return None
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}")
    if grouping == "class":
        return layer.family
    branch = layer.interaction is not None and uses_branches(layer.interaction)
    return f"k{layer.kernel}" + ("r" if grouping == "kernel-branch" and branch else "")


def op_class(layer: LayerSpec) -> str | None:
    """The calibration class of a candidate (``op_group`` by class)."""
    return op_group(layer, "class")


def fixed_key(part: FixedPart) -> OpKey:
    return op_key(part.kind, part.c_in, part.c_out, part.height, part.width, part.stride, 0)


def layer_keys(space: Space) -> list[list[OpKey | None]]:
    """``keys[l][i]``: key of candidate i (``space.candidates`` order) at layer slot l."""
    return [[candidate_key(c, slot, space.branches) for c in space.candidates]
            for slot in space.layer_slots()]


def required_keys(space: Space) -> list[OpKey]:
    """Every distinct key a space needs, fixed parts first, in a stable order."""
    keys: list[OpKey] = [fixed_key(part) for part in space.fixed_parts()]
    for row in layer_keys(space):
        keys += [k for k in row if k is not None]
    return list(dict.fromkeys(keys))


def key_label(key: OpKey) -> str:
    """Short human form: ``quad_k7_e4@64x16x16`` (``/s2``, ``/r4`` when relevant)."""
    op, c_in, c_out, height, width, stride, branches = key
    label = f"{op}@{c_in}x{height}x{width}"
    if c_out != c_in:
        label += f"->{c_out}"
    if stride != 1:
        label += f"/s{stride}"
    if branches:
        label += f"/r{branches}"
    return label


OpFactory = tuple[Callable[[], nn.Module], tuple[int, int, int]]


def space_ops(space: Space) -> dict[OpKey, OpFactory]:
    """``{key: (module factory, input shape (C, H, W))}`` of every op the space needs."""
    ops: dict[OpKey, OpFactory] = {}
    for part in space.fixed_parts():
        ops.setdefault(fixed_key(part), (lambda p=part: make_fixed_part(p),
                                         (part.c_in, part.height, part.width)))
    for slot in space.layer_slots():
        for layer in space.candidates:
            key = candidate_key(layer, slot, space.branches)
            if key is not None and key not in ops:
                ops[key] = (lambda c=layer, s=slot: make_candidate(c, s.channels, space.branches),
                            (slot.channels, slot.height, slot.width))
    return ops
