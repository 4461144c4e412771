"""Few-shot adaptation measured: a table from another host, as shipped and after
``hwnas tables adapt``, validated on the same fresh spread networks of this host.

The source is a measured table profiled elsewhere, e.g. the `cpu` table as shipped before it
was re-profiled here (another AMD EPYC guest, CPU family 25 / Zen 3):

    git show 5abb751:latency_predictors/tables/cpu.csv > /tmp/zen3/cpu-zen3.csv
    git show 5abb751:latency_predictors/tables/cpu.json > /tmp/zen3/cpu-zen3.json
    python bench/latency_adapt.py --source /tmp/zen3/cpu-zen3.csv --spaces cifar -n 15 -v 50

Reports the adaptation time and, for the source and the adapted table (and the table of this
host, ``--reference``), MAPE, share within ±10 % and max error on ``-v`` fresh networks.
"""

from __future__ import annotations

import argparse
import time

from latency_predictors import load_table
from latency_predictors.adapt import adapt_table
from latency_predictors.calibrate import backend_for
from latency_predictors.validate import compare_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a measured table from another host")
    parser.add_argument("--reference", default="cpu", help="a table profiled on this host")
    parser.add_argument("--spaces", default="cifar")
    parser.add_argument("-n", type=int, default=15, help="networks measured per space to adapt")
    parser.add_argument("-v", type=int, default=50, help="fresh networks to validate on")
    args = parser.parse_args()
    source = load_table(args.source)
    spaces = args.spaces.split(",")
    start = time.perf_counter()
    adapted = adapt_table(source, spaces, args.n, progress=False)
    adapted.name = "adapted"
    print(f"adapted {spaces} with {args.n} networks each in {time.perf_counter() - start:.1f} s")
    reference = load_table(args.reference)
    for space in spaces:
        results = compare_tables([source, adapted, reference], space, n=args.v,
                                 backend=backend_for(reference), sampler="spread")
        print(f"\n| {space}: table | MAPE | within ±10 % | max error |\n|---|---:|---:|---:|")
        for label, result in zip(("source (other host)", f"adapted ({args.n} nets)",
                                  "profiled here"), results, strict=True):
            print(f"| {label} | {result.mape:.2f} % | {result.within_10pct:.0f} % | "
                  f"{result.max_error:.1f} % |")


if __name__ == "__main__":
    main()
