"""Whole-network timing on a loaded host: which statistic of several passes reproduces.

Spread `cifar` nets are prepared once (ONNX export, onnxruntime session, 1 thread) and timed in
two rounds of ``--passes`` round-robin passes of ``--repeats`` runs, the reference kernel
before and after each. For each statistic (the fastest pass, the median pass, either
normalised pass by pass by the reference kernel) it compares round 1 with round 2: MAPE,
share within ±10 %, max:

    taskset -c 1 python bench/latency_net_noise.py -n 12 --passes 6 --repeats 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latency_predictors.measure.backends import make_backend, summarize, with_reference
from latency_predictors.measure.networks import errors, spread_sample
from search_spaces import build, get_space

STATISTICS = {
    "fastest pass": lambda raw, ref: raw.min(0),
    "median pass": lambda raw, ref: np.median(raw, 0),
    "fastest pass normalised by the reference": lambda raw, ref: (raw / ref).min(0),
    "median pass normalised by the reference": lambda raw, ref: np.median(raw / ref, 0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="networks")
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    backend = make_backend("onnxruntime", "cpu", 1, 5, args.repeats)
    space = get_space("cifar")
    generator = torch.Generator().manual_seed(args.seed)
    specs = [spread_sample(space, generator) for _ in range(args.n)]
    runs = [backend.prepare(build(spec).eval(), tuple(spec.input)) for spec in specs]
    record = np.zeros((2, args.passes, args.n, 2))  # round, pass, net, (ms, reference ms)
    start = time.perf_counter()
    for round_ in range(2):
        for pass_ in range(args.passes):
            for i, run in enumerate(runs):
                stats, reference = with_reference(
                    backend, lambda run=run: summarize(backend.time_run(run)))
                record[round_, pass_, i] = stats["median_ms"], reference
    print(f"{args.n} nets, 2 rounds x {args.passes} passes x {args.repeats} runs in "
          f"{time.perf_counter() - start:.0f} s; reference kernel "
          f"{record[..., 1].min():.3f}-{record[..., 1].max():.3f} ms (median "
          f"{np.median(record[..., 1]):.3f})")
    print("\n| statistic | round 2 vs round 1: MAPE | within ±10 % | max |\n|---|---:|---:|---:|")
    for label, statistic in STATISTICS.items():
        first, second = (statistic(record[r, ..., 0], record[r, ..., 1]) for r in (0, 1))
        e = errors(second, first)
        print(f"| {label} | {e['mape']:.2f} % | {e['within_10pct']:.1f} % | "
              f"{e['max_error']:.1f} % |")


if __name__ == "__main__":
    main()
