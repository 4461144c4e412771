"""The analytical (roofline) cost model: an op's latency on a device from its ONNX graph.

Each op of a space is exported alone to ONNX (the graph a runtime would execute) and every node
is costed as ::

    t_node = max(FLOPs / (peak · eff[class]), bytes / (bandwidth · mem_eff)) + node_overhead

with ``class`` one of ``dense`` (Conv with more than one input channel per group, as a grouped
1×1 conv of FBNet's ``_g2`` blocks; Gemm, MatMul), ``depthwise`` (Conv with one input channel
per group) and ``elementwise`` (everything else: norms, activations, products, reductions, data
movement such as a channel shuffle's Transpose, ``exp``/``erf`` counted as
:data:`TRANSCENDENTAL_FLOPS` FLOPs per element). ``bytes`` are the node's input,
weight and output tensors in the device dtype; ``bandwidth`` is the on-chip/cache bandwidth when
they fit in ``cache_mb`` and the DRAM bandwidth otherwise. Shape-only nodes (Identity, Constant,
Reshape, Flatten, float->float Cast) cost nothing. A table row is the sum over its nodes; the
stem row also carries ``inference_overhead_us`` (the once-per-inference cost: runtime call, for
the NCS2 the USB transfer) so whole-network latency stays a plain sum.

A device is a :class:`DeviceModel`; the devices are data in
:mod:`latency_predictors.estimate.devices` (datasheet figures and where they come from),
:mod:`latency_predictors.estimate.anchors` fits their parameters on published latencies and
:mod:`latency_predictors.estimate.tables` writes their estimated tables.

The models of the anchored devices (``a100``, ``vpu``, ``cortex-a76``) fuse activations: a
ReLU/ReLU6 that only consumes a convolution or GEMM output costs nothing, as TFLite, OpenVINO
and cuDNN/TensorRT fuse it (the anchored fit's leave-one-out MAPE with and without this:
A76 4.1 vs 11.4 %, VPU 17.5 vs 25.0 %, A100 14.7 vs 14.8 %).

Measured error (``bench/latency_analytical.py`` on this host, 2026-11-22; also stored in every
estimated table's ``analytical_error``): the a-priori ``x86`` model over-predicts the measured
onnxruntime CPU table by a median factor 2.5 (per-op MAPE 167 %, whole-network MAPE 142 % on 20
random cifar architectures); with the efficiencies fitted on the cifar rows (``fit_device``),
the held-out MBConv rows have a 17 % MAPE and whole networks 6.6 %: the model form is usable,
the a-priori efficiencies are not. MobileNetV2 (300.8 M MACs): 21.1 ms estimated vs 9.46 ms
measured on x86 (1 thread). The a-priori device models were 3-20x below published figures
(MobileNetV2: 15.4 ms on the A76 model vs nn-Meter's 44.0 ms; 8.4 ms on the VPU model vs 22.0
ms; 0.65 ms on the A100 model vs 5-9 ms for frameworks on a DGX A100), hence the anchored fit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx
from onnx import shape_inference

from search_spaces import Space, get_space

from ..keys import space_ops
from ..measure.backends import export_onnx

FREE_OPS = {"Identity", "Constant", "Reshape", "Flatten", "Cast", "Shape", "Squeeze",
            "Unsqueeze", "Dropout"}
TRANSCENDENTAL_OPS = {"Exp", "Erf", "Tanh", "Sigmoid", "Div", "Sqrt", "Pow", "Log"}
TRANSCENDENTAL_FLOPS = 8  # FLOPs per element of exp/erf/div...: a polynomial approximation
DENSE_OPS = {"Gemm", "MatMul"}
# activations that inference runtimes (TFLite, OpenVINO, cuDNN/TensorRT, ORT) fuse into the
# convolution or GEMM they follow; free on a device model with ``fuse_activations``
FUSABLE_OPS = {"Relu", "Clip", "LeakyRelu"}
FUSE_INTO = {"Conv", "Gemm", "MatMul"}


@dataclass(frozen=True)
class DeviceModel:
    """Roofline parameters of one device (sources: :mod:`latency_predictors.estimate.devices`)."""

    name: str
    description: str
    peak_gflops: float
    dram_gbs: float
    cache_gbs: float
    cache_mb: float
    node_overhead_us: float
    inference_overhead_us: float
    dtype_bytes: int = 4
    eff: dict[str, float] = field(default_factory=lambda: {
        "dense": 0.5, "depthwise": 0.1, "elementwise": 0.25})
    mem_eff: float = 0.6
    fuse_activations: bool = False  # fusable activations cost nothing (NodeCost.fusable)
    # what the writer of the shipped tables (latency_predictors.estimate.tables) asks: whether
    # the device has a shipped estimated table (x86 only checks the model form), and what its
    # notes add
    ships_table: bool = True
    table_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The roofline parameters (an estimated table's ``model`` metadata)."""
        return {k: v for k, v in asdict(self).items() if k not in ("ships_table", "table_note")}


@dataclass(frozen=True)
class NodeCost:
    op_type: str
    kind: str  # dense | depthwise | elementwise
    flops: float
    bytes: float  # in fp32 elements x 4; scaled to the device dtype by the model
    fusable: bool = False  # an activation that only consumes a Conv/Gemm output


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape else 1


