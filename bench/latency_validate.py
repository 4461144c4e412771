"""Predictor accuracy on this CPU: 50 random `cifar` architectures, measured vs predicted.

Measures each architecture end to end with onnxruntime (the shipped `cpu` table's own backend
and settings: CPU EP, 1 thread), drift-normalised to the table's reference speed, and compares
with the calibrated `cpu` table's prediction. Architectures are ``spread`` samples (a random
skip share, like searched nets) unless ``--sampler uniform``. Goal: MAPE <= 3 % and
>= 95 % within ±10 % on 50 spread nets. CPU-heavy: run it as

    flock /tmp/hwnas-cpu.lock python bench/latency_validate.py [-n 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import time

from latency_predictors import load_table
from latency_predictors.measure.validate import SAMPLERS, VALIDATION_SEED, compare_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--device", default="cpu",
                        help="table name/file, or several comma-separated: all are compared on "
                             "the same measurements (taken with the first table's backend)")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED)
    parser.add_argument("--sampler", default="spread", choices=SAMPLERS)
    parser.add_argument("--out", default=None, help="folder for validation.csv/.png")
    args = parser.parse_args()
    tables = [load_table(name) for name in args.device.split(",")]
    start = time.perf_counter()
    results = compare_tables(tables, args.space, n=args.n, seed=args.seed,
                             sampler=args.sampler)
    for name, result in zip(args.device.split(","), results, strict=True):
        print(f"[{name}] {result.format()}")
        print(f"[{name}] n={len(result.frame)} {args.sampler} seed={args.seed} "
              f"MAPE={result.mape:.3f}% within_10pct={result.within_10pct:.1f}% "
              f"max_error={result.max_error:.2f}%")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.out:
        print("wrote", *results[0].save(args.out))


if __name__ == "__main__":
    main()
