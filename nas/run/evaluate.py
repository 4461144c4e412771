"""Evaluating a net on batches: top-1 accuracy, and BatchNorm statistics re-estimated for a
child taken from the supernet (whose running statistics mix every path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def top1_accuracy(forward: Callable[[torch.Tensor], torch.Tensor],
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Share of ``batches`` whose arg-max logit of ``forward(images)`` is the label (0 if empty)."""
    correct = total = 0
    with torch.no_grad():
        for images, labels in batches:
            correct += int((forward(images).argmax(dim=1) == labels).sum())
            total += labels.numel()
    return correct / max(1, total)


INHERITED_BN_IMAGES = 2000  # training images an inherited child's BatchNorm is re-estimated on


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
                          ) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics as an exact average over ``batches``.

    A child taken from the supernet carries statistics accumulated over *all* paths; its own
    statistics differ (OFA, Cai et al. 2020, §3.2). Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: exact mean over the batches
    model.train()
    with torch.no_grad():
        for images, _ in batches:
            model(images)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    return model.eval()
