#!/usr/bin/env bash
# A measured GPU table in <= 10 min of GPU time, on a CUDA machine (CI never has one):
#   1. hwnas profile --backend torch --ep cuda        (eager kernels)   -> tables/GPU.csv
#   2. hwnas profile --backend torch --ep cuda-graph  (CUDA graphs)     -> tables/GPU-graph.csv
#   3. hwnas validate on the GPU: 30 spread cifar nets measured end to end vs each table
#   4. bench/gpu_refit_a100.py: the analytical model fitted on the eager table and moved to the
#      A100 by the datasheet ratio (documented assumption)                -> tables/a100.csv
# GPU is the GPU's real name (from nvidia-smi: h100, h200, a100, ...), or pass it as $1.
# Usage: bench/gpu_tables.sh [GPU] [--dry-run]      (run from the repository root)
# Ship the result by copying tables/GPU.{csv,json} to latency_predictors/tables/.
set -euo pipefail

DRY=0
GPU=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    -*) echo "gpu_tables.sh: error: unknown option $arg" >&2; exit 2 ;;
    *) GPU="$arg" ;;
  esac
done
if [[ -z "$GPU" ]]; then
  if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_tables.sh: error: no nvidia-smi; give the GPU name as the first argument" >&2
    exit 2
  fi
  # "NVIDIA H200" -> h200, "NVIDIA A100-SXM4-40GB" -> a100
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 \
        | sed -E 's/^NVIDIA //; s/[- ].*//' | tr 'A-Z' 'a-z')
fi
OUT=${OUT:-tables}
SPACES=${SPACES:-cifar,proxyless-cifar,imagenet,proxyless-imagenet}
HWNAS=${HWNAS:-hwnas}
run() {
  echo "+ $*"
  if [[ $DRY == 0 ]]; then "$@"; fi
}
mkdir -p "$OUT"
start=$(date +%s)
run $HWNAS profile --backend torch --ep cuda --space "$SPACES" --name "$GPU" \
    --out "$OUT/$GPU" --calibrate 30 --quiet
run $HWNAS profile --backend torch --ep cuda-graph --space "$SPACES" --name "$GPU-graph" \
    --out "$OUT/$GPU-graph" --calibrate 30 --quiet
for table in "$GPU" "$GPU-graph"; do
  run $HWNAS validate --device "$OUT/$table.csv" --space cifar -n 30 --sampler spread --quiet \
      --out "$OUT/validate-$table"
done
if [[ $DRY == 1 ]]; then  # checks the GPU name and the arguments without a table
  python bench/gpu_refit_a100.py --measured "$OUT/$GPU.csv" --gpu "$GPU" --out "$OUT" --dry-run
else
  run python bench/gpu_refit_a100.py --measured "$OUT/$GPU.csv" --gpu "$GPU" --out "$OUT"
fi
echo "done in $(( $(date +%s) - start )) s: $OUT/$GPU.csv (eager), $OUT/$GPU-graph.csv" \
     "(CUDA graphs), $OUT/a100.csv (refitted estimate)"
