"""Published batch-1 latencies ("anchors") and the fit of the analytical device models on them.

``anchors.csv`` (next to this module) has one row per published figure::

    device,net,latency_ms,fit,runtime,precision,batch,source,where,notes

``fit`` is ``yes`` for the rows a device's parameters are fitted on (batch 1, a net of
:data:`latency_predictors.estimate.reference_nets.REFERENCE_NETS`, the runtime class the table
models) and ``no`` for rows kept for reference only (other runtimes, unpublished architectures
such as QuadraNet Table III's nets, which serve the ordering check).

:func:`fit_anchored` fits, per device, the efficiencies of the three node classes (grid) and
the per-node and per-inference overheads (closed-form non-negative least squares of the
relative error) of :class:`latency_predictors.estimate.roofline.DeviceModel` on the anchors, and
reports the leave-one-out error (:func:`leave_one_out`: every anchor predicted by a model
fitted on the others).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from hwnas_common.errors import HwnasError

from ..measure.backends import export_onnx
from .reference_nets import REFERENCE_NETS, build_reference
from .roofline import DeviceModel, NodeCost, graph_costs

ANCHORS_FILE = Path(__file__).resolve().parent / "anchors.csv"
ANCHOR_COLUMNS = ("device", "net", "latency_ms", "fit", "runtime", "precision", "batch",
                  "source", "where", "notes")
KINDS = ("dense", "depthwise", "elementwise")
EFF_GRID = np.geomspace(0.005, 1.0, 24)  # efficiencies tried per node class
# QuadraNet Table III's nets, by the device each was searched for, and the published net that
# stands in for each in the ordering check (Table III's own nets are unpublished).
TABLE3_PROXIES = {"quadranet-proxyless-cpu": "proxyless-cpu",
                  "quadranet-proxyless-vpu": "proxyless-mobile",
                  "quadranet-proxyless-gpu": "proxyless-gpu"}

T = TypeVar("T")


@dataclass(frozen=True)
class Anchor:
    """One published latency (see the module docstring for the columns)."""

    device: str
    net: str
    latency_ms: float
    fit: bool
    runtime: str
    precision: str
    batch: int
    source: str
    where: str
    notes: str


def load_anchors(path: str | os.PathLike | None = None) -> list[Anchor]:
    """All rows of an anchors file (default: the shipped ``anchors.csv``), strictly."""
    path = Path(path) if path is not None else ANCHORS_FILE
    if not path.is_file():
        raise HwnasError(f"anchors file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HwnasError(f"{path}: malformed anchors CSV ({first})") from None
    if tuple(frame.columns) != ANCHOR_COLUMNS:
        raise HwnasError(f"{path}: anchors columns must be {list(ANCHOR_COLUMNS)}, got "
                         f"{list(frame.columns)}")
    if frame.empty:
        raise HwnasError(f"{path}: the anchors file has no rows")
    anchors = []
    for row, values in enumerate(frame.itertuples(index=False), start=2):
        record = dict(zip(ANCHOR_COLUMNS, values, strict=True))
        where = f"{path}: row {row}"
        for column in ("device", "net", "runtime", "source"):
            if not record[column].strip():
                raise HwnasError(f"{where}: {column} is empty")
        try:
            latency = float(record["latency_ms"])
            batch = int(record["batch"])
        except ValueError:
            raise HwnasError(f"{where}: latency_ms must be a number and batch an integer, got "
                             f"{record['latency_ms']!r} and {record['batch']!r}") from None
        if not math.isfinite(latency) or latency <= 0 or batch < 1:
            raise HwnasError(f"{where}: latency_ms must be > 0 and batch >= 1, got "
                             f"{record['latency_ms']!r} and {record['batch']!r}")
        if record["fit"] not in ("yes", "no"):
            raise HwnasError(f"{where}: fit must be yes or no, got {record['fit']!r}")
        fit = record["fit"] == "yes"
        if fit and batch != 1:
            raise HwnasError(f"{where}: only batch-1 figures can be fitted on, got batch "
                             f"{batch} (set fit to no)")
        if fit and record["net"] not in REFERENCE_NETS:
            raise HwnasError(f"{where}: net {record['net']!r} is fitted on but is no reference "
                             f"net; valid: {sorted(REFERENCE_NETS)}")
        anchors.append(Anchor(record["device"], record["net"], latency, fit,
                              record["runtime"], record["precision"], batch, record["source"],
                              record["where"], record["notes"]))
    return anchors


def device_anchors(device: str, anchors: Sequence[Anchor]) -> list[Anchor]:
    """The rows of ``device`` that its model is fitted on; an error if there is none."""
    fitted = [a for a in anchors if a.device == device and a.fit]
    if not fitted:
        have = sorted({a.device for a in anchors if a.fit})
        raise HwnasError(f"no anchors to fit for device {device!r} (devices with anchors: "
                         f"{have}); its estimated table stays a-priori, unanchored")
    return fitted


def reference_costs(nets: Sequence[str]) -> dict[str, list[NodeCost]]:
    """Node costs of the reference nets ``nets`` (one ONNX export each)."""
    costs = {}
    for name in dict.fromkeys(nets):
        model, shape = build_reference(name)
        costs[name] = graph_costs(export_onnx(model, shape))
    return costs


def leave_one_out(items: Sequence[T], fit: Callable[[list[T]], Any],
                  predict: Callable[[Any, T], float]) -> list[float]:
    """Prediction of every item by the model ``fit`` on all the other items."""
    return [predict(fit([x for j, x in enumerate(items) if j != i]), item)
            for i, item in enumerate(items)]


def mape(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Mean absolute percentage error (%)."""
    p, a = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.mean(np.abs(p / a - 1)) * 100)


