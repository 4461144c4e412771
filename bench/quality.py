"""Search quality: hwnas in the QuadraNet-style space vs random-under-budget vs the MBConv space.

For each latency table and budget, three arms end in one network each, and every network is
trained from scratch with one identical recipe (``nas.retrain.Recipe``) on the search's weight
split; accuracy is reported on the test split:

- ``hwnas``: ``hwnas search`` in the ``cifar`` space (interaction blocks), knapsack-derived;
- ``random``: the best of N random architectures of the ``cifar`` space that fit the budget,
  chosen by held-out (architecture split) accuracy after the same recipe. Each is the knapsack
  optimum of i.i.d. Gumbel scores under the budget: random, always feasible, and using the
  budget the way a searched network does (uniform sampling with rejection mostly returns
  networks far below the budget, a weaker baseline);
- ``proxyless``: ``hwnas search`` in the ``proxyless-cifar`` (MBConv) space.

Budgets default to three points between the smallest latency both spaces can reach and the
expected latency of a uniform ``cifar`` architecture. Latency: predicted by the table, and
measured end to end at batch 1 with ``--measure`` (``torch:cuda`` on a GPU host,
``onnxruntime:cpu`` here). Every finished arm is cached in ``OUT``, so a killed run resumes.

    python bench/quality.py --data ../shared/data/cifar10_jpg.tar.gz --tables vpu,h100 \\
        --warmup-epochs 2 --search-epochs 6 --retrain-epochs 8 --random 10 \\
        --measure torch:cuda --out runs/quality
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from latency_predictors import latency_matrix, load_table, make_backend, measure_latency
from latency_predictors.predictor import LatencyMatrix
from nas import SearchConfig, search, solve
from nas.constraints import Constraint
from nas.engine import default_device, top1_accuracy
from nas.retrain import Recipe, train_child
from nas.search import Splits, prepare_data
from search_spaces import ArchSpec, build, get_space
from search_spaces.fileio import atomic_write_text

SPACES = {"hwnas": "cifar", "random": "cifar", "proxyless": "proxyless-cifar"}


@functools.cache
def matrix_for(space_name: str, table_name: str) -> LatencyMatrix:
    """The table's latency matrix for the space, loaded once per run."""
    return latency_matrix(get_space(space_name), load_table(table_name))


def default_budgets(table_name: str, fractions: list[float]) -> list[float]:
    lows, uniform = [], 0.0
    for space in ("cifar", "proxyless-cifar"):
        matrix = matrix_for(space, table_name)
        lows.append(matrix.fixed_ms + sum(min(row) for row in matrix.per_layer))
        if space == "cifar":
            uniform = matrix.fixed_ms + sum(statistics.mean(row) for row in matrix.per_layer)
    low = max(lows)
    return [round(low + f * (uniform - low), 4) for f in fractions]


def random_specs(space_name: str, table_name: str, budget: float, n: int,
                 seed: int) -> list[ArchSpec]:
    space = get_space(space_name)
    constraint = Constraint(matrix_for(space_name, table_name), budget, table_name)
    generator = torch.Generator().manual_seed(seed)
    specs = []
    for _ in range(n):
        uniform = torch.rand(space.num_layers, len(space.candidates), generator=generator)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))
        specs.append(space.spec_from_indices(solve(gumbel.tolist(),
                                                   [constraint.device_budget()])))
    return specs


def train_and_score(spec: ArchSpec, splits: Splits, recipe: Recipe) -> dict[str, float]:
    torch.manual_seed(recipe.seed)
    model = build(spec).to(default_device())
    start = time.perf_counter()
    train_child(model, splits.weight, recipe, progress=False)
    model.eval()
    return {"heldout_acc": top1_accuracy(model, splits.arch.in_order()),
            "test_acc": top1_accuracy(model, splits.test.in_order()),
            "train_seconds": time.perf_counter() - start}


