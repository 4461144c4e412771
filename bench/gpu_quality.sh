#!/usr/bin/env bash
# The search-quality protocol at full size on one CUDA GPU (CI never has one): every arm of
# bench/quality.py for the headline seeds (Fashion-MNIST 0-9, CIFAR-10 0-7) and the
# development seeds (100-102), then the reports and the in-band ranking.
# Seeds run as parallel processes (one per seed, $JOBS at a time) sharing the GPU; every piece
# is cached under $OUT, so a rerun after a kill or a timeout continues.
# Usage: bench/gpu_quality.sh [--dry-run]      (run from the repository root)
#   OUT=runs/quality-gpu JOBS=8 CIFAR=/path/to/cifar10_jpg.tar.gz bench/gpu_quality.sh
set -euo pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "gpu_quality.sh: error: unknown option $arg" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-runs/quality-gpu}
JOBS=${JOBS:-8}
CIFAR=${CIFAR:-../shared/data/cifar10_jpg.tar.gz}
ARMS=${ARMS:-pool,pool-mbconv,pool-hybrid,baseline,hwnas,mbconv,hybrid}
PY=${PY:-python}

jobs_for() {  # DATASET SEEDS... -> one line per (dataset, seed)
  local dataset=$1
  shift
  for seed in "$@"; do echo "$dataset $seed"; done
}
{
  jobs_for fashion-mnist 0 1 2 3 4 5 6 7 8 9 100 101 102
  jobs_for "$CIFAR" 0 1 2 3 4 5 6 7 100 101 102
} > "${TMPDIR:-/tmp}/gpu_quality_jobs.txt"

start=$(date +%s)
if [[ $DRY == 1 ]]; then
  while read -r dataset seed; do
    echo "+ $PY bench/quality.py --datasets $dataset --seeds $seed --arms $ARMS --threads 2 --out $OUT"
  done < "${TMPDIR:-/tmp}/gpu_quality_jobs.txt"
  exit 0
fi
mkdir -p "$OUT"
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 sh -c '"$0" bench/quality.py --datasets "$1" --seeds "$2" --arms "$3" \
    --threads 2 --out "$4" > "$4/log-$(basename "$1" | cut -d. -f1)-$2.txt" 2>&1' \
    "$PY" < <(sed "s|\$| $ARMS $OUT|" "${TMPDIR:-/tmp}/gpu_quality_jobs.txt")
$PY bench/quality.py --report --out "$OUT" | tee "$OUT/report.md"
for arm in hybrid hwnas; do
  $PY bench/ranking.py --quality "$OUT" --arm "$arm" | tee "$OUT/ranking-$arm.md"
done
echo "gpu_quality.sh: done in $(( $(date +%s) - start )) s; results in $OUT"
