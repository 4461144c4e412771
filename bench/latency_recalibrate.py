"""Re-fit a measured table's affine whole-network calibration without re-profiling its ops.

Loads TABLE (a name or a CSV), runs ``latency_predictors.calibrate`` for each space (fit and
validation sets of ``spread_sample`` architectures, measured end to end with the table's own
backend) and writes the table back in place (atomically). Then quote the accuracy from
``hwnas validate --device TABLE --sampler spread`` (a third seed).

    python bench/latency_recalibrate.py latency_predictors/tables/cpu.csv \
        --space cifar,proxyless-cifar
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latency_predictors import calibrate, load_table, save_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="table CSV to re-calibrate in place")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    table = load_table(args.table)
    for space in args.space.split(","):
        table = calibrate(table, space, n=args.n)
        entry = table.calibration(space)
        print(f"{space}: applied={entry['applied']} scale={entry['scale']} offset_ms="
              f"{entry['offset_ms']} held-out MAPE {entry['mape_before']} % -> "
              f"{entry['mape_after']} %, within ±10 % {entry['within_10pct_before']} % -> "
              f"{entry['within_10pct_after']} %")
    print(f"wrote {save_table(table, Path(args.table))}")


if __name__ == "__main__":
    main()
