"""Does the supernet rank architectures like stand-alone training does? (Yu et al., "Evaluating
the Search Phase of Neural Architecture Search", ICLR 2020.)

``--archs`` architectures of the ``cifar`` space spread over the latency range of the table
(each the knapsack optimum of i.i.d. Gumbel scores under a budget between the smallest
latency and the expected latency of a uniform net) are scored twice:

- stand-alone: trained from scratch with one recipe (``nas.retrain.Recipe``) on the weight
  split, test accuracy;
- one-shot: test accuracy with the weights inherited from a supernet trained for
  ``--supernet-epochs`` with uniformly sampled paths (the search's warm-up), BatchNorm
  re-estimated on training data, once per weight mode (``shared``, ``separate``).

Reports Kendall τ and Spearman ρ between the two rankings per weight mode, and with
``--noise-seed`` the agreement of the stand-alone ranking with itself under another training
seed: the ceiling any one-shot ranking can be measured against at this size. Stand-alone scores
and one-shot results are cached in ``OUT``, so a killed run resumes.

    python bench/ranking.py --dataset fashion-mnist --out runs/ranking
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy import stats

from hwnas_common.fileio import atomic_write_text
from latency_predictors import latency_matrix, load_table
from nas import SearchConfig, solve
from nas.core.constraints import Constraint
from nas.core.engine import SearchEngine
from nas.deploy.retrain import Recipe, train_child
from nas.run.data import prepare_data
from nas.run.distributed import default_device
from nas.run.evaluate import recalibrate_batchnorm, top1_accuracy
from search_spaces import ArchSpec, Supernet, build, get_space


def spread_archs(table: str, n: int, seed: int) -> list[ArchSpec]:
    space = get_space("cifar")
    matrix = latency_matrix(space, load_table(table))
    low = matrix.fixed_ms + sum(min(row) for row in matrix.per_layer)
    high = matrix.fixed_ms + sum(statistics.mean(row) for row in matrix.per_layer)
    generator = torch.Generator().manual_seed(seed)
    specs = []
    for i in range(n):
        budget = low + (high - low) * (i + 1) / n
        constraint = Constraint(matrix, budget, table)
        uniform = torch.rand(space.num_layers, len(space.candidates), generator=generator)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))
        specs.append(space.spec_from_indices(solve(gumbel.tolist(),
                                                   [constraint])))
    return specs


def standalone(specs: list[ArchSpec], splits, recipe: Recipe, cache: Path,
               start: float) -> list[float]:
    """Test accuracy of each spec trained from scratch with ``recipe`` (cached in ``cache``)."""
    alone: dict[str, float] = json.loads(cache.read_text()) if cache.is_file() else {}
    for spec in specs:
        key = spec.to_string()
        if key not in alone:
            torch.manual_seed(recipe.seed)
            model = train_child(build(spec).to(default_device()), splits.weight, recipe,
                                progress=False)
            alone[key] = top1_accuracy(model.eval(), splits.test.in_order())
            atomic_write_text(cache, json.dumps(alone, indent=1) + "\n")
        print(f"stand-alone (seed {recipe.seed}) {alone[key]:.4f}  {key}  "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    return [alone[s.to_string()] for s in specs]


def train_supernet(config: SearchConfig, splits, epochs: int) -> Supernet:
    """The search's warm-up: weight steps on uniformly sampled paths, cosine lr."""
    space = get_space(config.space)
    matrix = latency_matrix(space, load_table(config.devices[0]))
    engine = SearchEngine(Supernet(space, config.weights),
                          [Constraint(matrix, config.budgets_ms[0], "cpu")], config,
                          default_device())
    generator = torch.Generator().manual_seed(config.seed + 1)
    steps = len(splits.weight) // config.batch_size
    for epoch in range(epochs):
        for step, (x, y) in enumerate(splits.weight.epoch(config.batch_size, generator,
                                                           augment=True)):
            engine.set_lr((epoch * steps + step) / (epochs * steps))
            engine.weight_step(x, y, uniform=True)
    return engine.supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--weights", default="shared,separate")
    parser.add_argument("--supernet-epochs", type=int, default=8)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seed", type=int, help="also train every arch with this seed "
                        "and report the stand-alone ranking's own agreement (noise ceiling)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    config = SearchConfig((args.table,), (100.0,), dataset=args.dataset,
                          batch_size=args.batch_size, data_limit=args.data_limit,
                          seed=args.seed, progress=False)
    splits = prepare_data(config, default_device())
    specs = spread_archs(args.table, args.archs, args.seed)
    recipe = Recipe(args.train_epochs, args.batch_size, config.weight_lr, config.weight_decay,
                    args.seed)
    truth = standalone(specs, splits, recipe, out / "standalone.json", start)
    if args.noise_seed is not None:  # the same recipe with another seed: the noise ceiling
        again = standalone(specs, splits, replace(recipe, seed=args.noise_seed),
                           out / f"standalone-seed{args.noise_seed}.json", start)
        print(f"\nstand-alone seed {args.seed} vs seed {args.noise_seed} (noise ceiling): "
              f"Kendall τ {stats.kendalltau(truth, again)[0]:.3f}, Spearman ρ "
              f"{stats.spearmanr(truth, again)[0]:.3f}, mean |Δacc| "
              f"{statistics.mean(abs(a - b) for a, b in zip(truth, again, strict=True)):.4f}")
    rows = {}
    for weights in args.weights.split(","):
        path = out / f"oneshot-{weights}.json"
        if path.is_file():
            rows[weights] = json.loads(path.read_text())
            continue
        torch.manual_seed(args.seed)
        began = time.perf_counter()
        supernet = train_supernet(SearchConfig(**{**config.to_dict(), "weights": weights,
                                                  "devices": config.devices,
                                                  "budgets_ms": config.budgets_ms}),
                                  splits, args.supernet_epochs)
        seconds = time.perf_counter() - began
        accs = []
        for spec in specs:
            child = recalibrate_batchnorm(supernet.child(spec),
                                          splits.weight.in_order(args.batch_size, limit=2000))
            accs.append(top1_accuracy(child, splits.test.in_order()))
        tau, rho = stats.kendalltau(accs, truth)[0], stats.spearmanr(accs, truth)[0]
        rows[weights] = {"inherited": accs, "kendall_tau": float(tau),
                         "spearman_rho": float(rho), "supernet_seconds": seconds}
        atomic_write_text(path, json.dumps(rows[weights], indent=1) + "\n")
    print("\n| weights | Kendall τ | Spearman ρ | inherited acc (mean) | stand-alone acc (mean) |"
          " supernet training |\n|---|---:|---:|---:|---:|---:|")
    for weights, row in rows.items():
        print(f"| {weights} | {row['kendall_tau']:.3f} | {row['spearman_rho']:.3f} | "
              f"{statistics.mean(row['inherited']):.4f} | {statistics.mean(truth):.4f} | "
              f"{row['supernet_seconds']:.0f} s |")
    print(f"\n{args.archs} archs, {args.dataset}, {args.data_limit} images, supernet "
          f"{args.supernet_epochs} epochs, stand-alone {args.train_epochs} epochs; "
          f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
