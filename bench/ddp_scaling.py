"""Data-parallel search speed: the same search on 1 process and on N torchrun processes.

Runs ``hwnas search`` (same data, seed, global batch) once per process count, each process with
``--threads`` threads (default 1), and compares the search-phase epoch time (``metrics.csv``,
evaluation excluded) and the derived architectures. CPU: gloo; a GPU host uses NCCL with one
GPU per process.

    python bench/ddp_scaling.py --procs 1,2 --out /tmp/ddp
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path


def run(procs: int, args: argparse.Namespace) -> tuple[float, str]:
    out = Path(args.out) / f"p{procs}"
    shutil.rmtree(out, ignore_errors=True)
    hwnas = ["search", "--device", args.device, "--budget", args.budget, "--dataset",
             args.dataset, "--data-limit", str(args.data_limit), "--batch-size",
             str(args.batch_size), "--warmup-epochs", "1", "--epochs", str(args.epochs),
             "--out", str(out)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={procs}", "--no-python", "hwnas"] if procs > 1
                else ["hwnas"])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(launcher + hwnas, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    search = [float(r["seconds"]) for r in rows if r["phase"] == "search"]
    return sum(search) / len(search), (out / "arch.json").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", default="2ms")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-limit", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = {n: run(n, args) for n in (int(p) for p in args.procs.split(","))}
    base, base_arch = results[min(results)]
    for n, (seconds, arch) in results.items():
        print(f"{n} process(es): {seconds:.1f} s per search epoch, speed-up "
              f"{base / seconds:.2f}x; same architecture as {min(results)}: {arch == base_arch}")


if __name__ == "__main__":
    main()
