"""The configuration of a search run: one dataclass, every default explained.

Defaults follow ProxylessNAS's ImageNet search script (Cai et al., ICLR 2019;
mit-han-lab/proxylessnas ``search/imagenet_arch_search.py``), scaled to small data sets:
it runs 40 warm-up + 120 search epochs on 1.28 M images, we default to 10 + 30 on 50-60 k.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas_common import HwnasError
from nas.core.latency_loss import LOSSES
from search_spaces import CHOICE_MODES, WEIGHT_MODES

PROXYLESS_ARCH_LR = 1e-3  # ProxylessNAS's Adam lr for α on ImageNet
ARCH_TRAVEL = 10.0  # default lr × architecture steps; chosen by bench/arch_schedule.py
WEIGHT_PATHS = ("budget", "uniform", "p")
PATH_PRIORS = ("net", "family")


SHORT = dict(epochs=2, warmup_epochs=1, batch_size=64, data_limit=3000, retrain_epochs=1,
             retrain_images=25000)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search run (recorded in ``summary.json``)."""

    devices: tuple[str, ...]  # latency table names or paths, one per budget
    budgets_ms: tuple[float, ...]
    space: str = "hybrid-cifar"  # interaction blocks, MBConv and skip: the family per layer
    weights: str = "shared"  # supernet weights: "shared" (entangled) or "separate" per candidate
    dataset: str = "fashion-mnist"  # the built-in default data set (README, "Set-up")
    out: str = "runs/search"
    epochs: int = 30  # search epochs after warm-up (ProxylessNAS: 120)
    warmup_epochs: int = 10  # weights only, no architecture steps (ProxylessNAS: 40)
    batch_size: int = 64  # the global batch, split over micro-batches and torchrun ranks
    micro_batches: int = 1  # gradient accumulation: shards per process, each its own BN batch
    loss: str = "hinge_log"  # ProxylessNAS's mul_log above the budget, CE alone below it
    loss_strength: float | None = None  # β (*_log) or λ (add_linear); None: paper default
    seed: int = 0
    data_limit: int | None = None  # cap on train and test images (quick runs)
    arch_fraction: float = 0.1  # held-out share of train for architecture steps (PNAS: 50k/1.28M)
    weight_lr: float = 0.05  # SGD, cosine to 0 (PNAS: 0.025 at batch 256, 120 epochs)
    momentum: float = 0.9  # nesterov, as ProxylessNAS
    weight_decay: float = 4e-5  # ProxylessNAS
    label_smoothing: float = 0.1  # ProxylessNAS (weight steps only)
    arch_lr: float | None = None  # Adam, betas (0, 0.999); None: the schedule (arch_lr_for)
    arch_travel: float = ARCH_TRAVEL  # Adam lr × architecture steps (see arch_lr_for)
    arch_every: int = 5  # one architecture step after every 5 weight steps (ProxylessNAS)
    arch_batches: int = 2  # comparisons (held-out batches, each with its own sampled pairs)
    #                        averaged into one architecture step (ProxylessNAS: 1)
    arch_beta1: float = 0.0  # Adam β1 of the architecture step (ProxylessNAS: 0)
    choices: str = "family"  # α per layer: the family tree skip / interaction type / MBConv,
    #                          then size, or one softmax over the candidates ("flat",
    #                          ProxylessNAS)
    weight_paths: str = "budget"  # every weight step (warm-up too) trains a net drawn
    #                               exactly among those the budgets admit (SPOS), so the
    #                               supernet learns the nets the search chooses between;
    #                               "uniform": the choice tree's uniform prior over the whole
    #                               space; "p": from p after warm-up (ProxylessNAS)
    path_floor: float = 0.9  # "budget" paths use >= this share of every budget (the
    #                          derivation's band; 0: every net under the budgets)
    path_prior: str = "family"  # "budget" paths weighted by the choice tree's uniform prior
    #                             (skip, interaction, MBConv a third each per layer), or
    #                             uniform over the admitted nets ("net"); chosen by
    #                             bench/ranking.py on development seeds
    select_top: int = 8  # > 1: score this many band nets under p on the supernet (held-out
    #                      loss, BatchNorm re-estimated) and return the best; 0 or 1: the
    #                      knapsack's most probable net
    verdict_nets: int = 8  # random band nets the found net is compared with at the end
    retrain_epochs: int = 0  # after the search: fine-tune the derived net from its inherited
    #                          weights for this many epochs and report its test accuracy
    retrain_images: int | None = None  # fine-tune on this many training images (a superset
    #                          of the search's; default: the search's weight split)
    budget_floor: float = 0.9  # derive the most probable net using >= 90 % of every budget,
    #                            when one exists (nas.core.derive; 0: any net under the
    #                            budget)
    confidence: float = 0.95  # derive under budget / (1 + margin): the net measures within
    #                           the budget with this probability by the table's stated error
    #                           (nas.core.constraints; 0: under the budget as it is)
    checkpoint_minutes: float = 5.0  # also checkpoint mid-epoch this often (Lightning's
    #                                  train_time_interval); 0: after every step
    keep_warmup: bool = False  # also keep warmup.pt, the supernet's weights at the end of
    #                            warm-up (bench/ranking.py scores nets on it; nothing in a
    #                            run reads it, and it is as large as the final weights)
    resume: bool = False
    progress: bool = True  # tqdm bars on stderr

    def __post_init__(self) -> None:
        if len(self.devices) != len(self.budgets_ms) or not self.devices:
            raise HwnasError(f"need one budget per device, got devices {list(self.devices)} "
                             f"and budgets {list(self.budgets_ms)}")
        if self.loss not in LOSSES:
            raise HwnasError(f"unknown loss {self.loss!r}; valid: {sorted(LOSSES)}")
        for name in ("epochs", "batch_size", "arch_every", "micro_batches", "arch_batches"):
            if getattr(self, name) < 1:
                raise HwnasError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.loss_strength is not None and not 0 < self.loss_strength < float("inf"):
            raise HwnasError(f"loss strength must be a positive number, got {self.loss_strength}")
        if self.choices not in CHOICE_MODES:
            raise HwnasError(f"unknown choices {self.choices!r}; valid: {list(CHOICE_MODES)}")
        if self.path_prior not in PATH_PRIORS:
            raise HwnasError(f"unknown path prior {self.path_prior!r}; valid: "
                             f"{list(PATH_PRIORS)}")
        if not 0 <= self.path_floor < 1:
            raise HwnasError(f"need 0 <= path_floor < 1, got {self.path_floor}")
        if self.weight_paths not in WEIGHT_PATHS:
            raise HwnasError(f"unknown weight paths {self.weight_paths!r}; valid: "
                             f"{list(WEIGHT_PATHS)}")
        if not 0 <= self.arch_beta1 < 1:
            raise HwnasError(f"need 0 <= arch_beta1 < 1, got {self.arch_beta1}")
        if self.select_top < 0 or self.verdict_nets < 0:
            raise HwnasError(f"select_top and verdict_nets must be >= 0, got "
                             f"{self.select_top} and {self.verdict_nets}")
        if self.weights not in WEIGHT_MODES:
            raise HwnasError(f"unknown weights {self.weights!r}; valid: {list(WEIGHT_MODES)}")
        if self.arch_lr is not None and not 0 < self.arch_lr < float("inf"):
            raise HwnasError(f"arch_lr must be a positive number, got {self.arch_lr}")
        if not 0 < self.arch_travel < float("inf"):
            raise HwnasError(f"arch_travel must be a positive number, got {self.arch_travel}")
        if self.retrain_epochs < 0:
            raise HwnasError(f"retrain_epochs must be >= 0, got {self.retrain_epochs}")
        if self.retrain_images is not None and self.retrain_images < 2:
            raise HwnasError(f"retrain_images must be >= 2, got {self.retrain_images}")
        if not 0 <= self.budget_floor < 1:
            raise HwnasError(f"need 0 <= budget_floor < 1, got {self.budget_floor}")
        if not 0 <= self.confidence < 1:
            raise HwnasError(f"need 0 <= confidence < 1, got {self.confidence}")
        if not 0 <= self.checkpoint_minutes < float("inf"):
            raise HwnasError(f"need checkpoint_minutes >= 0, got {self.checkpoint_minutes}")
        if self.warmup_epochs < 0:
            raise HwnasError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.data_limit is not None and self.data_limit < 2:
            raise HwnasError(f"data_limit must be >= 2, got {self.data_limit}")

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.epochs

    def arch_lr_for(self, steps_per_epoch: int) -> float:
        """The architecture learning rate of a run with ``steps_per_epoch`` weight steps.

        Adam moves a logit by at most about lr per step, so lr × (number of architecture
        steps) bounds how far α can travel in a run. ProxylessNAS's ImageNet search makes
        ~115 k architecture steps at lr 1e-3 (a travel of ~115); a small-data run with the same
        lr makes a few dozen and α cannot leave uniform. The schedule therefore gives every
        run the same travel, ``arch_travel``, and never goes below ProxylessNAS's 1e-3.
        An explicit ``arch_lr`` wins."""
        if self.arch_lr is not None:
            return self.arch_lr
        steps = max(1, self.epochs * (steps_per_epoch // self.arch_every))
        return max(PROXYLESS_ARCH_LR, self.arch_travel / steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues. A run directory
        may be moved, so ``out`` is not one of them; nor is ``micro_batches``, which like the
        number of torchrun processes only changes how a batch is split over the hardware, nor
        ``checkpoint_minutes`` (how much a kill loses), ``keep_warmup`` (which files are kept),
        ``budget_floor`` and ``select_top`` (derivation only) or ``verdict_nets`` (the report
        only)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("resume", "progress", "out", "micro_batches", "checkpoint_minutes",
                             "keep_warmup", "budget_floor", "select_top", "verdict_nets")}

    @classmethod
    def quick(cls, devices: tuple[str, ...], budgets_ms: tuple[float, ...],
              **overrides: Any) -> SearchConfig:
        """A tiny smoke configuration (``--quick``): 1 + 2 epochs on 512 images."""
        fields = dict(epochs=2, warmup_epochs=1, batch_size=32, data_limit=512)
        return cls(devices, budgets_ms, **{**fields, **overrides})

    @classmethod
    def short(cls, devices: tuple[str, ...], budgets_ms: tuple[float, ...],
              **overrides: Any) -> SearchConfig:
        """The README's main job (``--short``, ~5 min on 2 cores): a 1 + 2 epoch search on
        3,000 images, then one epoch of fine-tuning the net it found on 25,000, so the
        reported accuracy means something."""
        return cls(devices, budgets_ms, **{**SHORT, **overrides})


def default_run_dir(dataset: str, space: str, devices: Sequence[str], budget: str) -> str:
    """``runs/DATA-SPACE-DEVICES-BUDGETS``, e.g. ``runs/fashion-mnist-cifar-cpu-1ms``; a data
    set given as a path is named by its file or folder name without suffixes."""
    data = Path(dataset).name.split(".")[0] or "data"
    budgets = budget.replace(",", "-").replace("%", "pct")
    return f"runs/{data}-{space}-{'-'.join(devices)}-{budgets}"
