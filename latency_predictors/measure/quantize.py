"""Static int8 quantization as ONNX Runtime runs it: the one recipe the ``cpu-int8`` table times,
``hwnas measure --precision int8`` measures and ``hwnas export --quantize int8`` writes.

The recipe (:data:`RECIPE`) is ONNX Runtime's static post-training quantization
(``onnxruntime.quantization.quantize_static``): QDQ format, int8 weights per output channel
(symmetric), uint8 activations per tensor (asymmetric), MinMax ranges from calibration inputs,
after ONNX Runtime's pre-processing (``quant_pre_process``: its basic graph optimisations, which
fold constants and fuse Conv + BatchNorm / Add, and ONNX shape inference). A session with all
graph optimisations then fuses each ``DequantizeLinear → op → QuantizeLinear`` it has an int8
kernel for (``QLinearConv``, ``QGemm``, ``QLinearAdd``, ``QLinearMul``,
``QLinearGlobalAveragePool``; u8s8 VNNI on x86 hosts that have it) and runs the rest (GELU's
``Erf``, a pre-norm ``BatchNormalization`` that no convolution precedes, the r-branch
interactions' ``Exp`` and reductions) in fp32 between a dequantize and a quantize: what an
int8 net costs is what the runtime fuses, so it is measured, never assumed.

Latency does not depend on the calibration's values (the int8 kernels take the same time
whatever the scales), so what is only timed is calibrated on :data:`TIMING_INPUTS` random
inputs; an export calibrates on training images. ``docs/latency.md``, "int8".
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_common import HwnasError

RECIPE: dict[str, Any] = {
    "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
    "weights": "int8, per output channel, symmetric",
    "activations": "uint8, per tensor, asymmetric", "calibration": "MinMax",
    "pre_process": "quant_pre_process (basic graph optimisations, ONNX shape inference)"}
TIMING_INPUTS = 4  # random calibration inputs of a net or op that is only timed


def describe_recipe() -> str:
    """``QDQ, int8 weights per output channel, uint8 activations per tensor, MinMax``"""
    return "QDQ, int8 weights per output channel, uint8 activations per tensor, MinMax ranges"


def random_inputs(shape: tuple[int, ...], n: int = TIMING_INPUTS, seed: int = 0
                  ) -> list[np.ndarray]:
    """``n`` batch-1 standard-normal inputs of ``shape`` (C, H, W): the calibration of a net
    that is only timed."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *shape), dtype=np.float32) for _ in range(n)]


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a warning per tensor it handles specially through the root
    logger; none of them is the user's business, a failure is raised."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _reader(name: str, inputs: Sequence[np.ndarray]):
    """The calibration inputs as an ONNX Runtime ``CalibrationDataReader``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{name: x} for x in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def quantize_onnx(model: bytes, inputs: Sequence[np.ndarray], input_name: str = "x") -> bytes:
    """The int8 ONNX model of fp32 ``model`` by :data:`RECIPE`, calibrated on ``inputs`` (each
    of batch 1, in the model's input layout).

    Raises
    ------
    HwnasError
        In one line, with nothing written: no calibration input, a non-finite one, the
        quantizer failing (an op it cannot handle), or a result that quantizes nothing.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not inputs:
        raise HwnasError("int8 calibration needs at least 1 input, got 0")
    if not all(np.isfinite(x).all() for x in inputs):
        raise HwnasError("int8 calibration failed: a calibration input is not finite")
    with tempfile.TemporaryDirectory(prefix="hwnas-int8-") as folder, _quiet():
        source, prepared, target = (Path(folder) / f"{n}.onnx" for n in ("fp32", "pre", "int8"))
        source.write_bytes(model)
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), _reader(input_name, inputs),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            quantized = target.read_bytes()
        except HwnasError:
            raise
        except Exception as err:  # the quantizer's own failure: an op or a range it cannot take
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise HwnasError(f"int8 quantization failed: {type(err).__name__}: {first}"
                             ) from None
    if quantized_nodes(quantized) == 0:
        raise HwnasError("int8 quantization quantized no op of the net (no QuantizeLinear "
                         "node): it has no op ONNX Runtime quantizes")
    return quantized


def quantized_nodes(model: bytes) -> int:
    """How many ``QuantizeLinear`` nodes ``model`` holds (0: nothing was quantized)."""
    import onnx

    return sum(node.op_type == "QuantizeLinear"
               for node in onnx.load_from_string(model).graph.node)


def cpu_session(model: bytes, threads: int = 1):
    """An ONNX Runtime CPU session of ``model`` with all graph optimisations (for an int8
    model, the QDQ fusions into int8 kernels), ``threads`` intra-op threads, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
