"""Data-parallel search over the processes that ``torchrun`` starts (``torch.distributed``).

``torchrun --nproc_per_node=N --no-python hwnas search ...`` runs N copies of the search.
Every rank builds the same supernet (rank 0's state is broadcast at the start), draws the
same data order and global batch and the same sampled paths (same seeds, same generators),
and computes only its shard of each batch (:class:`nas.core.parallel.Group`: sharding, the
all-reduce of the gradients, the check that every rank holds the same weights). Only rank 0
evaluates and writes the run directory.

This module reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
starts the process group: NCCL with one GPU per rank (``cuda:LOCAL_RANK``) when CUDA is
available, else gloo on the CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from hwnas_common import HwnasError
from nas.core.parallel import Group


def environment_group() -> tuple[Group, bool]:
    """The group described by torchrun's environment, initialising the process group if needed.

    Returns ``(group, created)``; ``created`` tells the caller to call :func:`close`.
    """
    if not is_distributed():
        return Group(), False
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", None)
    if rank is None or not 0 <= rank < world:
        raise HwnasError(f"RANK={os.environ.get('RANK')!r} with WORLD_SIZE={world}: need a rank "
                         "in 0..WORLD_SIZE-1 (start the processes with torchrun)")
    group = Group(rank, world, _env_int("LOCAL_RANK", 0))
    if dist.is_initialized():
        return group, False
    if torch.cuda.is_available():
        torch.cuda.set_device(group.device())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return group, True


def _env_int(name: str, default: int | None) -> int | None:
    """The integer in ``$name`` (``default`` when unset); one clear error when it is not one."""
    text = os.environ.get(name)
    if text is None:
        return default
    lowest = 1 if name == "WORLD_SIZE" else 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < lowest:
        raise HwnasError(f"{name}={text!r}: expected an integer >= {lowest} (torchrun sets it)")
    return value


def is_distributed() -> bool:
    """True when torchrun started this process as one of several."""
    return _env_int("WORLD_SIZE", 1) > 1


def is_main_process() -> bool:
    """True unless torchrun started this process as a rank other than 0."""
    return _env_int("RANK", 0) == 0


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