class _Features:
    """Per anchor: the compute time of its nodes of each class at each grid efficiency (µs,
    roofline with the device's memory time), and its node count."""

    def __init__(self, device: DeviceModel, node_lists: Sequence[list[NodeCost]]) -> None:
        def costed(nodes: list[NodeCost]) -> list[NodeCost]:
            return [n for n in nodes if not (n.fusable and device.fuse_activations)]

        node_lists = [costed(nodes) for nodes in node_lists]
        self.compute = np.zeros((len(node_lists), len(KINDS), len(EFF_GRID)))
        self.nodes = np.array([len(nodes) for nodes in node_lists], float)
        for i, nodes in enumerate(node_lists):
            for node in nodes:
                moved = node.bytes * device.dtype_bytes / 4
                bw = device.cache_gbs if moved <= device.cache_mb * 1e6 else device.dram_gbs
                memory = moved / (bw * 1e3 * device.mem_eff)
                compute = node.flops / (device.peak_gflops * 1e3 * EFF_GRID)
                self.compute[i, KINDS.index(node.kind)] += np.maximum(compute, memory)


def _solve(features: _Features, rows: np.ndarray, target_us: np.ndarray
           ) -> tuple[tuple[int, int, int], float, float]:
    """Best grid efficiencies and non-negative (node, inference) overheads (µs) for the anchors
    ``rows``, minimising the summed squared relative error."""
    c = features.compute[rows]  # (n, kinds, grid)
    base = (c[:, 0, :, None, None] + c[:, 1, None, :, None] + c[:, 2, None, None, :])
    y = target_us[rows][:, None, None, None]
    n = features.nodes[rows][:, None, None, None]
    # relative residual r = (base + ov * n + inf) / y - 1 is linear in (ov, inf)
    a1, a2, b = n / y, 1 / y, 1 - base / y
    s11, s12, s22 = (a1 * a1).sum(0), (a1 * a2).sum(0), (a2 * a2).sum(0)
    t1, t2 = (a1 * b).sum(0), (a2 * b).sum(0)
    det = s11 * s22 - s12 * s12
    with np.errstate(divide="ignore", invalid="ignore"):
        free = ((s22 * t1 - s12 * t2) / det, (s11 * t2 - s12 * t1) / det)
    candidates = [free, (np.zeros_like(t1), np.maximum(t2 / s22, 0)),
                  (np.maximum(t1 / s11, 0), np.zeros_like(t1)),
                  (np.zeros_like(t1), np.zeros_like(t1))]
    best_loss, best_ov, best_inf = None, None, None
    for ov, inf in candidates:
        ok = np.isfinite(ov) & np.isfinite(inf) & (ov >= 0) & (inf >= 0)
        loss = ((a1 * np.where(ok, ov, 0) + a2 * np.where(ok, inf, 0) - b) ** 2).sum(0)
        loss = np.where(ok, loss, np.inf)
        if best_loss is None:
            best_loss, best_ov, best_inf = loss, ov, inf
        else:
            better = loss < best_loss
            best_loss = np.where(better, loss, best_loss)
            best_ov, best_inf = np.where(better, ov, best_ov), np.where(better, inf, best_inf)
    index = np.unravel_index(int(np.argmin(best_loss)), best_loss.shape)
    return (tuple(int(i) for i in index), float(best_ov[index]),  # type: ignore[return-value]
            float(best_inf[index]))


