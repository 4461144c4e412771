"""Export a child network: ONNX (checked against PyTorch with onnxruntime), TorchScript, JSON, pt.

ONNX files come from the same exporter settings as the latency profiles
(:func:`latency_predictors.measure.backends.export_onnx`: TorchScript exporter, opset 17; on
torch 2.13 it takes ~10 ms per small model against ~4 s for the dynamo exporter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_path, atomic_write_text
from latency_predictors.measure.backends import export_onnx
from nas.run.trained import net_record
from search_spaces import ArchSpec, build

FORMATS = ("onnx", "torchscript", "json", "pt")
TOLERANCE = 1e-3  # max |exported - PyTorch| allowed, relative to the largest output (at least 1)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_error: float | None  # exported model vs PyTorch on a random input (onnx, torchscript)


def export_onnx_file(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """Write ``model`` (eval mode, batch 1) as ONNX to ``path``."""
    path.write_bytes(export_onnx(model, input_shape, "input", "logits"))


def onnx_max_abs_error(model: nn.Module, path: Path, x: torch.Tensor) -> float:
    """Max |onnxruntime(path)(x) - model(x)| on the CPU execution provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(x).numpy()
    return float(np.max(np.abs(got - want)))


def export_model(spec: ArchSpec, model: nn.Module | None, fmt: str, out: str | Path,
                 seed: int = 0) -> ExportResult:
    """Write ``model`` (default: ``build(spec)`` freshly initialised) in format ``fmt`` to ``out``.

    ONNX and TorchScript exports are run on a random input and compared with PyTorch; the
    maximum absolute difference is returned. The file appears only when the export succeeded
    and agrees with PyTorch within :data:`TOLERANCE` (else one clear error, nothing written).
    """
    if fmt not in FORMATS:
        raise HwnasError(f"unknown export format {fmt!r}; valid: {list(FORMATS)}")
    out = Path(out)
    if fmt == "json":
        atomic_write_text(out, spec.to_json() + "\n")
        return ExportResult(out, fmt, None)
    model = (model if model is not None else build(spec)).eval()
    x = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(seed))
    error = None
    with atomic_path(out) as tmp:
        if fmt == "pt":
            torch.save(net_record(spec, model), tmp)
        elif fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, x)
                error = float((traced(x) - model(x)).abs().max())
            traced.save(str(tmp))
        else:
            export_onnx_file(model, spec.input, tmp)
            error = onnx_max_abs_error(model, tmp, x)
        if error is not None:
            with torch.no_grad():
                scale = max(1.0, float(model(x).abs().max()))
            if not error <= TOLERANCE * scale:  # also NaN
                raise HwnasError(f"the {fmt} export of {spec.to_string()} disagrees with PyTorch "
                                 f"(max abs error {error:.3g} > {TOLERANCE * scale:.3g}); "
                                 f"nothing written to {out}")
    return ExportResult(out, fmt, error)
