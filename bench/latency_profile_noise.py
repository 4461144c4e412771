"""How reproducible is a profiled table? Entry-by-entry agreement of fresh profiles.

Profiles SPACE ``--runs`` times into temporary tables (onnxruntime CPU EP, 1 thread, the
profiler's defaults unless ``--passes`` / ``--repeats`` say otherwise) and reports, for each
run against the first and against a reference table (default: the shipped ``cpu`` table),
the median and largest entry ratio and how many entries differ by more than 10 %.
CPU-heavy: run it as

    flock /tmp/hwnas-cpu.lock python bench/latency_profile_noise.py [--space cifar] [--runs 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from latency_predictors import load_table
from latency_predictors.measure.profile import PROFILE_PASSES, PROFILE_REPEATS, profile_table
from latency_predictors.table import KEY_COLUMNS


def ratios(frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    merged = frame.merge(reference, on=list(KEY_COLUMNS), suffixes=("", "_ref"))
    return (merged["median_ms"] / merged["median_ms_ref"]).to_numpy()


def describe(name: str, r: np.ndarray) -> str:
    off = np.abs(np.log(r))
    return (f"{name}: {len(r)} entries, median |ratio-1| {np.median(np.abs(r - 1)) * 100:.2f} %, "
            f"largest {(np.exp(off.max()) - 1) * 100:.1f} %, "
            f"{int((off > np.log(1.1)).sum())} entries off by > 10 %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--passes", type=int, default=PROFILE_PASSES)
    parser.add_argument("--repeats", type=int, default=PROFILE_REPEATS)
    parser.add_argument("--reference", default="cpu", help="table name or path to compare with")
    args = parser.parse_args()
    frames = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            table = profile_table(args.space, "onnxruntime", "cpu", name="noise",
                                  out=Path(folder) / f"run{run}.csv", repeats=args.repeats,
                                  passes=args.passes, progress=False)
            seconds = table.metadata["profile_seconds"][args.space]
            print(f"run {run}: {len(table.frame)} ops in {seconds:.1f} s "
                  f"({args.passes} passes x {args.repeats} repeats)", flush=True)
            frames.append(table.frame)
    reference = load_table(args.reference).frame
    for run, frame in enumerate(frames):
        if run:
            print(describe(f"run {run} vs run 0", ratios(frame, frames[0])))
        print(describe(f"run {run} vs {args.reference}", ratios(frame, reference)))


if __name__ == "__main__":
    main()
