"""Few-shot adaptation measured: a table from another host, as shipped and after
``hwnas tables adapt``, validated on the same fresh spread networks of this host.

The source is a measured table profiled elsewhere. On a Zen 3 guest (AMD EPYC,
CPU family 25 model 1) the shipped `cpu` table (Zen 5, family 26 model 2) is the foreign one:

    taskset -c 1 python bench/latency_adapt.py --source cpu --spaces cifar -v 30

(on a Zen 5 host, the Zen 3 table of git history is: ``git show 5abb751:latency_predictors/
tables/cpu.csv`` and ``.json``). Reports the adaptation time per space and, for the source
and the adapted table (and, with ``--reference``, a table profiled on this host), the raw
error against what this host measures now: MAPE, share within ±10 %, max and mean signed
error on ``-v`` fresh networks, and for the tables of this host the error drift-normalised to
their reference speed, plus the noise floor: the same networks measured twice, compared.
"""

from __future__ import annotations

import argparse
import time

import torch

from latency_predictors import load_table
from latency_predictors.measure.adapt import ADAPT_NETS, adapt_table
from latency_predictors.measure.networks import backend_for, errors, measure_archs, spread_sample
from latency_predictors.measure.validate import VALIDATION_SEED, compare_tables
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a measured table from another host")
    parser.add_argument("--reference", help="a table profiled on this host, for comparison")
    parser.add_argument("--spaces", default="cifar")
    parser.add_argument("-n", type=int, default=ADAPT_NETS, help="networks measured per space "
                        "to adapt")
    parser.add_argument("-v", type=int, default=30, help="fresh networks to validate on")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = load_table(args.source)
    tables = [("source (other host)", source)]
    for space in args.spaces.split(","):
        start = time.perf_counter()
        adapted = adapt_table(source, [space], args.n, progress=False)
        print(f"adapted {space} with {args.n} networks in {time.perf_counter() - start:.1f} s "
              f"({adapted.calibration(space)['model']} calibration)", flush=True)
        adapted.name = "adapted"
        compared = [*tables, (f"adapted ({args.n} nets)", adapted)]
        if args.reference:
            compared.append(("profiled here", load_table(args.reference)))
        results = compare_tables([t for _, t in compared], space, n=args.v,
                                 backend=backend_for(source), sampler="spread", progress=False)
        print(f"\n| {space}, {args.v} fresh spread nets: table | MAPE | within ±10 % | max | "
              "mean error | drift-normalised MAPE, within ±10 %, max |\n"
              "|---|---:|---:|---:|---:|---|")
        for (label, _), result in zip(compared, results, strict=True):
            n = result.normalised
            normalised = (f"{n['mape']:.2f} %, {n['within_10pct']:.1f} %, {n['max_error']:.1f} %"
                          if n else "(foreign table)")
            print(f"| {label} | {result.mape:.2f} % | {result.within_10pct:.1f} % | "
                  f"{result.max_error:.1f} % | {result.frame['error_pct'].mean():+.2f} % | "
                  f"{normalised} |")
        print(f"reference kernel {results[0].reference_now_ms:.4f} ms here, "
              f"{results[0].reference_ms:.4f} ms where the source was profiled")
        generator = torch.Generator().manual_seed(VALIDATION_SEED)
        specs = [spread_sample(get_space(space), generator) for _ in range(args.v)]
        again = measure_archs(specs, backend_for(source), progress=False)
        floor = errors(again.raw_ms, results[0].frame["raw_ms"].tolist())
        print(f"noise floor (the same nets measured again): MAPE {floor['mape']:.2f} %, "
              f"within ±10 % {floor['within_10pct']:.1f} %, max {floor['max_error']:.1f} %")


if __name__ == "__main__":
    main()
