"""Calibration (affine fit, out-of-sample), validation and the analytical roofline model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latency_predictors import make_table, new_metadata, predict_latency, required_keys
from latency_predictors.analytical import (
    DEVICE_MODELS,
    NodeCost,
    estimate_table,
    graph_costs,
    node_latency_us,
)
from latency_predictors.backends import Backend, export_onnx
from latency_predictors.calibrate import calibrate, fit_affine, spread_sample
from latency_predictors.validate import validate_table
from search_spaces import SPACES, LayerSpec, Space, register_space
from search_spaces.errors import HwnasError

CAL = Space("latency-cal", input=(3, 8, 8), stem="conv3x3", width=4, depths=(2, 2),
            candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                        LayerSpec("block", 5, 2, "star"), LayerSpec("mbconv", 3, 3)))
if CAL.name not in SPACES:
    register_space(CAL)


def table(**extra):
    rows = [dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"), key,
                     strict=True), mean_ms=v, median_ms=v, std_ms=0.0, samples=1)
            for v, key in enumerate(required_keys(CAL), start=1)]
    return make_table(rows, new_metadata("fake", "measured", spaces=[CAL.name],
                                         backend="onnxruntime", ep="cpu", **extra), "fake")


class Affine(Backend):
    """'Measures' a ChildNet as 2 x its table sum + 0.3 ms (+ optional noise)."""

    name = runtime = "fake"
    runtime_version = mode = "fake"

    def __init__(self, truth, noise=0.0):
        super().__init__("cpu", 1, 0, 5)
        self.truth, self.noise, self.rng = truth, noise, np.random.default_rng(0)

    def time(self, module, input_shape):
        value = 2.0 * predict_latency(module.spec, self.truth).total_ms + 0.3
        return value * (1 + self.noise * self.rng.standard_normal(self.repeats))


def test_calibration_recovers_affine_truth_out_of_sample():
    truth = table()
    calibrated = calibrate(truth, CAL, n=6, n_validate=8, backend=Affine(truth), progress=False)
    entry = calibrated.calibration(CAL.name)
    assert entry["scale"] == pytest.approx(2.0) and entry["offset_ms"] == pytest.approx(0.3)
    assert entry["mape_after"] == pytest.approx(0.0, abs=1e-3)
    assert entry["mape_before"] > 40 and entry["within_10pct_after"] == 100
    assert entry["fit_seed"] != entry["validation_seed"] and entry["applied"]
    assert truth.calibration(CAL.name) is None  # the input table is not modified
    spec = CAL.spec_from_string("sum_k3_e2|skip|mb_k3_e3|star_k5_e2")
    expected = 2.0 * predict_latency(spec, truth).total_ms + 0.3
    assert predict_latency(spec, calibrated).total_ms == pytest.approx(expected)


def test_validation_reports_and_saves(tmp_path):
    truth = table()
    calibrated = calibrate(truth, CAL, n=4, backend=Affine(truth), progress=False)
    result = validate_table(calibrated, CAL, n=5, backend=Affine(truth, 0.01), progress=False)
    assert result.within_10pct == 100 and result.mape < 5 and result.calibrated
    csv_path, png_path = result.save(tmp_path)
    assert csv_path.read_text().startswith("arch,predicted_ms,measured_ms,error_pct")
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    assert "MAPE" in result.format()


def test_fit_errors():
    with pytest.raises(HwnasError, match="needs >= 2 architectures"):
        fit_affine([1.0], [1.0])
    with pytest.raises(HwnasError, match="non-positive scale"):
        fit_affine([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    with pytest.raises(HwnasError, match="is estimated"):
        calibrate(_estimated(), CAL, n=3, progress=False)


def _estimated():
    t = table()
    t.metadata["provenance"] = "estimated"
    return t


def test_spread_sample_varies_depth():
    generator = torch.Generator().manual_seed(0)
    skips = {sum(x.op == "skip" for x in spread_sample(CAL, generator).layers)
             for _ in range(40)}
    assert len(skips) >= 3


def test_graph_costs_of_a_conv():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    costs = graph_costs(export_onnx(conv, (8, 10, 10)))
    assert [c.kind for c in costs] == ["dense"]
    assert costs[0].flops == 2 * 16 * 10 * 10 * 8 * 9
    dw = graph_costs(export_onnx(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 10, 10)))
    assert dw[0].kind == "depthwise" and dw[0].flops == 2 * 8 * 10 * 10 * 9


def test_roofline_is_max_plus_overhead():
    device = DEVICE_MODELS["x86"]
    compute_bound = NodeCost("Conv", "dense", 1e9, 1e3)
    t = node_latency_us(compute_bound, device)
    assert t == pytest.approx(1e9 / (device.peak_gflops * 1e3 * device.eff["dense"])
                              + device.node_overhead_us)
    memory_bound = NodeCost("Add", "elementwise", 1.0, 1e6)
    assert node_latency_us(memory_bound, device) == pytest.approx(
        1e6 / (device.cache_gbs * 1e3 * device.mem_eff) + device.node_overhead_us)


def test_estimated_table_covers_space_and_is_flagged():
    est = estimate_table("vpu", [CAL])
    assert est.estimated and est.metadata["dtype"] == "float16"
    assert set(est.lookup()) == set(required_keys(CAL))
    spec = CAL.spec_from_string("sum_k3_e2|skip|mb_k3_e3|star_k5_e2")
    pred = predict_latency(spec, est)
    assert pred.total_ms > DEVICE_MODELS["vpu"].inference_overhead_us / 1e3
    assert "ESTIMATED" in pred.format()
    with pytest.raises(HwnasError, match="unknown analytical device 'tpu'"):
        estimate_table("tpu", [CAL])
