"""Wall time of profiling a space's latency table on this machine (issue 3 goal: the `cifar`
table in <= 3 min on 2 cores). CPU-heavy: run it as

    flock /tmp/hwnas-cpu.lock python bench/latency_profile.py [--space cifar] [--repeats 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from latency_predictors.measure.profile import profile_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        table = profile_table(args.space, args.backend, name="bench",
                              out=Path(folder) / "bench.csv", repeats=args.repeats,
                              warmup=args.warmup)
        seconds = time.perf_counter() - start
    print(f"profiled {len(table.frame)} ops of {args.space} with {table.metadata['mode']} "
          f"({args.repeats} repeats, {args.warmup} warm-up, clock {table.metadata['clock']}) "
          f"in {seconds:.1f} s")


if __name__ == "__main__":
    main()
