"""The configuration of a search run: one dataclass, every default explained.

Defaults follow ProxylessNAS's ImageNet search script (Cai et al., ICLR 2019;
mit-han-lab/proxylessnas ``search/imagenet_arch_search.py``), scaled to small data sets:
it runs 40 warm-up + 120 search epochs on 1.28 M images, we default to 10 + 30 on 50-60 k.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from search_spaces import HwnasError

from .latency_loss import LOSSES


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search run (recorded in ``summary.json``)."""

    devices: tuple[str, ...]  # latency table names or paths, one per budget
    budgets_ms: tuple[float, ...]
    space: str = "cifar"
    dataset: str = "fashion-mnist"  # the built-in default data set (DESIGN §5)
    out: str = "runs/search"
    epochs: int = 30  # search epochs after warm-up (ProxylessNAS: 120)
    warmup_epochs: int = 10  # weights only, uniform paths (ProxylessNAS: 40)
    batch_size: int = 64  # the global batch, split over micro-batches and torchrun ranks
    micro_batches: int = 1  # gradient accumulation: shards per process, each its own BN batch
    loss: str = "mul_log"  # ProxylessNAS's default form
    loss_strength: float | None = None  # β (mul_log) or λ (add_linear); None: paper default
    seed: int = 0
    data_limit: int | None = None  # cap on train and test images (quick runs)
    arch_fraction: float = 0.1  # held-out share of train for architecture steps (PNAS: 50k/1.28M)
    weight_lr: float = 0.05  # SGD, cosine to 0 (PNAS: 0.025 at batch 256, 120 epochs)
    momentum: float = 0.9  # nesterov, as ProxylessNAS
    weight_decay: float = 4e-5  # ProxylessNAS
    label_smoothing: float = 0.1  # ProxylessNAS (weight steps only)
    arch_lr: float = 1e-3  # Adam, betas (0, 0.999), eps 1e-8 (ProxylessNAS)
    arch_every: int = 5  # one architecture step after every 5 weight steps (ProxylessNAS)
    resume: bool = False
    progress: bool = True  # tqdm bars on stderr

    def __post_init__(self) -> None:
        if len(self.devices) != len(self.budgets_ms) or not self.devices:
            raise HwnasError(f"need one budget per device, got devices {list(self.devices)} "
                             f"and budgets {list(self.budgets_ms)}")
        if self.loss not in LOSSES:
            raise HwnasError(f"unknown loss {self.loss!r}; valid: {sorted(LOSSES)}")
        for name in ("epochs", "batch_size", "arch_every", "micro_batches"):
            if getattr(self, name) < 1:
                raise HwnasError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.loss_strength is not None and not 0 < self.loss_strength < float("inf"):
            raise HwnasError(f"loss strength must be a positive number, got {self.loss_strength}")
        if self.warmup_epochs < 0:
            raise HwnasError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.data_limit is not None and self.data_limit < 2:
            raise HwnasError(f"data_limit must be >= 2, got {self.data_limit}")

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues. A run directory
        may be moved, so ``out`` is not one of them; nor is ``micro_batches``, which like the
        number of torchrun processes only changes how a batch is split over the hardware."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("resume", "progress", "out", "micro_batches")}

    @classmethod
    def quick(cls, devices: tuple[str, ...], budgets_ms: tuple[float, ...],
              **overrides: Any) -> SearchConfig:
        """A tiny smoke configuration (``--quick``): 1 + 2 epochs on 512 images."""
        fields = dict(epochs=2, warmup_epochs=1, batch_size=32, data_limit=512)
        return cls(devices, budgets_ms, **{**fields, **overrides})
