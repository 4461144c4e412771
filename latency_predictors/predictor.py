"""Latency prediction from a table: per-layer matrix, ArchSpec prediction, expected latency.

Whole-network latency is a plain sum, so the expected latency of the search loss and the
knapsack of the derivation are exact (``docs/search.md``, "Search defaults")::

    LAT(arch) = fixed_ms + Σ_l per_layer[l][choice_l]

with ``per_layer[l][i] = s(c_i) · table[key(candidate i at slot l)]`` (an identity skip = 0; a
skip that changes the shape has a row of its own, :mod:`latency_predictors.keys`) and
``fixed_ms = scale · Σ fixed parts + offset_ms``. The calibration of the table for the space
(:mod:`latency_predictors.measure.calibrate`) gives ``scale``, ``offset_ms`` and optionally
``class_scales``: ``s(c)`` is the scale of the candidate's op group at the slot (its
interaction, ``mbconv``, ... :func:`latency_predictors.keys.op_group`) when ``class_scales``
has one, else ``scale``; without a calibration every scale
is 1 and the offset 0. Every calibration only rescales entries and adds a constant, so the sum
structure, the expected latency and the knapsack derivation stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hwnas_common.errors import HwnasError
from search_spaces import ArchSpec, Space, get_space

from .keys import fixed_key, key_label, layer_groups, layer_keys, required_keys
from .metadata import precision_of
from .table import LatencyTable, OpKey

_SHOW_MISSING = 4


@dataclass(frozen=True)
class LatencyMatrix:
    """Predicted latencies of one space on one device, ready for search and derivation."""

    space: str
    device: str
    provenance: str
    calibrated: bool
    fixed_ms: float  # all fixed parts, calibration offset included
    per_layer: list[list[float]]  # [layer][candidate] ms, space.candidates order; identity
    #                               skip = 0
    fixed_parts: dict[str, float] = field(default_factory=dict)  # part name -> ms (scaled)
    offset_ms: float = 0.0

    def total(self, choices: Sequence[int]) -> float:
        """Latency of the architecture choosing candidate ``choices[l]`` at layer l: the one
        total of hwnas, summed left to right from ``fixed_ms`` (the knapsack's order)."""
        if len(choices) != len(self.per_layer):
            raise HwnasError(f"need {len(self.per_layer)} choices, got {len(choices)}")
        total = self.fixed_ms
        for row, c in zip(self.per_layer, choices, strict=True):
            total += row[c]
        return total

    def slowest_from(self, layer: int = 0) -> float:
        """The most latency layers ``layer`` onwards can add: the slowest candidate of each."""
        return sum(max(row) for row in self.per_layer[layer:])

    def fastest_ms(self) -> float:
        """The latency of the fastest architecture of the space."""
        return self.total([min(range(len(row)), key=row.__getitem__) for row in self.per_layer])

    def slowest_ms(self) -> float:
        """The latency of the slowest architecture of the space."""
        return self.fixed_ms + self.slowest_from(0)

    def predict(self, spec: ArchSpec) -> LatencyPrediction:
        """The breakdown of ``spec`` (an architecture of this matrix's space)."""
        space = get_space(self.space)
        space.validate(spec)
        choices = [space.candidate_index(layer) for layer in spec.layers]
        layers = [(index, layer.token, self.per_layer[index][choice])
                  for index, (layer, choice) in enumerate(zip(spec.layers, choices, strict=True))]
        fixed = dict(self.fixed_parts)
        if self.calibrated:
            fixed["calibration offset"] = self.offset_ms
        return LatencyPrediction(self.total(choices), layers, fixed, self.device,
                                 self.provenance, self.calibrated)

    def tensor(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``per_layer`` as a (layers, candidates) tensor."""
        return torch.tensor(self.per_layer, dtype=dtype)


def profile_command(table: LatencyTable, space: str) -> str:
    """The ``hwnas profile`` command that measures the rows of ``space`` for this table."""
    backend = table.metadata.get("backend", "onnxruntime")
    ep = table.metadata.get("ep", "cpu")
    precision = precision_of(table.metadata)
    quantized = "" if precision == "fp32" else f" --precision {precision}"
    return (f"hwnas profile --backend {backend} --ep {ep}{quantized} --space {space} "
            f"--name {table.device}")


def check_coverage(space: Space, table: LatencyTable) -> None:
    """Raise one line naming the missing keys and the command that profiles them."""
    lookup = table.lookup()
    missing = [k for k in required_keys(space) if k not in lookup]
    if not missing:
        return
    shown = ", ".join(key_label(k) for k in missing[:_SHOW_MISSING])
    more = f" (+{len(missing) - _SHOW_MISSING} more)" if len(missing) > _SHOW_MISSING else ""
    raise HwnasError(f"table {table.name or table.device!r} lacks {len(missing)} rows for space "
                     f"{space.name!r}: {shown}{more}; profile them with: "
                     f"{profile_command(table, space.name)}")


def calibration_of(table: LatencyTable, space: str
                   ) -> tuple[float, float, dict[str, float], str]:
    """(scale, offset_ms, class_scales, grouping) of ``table`` for ``space``: ``class_scales``
    maps op groups (:func:`latency_predictors.keys.op_group` under ``grouping``) to their
    scale; (1, 0, {}, "class") when uncalibrated."""
    calib = table.calibration(space)
    if calib is None:
        return 1.0, 0.0, {}, "class"
    return (float(calib["scale"]), float(calib["offset_ms"]),
            {c: float(v) for c, v in (calib.get("class_scales") or {}).items()},
            str(calib.get("groups", "class")))


def latency_matrix(space: Space, table: LatencyTable) -> LatencyMatrix:
    """Per-layer × per-candidate latencies (ms) and fixed latency of ``space`` on ``table``.

    ``per_layer[l][i] = s(c_i) · table[key(candidate i at slot l)]`` (an identity skip: 0) and
    ``fixed_ms = scale · Σ fixed parts + offset_ms``, with the table's calibration for the
    space (module docstring); the one latency record of hwnas.

    Parameters
    ----------
    space
        The search space; every op key it needs must be in the table.
    table
        A latency table (:func:`latency_predictors.load_table`), calibrated for ``space`` or
        not.

    Returns
    -------
    LatencyMatrix
        ``per_layer`` in ``space.candidates`` order, ``fixed_ms``, the per-part breakdown, the
        device and provenance; ``total(choices)`` is an architecture's latency.

    Raises
    ------
    HwnasError
        Naming the missing rows and the ``hwnas profile`` command that measures them.

    Examples
    --------
    >>> from latency_predictors import latency_matrix, load_table
    >>> from search_spaces import get_space
    >>> space = get_space("cifar")
    >>> matrix = latency_matrix(space, load_table("vpu"))
    >>> [len(row) for row in matrix.per_layer] == [len(space.candidates)] * space.num_layers
    True
    >>> matrix.total([0] * space.num_layers) == matrix.fixed_ms  # 0: an identity skip, 0 ms
    True
    """
    check_coverage(space, table)
    lookup = table.lookup()
    scale, offset, class_scales, grouping = calibration_of(table, space.name)

    def ms(key: OpKey | None, group: str | None = None) -> float:
        return 0.0 if key is None else class_scales.get(group or "", scale) * lookup[key]

    parts = {part.name: ms(fixed_key(part)) for part in space.fixed_parts()}
    per_layer = [[ms(k, g) for k, g in zip(keys, groups, strict=True)]
                 for keys, groups in zip(layer_keys(space), layer_groups(space, grouping),
                                         strict=True)]
    calib = table.calibration(space.name)
    return LatencyMatrix(space.name, table.device, table.provenance,
                         calib is not None and bool(calib.get("applied", True)),
                         sum(parts.values()) + offset, per_layer, parts, offset)


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency of one architecture with its breakdown."""

    total_ms: float
    layers: list[tuple[int, str, float]]  # (layer index, token, ms)
    fixed_parts: dict[str, float]  # part name -> ms; "calibration offset" when calibrated
    device: str
    provenance: str
    calibrated: bool

    @property
    def estimated(self) -> bool:
        return self.provenance == "estimated"

    def format(self) -> str:
        """A human-readable breakdown; says ESTIMATED for estimated tables."""
        tag = ("ESTIMATED (analytical model, not measured on the device)" if self.estimated
               else "FITTED table (on whole-net timings of the device)"
               if self.provenance == "fitted" else "measured table")
        calib = "calibrated" if self.calibrated else "uncalibrated"
        lines = [f"predicted latency on {self.device}: {self.total_ms:.4f} ms "
                 f"[{tag}, {calib}]"]
        lines += [f"  {name:<24}{value:10.4f} ms" for name, value in self.fixed_parts.items()]
        lines += [f"  {f'layer {index} {token}':<24}{value:10.4f} ms"
                  for index, token, value in self.layers]
        return "\n".join(lines)

    @property
    def fixed_ms(self) -> float:
        """The fixed parts (stem, downsamples, head, calibration offset) together."""
        return sum(self.fixed_parts.values())

    def to_dict(self) -> dict:
        return {"total_ms": self.total_ms, "device": self.device, "provenance": self.provenance,
                "calibrated": self.calibrated, "fixed_ms": self.fixed_ms,
                "fixed_parts": dict(self.fixed_parts),
                "layers": [{"index": i, "token": t, "ms": v} for i, t, v in self.layers]}


def predict_latency(spec: ArchSpec, table: LatencyTable) -> LatencyPrediction:
    """Predicted batch-1 latency of ``spec`` on the device of ``table``."""
    return latency_matrix(get_space(spec.space), table).predict(spec)


def expected_latency(probs: Sequence[torch.Tensor], matrix: LatencyMatrix) -> torch.Tensor:
    """``fixed_ms + Σ_l Σ_i probs[l][i] · per_layer[l][i]``: differentiable E[LAT] (ms).

    ``probs[l]`` is the softmax over layer l's candidates; the gradient w.r.t. ``probs[l][i]``
    is exactly ``per_layer[l][i]``. Call once per device for multi-device searches.
    """
    if len(probs) != len(matrix.per_layer):
        raise HwnasError(f"expected_latency: got {len(probs)} probability vectors, the space "
                         f"{matrix.space!r} has {len(matrix.per_layer)} layers")
    total = None
    for index, (p, row) in enumerate(zip(probs, matrix.per_layer, strict=True)):
        if p.dim() != 1 or p.numel() != len(row):
            raise HwnasError(f"expected_latency: layer {index} probabilities have shape "
                             f"{tuple(p.shape)}, expected ({len(row)},)")
        term = (p * torch.tensor(row, dtype=p.dtype, device=p.device)).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.tensor(matrix.fixed_ms, dtype=torch.float64)
    return total + matrix.fixed_ms
