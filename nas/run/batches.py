"""A run's data on the training device: in-memory batches and the splits a search uses.

Batches are built on the training device from the uint8 images of :mod:`nas.run.readers`:
adaptation to the space's input (channels replicated, padded when at most 25 % smaller,
resized otherwise), so that the space's latency tables, measured at that input, stay valid
(each space's input: ``docs/search.md``, "The search space"); normalisation; and
ProxylessNAS-style random crop + horizontal flip done on whole tensors. ``prepare_data`` gives
a run its weight, architecture (held-out) and test splits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwnas_common import HwnasError
from nas.core.config import SearchConfig
from nas.run.readers import load_dataset
from search_spaces import get_space


def split_holdout(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ProxylessNAS's held-out architecture split: (weight indices, architecture indices)."""
    if not 0 < fraction < 1 or int(n * fraction) < 1 or n - int(n * fraction) < 1:
        raise HwnasError(f"cannot hold out {fraction} of {n} training images for the "
                         f"architecture step; need at least one image in each part")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * fraction)
    return order[cut:].sort().values, order[:cut].sort().values


class Batches:
    """In-memory batches on ``device``: adaptation, normalisation and augmentation on tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, int, int],
                 device: torch.device, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.x, self.y = x.to(device), y.to(device)
        self.shape, self.device = shape, device
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.std = std.to(device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index: torch.Tensor, augment: bool,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = adapt(self.x[index.to(self.device)], self.shape)
        if augment:  # before normalising: the crop's padding is black, as the images' border
            x = random_crop_flip(x, generator)
        return (x - self.mean) / self.std, self.y[index.to(self.device)]

    def in_order(self, batch_size: int = 256, limit: int | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``limit`` (default all) examples in order, unaugmented, for evaluation."""
        stop = len(self) if limit is None else min(limit, len(self))
        for start in range(0, stop, batch_size):
            yield self.batch(torch.arange(start, min(start + batch_size, stop)), augment=False)

    def epoch(self, batch_size: int, generator: torch.Generator, augment: bool,
              drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=generator)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size], augment, generator)


def channel_stats(x: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Per-channel mean and std (of the adapted images) over a sample of ``x``."""
    sample = adapt(x[: 2048], shape)
    return sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3)).clamp_min(1e-3)


def adapt(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (B, c, h, w) -> float (B, C, H, W) in [0, 1] at the space's input (module doc)."""
    channels, height, width = shape
    x = x.float() / 255
    if x.shape[1] != channels:
        if x.shape[1] != 1:
            raise HwnasError(f"images have {x.shape[1]} channels, the space wants {channels}")
        x = x.expand(-1, channels, -1, -1)
    h, w = x.shape[2:]
    if (h, w) == (height, width):
        return x.contiguous()
    if h <= height <= 1.25 * h and w <= width <= 1.25 * w:
        top, left = (height - h) // 2, (width - w) // 2
        return F.pad(x, (left, width - w - left, top, height - h - top))
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop after zero padding by H/8 (4 px at 32×32) and random horizontal flip."""
    b, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class Splits:
    """A run's data as the search sees it: weight steps, architecture steps, test."""

    weight: Batches
    arch: Batches
    test: Batches


def prepare_data(config: SearchConfig, device: torch.device) -> Splits:
    """The weight, architecture (held-out) and test splits of a run's data, as searched."""
    space = get_space(config.space)
    data = load_dataset(config.dataset, limit=config.data_limit, shape=space.input,
                        classes=space.num_classes)
    if int(data.train_y.max()) >= space.num_classes:
        raise HwnasError(f"data set {data.name!r} has {len(data.classes)} classes, space "
                         f"{space.name!r} has a {space.num_classes}-way head")
    weight_idx, arch_idx = split_holdout(len(data.train_y), config.arch_fraction, config.seed)
    mean, std = channel_stats(data.train_x[weight_idx], space.input)

    def batches(x: torch.Tensor, y: torch.Tensor) -> Batches:
        return Batches(x, y, space.input, device, mean, std)

    return Splits(batches(data.train_x[weight_idx], data.train_y[weight_idx]),
                   batches(data.train_x[arch_idx], data.train_y[arch_idx]),
                   batches(data.test_x, data.test_y))
