"""Does the Optuna budget calibration put E[LAT] at the budget? One calibration, every trial.

Runs ``nas.tune.calibrate_budget.calibrate_strength`` (the code behind ``hwnas search
--calibrate-budget``) on Fashion-MNIST, the ``cifar`` space and a latency table, and prints for
each trial the loss strength, the final expected latency and its gap to the budget, and the
derived architecture's predicted latency. A short search moves α little at the paper's Adam rate
(1e-3), so the defaults here take more architecture steps (one per weight step) at a larger
rate; the printed settings say which.

    python bench/calibrate_budget.py --budget 1.5 --trials 6 --out /tmp/calib
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from nas import SearchConfig, load_constraints
from nas.tune.calibrate_budget import calibrate_strength
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=float, default=1.5, help="ms")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--loss", default="mul_log")
    parser.add_argument("--data-limit", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--arch-lr", type=float, default=0.01)
    parser.add_argument("--arch-every", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true", help="continue (or extend) OUT")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = SearchConfig((args.device,), (args.budget,), out=args.out, loss=args.loss,
                          data_limit=args.data_limit, epochs=args.epochs,
                          warmup_epochs=args.warmup_epochs, batch_size=32,
                          arch_lr=args.arch_lr, arch_every=args.arch_every, progress=False,
                          resume=args.resume)
    constraints = load_constraints(get_space(config.space), config.devices, config.budgets_ms)
    print(json.dumps({k: v for k, v in config.to_dict().items() if v is not None}))
    start = time.perf_counter()
    result = calibrate_strength(config, constraints, args.trials)
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader((Path(args.out) / "calibration" / "calibration.csv").open()))
    print(f"{'trial':>5} {'strength':>9} {'E[LAT] ms':>10} {'gap':>7}  arch")
    for r in rows:
        print(f"{r['trial']:>5} {float(r['strength']):9.4g} "
              f"{float(r[f'expected_ms[{args.device}]']):10.4g} {float(r['gap']):+7.3f}  "
              f"{r['arch']}")
    summary = json.loads((Path(args.out) / "summary.json").read_text())["calibration"]
    print(f"chosen strength {summary['strength']:.4g} (trial {summary['trial']}), "
          f"|gap| {summary['abs_budget_gap']:.3f}; derived architecture predicted "
          f"{result.latency_ms[args.device]:.4g} ms (budget {args.budget:g}); {seconds:.0f} s")


if __name__ == "__main__":
    main()
