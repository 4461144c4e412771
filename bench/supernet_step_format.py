"""A supernet weight step in the default memory format and in ``channels_last`` (the
supernet's own since issue 20): forward + backward + SGD step of random paths, the two formats
alternated in one process so the host's drift hits both alike.

    python bench/supernet_step_format.py --space cifar --batch-size 64 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from search_spaces import get_space
from search_spaces.network import Supernet


def step_seconds(space_name: str, channels_last: bool, batch: int, steps: int) -> float:
    """Median seconds of ``steps`` weight steps (after 2 warm-up steps) on random paths."""
    space = get_space(space_name)
    torch.manual_seed(0)
    net = Supernet(space, "shared", "family").train()
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, *space.input), torch.randint(space.num_classes, (batch,))
    times = []
    for _ in range(steps + 2):
        paths = torch.randint(len(space.candidates), (space.num_layers,),
                              generator=generator).tolist()
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x, paths), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| round | default format (s) | channels_last (s) | speed-up |\n|---:|---:|---:|---:|")
    for round_ in range(args.rounds):
        default = step_seconds(args.space, False, args.batch_size, args.steps)
        last = step_seconds(args.space, True, args.batch_size, args.steps)
        print(f"| {round_ + 1} | {default:.3f} | {last:.3f} | {default / last:.2f}× |")


if __name__ == "__main__":
    main()
