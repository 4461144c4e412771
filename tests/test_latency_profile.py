"""Profilers: a real (small) onnxruntime profile, resume after a kill, backend errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hwnas_common.errors import HwnasError
from latency_predictors import latency_matrix, load_table, required_keys
from latency_predictors.keys import key_label, space_ops
from latency_predictors.measure.backends import OrtBackend, make_backend, summarize
from latency_predictors.measure.profile import partial_path, pass_spread, profile_table
from search_spaces import LayerSpec, Space

SMALL = Space("latency-small", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 1),
              candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "quad"),
                          LayerSpec("block", 3, 2, "rbf"), LayerSpec("mbconv", 3, 3)),
              branches=2)


def test_real_onnxruntime_profile(tmp_path):
    table = profile_table(SMALL, "onnxruntime", name="testcpu", out=tmp_path / "t.csv",
                          repeats=5, warmup=1, progress=False, passes=1)
    assert set(table.lookup()) == set(required_keys(SMALL)) == set(space_ops(SMALL))
    assert len(table.frame) == 3 + 3 * 2
    assert (table.frame["samples"] == 5).all() and (table.frame["median_ms"] > 0).all()
    meta = load_table(tmp_path / "t.csv").metadata
    assert meta["provenance"] == "measured" and meta["mode"] == "CPUExecutionProvider"
    assert meta["spaces"] == [SMALL.name] and meta["profile_seconds"][SMALL.name] > 0
    assert not partial_path(tmp_path / "t.csv").exists()
    assert meta["reference"]["ms"] > 0 and "conv3x3" in meta["reference"]["kernel"]
    matrix = latency_matrix(SMALL, table)
    assert [row[0] for row in matrix.per_layer] == [0.0, 0.0]


def test_profile_adds_rows_and_checks_settings(tmp_path):
    out = tmp_path / "t.csv"
    first = Space("latency-small-a", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 1),
                  candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum")))
    profile_table(first, name="d", out=out, repeats=2, warmup=0, progress=False, method="alone")
    table = profile_table(SMALL, name="d", out=out, repeats=2, warmup=0, progress=False,
                          method="alone")
    assert table.metadata["spaces"] == sorted([first.name, SMALL.name])
    assert len(table.frame) == 9 + 2  # SMALL's rows + sum_k3_e2 at two shapes
    with pytest.raises(HwnasError, match="other settings \\(repeats: has 2, asked 3\\)"):
        profile_table(SMALL, name="d", out=out, repeats=3, warmup=0, progress=False,
                      method="alone")


KILLABLE = textwrap.dedent("""
    import sys, time
    from latency_predictors.measure.backends import OrtBackend
    from latency_predictors.measure.profile import profile_table
    sys.path.insert(0, {here!r})
    from test_latency_profile import SMALL

    class Slow(OrtBackend):
        def time(self, module, shape):
            time.sleep(0.2)
            return super().time(module, shape)

    profile_table(SMALL, Slow("cpu", 1, 0, 2), name="k", out=sys.argv[1], progress=False,
                  method="alone", passes=2)
