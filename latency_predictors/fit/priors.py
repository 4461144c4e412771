"""What a fit starts from: a prior, i.e. a guess of every op's latency before any timing of the
target device, and the few ways the timings may refit it.

A table prior's models rescale its rows; the roofline prior holds one or more **bases** per
model: per op key of the space (fixed parts and every candidate at every layer), a non-negative
value. A net's feature under a basis is the sum over its ops; a fit weighs the bases
(:mod:`.fitting`), so the fitted table's entry of an op is the weighted sum of its basis values.
Either way whole-net latency stays a plain sum over layers (the expected latency and the
knapsack stay exact).

- :func:`table_prior`: a table hwnas already has (measured on another device, estimated by the
  roofline for a device class, or fitted before), its own calibration set aside. Its models are
  the calibration models (:mod:`.calibration`: none, affine, a scale per op class, per kernel
  size, per kernel size and r branches), which keep its rows and rescale them.
- :func:`roofline_prior`: the analytical roofline's per-op terms, left for the timings to weigh:
  dense MACs, depthwise MACs, activation elements written, weights, and kernels launched (a
  convolution or linear layer with the normalisation and activation fused into it). Models are
  subsets of these terms. It needs no table and covers every space, the hybrid ones included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from search_spaces import ArchSpec, Space, get_space

from ..keys import fixed_key, layer_keys, required_keys, space_ops
from ..predictor import check_coverage
from ..table import LatencyTable, OpKey
from .calibration import without_calibration

ROOFLINE_TERMS = ("dense_macs", "depthwise_macs", "activations", "weights", "kernels")
ROOFLINE_MODELS = {  # simplest first: a tie in cross-validation goes to the simpler
    "macs": (("dense_macs", "depthwise_macs"),),
    "macs+kernels": (("dense_macs", "depthwise_macs"), ("kernels",)),
    "macs+weights": (("dense_macs", "depthwise_macs"), ("weights",)),
    "dense+depthwise+kernels": (("dense_macs",), ("depthwise_macs",), ("kernels",)),
    "macs+kernels+weights": (("dense_macs", "depthwise_macs"), ("kernels",), ("weights",)),
    "all": tuple((t,) for t in ROOFLINE_TERMS),
}


@dataclass(frozen=True)
class Prior:
    """A named prior for one space: a table (its models are :data:`.calibration.MODELS`), or
    bases (``models[m]``: a (keys × bases) array over ``keys``)."""

    name: str
    kind: str  # "measured table", "estimated table", "fitted table" or "roofline"
    space: str
    keys: tuple[OpKey, ...]
    models: dict[str, np.ndarray] = field(default_factory=dict)
    basis_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    table: LatencyTable | None = None  # a table prior, without its calibration for the space

    def incidence(self, specs: list[ArchSpec], space: Space) -> np.ndarray:
        """(nets × keys) counts of each op key in each net (fixed parts included)."""
        return net_incidence(specs, space, self.keys)


def space_keys(space: Space) -> tuple[OpKey, ...]:
    """Every op key of ``space``, fixed parts first (the order of a prior's rows)."""
    return tuple(required_keys(space))


def net_incidence(specs: list[ArchSpec], space: Space, keys: tuple[OpKey, ...]) -> np.ndarray:
    index = {k: i for i, k in enumerate(keys)}
    rows = layer_keys(space)
    fixed = [index[fixed_key(p)] for p in space.fixed_parts()]
    counts = np.zeros((len(specs), len(keys)))
    for n, spec in enumerate(specs):
        np.add.at(counts[n], fixed, 1.0)
        for layer, choice in enumerate(spec.layers):
            key = rows[layer][space.candidate_index(choice)]
            if key is not None:
                counts[n, index[key]] += 1.0
    return counts


def table_prior(table: LatencyTable, space: Space, kind: str | None = None) -> Prior:
    """``table``'s rows for ``space`` as a prior, its own calibration for the space set aside."""
    check_coverage(space, table)
    return Prior(table.name or table.device, kind or f"{table.provenance} table", space.name,
                 space_keys(space), table=without_calibration(table, space.name))


def roofline_prior(space: Space) -> Prior:
    """The roofline terms of every op of ``space`` as a prior (module docstring)."""
    keys = space_keys(space)
    terms = _roofline_terms(space.name, keys)  # cached: every fit of a space reuses them
    models, names = {}, {}
    for model, columns in ROOFLINE_MODELS.items():
        models[model] = np.stack([terms[:, [ROOFLINE_TERMS.index(t) for t in group]].sum(1)
                                  for group in columns], axis=1)
        names[model] = tuple("+".join(group) for group in columns)
    return Prior("roofline", "roofline", space.name, keys, models, names)


@functools.lru_cache(maxsize=8)
def _roofline_terms(space_name: str, keys: tuple[OpKey, ...]) -> np.ndarray:
    ops = space_ops(get_space(space_name))
    return np.array([op_terms(*ops[k]) for k in keys])


def op_terms(factory, shape: tuple[int, int, int]) -> list[float]:
    """The roofline terms (:data:`ROOFLINE_TERMS`) of one op, by hooks on one batch-1 forward
    pass: a convolution is depthwise when each group has one input channel."""
    module: nn.Module = factory().eval()
    terms = dict.fromkeys(ROOFLINE_TERMS, 0.0)

    def hook(mod: nn.Module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(mod, nn.Conv2d):
            per_out = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
            depthwise = mod.groups > 1 and mod.in_channels // mod.groups == 1
            terms["depthwise_macs" if depthwise else "dense_macs"] += output.numel() * per_out
            terms["kernels"] += 1
        elif isinstance(mod, nn.Linear):
            terms["dense_macs"] += output.numel() * mod.in_features
            terms["kernels"] += 1
        terms["activations"] += output.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if not list(m.children())]
    try:
        with torch.no_grad():
            module(torch.zeros(1, *shape))
    finally:
        for handle in handles:
            handle.remove()
    terms["weights"] = float(sum(p.numel() for p in module.parameters()))
    return [float(terms[t]) for t in ROOFLINE_TERMS]
