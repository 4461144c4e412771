"""What a weight step costs with uniform paths and with budget paths, side by side in one run.

Two search engines share one ``hybrid-cifar`` supernet and one latency constraint (the main
job's relative budget on ``--table``): one draws its weight paths uniformly over the space
(``weight_paths="uniform"``), the other among the nets the budget admits
(``weight_paths="budget"``). Round by round each engine makes one weight step on the same
batch, in alternating order, so drift of the machine's speed hits both alike; the first
``--skip`` rounds warm the allocator and are not counted. Reported: images per second of each
arm (total images over total time), their ratio, and the mean predicted latency of the nets
each arm trained.

    taskset -c 0 python bench/weight_paths.py --rounds 26 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latency_predictors import latency_matrix, load_table
from nas import SearchConfig
from nas.core.budget import RelativeBudget
from nas.core.constraints import Constraint
from nas.core.engine import SearchEngine
from search_spaces import Supernet, get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="hybrid-cifar")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--budget", type=float, default=0.15, help="relative (default 0.15)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=26)
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = get_space(args.space)
    matrix = latency_matrix(space, load_table(args.table))
    budget = RelativeBudget(args.budget).resolve(matrix.fastest_ms(), matrix.slowest_ms())
    limit = Constraint(matrix, budget, args.table)
    supernet = Supernet(space)
    engines = {paths: SearchEngine(supernet, [limit], SearchConfig(
        (args.table,), (budget,), space=space.name, weight_paths=paths, seed=1))
        for paths in ("uniform", "budget")}
    x = torch.randn(args.batch_size, *space.input)
    y = torch.randint(space.num_classes, (args.batch_size,))
    seconds = {paths: [] for paths in engines}
    latency = {paths: [] for paths in engines}
    for round_ in range(args.rounds):
        order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
        for paths in order:
            engine = engines[paths]
            state = engine.generator.get_state()
            latency[paths].append(matrix.total(engine.sample_paths(uniform=True)))
            engine.generator.set_state(state)  # the step below draws the same net
            start = time.perf_counter()
            engine.weight_step(x, y, uniform=True)
            if round_ >= args.skip:
                seconds[paths].append(time.perf_counter() - start)
    print(f"{args.space}, budget {budget:.4g} ms on {args.table} ({100 * args.budget:g} %), "
          f"batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.rounds - args.skip} steps per arm")
    rate = {}
    for paths, times in seconds.items():
        rate[paths] = len(times) * args.batch_size / sum(times)
        lats = latency[paths][args.skip:]
        print(f"  {paths:>7} paths: {rate[paths]:6.1f} images/s (median step "
              f"{1000 * statistics.median(times):.0f} ms), nets' predicted latency "
              f"{statistics.mean(lats):.3f} ms mean, {sum(lat <= budget for lat in lats)} "
              f"of {len(lats)} under the budget")
    print(f"  budget / uniform: {rate['budget'] / rate['uniform']:.2f}x images/s")


if __name__ == "__main__":
    main()
