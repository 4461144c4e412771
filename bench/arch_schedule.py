"""How far α moves in a short search, per architecture-lr schedule: the basis of the default
``arch_travel`` (``nas.core.config``).

One short search per setting on the same data, seed and budget: ProxylessNAS's fixed Adam lr
1e-3, and the schedule ``lr = travel / architecture steps`` for several travels. Reports the
final mean entropy of p (uniform: log K), the mean probability of the derived net's
candidates, E[LAT] against the budget, and the derived net's test accuracy with inherited
weights (BatchNorm re-estimated).

    python bench/arch_schedule.py --travels 3,10,30 --out runs/arch-schedule
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from nas import SearchConfig, search
from nas.run.checkpoint import load_checkpoint
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--budget", type=float, default=0.8, help="ms")
    parser.add_argument("--loss", default=SearchConfig.loss)
    parser.add_argument("--travels", default="3,10,30")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = [("fixed lr 1e-3", {"arch_lr": 1e-3})] + [
        (f"travel {t}", {"arch_travel": float(t)}) for t in args.travels.split(",")]
    uniform = math.log(len(get_space("cifar").candidates))
    print(f"| schedule | arch lr | entropy of p (uniform {uniform:.2f}) | derived-path p | "
          f"E[LAT] / budget | derived ms | inherited test acc | seconds |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, fields in settings:
        out = Path(args.out) / label.replace(" ", "-")
        config = SearchConfig((args.table,), (args.budget,), dataset=args.dataset,
                              warmup_epochs=args.warmup_epochs, epochs=args.epochs,
                              data_limit=args.data_limit, seed=args.seed, out=str(out),
                              progress=False, resume=(out / "checkpoint.pt").is_file(),
                              loss=args.loss, **fields)
        start = time.perf_counter()
        if not (out / "summary.json").is_file():
            search(config)
        summary = json.loads((out / "summary.json").read_text())
        row = load_checkpoint(out)["history"][-1]
        print(f"| {label} | {row['arch_lr']:.3g} | {row['entropy']:.3f} | "
              f"{row['derived_prob']:.3f} | "
              f"{row[f'expected_ms[{args.table}]'] / args.budget:.3f} | "
              f"{row[f'derived_ms[{args.table}]']:.3f} | "
              f"{summary['test_accuracy_inherited']:.4f} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
