"""Model size and compute: parameter count and multiply-accumulates (MACs), measured by hooks."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one batch-1 forward pass, over Conv2d and Linear layers.

    Element-wise work (norms, activations, the interaction products and kernels, channel
    shuffles) is not counted, as in the usual "FLOPs" tables of ConvNeXt/QuadraNet, which report
    conv/linear MACs. A grouped convolution counts its ``C_in / groups`` inputs per output.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * k

    def linear_hook(module: nn.Linear, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