def run_arm(arm: str, table: str, budget: float, args: argparse.Namespace,
            folder: Path) -> dict:
    cache = folder / f"{arm}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    space = SPACES[arm]
    base = SearchConfig((table,), (budget,), space=space, dataset=args.data,
                        epochs=args.search_epochs, warmup_epochs=args.warmup_epochs,
                        batch_size=args.batch_size, data_limit=args.data_limit,
                        seed=args.seed, out=str(folder / f"{arm}-search"),
                        progress=not args.quiet)
    splits = prepare_data(base, default_device())
    recipe = Recipe(args.retrain_epochs, args.batch_size, base.weight_lr, base.weight_decay,
                    args.seed)
    start = time.perf_counter()
    if arm == "random":
        candidates = [(spec, train_and_score(spec, splits, recipe))
                      for spec in random_specs(space, table, budget, args.random, args.seed)]
        spec, scores = max(candidates, key=lambda c: c[1]["heldout_acc"])
        extra = {"random_test_accs": [c[1]["test_acc"] for c in candidates]}
    else:
        out = Path(base.out)
        resume = (out / "checkpoint.pt").is_file() and not (out / "summary.json").is_file()
        result = search(replace(base, resume=resume)) if not (out / "summary.json").is_file() \
            else None
        spec = result.spec if result else ArchSpec.from_json((out / "arch.json").read_text())
        scores, extra = train_and_score(spec, splits, recipe), {}
    row = {"table": table, "budget_ms": budget, "arm": arm, "space": space,
           "arch": spec.to_string(), "predicted_ms": predicted_ms(spec, table), **scores,
           "measured_ms": measured_ms(spec, args.measure),
           "arm_seconds": time.perf_counter() - start, **extra}
    atomic_write_text(cache, json.dumps(row, indent=2) + "\n")
    return row


def predicted_ms(spec: ArchSpec, table: str) -> float:
    space = get_space(spec.space)
    indices = [space.candidate_index(layer) for layer in spec.layers]
    return matrix_for(spec.space, table).total(indices)


def measured_ms(spec: ArchSpec, measure: str | None) -> float | None:
    if not measure:
        return None
    backend_name, _, ep = measure.partition(":")
    return float(measure_latency(spec, make_backend(backend_name, ep or None))["median_ms"])


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = sorted({r["table"] for r in rows})
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        for arm, marker in (("hwnas", "o"), ("random", "x"), ("proxyless", "s")):
            mine = [r for r in rows if r["table"] == table and r["arm"] == arm]
            ax.plot([r["predicted_ms"] for r in mine], [r["test_acc"] for r in mine],
                    marker=marker, label=arm)
        ax.set_xlabel(f"predicted latency on {table} (ms)")
        ax.set_ylabel("test accuracy (retrained)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 (tarball, folder or batches)")
    parser.add_argument("--tables", default="vpu,h100")
    parser.add_argument("--fractions", default="0.25,0.5,0.75",
                        help="budgets between the smallest common latency and uniform E[LAT]")
    parser.add_argument("--budgets", help="TABLE=B1,B2,...;TABLE=... in ms (overrides)")
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--search-epochs", type=int, default=6)
    parser.add_argument("--retrain-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-limit", type=int)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", help="BACKEND:EP for measured latency, e.g. torch:cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    given = dict(part.split("=") for part in args.budgets.split(";")) if args.budgets else {}
    fractions = [float(f) for f in args.fractions.split(",")]
    rows = []
    start = time.perf_counter()
    for table in args.tables.split(","):
        budgets = ([float(b.removesuffix("ms")) for b in given[table].split(",")]
                   if table in given else default_budgets(table, fractions))
        for budget in budgets:
            for arm in ("hwnas", "random", "proxyless"):
                row = run_arm(arm, table, budget, args, out / table / f"{budget:g}ms")
                rows.append(row)
                print(f"{table} {budget:g} ms {arm:>9}: test {row['test_acc']:.4f} "
                      f"held-out {row['heldout_acc']:.4f} predicted {row['predicted_ms']:.4g} ms"
                      f" measured {row['measured_ms'] or float('nan'):.4g} ms  {row['arch']}",
                      flush=True)
    fields = ["table", "budget_ms", "arm", "space", "arch", "predicted_ms", "measured_ms",
              "heldout_acc", "test_acc", "train_seconds", "arm_seconds"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n| table | budget | hwnas | random best of {args.random} | proxyless | "
          "hwnas − random | hwnas − proxyless |\n|---|---:|---:|---:|---:|---:|---:|")
    for i in range(0, len(rows), 3):
        h, r, p = rows[i:i + 3]
        print(f"| {h['table']} | {h['budget_ms']:g} ms | {h['test_acc']:.4f} | "
              f"{r['test_acc']:.4f} | {p['test_acc']:.4f} | "
              f"{100 * (h['test_acc'] - r['test_acc']):+.2f} pt | "
              f"{100 * (h['test_acc'] - p['test_acc']):+.2f} pt |")
    plot(out / "quality.png", rows)
    print(f"device {default_device()}; wall {time.perf_counter() - start:.0f} s; "
          f"recipe: {args.retrain_epochs} epochs, batch {args.batch_size}, SGD cosine")


if __name__ == "__main__":
    main()
