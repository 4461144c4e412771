"""Training a child network with the search's weight recipe: the search's fine-tuning of the
net it found, and ``hwnas train`` / ``hwnas export --train-epochs`` (:mod:`nas.deploy.retrain`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from hwnas_common import HwnasError
from nas.run.batches import Batches


@dataclass(frozen=True)
class Recipe:
    """How a child network is trained: SGD nesterov 0.9, cosine lr, label smoothing 0.1; the
    search's random crop and flip only when ``augment``: in the short trainings hwnas runs
    itself it cost accuracy (the main job's net: 0.846 instead of 0.893 after one epoch on
    45,000 Fashion-MNIST images, 0.782 instead of 0.849 after five on 3,000; 5 paired seeds,
    ``bench/finetune_recipe.py``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    augment: bool = False


def train_child(model: nn.Module, train: Batches, recipe: Recipe, progress: bool = True,
                desc: str = "retrain") -> nn.Module:
    """Train ``model`` (already on ``train``'s device) in place with ``recipe``; return it.

    Training runs in ``channels_last`` memory format (the weights are back in the default one
    on return): on the loaded 2-vCPU Zen 3 guest it trained a main-job net at 148-170 images/s
    on one thread against 87-147 in the default format, in three runs
    (``bench/child_training.py``); batch 256 never trained faster than 64 there, so the recipe's
    batch and lr stand."""
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(recipe.seed)
    batch_size = min(recipe.batch_size, len(train))
    steps = max(1, recipe.epochs * (len(train) // batch_size))
    step = 0
    for epoch in range(recipe.epochs):
        model.train()
        for x, y in tqdm(train.epoch(batch_size, generator, augment=recipe.augment),
                         total=len(train) // batch_size, desc=f"{desc} {epoch + 1}/"
                         f"{recipe.epochs}", disable=not progress, leave=False):
            for group in opt.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            if not torch.isfinite(loss):
                raise HwnasError(f"retraining loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            opt.step()
            step += 1
    return model.to(memory_format=torch.contiguous_format)