def _with_params(device: DeviceModel, index: tuple[int, int, int], node_us: float,
                 inference_us: float) -> DeviceModel:
    eff = {kind: round(float(EFF_GRID[i]), 5) for kind, i in zip(KINDS, index, strict=True)}
    return replace(device, description=f"{device.description}; parameters fitted on "
                   "published batch-1 latencies (anchors.csv)", eff=eff,
                   node_overhead_us=round(node_us, 3),
                   inference_overhead_us=round(inference_us, 2))


def _predict_us(features: _Features, row: int, index: tuple[int, int, int], node_us: float,
                inference_us: float) -> float:
    c = features.compute[row]
    return float(sum(c[k, i] for k, i in enumerate(index)) + node_us * features.nodes[row]
                 + inference_us)


@dataclass
class AnchorFit:
    """A device model fitted on its anchors, with each anchor's in-sample and leave-one-out
    prediction."""

    model: DeviceModel
    anchors: list[Anchor]
    fitted_ms: list[float]
    loo_ms: list[float]

    @property
    def loo_mape(self) -> float:
        return mape(self.loo_ms, [a.latency_ms for a in self.anchors])

    @property
    def fit_mape(self) -> float:
        return mape(self.fitted_ms, [a.latency_ms for a in self.anchors])

    def summary(self) -> dict[str, Any]:
        """The table-metadata record (``anchoring``) of this fit."""
        return {
            "n_anchors": len(self.anchors), "loo_mape": round(self.loo_mape, 1),
            "fit_mape": round(self.fit_mape, 1),
            "params": {**self.model.eff, "node_overhead_us": self.model.node_overhead_us,
                       "inference_overhead_us": self.model.inference_overhead_us},
            "anchors": [{"net": a.net, "published_ms": a.latency_ms, "runtime": a.runtime,
                         "fitted_ms": round(f, 3), "loo_ms": round(lo, 3)}
                        for a, f, lo in zip(self.anchors, self.fitted_ms, self.loo_ms,
                                            strict=True)],
            "anchors_file": "latency_predictors/estimate/anchors.csv",
        }


def fit_anchored(device: DeviceModel, anchors: Sequence[Anchor],
                 costs: dict[str, list[NodeCost]]) -> AnchorFit:
    """``device`` with efficiencies and overheads fitted on ``anchors`` (fit rows of one device;
    ``costs``: :func:`reference_costs` of their nets), with the leave-one-out predictions."""
    anchors = list(anchors)
    if len(anchors) < 2:
        raise HwnasError(f"device {device.name!r} has {len(anchors)} anchor(s); a fit with a "
                         "leave-one-out error needs at least 2")
    features = _Features(device, [costs[a.net] for a in anchors])
    target = np.array([a.latency_ms * 1e3 for a in anchors])
    rows = list(range(len(anchors)))

    def fit(subset: list[int]) -> tuple[tuple[int, int, int], float, float]:
        return _solve(features, np.array(subset), target)

    def predict(params: tuple[tuple[int, int, int], float, float], row: int) -> float:
        return _predict_us(features, row, *params) / 1e3

    params = fit(rows)
    return AnchorFit(_with_params(device, *params), anchors,
                     [predict(params, r) for r in rows], leave_one_out(rows, fit, predict))

