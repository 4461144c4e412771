"""Refit the estimated `a100` table on a GPU that was measured here (bench/gpu_tables.sh).

The analytical model (``latency_predictors.estimate.roofline``) is fitted on the measured
table's rows (every op of the table is one "anchor": efficiencies of the three node classes,
per-node and per-call overhead, leave-one-out error;
``latency_predictors.estimate.anchors.fit_anchored``). Then the device is swapped for the A100
by the datasheet ratio, the documented assumption of this transfer: the fitted efficiencies and
the per-node (kernel launch) overhead carry over, and only the peak FP32 rate and the memory
bandwidths change to the A100's (19.5 TFLOPS, 1555 GB/s HBM2, 40 MB L2). The per-call constant
of the fit (what timing one op alone costs on top of its kernels) becomes the per-inference
overhead. The result is written as ``OUT/a100.csv`` (still ESTIMATED, labelled "anchored on N
rows measured on GPU"); copy it over ``latency_predictors/tables/a100`` only after comparing it
with the shipped one.

    python bench/gpu_refit_a100.py --measured tables/h200.csv --gpu h200 --out tables
    python bench/gpu_refit_a100.py --measured X --gpu h200 --out Y --dry-run   # check only
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from hwnas_common.errors import HwnasError
from latency_predictors import load_table, save_table
from latency_predictors.estimate.anchors import Anchor, fit_anchored
from latency_predictors.estimate.roofline import DeviceModel, row_costs
from latency_predictors.estimate.tables import estimate_table

# datasheet FP32 (non-tensor) peak GFLOPS, DRAM GB/s, L2 MB; cache bandwidth taken as 3x DRAM
DATASHEETS = {
    "a100": (19_500, 1555, 40), "h100": (67_000, 3350, 50), "h200": (67_000, 4800, 50),
    "l40s": (91_600, 864, 96), "a10": (31_200, 600, 6), "t4": (8_100, 320, 4),
}


def gpu_model(name: str) -> DeviceModel:
    """The a-priori model of a datasheet GPU (fp32, eager kernels)."""
    if name not in DATASHEETS:
        raise HwnasError(f"no datasheet for GPU {name!r}; known: {sorted(DATASHEETS)}")
    peak, dram, l2 = DATASHEETS[name]
    return DeviceModel(name, f"{name} fp32 kernels", peak, dram, 3 * dram, l2, 5.0, 20.0,
                       eff={"dense": 0.3, "depthwise": 0.1, "elementwise": 0.25})


def refit(measured_path: str, gpu: str, out: str) -> None:
    measured = load_table(measured_path)
    if measured.estimated:
        raise HwnasError(f"{measured_path} is an estimated table; give the table measured on "
                         f"the {gpu}")
    spaces = list(measured.metadata["spaces"])
    costs = row_costs(spaces)
    rows = measured.lookup()
    keys = [k for k in costs if k in rows]
    anchors = [Anchor(gpu, repr(k), rows[k], True, measured.metadata["mode"], "fp32", 1,
                      measured_path, "row", "") for k in keys]
    fit = fit_anchored(gpu_model(gpu), anchors, {repr(k): costs[k] for k in keys})
    print(f"{gpu}: fitted on {len(keys)} measured rows: in-sample MAPE {fit.fit_mape:.1f} %, "
          f"leave-one-out {fit.loo_mape:.1f} %, {fit.summary()['params']}")
    peak, dram, l2 = DATASHEETS["a100"]
    a100 = replace(fit.model, name="a100", peak_gflops=peak, dram_gbs=dram, cache_gbs=3 * dram,
                   cache_mb=l2, description=f"NVIDIA A100 SXM4 40GB, fp32, model fitted on "
                   f"{gpu} measurements ({measured.metadata['mode']}) and moved to the A100 by "
                   "the datasheet ratio of peak FP32 and bandwidth")
    anchoring = {**fit.summary(), "what": f"rows measured on {gpu}", "anchors": [],
                 "anchors_file": measured_path}
    table = estimate_table(a100, spaces, costs=costs, anchoring=anchoring)
    print("wrote", save_table(table, f"{out}/a100"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", required=True, help="table measured on the GPU")
    parser.add_argument("--gpu", required=True, help=f"GPU name, one of {sorted(DATASHEETS)}")
    parser.add_argument("--out", required=True, help="folder for a100.csv + a100.json")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments only")
    args = parser.parse_args()
    try:
        gpu_model(args.gpu)
        if args.dry_run:
            print(f"dry run: would refit a100 on {args.measured} ({args.gpu}) into {args.out}")
            return
        refit(args.measured, args.gpu, args.out)
    except HwnasError as err:
        sys.exit(f"gpu_refit_a100: error: {err}")


if __name__ == "__main__":
    main()
