"""Timing backends: run one module (an op alone or a whole network) and time its batch-1 forward.

Every backend has the same interface (:class:`Backend`): ``prepare(module, input_shape)`` builds
a ready-to-run batch-1 forward (session, compiled model, CUDA graph), ``time_run`` times it, and
``time(module, input_shape)`` does both: the per-run latencies in ms after ``warmup`` untimed
runs. ``reference_ms()`` times a fixed reference kernel (:func:`reference_module`), built once per
backend: the profiler and every whole-network measurement time it next to each op or network
and normalise by it, so that a machine whose speed drifts (frequency, a neighbour's load on a
shared VM) gives the same table and the same validation figures. Backends are registered by
name:

- ``onnxruntime``: the module is exported alone to ONNX (TorchScript exporter, opset 17) and
  run by an InferenceSession with all graph optimisations; ``ep`` picks the execution provider
  (``cpu``, ``cuda``, ``tensorrt``, ``openvino``; only those in
  ``onnxruntime.get_available_providers()``).
- ``torch``: PyTorch eager on ``ep=cpu``; ``ep=cuda`` times CUDA eager with CUDA events,
  ``ep=cuda-graph`` replays a captured CUDA graph (launch overhead removed).
- ``openvino``: the ONNX export compiled by OpenVINO for ``ep`` (``CPU``, ``GPU``, ``NPU``,
  ``MYRIAD``...), imported lazily; not a dependency of hwnas.

A backend times fp32 unless asked for another precision: ``make_backend(..., precision="int8")``
gives the backend's quantized variant (:attr:`Backend.QUANTIZED`), which only ``onnxruntime`` has
(:class:`OrtInt8Backend`: the export quantized by
:func:`latency_predictors.measure.quantize.quantize_onnx`, run on the CPU EP). Its tables record
``dtype`` ``int8`` and the recipe, and :func:`latency_predictors.measure.networks.backend_for`
measures them in the same precision.
"""

from __future__ import annotations

import io
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from hwnas_common import HwnasError, Registry

from ..metadata import DTYPES

ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider"}


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], input_name: str = "x",
                output_name: str = "y") -> bytes:
    """ONNX bytes of ``module`` (eval mode, batch 1) via the fast TorchScript exporter."""
    module = module.eval()
    x = torch.randn(1, *input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo=True, which takes ~4 s per
        # model instead of ~30 ms; for single ops the graphs are identical.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17,
                          input_names=[input_name], output_names=[output_name])
    return buffer.getvalue()


CLOCKS = {"wall": time.perf_counter, "thread-cpu": time.thread_time}


def _time_calls(run: Callable[[], object], warmup: int, repeats: int,
                clock_name: str = "wall") -> np.ndarray:
    """Per-call latencies (ms). ``thread-cpu`` counts only this thread's CPU time: with one
    thread the runtime computes on the calling thread, so it equals the wall latency of an idle
    machine and ignores the time other processes hold the core (shared machines)."""
    for _ in range(warmup):
        run()
    samples = np.empty(repeats)
    clock = CLOCKS[clock_name]
    for i in range(repeats):
        start = clock()
        run()
        samples[i] = clock() - start
    return samples * 1e3


def summarize(samples: np.ndarray, chunk: int = 5) -> dict[str, float | int]:
    """Statistics of one op's samples (ms): mean, std, and a noise-robust median.

    ``median_ms`` is the smallest median of ``chunk`` consecutive runs: on a shared machine
    another process's burst slows whole stretches of runs (and with the thread-CPU clock only
    slows them: cache and memory-bandwidth contention), so the quietest stretch's median is the
    latency on an idle machine. Whole networks are summarised the same way, so table sums and
    end-to-end measurements stay comparable.
    """
    parts = max(1, samples.size // chunk)
    return {"mean_ms": float(samples.mean()),
            "median_ms": float(min(np.median(c) for c in np.array_split(samples, parts))),
            "std_ms": float(samples.std()), "samples": int(samples.size)}


T = TypeVar("T")
REFERENCE_KERNEL = "conv3x3 32->32 + BN + GELU at 32x16x16"
REFERENCE_SHAPE = (32, 16, 16)
REFERENCE_REPEATS = 30  # ~1.5 ms on one x86 core: cheap next to any op's timing


def reference_module() -> nn.Module:
    """The fixed reference kernel (:data:`REFERENCE_KERNEL`), the same weights every time."""
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.06)
        conv.bias.zero_()
    return nn.Sequential(conv, nn.BatchNorm2d(32), nn.GELU()).eval()


