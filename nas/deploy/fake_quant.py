"""Quantization-aware fine-tuning: a net trained with fake int8 quantization in its forward pass,
so that its weights learn to tolerate the rounding the int8 export applies
(``hwnas export RUN --quantize int8 --qat-epochs N``).

The fake quantization imitates ONNX Runtime's static recipe
(:data:`latency_predictors.measure.quantize.RECIPE`): every convolution's and linear layer's
weight is rounded to int8 per output channel, symmetric (a parametrization, so the float weight
is what the optimiser updates: the straight-through estimator of
``torch.fake_quantize_per_channel_affine``), and every module's output tensor to uint8 per
tensor, asymmetric, over a range tracked as a moving average of its min and max in training
(Jacob et al., CVPR 2018, §3; ONNX Runtime quantizes the output of each op it has an int8 kernel
for, so every module's output stands in for those tensors; a ``Sequential``'s output is its last
module's, quantized once). After fine-tuning the hooks and
parametrizations are removed and the float net is exported and quantized by ONNX Runtime as
usual, calibrated afresh: the fine-tuning changes the weights, not the recipe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

RANGE_MOMENTUM = 0.01  # moving average of the activation ranges (Jacob et al.: EMA)


class _WeightInt8(nn.Module):
    """Fake int8 quantization of a weight, per output channel (dim 0), symmetric."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        flat = weight.detach().reshape(weight.shape[0], -1)
        scale = (flat.abs().amax(dim=1) / 127).clamp_min(1e-8)
        zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


class _ActivationUint8:
    """A forward hook that fake-quantizes a module's output tensor to uint8 over its tracked
    range (asymmetric, per tensor; the range always holds 0, as ONNX Runtime's does). The range
    stays a tensor: no host synchronisation per call."""

    def __init__(self) -> None:
        self.range: torch.Tensor | None = None  # (low, high)

    def __call__(self, module: nn.Module, inputs: object, output: object) -> object:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return output
        if module.training or self.range is None:
            low, high = torch.aminmax(output.detach())
            seen = torch.stack((low.clamp(max=0), high.clamp(min=0))).float()
            self.range = seen if self.range is None else torch.lerp(self.range, seen,
                                                                    RANGE_MOMENTUM)
        scale = ((self.range[1] - self.range[0]) / 255).clamp_min(1e-8)
        zero = torch.round(-self.range[0] / scale).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(output, scale, zero, 0, 255)


def _quantized_weights(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@contextmanager
def fake_quantized(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with fake int8 weights and uint8 activations inside the block (see the module
    docstring); on leaving it, the plain float ``model``, its weights as trained."""
    layers = _quantized_weights(model)
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", _WeightInt8())
    handles = [m.register_forward_hook(_ActivationUint8()) for m in model.modules()
               if m is not model and not isinstance(m, (nn.Sequential, nn.ModuleList))]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
