"""Which table rows a space needs: the op key of every (layer slot, candidate) and fixed part,
and the module that each key stands for (:func:`space_ops`: what is profiled or costed).

A candidate's key is its token at the slot's input shape, output channels and stride. A skip
is an identity (no key, 0 ms) where the slot keeps the shape, and FBNet's projection
(1×1 conv + BN + ReLU) where it does not: op :data:`SKIP_PROJECTION`, a row of its own."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from search_spaces import (
    FixedPart,
    LayerSlot,
    LayerSpec,
    Space,
    make_fixed_part,
    slot_candidate,
)
from search_spaces.interactions import uses_branches

from .metadata import GROUPINGS
from .table import OpKey, op_key

SKIP_PROJECTION = "skip:proj"  # the op of a skip that changes the shape (a table's op is never
#                                "skip": an identity skip has no row)
PROJECTION_GROUP = "proj"  # its calibration group under every grouping


def is_identity(layer: LayerSpec, slot: LayerSlot | None) -> bool:
    """Whether ``layer`` is an identity at ``slot``: a skip where the slot keeps the shape (or
    no slot is given: a classic skeleton's layers all keep it)."""
    return layer.op == "skip" and (slot is None or slot.keeps_shape)


def candidate_key(layer: LayerSpec, slot: LayerSlot, branches: int) -> OpKey | None:
    """The key of ``layer`` at ``slot``; None only for an identity skip, whose latency is 0 by
    definition (a projecting skip has the key of :data:`SKIP_PROJECTION`)."""
    if is_identity(layer, slot):
        return None
    op = SKIP_PROJECTION if layer.op == "skip" else layer.token
    r = branches if layer.interaction and uses_branches(layer.interaction) else 0
    return op_key(op, slot.channels, slot.c_out, slot.height, slot.width, slot.stride, r)


def op_group(layer: LayerSpec, grouping: str = "class",
             slot: LayerSlot | None = None) -> str | None:
    """The calibration group of a candidate at ``slot``, None for an identity skip (0 ms, never
    scaled) and ``proj`` for a projecting skip under every grouping. By ``class``: its
    interaction (``sum`` ... ``rbf``) for an interaction block, ``mbconv`` for MBConv,
    ``fbnet`` / ``fbnet_g2`` for FBNet blocks; by ``kernel``: its kernel size (``k3``, ``k5``,
    ``k7``), which decides most of how an op's speed changes between two CPUs (Zen 3 to Zen 5:
    k3 ops ×0.40, k7 ×0.32, any class); by ``kernel-branch``: the kernel size, with ``r``
    appended for the r-branch interactions (``poly2``, ``rbf``: ``k3r``), whose many small
    element-wise ops change speed between two CPUs unlike one depthwise convolution does.
    Without ``slot`` a skip counts as an identity."""
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}")
    if is_identity(layer, slot):
        return None
    if layer.op == "skip":
        return PROJECTION_GROUP
    if grouping == "class":
        return layer.family
    branch = layer.interaction is not None and uses_branches(layer.interaction)
    return f"k{layer.kernel}" + ("r" if grouping == "kernel-branch" and branch else "")


def op_class(layer: LayerSpec, slot: LayerSlot | None = None) -> str | None:
    """The calibration class of a candidate at ``slot`` (``op_group`` by class)."""
    return op_group(layer, "class", slot)


def fixed_key(part: FixedPart) -> OpKey:
    return op_key(part.kind, part.c_in, part.c_out, part.height, part.width, part.stride, 0)


def layer_keys(space: Space) -> list[list[OpKey | None]]:
    """``keys[l][i]``: key of candidate i (``space.candidates`` order) at layer slot l."""
    return [[candidate_key(c, slot, space.branches) for c in space.candidates]
            for slot in space.layer_slots()]


def layer_groups(space: Space, grouping: str = "class") -> list[list[str | None]]:
    """``groups[l][i]``: the calibration group (:func:`op_group`) of candidate i at slot l."""
    return [[op_group(c, grouping, slot) for c in space.candidates]
            for slot in space.layer_slots()]


def required_keys(space: Space) -> list[OpKey]:
    """Every distinct key a space needs, fixed parts first, in a stable order."""
    keys: list[OpKey] = [fixed_key(part) for part in space.fixed_parts()]
    for row in layer_keys(space):
        keys += [k for k in row if k is not None]
    return list(dict.fromkeys(keys))


def key_label(key: OpKey) -> str:
    """Short human form: ``quad_k7_e4@64x16x16`` (``->C_out``, ``/s2``, ``/r4`` when
    relevant)."""
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
                ops[key] = (lambda c=layer, s=slot: slot_candidate(c, s, space.branches),
                            (slot.channels, slot.height, slot.width))
    return ops