def reference_summary(times_ms: Sequence[float]) -> dict[str, object]:
    """A reference speed as tables record it: the median reference time (``ms``, the base
    measurements are normalised to) and how far it drifted (``range_pct``: 95th over 5th
    percentile)."""
    low, high = np.percentile(times_ms, [5, 95])
    return {"kernel": REFERENCE_KERNEL, "ms": round(float(np.median(times_ms)), 6),
            "range_pct": round(float(100 * (high / low - 1)), 2)}


def with_reference(backend: Backend, measure: Callable[[], T]) -> tuple[T, float]:
    """``measure()`` and the reference kernel's time around it (the mean of before and after):
    how the profiler times an op and how whole networks are measured."""
    before = backend.reference_ms()
    result = measure()
    return result, (before + backend.reference_ms()) / 2


def median_pass(passes: Sequence[tuple[float, float]]) -> int:
    """Index of the (lower) median of ``(time, reference time)`` passes after normalising each
    by its reference: a burst that hits the measurement but not the reference in one pass of
    three is outvoted."""
    order = sorted(range(len(passes)), key=lambda i: passes[i][0] / passes[i][1])
    return order[(len(order) - 1) // 2]


class Backend(ABC):
    """Times batch-1 forward passes on one device; one instance per profiling run."""

    name: str = ""
    runtime: str = ""
    default_ep: str = ""  # the execution provider / device when none is given
    ep_help: str = ""  # the eps it accepts, as ``hwnas profile --help`` lists them

    def __init__(self, ep: str | None, threads: int, warmup: int, repeats: int) -> None:
        if threads < 1 or warmup < 0 or repeats < 1:
            raise HwnasError(f"need threads >= 1, warmup >= 0, repeats >= 1; got {threads=}, "
                             f"{warmup=}, {repeats=}")
        self.ep = ep or self.default_ep
        self.threads, self.warmup, self.repeats = threads, warmup, repeats
        self.clock = "wall"
        self._reference: Callable[[], object] | None = None

    @property
    @abstractmethod
    def runtime_version(self) -> str: ...

    @property
    @abstractmethod
    def mode(self) -> str:
        """Execution provider / mode recorded in the table metadata."""

    @abstractmethod
    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        """A callable that runs one batch-1 forward of ``module`` (eval mode) on this device."""

    def time_run(self, run: Callable[[], object], repeats: int | None = None,
                 warmup: int | None = None) -> np.ndarray:
        """Latencies (ms) of ``repeats`` calls of ``run`` after ``warmup`` untimed calls."""
        return _time_calls(run, self.warmup if warmup is None else warmup,
                           repeats or self.repeats, self.clock)

    def time(self, module: nn.Module, input_shape: tuple[int, ...]) -> np.ndarray:
        """Latencies (ms) of ``repeats`` batch-1 forward passes after ``warmup`` runs."""
        return self.time_run(self.prepare(module, input_shape))

    def reference_ms(self) -> float:
        """The reference kernel's latency now (ms): the median of :data:`REFERENCE_REPEATS`
        runs of one session built on first use."""
        if self._reference is None:
            self._reference = self.prepare(reference_module(), REFERENCE_SHAPE)
            self.time_run(self._reference, REFERENCE_REPEATS, warmup=10)
        return float(np.median(self.time_run(self._reference, REFERENCE_REPEATS, warmup=2)))

    precision: str = "fp32"  # what it times (latency_predictors.metadata.PRECISIONS)
    QUANTIZED: dict[str, type[Backend]] = {}  # precision -> the variant that times it

    def metadata(self) -> dict[str, object]:
        return {"runtime": self.runtime, "runtime_version": self.runtime_version,
                "mode": self.mode, "threads": self.threads, "backend": self.name,
                "ep": self.ep, "warmup": self.warmup, "repeats": self.repeats,
                "dtype": DTYPES[self.precision], "batch_size": 1, "clock": self.clock}


class OrtBackend(Backend):
    name = runtime = "onnxruntime"
    default_ep = "cpu"
    ep_help = "|".join(ORT_PROVIDERS)

    def __init__(self, ep: str | None = None, threads: int = 1, warmup: int = 20,
                 repeats: int = 300) -> None:
        super().__init__(ep, threads, warmup, repeats)
        import onnxruntime as ort

        self._ort = ort
        ep = self.ep
        if ep not in ORT_PROVIDERS:
            raise HwnasError(f"unknown onnxruntime ep {ep!r}; valid: {sorted(ORT_PROVIDERS)}")
        available = ort.get_available_providers()
        if ORT_PROVIDERS[ep] not in available:
            raise HwnasError(f"onnxruntime execution provider {ORT_PROVIDERS[ep]} is not "
                             f"available here; available: {available}")
        if ep == "cpu" and threads == 1:
            self.clock = "thread-cpu"

    @property
    def runtime_version(self) -> str:
        return self._ort.__version__

    @property
    def mode(self) -> str:
        return ORT_PROVIDERS[self.ep]

    def session(self, model: bytes):
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = [ORT_PROVIDERS[self.ep]]
        if self.ep != "cpu":
            providers.append("CPUExecutionProvider")
        return ort.InferenceSession(model, options, providers=providers)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        session = self.session(export_onnx(module, input_shape))
        feed = {"x": np.random.default_rng(0).standard_normal((1, *input_shape),
                                                              dtype=np.float32)}
        return lambda: session.run(None, feed)


class OrtInt8Backend(OrtBackend):
    """ONNX Runtime running the export quantized to int8
    (:func:`latency_predictors.measure.quantize.quantize_onnx`, calibrated on random inputs:
    the scales do not change what the int8 kernels cost), CPU execution provider only. A
    module's quantized graph is kept by its structure and input shape, so the profiler's passes
    over the same op quantize it once."""

    name = "onnxruntime"  # the table records the runtime's backend and dtype int8
    precision = "int8"
    QUANTIZED = {}

    def __init__(self, ep: str | None = None, threads: int = 1, warmup: int = 20,
                 repeats: int = 300) -> None:
        if (ep or self.default_ep) != "cpu":
            raise HwnasError(f"int8 is timed on onnxruntime's cpu execution provider, not "
                             f"{ep!r}: pass --ep cpu")
        super().__init__(ep, threads, warmup, repeats)
        self._quantized: dict[tuple[str, tuple[int, ...]], bytes] = {}

    def metadata(self) -> dict[str, object]:
        from .quantize import RECIPE, TIMING_INPUTS

        return {**super().metadata(),
                "quantization": {**RECIPE, "calibration_inputs": TIMING_INPUTS,
                                 "calibration_data": "random normal"}}

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        from .quantize import quantize_onnx, random_inputs

        key = (repr(module.eval()), tuple(input_shape))
        if key not in self._quantized:
            self._quantized[key] = quantize_onnx(export_onnx(module, input_shape),
                                                 random_inputs(input_shape))
        session = self.session(self._quantized[key])
        feed = {"x": random_inputs(input_shape, 1, seed=1)[0]}
        return lambda: session.run(None, feed)


OrtBackend.QUANTIZED = {"int8": OrtInt8Backend}


class TorchBackend(Backend):
    name = runtime = "torch"
    MODES = {"cpu": "cpu-eager", "cuda": "cuda-eager", "cuda-graph": "cuda-graph"}
    default_ep = "cpu"
    ep_help = "|".join(MODES)

    def __init__(self, ep: str | None = None, threads: int = 1, warmup: int = 20,
                 repeats: int = 300) -> None:
        super().__init__(ep, threads, warmup, repeats)
        ep = self.ep
        if ep not in self.MODES:
            raise HwnasError(f"unknown torch ep {ep!r}; valid: {sorted(self.MODES)}")
        if ep != "cpu" and not torch.cuda.is_available():
            raise HwnasError(f"torch ep {ep!r} needs CUDA, but torch.cuda.is_available() is "
                             f"False (torch {torch.__version__})")
        if ep == "cpu" and threads == 1:
            self.clock = "thread-cpu"

    @property
    def runtime_version(self) -> str:
        return torch.__version__

    @property
    def mode(self) -> str:
        return self.MODES[self.ep]

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        module = module.eval()
        if self.ep == "cpu":
            x = torch.randn(1, *input_shape)
            return lambda: module(x)
        module, x = module.cuda(), torch.randn(1, *input_shape, device="cuda")
        if self.ep == "cuda":
            return lambda: module(x)
        with torch.inference_mode():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    module(x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                module(x)
        return graph.replay

    def time_run(self, run: Callable[[], object], repeats: int | None = None,
                 warmup: int | None = None) -> np.ndarray:
        warmup = self.warmup if warmup is None else warmup
        repeats = repeats or self.repeats
        if self.ep == "cpu":
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    return _time_calls(run, warmup, repeats, self.clock)
            finally:
                torch.set_num_threads(previous)
        with torch.inference_mode():  # CUDA: CUDA events around each call
            for _ in range(warmup):
                run()
            torch.cuda.synchronize()
            samples = np.empty(repeats)
            for i in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples[i] = start.elapsed_time(end)
        return samples


class OpenVinoBackend(Backend):
    name = runtime = "openvino"
    default_ep = "CPU"
    ep_help = "CPU|GPU|NPU|MYRIAD..."

    def __init__(self, ep: str | None = None, threads: int = 1, warmup: int = 20,
                 repeats: int = 300) -> None:
        super().__init__(ep, threads, warmup, repeats)
        try:
            import openvino
        except ImportError:
            raise HwnasError("the openvino backend needs OpenVINO: pip install openvino "
                             "(it is not a dependency of hwnas)") from None
        self._ov = openvino
        self._core = openvino.Core()

    @property
    def runtime_version(self) -> str:
        return str(self._ov.__version__)

    @property
    def mode(self) -> str:
        return f"openvino:{self.ep}"

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        with tempfile.TemporaryDirectory() as folder:  # scratch file, not an output
            path = Path(folder) / "op.onnx"
            path.write_bytes(export_onnx(module, input_shape))
            model = self._core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": self.threads} if self.ep.upper() == "CPU" else {}
        compiled = self._core.compile_model(model, self.ep, config)
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((1, *input_shape), dtype=np.float32)
        return lambda: request.infer({0: x})


BACKENDS: Registry[type[Backend]] = Registry("backend")
for _backend in (OrtBackend, TorchBackend, OpenVinoBackend):
    BACKENDS.register(_backend.name, _backend)


TIMED_PRECISIONS = ("fp32", "int8")  # what some backend times (int8: onnxruntime's cpu ep)


def make_backend(name: str, ep: str | None = None, threads: int = 1, warmup: int = 20,
                 repeats: int = 300, precision: str = "fp32") -> Backend:
    """The backend registered as ``name`` (``onnxruntime``, ``torch``, ``openvino``), timing
    ``precision`` (``fp32``, or ``int8``: its quantized variant, where it has one)."""
    backend = BACKENDS[name]
    if precision != backend.precision:
        if precision not in backend.QUANTIZED:
            have = [n for n, b in BACKENDS.items() if precision in b.QUANTIZED]
            raise HwnasError(f"backend {name!r} does not time {precision}; {precision} is timed "
                             f"by: {have or 'no backend'} (fp32 by every backend)")
        backend = backend.QUANTIZED[precision]
    return backend(ep, threads, warmup, repeats)