""")


def test_resume_after_kill(tmp_path):
    out = tmp_path / "k.csv"
    script = tmp_path / "run.py"
    script.write_text(KILLABLE.format(here=os.path.dirname(__file__)))
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    partial = partial_path(out)

    def done() -> int:  # measurements the checkpoint records
        try:
            return sum(map(len, json.loads(partial.read_text())["measured"].values()))
        except (FileNotFoundError, ValueError):
            return 0

    deadline = time.time() + 60
    while time.time() < deadline and done() < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = done()
    assert 2 <= done_before < 18
    assert not out.exists()
    calls = []

    class Counting(OrtBackend):
        def time(self, module, shape):
            calls.append(shape)
            return super().time(module, shape)

    table = profile_table(SMALL, Counting("cpu", 1, 0, 2), name="k", out=out, progress=False,
                          method="alone", passes=2)
    assert len(calls) == 2 * 9 - done_before and len(table.frame) == 9  # 2 passes
    assert not partial.exists()


def test_summarize_is_robust_to_bursts():
    samples = np.full(100, 1.0)
    samples[:30] = 5.0  # a burst of interference in the first rounds
    stats = summarize(samples)
    assert stats["median_ms"] == 1.0 and stats["samples"] == 100
    assert stats["mean_ms"] == pytest.approx(2.2)


def test_backend_errors():
    with pytest.raises(HwnasError, match="unknown backend 'tvm'; valid"):
        make_backend("tvm")
    with pytest.raises(HwnasError, match="unknown onnxruntime ep 'npu'"):
        make_backend("onnxruntime", "npu")
    with pytest.raises(HwnasError, match="TensorrtExecutionProvider is not available"):
        make_backend("onnxruntime", "tensorrt")
    try:
        import openvino  # noqa: F401
    except ImportError:
        with pytest.raises(HwnasError, match="pip install openvino"):
            make_backend("openvino")
    if not torch.cuda.is_available():
        with pytest.raises(HwnasError, match="needs CUDA"):
            make_backend("torch", "cuda-graph")


def test_torch_cpu_backend_times():
    backend = make_backend("torch", "cpu", threads=1, warmup=1, repeats=3)
    module = torch.nn.Conv2d(3, 4, 3)
    assert backend.time(module, (3, 8, 8)).shape == (3,)
    assert backend.metadata()["mode"] == "cpu-eager"


class _Linear(OrtBackend):
    """'Times' a chain of n modules as 0.05 + 0.3 n ms (no runtime involved)."""

    def time(self, module, shape):
        n = len(module) if isinstance(module, torch.nn.Sequential) else 1
        return np.full(self.repeats, 0.05 + 0.3 * n)


def test_chain_method_cancels_call_overhead():
    from latency_predictors.measure.profile import measure_op

    backend = _Linear("cpu", 1, 0, 4)
    factory = lambda: torch.nn.Identity()  # noqa: E731
    row = measure_op(("sum_k3_e2", 4, 4, 8, 8, 1, 0), factory, (4, 8, 8), backend, "chain")
    assert row["median_ms"] == pytest.approx(0.3) and row["samples"] == 4
    alone = measure_op(("sum_k3_e2", 4, 4, 8, 8, 1, 0), factory, (4, 8, 8), backend, "alone")
    assert alone["median_ms"] == pytest.approx(0.35)
    fixed = measure_op(("head", 8, 10, 4, 4, 1, 0), factory, (8, 4, 4), backend, "chain")
    assert fixed["median_ms"] == pytest.approx(0.35)  # fixed parts are always timed alone
    with pytest.raises(HwnasError, match="unknown profiling method 'x'"):
        measure_op(("head", 8, 10, 4, 4, 1, 0), factory, (8, 4, 4), backend, "x")


class _Drifting(OrtBackend):
    """A machine whose speed changes over time: ``slowdown(call)`` multiplies every op and the
    reference kernel alike, except ops listed in ``bursts`` (call numbers), which alone run 3x
    slower (a burst of load too short to reach the reference timings)."""

    def __init__(self, slowdown, bursts=()):
        super().__init__("cpu", 1, 0, 3)
        self.slowdown, self.bursts, self.calls = slowdown, set(bursts), 0

    def reference_ms(self) -> float:  # timed between op number `calls` and the next one
        return 0.5 * self.slowdown(self.calls + 0.5)

    def time(self, module, shape):
        self.calls += 1
        burst = 3.0 if self.calls in self.bursts else 1.0
        true_ms = float(shape[0])  # ops differ: C of their input
        return np.full(self.repeats, true_ms * self.slowdown(self.calls) * burst)


def test_drift_cancels_by_the_reference_kernel(tmp_path):
    steady = profile_table(SMALL, _Drifting(lambda call: 1.0), name="s", out=tmp_path / "s.csv",
                           progress=False, method="alone", passes=3)
    # the machine slows down steadily to 2x over the profile, and bursts hit one op per pass
    drifting = _Drifting(lambda call: 1.0 + call / 27, bursts=(2, 13, 27))
    table = profile_table(SMALL, drifting, name="d", out=tmp_path / "d.csv", progress=False,
                          method="alone", passes=3)
    assert drifting.calls == 27 and table.metadata["passes"] == 3
    ratio = table.frame["median_ms"] / steady.frame["median_ms"]
    np.testing.assert_allclose(ratio, ratio.iloc[0], rtol=1e-9)  # every op scaled alike
    reference = table.metadata["reference"]
    assert reference["ms"] == pytest.approx(0.5 * np.median(
        [1.0 + c / 27 for c in range(28)]), rel=0.05) and reference["range_pct"] > 50
    spread = table.metadata["pass_spread"][SMALL.name]
    assert spread["ops_over_10pct"] == 3 and spread["max_pct"] == pytest.approx(200, rel=0.01)


def test_pass_spread_names_the_worst_op():
    keys = [("a", 1, 1, 1, 1, 1, 0), ("b", 1, 1, 1, 1, 1, 0), ("c", 1, 1, 1, 1, 1, 0)]
    # (median, mean, std, samples, reference): op b's second pass is 1.5x after normalising
    records = {keys[0]: [[1.0, 1, 0, 5, 1.0], [2.04, 2, 0, 5, 2.0]],
               keys[1]: [[1.0, 1, 0, 5, 1.0], [1.5, 1.5, 0, 5, 1.0]],
               keys[2]: [[1.0, 1, 0, 5, 1.0], [1.0, 1, 0, 5, 1.0]]}
    spread = pass_spread(records)
    assert spread["max_op"] == key_label(keys[1]) and spread["max_pct"] == pytest.approx(50)
    assert spread["median_pct"] == pytest.approx(2) and spread["ops_over_10pct"] == 1
