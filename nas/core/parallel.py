"""Data parallelism as a search step sees it: this process's place among the ranks.

Every rank draws the same global batch and the same sampled paths and computes only its shard
of each batch: the batch is split into ``world × micro_batches`` parts with
``torch.tensor_split`` and rank r takes its ``micro_batches`` parts. After the backward passes
of a step, the weight gradients (weight step) or the gate and α gradients (architecture step)
are averaged over the ranks in one all-reduce, so every rank applies the same update; weights
and α are checked to be bit-identical on every rank after each epoch.

BatchNorm normalises each rank's shard on its own, as in PyTorch's DDP. An N-process run
therefore equals a 1-process run with ``micro_batches=N`` (gradient accumulation over the same
shards) up to float rounding in the gradient sums. BatchNorm running statistics, which only
evaluation uses, are averaged over the ranks before each evaluation.

How ``torchrun`` starts the ranks and the process group is :mod:`nas.run.distributed`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hwnas_common import HwnasError


class RanksDiverged(HwnasError):
    """Ranks that must hold identical state do not."""


@dataclass(frozen=True)
class Group:
    """This process's place among the data-parallel ranks (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        """The training device of this rank: its own GPU if there are GPUs, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    def shards(self, images: torch.Tensor, labels: torch.Tensor,
               micro_batches: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``micro_batches`` parts of a global batch split into world × micro parts."""
        parts = self.world * micro_batches
        if len(labels) < parts:
            raise HwnasError(f"a batch of {len(labels)} cannot be split over {self.world} "
                             f"process(es) × {micro_batches} micro-batch(es); raise the "
                             "batch size")
        mine = slice(self.rank * micro_batches, (self.rank + 1) * micro_batches)
        return list(zip(torch.tensor_split(images, parts)[mine],
                        torch.tensor_split(labels, parts)[mine], strict=True))

    def average(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor, in place, by its mean over the ranks (one all-reduce)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).to(tensors[0].dtype) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op in one process)."""
        if self.world > 1:
            dist.barrier()

    def broadcast(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if self.world == 1:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def check_identical(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """Raise :class:`RanksDiverged` unless ``tensors`` are bit-identical on every rank."""
        if self.world == 1:
            return
        flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
        low, high = flat.clone(), flat.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RanksDiverged(f"{what} differ between ranks (max gap "
                                f"{float((high - low).abs().max()):.3g}); the data-parallel "
                                "run is not consistent")


def default_device() -> torch.device:
    """CUDA when this process sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
