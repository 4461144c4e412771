"""Rebuild the shipped `cpu` table: profile `cifar`, `proxyless-cifar` and `hybrid-cifar` on
this CPU with onnxruntime (CPU EP, 1 thread, ops timed alone, the profiler's default passes and
repeats) and fit each space's whole-network calibration. Profiling adds only missing rows:
delete the old table first (or pass a new ``--out``) to re-profile.
CPU-heavy: run it as

    flock /tmp/hwnas-cpu.lock python bench/latency_make_tables.py [--out DIR/NAME]
"""

from __future__ import annotations

import argparse
import time

from latency_predictors import calibrate, load_table, profile_table, save_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="latency_predictors/tables/cpu")
    parser.add_argument("--spaces", default="cifar,proxyless-cifar,hybrid-cifar")
    parser.add_argument("-n", type=int, default=80, help="calibration architectures per space")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="re-fit the calibration of the existing table only")
    args = parser.parse_args()
    for space in args.spaces.split(","):
        start = time.perf_counter()
        if args.calibrate_only:
            table = load_table(args.out + ".csv")
        else:
            table = profile_table(space, "onnxruntime", "cpu", name="cpu", out=args.out)
            print(f"profiled {space}: {len(table.frame)} rows in table, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        table = calibrate(table, space, n=args.n)
        entry = table.calibration(space)
        print(f"calibrated {space} in {time.perf_counter() - start:.1f} s: {entry}", flush=True)
        save_table(table, args.out)


if __name__ == "__main__":
    main()
