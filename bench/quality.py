"""Search quality, seeded and CPU-sized: does the search beat random nets under the same budget?

For every data set and seed, five arms each end in one network under one latency budget on
one table, and every network is trained from scratch with one recipe
(``nas.retrain.Recipe``) on the search's weight split; accuracy is on the test split:

- ``shared``: ``hwnas search`` in the ``cifar`` space (interaction blocks), weight-shared
  supernet, knapsack-derived;
- ``separate``: the same with one weight set per candidate;
- ``random``: random ``cifar`` nets that fit the budget (each the knapsack optimum of i.i.d.
  Gumbel scores: random, feasible, and using the budget the way a searched net does), trained
  one after another until their training time reaches the ``shared`` arm's search plus
  retraining time (equal compute, at least 2 nets). Reported: the best by held-out accuracy
  (``random``) and the mean of all (``random_mean``);
- ``mbconv``: ``hwnas search`` in the ``proxyless-cifar`` (MBConv) space;
- ``hybrid``: ``hwnas search`` in the ``hybrid-cifar`` space (interaction blocks, MBConv and
  skip in one supernet).

After all training, every final net is timed end to end at batch 1 (onnxruntime CPU EP,
1 thread) next to its predicted latency, so no timing overlaps training. Every finished arm
is cached in ``OUT``, so a killed run resumes where it stopped.

    python bench/quality.py --datasets fashion-mnist,../shared/data/cifar10_jpg.tar.gz \\
        --seeds 0,1,2 --out runs/quality
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from hwnas_common.fileio import atomic_write_text
from latency_predictors import latency_matrix, load_table, make_backend, measure_latency
from nas import SearchConfig, search, solve
from nas.core.constraints import Constraint
from nas.deploy.retrain import Recipe, train_child
from nas.run.data import Splits, prepare_data
from nas.run.distributed import default_device
from nas.run.evaluate import top1_accuracy
from search_spaces import ArchSpec, build, get_space

SEARCH_ARMS = {"shared": ("cifar", "shared"), "separate": ("cifar", "separate"),
               "mbconv": ("proxyless-cifar", "shared"), "hybrid": ("hybrid-cifar", "shared")}
ARMS = ("shared", "separate", "random", "mbconv", "hybrid")


def default_budget(table: str, fraction: float) -> float:
    """``fraction`` of the way from the smallest latency every space reaches to the expected
    latency of a uniform ``cifar`` net."""
    lows = []
    for space in ("cifar", "proxyless-cifar", "hybrid-cifar"):
        matrix = latency_matrix(get_space(space), load_table(table))
        lows.append(matrix.fixed_ms + sum(min(row) for row in matrix.per_layer))
    cifar = latency_matrix(get_space("cifar"), load_table(table))
    uniform = cifar.fixed_ms + sum(statistics.mean(row) for row in cifar.per_layer)
    return round(max(lows) + fraction * (uniform - max(lows)), 4)


def random_spec(table: str, budget: float, generator: torch.Generator) -> ArchSpec:
    space = get_space("cifar")
    constraint = Constraint(latency_matrix(space, load_table(table)), budget, table)
    uniform = torch.rand(space.num_layers, len(space.candidates), generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))
    return space.spec_from_indices(solve(gumbel.tolist(), [constraint]))


def train_and_score(spec: ArchSpec, splits: Splits, recipe: Recipe) -> dict[str, float]:
    torch.manual_seed(recipe.seed)
    model = build(spec).to(default_device())
    start = time.perf_counter()
    train_child(model, splits.weight, recipe, progress=False)
    model.eval()
    return {"heldout_acc": top1_accuracy(model, splits.arch.in_order()),
            "test_acc": top1_accuracy(model, splits.test.in_order()),
            "train_seconds": time.perf_counter() - start}


def base_config(args: argparse.Namespace, dataset: str, seed: int, folder: Path,
                arm: str) -> SearchConfig:
    space, weights = SEARCH_ARMS.get(arm, ("cifar", "shared"))
    return SearchConfig((args.table,), (args.budget,), space=space, weights=weights,
                        loss=args.loss,
                        dataset=dataset, epochs=args.search_epochs,
                        warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                        data_limit=args.data_limit, seed=seed, out=str(folder / f"{arm}-search"),
                        progress=False)


def search_arm(config: SearchConfig, splits: Splits, recipe: Recipe) -> dict:
    out = Path(config.out)
    start = time.perf_counter()
    done = (out / "summary.json").is_file()
    if not done:
        search(replace(config, resume=(out / "checkpoint.pt").is_file()))
    summary = json.loads((out / "summary.json").read_text())
    spec = ArchSpec.from_json((out / "arch.json").read_text())
    with open(out / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    search_seconds = summary["search_seconds"] if done else time.perf_counter() - start
    return {"arch": spec.to_string(), "space": config.space,
            **train_and_score(spec, splits, recipe),
            "search_seconds": search_seconds, "entropy": float(last["entropy"]),
            "derived_prob": float(last["derived_prob"]),
            "expected_ms": float(last[f"expected_ms[{config.devices[0]}]"]),
            "inherited_acc": summary["test_accuracy_inherited"]}


def random_arm(args: argparse.Namespace, seed: int, splits: Splits, recipe: Recipe,
               compute_seconds: float) -> dict:
    generator = torch.Generator().manual_seed(1000 + seed)
    nets, spent = [], 0.0
    while len(nets) < 2 or spent < compute_seconds:
        spec = random_spec(args.table, args.budget, generator)
        scores = train_and_score(spec, splits, recipe)
        spent += scores["train_seconds"]
        nets.append((spec, scores))
    spec, best = max(nets, key=lambda n: n[1]["heldout_acc"])
    return {"arch": spec.to_string(), "space": "cifar", **best, "random_n": len(nets),
            "random_seconds": spent, "random_mean_acc": statistics.mean(
                s["test_acc"] for _, s in nets), "random_test_accs": [s["test_acc"]
                                                                    for _, s in nets]}


def run_arm(arm: str, dataset: str, seed: int, args: argparse.Namespace, folder: Path,
            shared_seconds: float | None) -> dict:
    cache = folder / f"{arm}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    config = base_config(args, dataset, seed, folder, arm)
    splits = prepare_data(config, default_device())
    recipe = Recipe(args.retrain_epochs, args.batch_size, config.weight_lr, config.weight_decay,
                    seed)
    if arm == "random":
        row = random_arm(args, seed, splits, recipe, shared_seconds or 0.0)
    else:
        row = search_arm(config, splits, recipe)
    row = {"dataset": Path(dataset).name, "seed": seed, "arm": arm, "budget_ms": args.budget,
           **row}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(row, indent=2) + "\n")
    return row


def predicted_ms(arch: str, space_name: str, table: str) -> float:
    space = get_space(space_name)
    spec = space.spec_from_string(arch)
    return latency_matrix(space, load_table(table)).total(
        [space.candidate_index(layer) for layer in spec.layers])


def measure_all(rows: list[dict], table: str, folder: Path) -> None:
    """Predicted and measured (onnxruntime CPU EP, 1 thread) latency of every final net."""
    cache = folder / "latency.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    backend = make_backend("onnxruntime", "cpu")
    for row in rows:
        key = f"{row['space']}:{row['arch']}"
        if key not in known:
            spec = get_space(row["space"]).spec_from_string(row["arch"])
            known[key] = float(measure_latency(spec, backend)["median_ms"])
            atomic_write_text(cache, json.dumps(known, indent=1) + "\n")
        row["measured_ms"] = known[key]
        row["predicted_ms"] = predicted_ms(row["arch"], row["space"], table)


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def report(rows: list[dict], seeds: list[int]) -> None:
    print("\n| data set | arm | test accuracy (%, mean ± std over seeds) | per seed | "
          "predicted ms | measured ms |\n|---|---|---:|---|---:|---:|")
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        present = [arm for arm in ARMS if any(r["arm"] == arm for r in mine)]
        for arm in (*present, *(["random_mean"] if "random" in present else [])):
            key = "random_mean_acc" if arm == "random_mean" else "test_acc"
            picked = [r for r in mine if r["arm"] == ("random" if arm == "random_mean" else arm)]
            accs = [r[key] for r in picked]
            lat = "" if arm == "random_mean" else (
                f"{statistics.mean(r['predicted_ms'] for r in picked):.3f} | "
                f"{statistics.mean(r['measured_ms'] for r in picked):.3f}")
            print(f"| {dataset} | {arm} | {mean_std(accs)} | "
                  f"{' '.join(f'{100 * a:.1f}' for a in accs)} | {lat or ' | '} |")
        shared = {r["seed"]: r["test_acc"] for r in mine if r["arm"] == "shared"}
        random = {r["seed"]: r["test_acc"] for r in mine if r["arm"] == "random"}
        gaps = [shared[s] - random[s] for s in seeds if s in shared and s in random]
        if gaps:
            print(f"| {dataset} | shared − random (paired) | {mean_std(gaps)} | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion-mnist,../shared/data/cifar10_jpg.tar.gz")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--loss", default=SearchConfig.loss, help="latency loss of the search "
                        "arms")
    parser.add_argument("--budget", type=float, help="ms (default: --fraction of the range)")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-limit", type=int, default=3000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.budget is None:
        args.budget = default_budget(args.table, args.fraction)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    start = time.perf_counter()
    rows = []
    for dataset in args.datasets.split(","):
        for seed in seeds:
            folder = out / Path(dataset).name / f"seed{seed}"
            shared_seconds = None
            for arm in arms:
                row = run_arm(arm, dataset, seed, args, folder, shared_seconds)
                if arm == "shared":
                    shared_seconds = row["search_seconds"] + row["train_seconds"]
                rows.append(row)
                print(f"{row['dataset']} seed {seed} {arm:>8}: test {row['test_acc']:.4f} "
                      f"held-out {row['heldout_acc']:.4f}  {row['arch']}  "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
    train_seconds = time.perf_counter() - start
    measure_all(rows, args.table, out)
    fields = ["dataset", "seed", "arm", "space", "budget_ms", "arch", "predicted_ms",
              "measured_ms", "heldout_acc", "test_acc", "inherited_acc", "random_mean_acc",
              "random_n", "entropy", "derived_prob", "expected_ms", "search_seconds",
              "train_seconds"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    report(rows, seeds)
    print(f"\nbudget {args.budget:g} ms on table {args.table!r}; {args.data_limit} images per "
          f"split, {args.warmup_epochs} + {args.search_epochs} search epochs, retrain "
          f"{args.retrain_epochs} epochs (batch {args.batch_size}, SGD cosine); training "
          f"{train_seconds:.0f} s, with latency measurement {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
