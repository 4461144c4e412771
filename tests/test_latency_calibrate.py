"""Calibration (affine fit, out-of-sample), validation and the analytical roofline model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas_common.errors import HwnasError
from latency_predictors import predict_latency, required_keys
from latency_predictors.estimate.devices import DEVICE_MODELS
from latency_predictors.estimate.roofline import NodeCost, graph_costs, node_latency_us
from latency_predictors.estimate.tables import estimate_table
from latency_predictors.fit.calibration import TableParts, cross_validate, fit_affine, fit_per_group
from latency_predictors.keys import op_class, op_group
from latency_predictors.measure.backends import export_onnx
from latency_predictors.measure.calibrate import calibrate, calibration_specs, describe_calibration
from latency_predictors.measure.networks import measure_archs, spread_sample
from latency_predictors.measure.validate import validate_table
from search_spaces import build
from tests.helpers import CAL, KERNEL_BRANCH, KERNELS, Affine, FakeBackend
from tests.helpers import fake_table as table


def test_calibration_recovers_affine_truth_out_of_sample():
    truth = table()
    calibrated = calibrate(truth, CAL, n=12, backend=Affine(truth), progress=False)
    entry = calibrated.calibration(CAL.name)
    assert entry["model"] == "affine" and entry["applied"]  # per-class ties: the simpler wins
    assert entry["scale"] == pytest.approx(2.0) and entry["offset_ms"] == pytest.approx(0.3)
    assert entry["mape_after"] == pytest.approx(0.0, abs=1e-3)  # out of fold
    assert entry["mape_before"] > 40 and entry["within_10pct_after"] == 100
    assert truth.calibration(CAL.name) is None  # the input table is not modified
    spec = CAL.spec_from_string("sum_k3_e2|skip|mb_k3_e3|star_k5_e2")
    expected = 2.0 * predict_latency(spec, truth).total_ms + 0.3
    assert predict_latency(spec, calibrated).total_ms == pytest.approx(expected)


class PerClass(FakeBackend):
    """'Measures' a ChildNet with a class-dependent bias: sum ops x1.5, star x0.8, mbconv x1.2,
    fixed parts x1, + 0.3 ms."""

    SCALES = {"sum": 1.5, "star": 0.8, "mbconv": 1.2}

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def time(self, module, input_shape):
        breakdown = predict_latency(module.spec, self.truth)
        value = sum(breakdown.fixed_parts.values()) + 0.3 + sum(
            self.SCALES[op_class(module.spec.layers[i])] * ms for i, _, ms in breakdown.layers
            if op_class(module.spec.layers[i]))
        return np.full(self.repeats, value)


def test_per_class_calibration_recovers_class_bias_affine_cannot():
    truth = table()
    calibrated = calibrate(truth, CAL, n=16, backend=PerClass(truth), progress=False)
    entry = calibrated.calibration(CAL.name)
    assert entry["model"] == "per-class" and entry["applied"]
    assert entry["class_scales"] == pytest.approx(PerClass.SCALES)
    assert entry["offset_ms"] == pytest.approx(0.3) and entry["scale"] == 1.0
    assert entry["cv_mape"]["per-class"] < 1e-3 < entry["cv_mape"]["affine"]
    spec = CAL.spec_from_string("sum_k3_e2|star_k5_e2|mb_k3_e3|skip")
    measured = PerClass(truth).time(build(spec), CAL.input)[0]
    assert predict_latency(spec, calibrated).total_ms == pytest.approx(measured)
    assert describe_calibration(entry).startswith("per-class: sum ×1.500, star ×0.800")


class PerKernel(FakeBackend):
    """'Measures' a ChildNet with a kernel-dependent bias: k3 ops x1.3, k7 x0.6, + 0.2 ms."""

    SCALES = {3: 1.3, 7: 0.6}

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def time(self, module, input_shape):
        breakdown = predict_latency(module.spec, self.truth)
        value = sum(breakdown.fixed_parts.values()) + 0.2 + sum(
            self.SCALES[module.spec.layers[i].kernel] * ms for i, _, ms in breakdown.layers
            if module.spec.layers[i].kernel)
        return np.full(self.repeats, value)


def test_per_kernel_calibration_recovers_a_kernel_bias():
    truth = table(KERNELS)
    calibrated = calibrate(truth, KERNELS, n=16, backend=PerKernel(truth), progress=False)
    entry = calibrated.calibration(KERNELS.name)
    assert entry["model"] == "per-kernel" and entry["groups"] == "kernel"
    assert entry["class_scales"] == pytest.approx({"k3": 1.3, "k7": 0.6})
    assert entry["cv_mape"]["per-kernel"] < 1e-3 < entry["cv_mape"]["per-class"]
    spec = KERNELS.spec_from_string("sum_k3_e2|star_k7_e2|skip|sum_k7_e2")
    measured = PerKernel(truth).time(build(spec), KERNELS.input)[0]
    assert predict_latency(spec, calibrated).total_ms == pytest.approx(measured)
    assert describe_calibration(entry).startswith("per-kernel: k3 ×1.300, k7 ×0.600")


class PerKernelBranch(FakeBackend):
    """'Measures' a ChildNet with a bias by kernel and r branches: k3 ×1.3, k3 r-branch ×2.0,
    k7 ×0.6, k7 r-branch ×0.9, + 0.1 ms."""

    SCALES = {"k3": 1.3, "k3r": 2.0, "k7": 0.6, "k7r": 0.9}

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def time(self, module, input_shape):
        breakdown = predict_latency(module.spec, self.truth)
        groups = [op_group(layer, "kernel-branch") for layer in module.spec.layers]
        value = sum(breakdown.fixed_parts.values()) + 0.1 + sum(
            self.SCALES[groups[i]] * ms for i, _, ms in breakdown.layers if groups[i])
        return np.full(self.repeats, value)


def test_per_kernel_branch_calibration_recovers_an_r_branch_bias():
    truth = table(KERNEL_BRANCH)
    assert [op_group(c, "kernel-branch") for c in KERNEL_BRANCH.candidates] == [
        None, "k3", "k3r", "k7", "k7r"]
    calibrated = calibrate(truth, KERNEL_BRANCH, n=20, backend=PerKernelBranch(truth),
                           progress=False)
    entry = calibrated.calibration(KERNEL_BRANCH.name)
    assert entry["model"] == "per-kernel-branch" and entry["groups"] == "kernel-branch"
    assert entry["class_scales"] == pytest.approx(PerKernelBranch.SCALES)
    assert entry["cv_mape"]["per-kernel-branch"] < 1e-3 < min(
        entry["cv_mape"]["per-kernel"], entry["cv_mape"]["per-class"])
    spec = KERNEL_BRANCH.spec_from_string("poly2_k3_e2|sum_k7_e2|skip|poly2_k7_e2")
    measured = PerKernelBranch(truth).time(build(spec), KERNEL_BRANCH.input)[0]
    assert predict_latency(spec, calibrated).total_ms == pytest.approx(measured)


def test_calibration_measures_the_all_skip_network_first():
    specs = calibration_specs(CAL, 6, seed=3)
    assert specs[0].to_string() == "|".join(["skip"] * CAL.num_layers)
    generator = torch.Generator().manual_seed(3)
    assert [s.to_string() for s in specs[1:]] == [
        spread_sample(CAL, generator).to_string() for _ in range(5)]


def test_cross_validation_predicts_each_network_out_of_fold():
    rng = np.random.default_rng(0)
    by_class = rng.uniform(0.5, 2.0, (10, 1))
    parts = TableParts(("sum",), np.full(10, 0.5), by_class)
    measured = 2.0 * parts.total + 0.1
    measured[3] += 5.0  # an outlier: only the fold holding it sees its own value
    predictions = cross_validate(parts, measured, folds=5)
    assert set(predictions) == {"none", "affine", "per-class"}
    np.testing.assert_allclose(predictions["none"], parts.total)
    for i in range(10):  # brute force: refit without network i's fold
        fold = next(f for f in np.array_split(np.random.default_rng(0).permutation(10), 5)
                    if i in f)
        rest = np.setdiff1d(np.arange(10), fold)
        fit = fit_affine(parts.total[rest], measured[rest])
        assert predictions["affine"][i] == pytest.approx(fit.scale * parts.total[i]
                                                         + fit.offset_ms)


def test_per_class_fit_needs_every_class_drawn():
    parts = TableParts(("sum", "star"), np.ones(5), np.c_[np.arange(1.0, 6.0), np.zeros(5)])
    assert fit_per_group(parts, np.arange(2.0, 7.0)) is None  # star never drawn
    parts = TableParts(("sum",), np.ones(2), np.array([[1.0], [2.0]]))
    assert fit_per_group(parts, [2.0, 3.0]) is None  # 2 networks for 2 parameters


def test_validation_reports_and_saves(tmp_path):
    truth = table()
    calibrated = calibrate(truth, CAL, n=10, backend=Affine(truth), progress=False)
    result = validate_table(calibrated, CAL, n=5, backend=Affine(truth, 0.01), progress=False)
    assert result.within_10pct == 100 and result.mape < 5 and result.calibrated
    csv_path, png_path = result.save(tmp_path)
    assert csv_path.read_text().startswith("arch,predicted_ms,measured_ms,raw_ms,error_pct")
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    assert "MAPE" in result.format()


def test_fit_errors():
    with pytest.raises(HwnasError, match="needs >= 2 architectures"):
        fit_affine([1.0], [1.0])
    with pytest.raises(HwnasError, match="non-positive scale"):
        fit_affine([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    with pytest.raises(HwnasError, match="is estimated"):
        calibrate(_estimated(), CAL, n=10, progress=False)
    with pytest.raises(HwnasError, match="needs n >= 5 architectures, got 3"):
        calibrate(table(), CAL, n=3, progress=False)


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


def test_measurements_keep_the_fastest_pass_normalised_to_the_reference_speed():
    truth = table()

    class Loaded(Affine):
        """A machine twice as slow as the table's reference (kernel alike), where a neighbour's
        load slows 4 networks by 1.5x in every pass but one each (pass i spares network i), and
        the 7th network timed by 3x."""

        def __init__(self):
            super().__init__(truth)
            self.calls = 0

        def time(self, module, input_shape):
            self.calls += 1
            pass_index, net = divmod(self.calls - 1, 4)
            load = 3.0 if self.calls == 7 else 1.0 if pass_index == net else 1.5
            return super().time(module, input_shape) * 2 * load

        def reference_ms(self) -> float:
            return 2.0

    specs = [spread_sample(CAL, torch.Generator().manual_seed(i)) for i in range(4)]
    steady = [2.0 * predict_latency(s, truth).total_ms + 0.3 for s in specs]
    one_pass = measure_archs(specs, Loaded(), progress=False, passes=1, reference_ms=1.0)
    np.testing.assert_allclose(np.array(one_pass.raw_ms) / steady, [2, 3, 3, 3])
    assert one_pass.reference_ms == 1.0 and one_pass.reference_now_ms == 2.0
    four = measure_archs(specs, Loaded(), progress=False, passes=4, reference_ms=1.0)
    np.testing.assert_allclose(four.raw_ms, np.array(steady) * 2)  # each one's unloaded pass
    np.testing.assert_allclose(four.ms, steady)  # at the table's reference speed
    two = measure_archs(specs, Loaded(), progress=False, passes=2)
    assert two.reference_ms == two.reference_now_ms  # no base given: this measurement's own