def graph_costs(model_bytes: bytes) -> list[NodeCost]:
    """FLOPs and bytes of every costed node of an ONNX graph (batch 1)."""
    model = onnx.load_from_string(model_bytes)
    shapes = _shapes(model)
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    costs = []
    for node in model.graph.node:
        if node.op_type in FREE_OPS:
            continue
        ins = [shapes.get(name) for name in node.input if name]
        out = shapes.get(node.output[0])
        n_out = _numel(out)
        moved = 4 * (sum(_numel(s) for s in ins) + n_out)
        kind, flops = "elementwise", float(max(n_out, max((_numel(s) for s in ins), default=1)))
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # (C_out, C_in / groups, kh, kw)
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            flops = 2.0 * n_out * w[1] * w[2] * w[3]
            kind = "depthwise" if groups > 1 and w[1] == 1 else "dense"
        elif node.op_type in DENSE_OPS:
            k = ins[0][-1] if ins and ins[0] else 1
            flops, kind = 2.0 * n_out * k, "dense"
        elif node.op_type in TRANSCENDENTAL_OPS:
            flops *= TRANSCENDENTAL_FLOPS
        elif node.op_type == "BatchNormalization":
            flops *= 2
            moved = 4 * 2 * n_out  # scale/shift vectors are negligible
        fusable = (node.op_type in FUSABLE_OPS and producer.get(node.input[0]) in FUSE_INTO
                   and consumers.get(node.input[0]) == 1)
        costs.append(NodeCost(node.op_type, kind, flops, float(moved), fusable))
    return costs


def node_latency_us(cost: NodeCost, device: DeviceModel) -> float:
    """Roofline time of one node on ``device`` plus its dispatch overhead (µs); 0 for an
    activation the device fuses into the convolution before it."""
    if cost.fusable and device.fuse_activations:
        return 0.0
    moved = cost.bytes * device.dtype_bytes / 4
    bandwidth = device.cache_gbs if moved <= device.cache_mb * 1e6 else device.dram_gbs
    compute = cost.flops / (device.peak_gflops * 1e3 * device.eff[cost.kind])
    memory = moved / (bandwidth * 1e3 * device.mem_eff)
    return max(compute, memory) + device.node_overhead_us


def graph_latency_ms(model_bytes: bytes, device: DeviceModel) -> float:
    """Estimated latency (ms) of one ONNX graph, without the per-inference overhead."""
    return sum(node_latency_us(c, device) for c in graph_costs(model_bytes)) / 1e3


def row_costs(spaces: list[Space | str]) -> dict[tuple, list[NodeCost]]:
    """Node costs of every table row of ``spaces`` (one ONNX export per distinct op)."""
    costs: dict[tuple, list[NodeCost]] = {}
    for space in spaces:
        space = get_space(space) if isinstance(space, str) else space
        for key, (factory, shape) in space_ops(space).items():
            if key not in costs:
                costs[key] = graph_costs(export_onnx(factory(), shape))
    return costs


def predict_rows(costs: dict[tuple, list[NodeCost]], device: DeviceModel) -> dict[tuple, float]:
    """Estimated ms of each row (stem rows include the inference overhead)."""
    return {key: sum(node_latency_us(c, device) for c in nodes) / 1e3
            + (device.inference_overhead_us / 1e3 if key[0].startswith("stem:") else 0.0)
            for key, nodes in costs.items()}


def fit_device(costs: dict[tuple, list[NodeCost]], measured: dict[tuple, float],
               device: DeviceModel, grid: int = 12) -> DeviceModel:
    """``device`` with efficiencies and node overhead fitted (grid search, min log error).

    Used to split the a-priori model's error into wrong parameters vs a wrong model form:
    fit on some rows, evaluate on others (see ``bench/latency_analytical.py``).
    """
    import itertools

    import numpy as np

    keys = [k for k in costs if k in measured]
    nodes = [(i, c) for i, k in enumerate(keys) for c in costs[k]]
    row = np.array([i for i, _ in nodes])
    kind = np.array([("dense", "depthwise", "elementwise").index(c.kind) for _, c in nodes])
    flops = np.array([c.flops for _, c in nodes])
    moved = np.array([c.bytes for _, c in nodes]) * device.dtype_bytes / 4
    bw = np.where(moved <= device.cache_mb * 1e6, device.cache_gbs, device.dram_gbs)
    memory = moved / (bw * 1e3 * device.mem_eff)
    target = np.log(np.array([measured[k] for k in keys]) * 1e3)
    stem = np.array([k[0].startswith("stem:") for k in keys]) * device.inference_overhead_us
    effs, best = np.geomspace(0.02, 1.0, grid), (np.inf, None)
    for e in itertools.product(effs, effs, effs):
        compute = flops / (device.peak_gflops * 1e3 * np.array(e)[kind])
        base = np.maximum(compute, memory)
        for overhead in (0.0, 1.0, 2.0, 3.0, 5.0, 8.0):
            pred = np.bincount(row, base + overhead, len(keys)) + stem
            loss = float(np.mean((np.log(pred) - target) ** 2))
            if loss < best[0]:
                best = (loss, (e, overhead))
    (e_dense, e_dw, e_ew), overhead = best[1]
    return DeviceModel(f"{device.name}-fitted", device.description + " (fitted)",
                       device.peak_gflops, device.dram_gbs, device.cache_gbs, device.cache_mb,
                       overhead, device.inference_overhead_us, device.dtype_bytes,
                       {"dense": round(float(e_dense), 4), "depthwise": round(float(e_dw), 4),
                        "elementwise": round(float(e_ew), 4)}, device.mem_eff)
