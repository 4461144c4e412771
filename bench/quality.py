"""Search quality with a protocol that can tell: paired seeds, a fixed large test set, random
band pools, equal-compute random search, a hand-designed baseline and single-family searches.

Protocol (Lindauer & Hutter, JMLR 2020, is the checklist):

- **Seeds pair everything but the architecture.** Seed s draws the training subset
  (``--train-images`` of the data set's training split), the weight / architecture split,
  the batch order and augmentation of every retraining (``Recipe.seed``) and the
  initialisation (``torch.manual_seed(s)`` before every ``build``). Development seeds
  (``--mode fast``: 100-102) are disjoint from headline seeds (``--mode full``: 0-9).
- **Test set.** ``--test-images`` (default 5,000) of the data set's test split, the same for
  every seed (a fixed permutation): they cost forward passes only.
- **Budget and band.** One budget on one table (default the main job's relative budget, 15 %
  of the way from the fastest ``hybrid-cifar`` net to its slowest, on the shipped ``cpu``
  table as is: this benchmark measures accuracy, the band only has to be the same for every
  arm). The derivation returns nets in ``[floor · B, B]``; so do the random pools.
- **Arms.** Every final net is trained from scratch with one recipe (``--retrain-epochs`` on
  the seed's weight split, SGD nesterov, cosine lr 0.05, batch 64) and scored on the test set:

  - ``pool``: ``--pool`` random band nets of the ``cifar`` space (drawn uniformly from the
    band by the exact sampler, :func:`nas.core.sampler.random_band_nets`), cached per (seed,
    arch) so a lever costs only its own searches. *Random sampling* is the pool's mean;
    *equal-compute random search* is the best by held-out loss of the first N pool nets,
    N = 1 + the search's image-steps over one retraining's (rounded up);
  - ``pool-mbconv`` and ``pool-hybrid``: the same in ``proxyless-cifar`` and ``hybrid-cifar``,
    so a space effect is not taken for a search effect;
  - ``baseline``: a hand-designed net, ``--baseline-token`` in every layer where the budget
    allows and skip elsewhere (the knapsack maximises the number of such layers);
  - ``hwnas`` (the ``cifar`` space, or ``--space``), ``mbconv`` (``proxyless-cifar``) and
    ``hybrid`` (``hybrid-cifar``): ``nas.search`` on the seed's data with the defaults, or the
    ``--set key=value`` overrides of a lever (named by ``--variant``), then the found net
    retrained.
- **Statistics** (``--report``): mean ± std per arm; for each comparison the paired mean
  difference with its 95 % t-interval over seeds; how many same-seed random band nets the
  found net beats (counts); the headroom inside the band (per seed, the
  best pool net minus the pool's mean: what a perfect picker among random band nets gains).

``--supernet-check`` scores each seed's found net and pool nets on its search's final
supernet (test images) and counts the same-seed pairs where that ranking and stand-alone
training's agree: where the search's own scorer goes wrong.

Every finished piece is cached under ``OUT``, so a killed run resumes where it stopped.

    python bench/quality.py --mode fast --arms pool,hwnas --out runs/quality-dev
    python bench/quality.py --mode full --arms pool,baseline,hwnas --out runs/quality
    python bench/quality.py --report --out runs/quality
    python bench/quality.py --supernet-check --out runs/quality
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy import stats
from torch import nn

from hwnas_common.errors import HwnasError
from hwnas_common.fileio import atomic_write_text
from latency_predictors import latency_matrix, load_table
from nas import SearchConfig, search, solve
from nas.core.budget import RelativeBudget
from nas.core.constraints import Constraint
from nas.core.parallel import default_device
from nas.core.sampler import random_band_nets
from nas.run import checkpoint
from nas.run.batches import Batches, Splits, channel_stats, split_holdout
from nas.run.evaluate import top1_accuracy
from nas.run.readers import load_dataset
from nas.run.train import Recipe, train_child
from nas.run.verdict import score_net
from search_spaces import ArchSpec, Space, build, get_space

DEV_SEEDS = (100, 101, 102)
HEADLINE_SEEDS = tuple(range(10))
MIN_POOL = 3  # the report leaves out smaller (unfinished) pools
TEST_ORDER_SEED = 12345  # the fixed test subset, the same for every seed
SEARCH_SPACES = {"hwnas": "cifar", "mbconv": "proxyless-cifar", "hybrid": "hybrid-cifar"}
POOL_SPACES = {"pool": "cifar", "pool-mbconv": "proxyless-cifar", "pool-hybrid": "hybrid-cifar"}


def default_budget(table: str, fraction: float) -> float:
    """The main job's relative budget in ms: ``fraction`` of the way from the fastest
    ``hybrid-cifar`` net to its slowest on ``table`` as shipped."""
    matrix = latency_matrix(get_space("hybrid-cifar"), load_table(table))
    return round(RelativeBudget(fraction).resolve(matrix.fastest_ms(), matrix.slowest_ms()), 4)


def constraint(space: Space, table: str, budget: float) -> Constraint:
    return Constraint(latency_matrix(space, load_table(table)), budget, table)


def seed_splits(dataset: str, space: Space, seed: int, train_images: int, test_images: int,
                arch_fraction: float = 0.1) -> Splits:
    """Seed ``seed``'s training subset and weight / architecture split; the fixed test set."""
    data = load_dataset(dataset, shape=space.input, classes=space.num_classes)
    train = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))
    train = train[:train_images]
    test = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(
        TEST_ORDER_SEED))[:test_images]
    weight, arch = split_holdout(len(train), arch_fraction, seed)
    weight, arch = train[weight], train[arch]
    mean, std = channel_stats(data.train_x[weight], space.input)
    device = default_device()

    def batches(x: torch.Tensor, y: torch.Tensor) -> Batches:
        return Batches(x, y, space.input, device, mean, std)

    return Splits(batches(data.train_x[weight], data.train_y[weight]),
                  batches(data.train_x[arch], data.train_y[arch]),
                  batches(data.test_x[test], data.test_y[test]))


def heldout_loss(model: nn.Module, splits: Splits) -> float:
    loss, count = 0.0, 0
    with torch.no_grad():
        for x, y in splits.arch.in_order():
            loss += float(nn.functional.cross_entropy(model(x), y, reduction="sum"))
            count += len(y)
    return loss / max(1, count)


class ChannelsLast(nn.Module):
    """Runs ``net`` in the channels-last memory format (1.4x faster training on this CPU)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


def train_and_score(spec: ArchSpec, splits: Splits, recipe: Recipe) -> dict:
    """Train ``spec`` from scratch (initialisation seeded by the recipe's seed) and score it."""
    torch.manual_seed(recipe.seed)
    model = ChannelsLast(build(spec)).to(default_device())
    start = time.perf_counter()
    train_child(model, splits.weight, recipe, progress=False)
    model.eval()
    return {"arch": spec.to_string(), "space": spec.space,
            "heldout_loss": heldout_loss(model, splits),
            "heldout_acc": top1_accuracy(model, splits.arch.in_order()),
            "test_acc": top1_accuracy(model, splits.test.in_order()),
            "train_seconds": time.perf_counter() - start}


def baseline_net(space: Space, token: str, limit: Constraint) -> ArchSpec:
    """``token`` in as many layers as the budget allows, skip elsewhere (ties: the knapsack's
    order). Scores: 1 for the token, 0 for skip, a large negative number for the rest."""
    tokens = space.tokens
    scores = [[1.0 if t == token else 0.0 if t == "skip" else -1e6 for t in tokens]
              for _ in range(space.num_layers)]
    return space.spec_from_indices(solve(scores, [limit]))


def _cached(path: Path, make) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    row = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(row, indent=2) + "\n")
    return row


def pool_arm(args: argparse.Namespace, folder: Path, seed: int, dataset: str,
             arm: str) -> list[dict]:
    space = get_space(POOL_SPACES[arm])
    limit = constraint(space, args.table, args.budget)
    generator = torch.Generator().manual_seed(10_000 + seed)
    specs = random_band_nets(space, [limit], args.floor, args.pool, generator)
    splits = seed_splits(dataset, space, seed, args.train_images, args.test_images)
    rows = []
    for index, spec in enumerate(specs):
        key = hashlib.sha1(spec.to_string().encode()).hexdigest()[:12]
        row = _cached(folder / arm / f"{key}.json",
                      lambda spec=spec: train_and_score(spec, splits, recipe(args, seed)))
        rows.append({**row, "index": index, "predicted_ms": limit.matrix.total(
            [space.candidate_index(layer) for layer in spec.layers])})
        print(f"  {arm} {index}: {row['test_acc']:.4f}  {row['arch']}", flush=True)
    return rows


def recipe(args: argparse.Namespace, seed: int) -> Recipe:
    return Recipe(args.retrain_epochs, args.batch_size, 0.05, 4e-5, seed, augment=True)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in SearchConfig.__dataclass_fields__:
            raise SystemExit(f"--set: unknown SearchConfig field {key!r}")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    return overrides


def search_config(args: argparse.Namespace, space: str, seed: int, out: Path) -> SearchConfig:
    config = SearchConfig((args.table,), (args.budget,), space=space, seed=seed, out=str(out),
                          epochs=args.search_epochs, warmup_epochs=args.warmup_epochs,
                          batch_size=args.batch_size, budget_floor=args.floor, progress=False)
    return replace(config, **parse_overrides(args.set))


def search_arm(args: argparse.Namespace, folder: Path, seed: int, dataset: str,
               arm: str) -> dict:
    space = get_space(args.space if arm == "hwnas" and args.space else SEARCH_SPACES[arm])
    name = f"{arm}-{args.variant}" if args.variant else arm

    def run() -> dict:
        out = folder / f"{name}-search"
        config = search_config(args, space.name, seed, out)
        config = replace(config, resume=(out / "checkpoint.pt").is_file())
        splits = seed_splits(dataset, space, seed, args.train_images, args.test_images)
        start = time.perf_counter()
        result = search(config, [constraint(space, args.table, args.budget)], data=splits)
        seconds = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
        trained = train_and_score(result.spec, splits, recipe(args, seed))
        weight_images = len(splits.weight) - len(splits.weight) % config.batch_size
        steps = weight_images // config.batch_size
        arch_images = (config.epochs * (steps // config.arch_every) * config.arch_batches
                       * config.batch_size)
        return {**trained, "search_seconds": seconds, "overrides": parse_overrides(args.set),
                "search_image_steps": config.total_epochs * weight_images + arch_images,
                "retrain_image_steps": args.retrain_epochs * weight_images,
                "predicted_ms": result.latency_ms[args.table],
                "mbconv_layers": sum(layer.op == "mbconv" for layer in result.spec.layers),
                "skip_layers": sum(layer.op == "skip" for layer in result.spec.layers),
                "inherited_acc": result.test_accuracy, "verdict": summary.get("verdict")}

    row = _cached(folder / f"{name}.json", run)
    print(f"  {name}: {row['test_acc']:.4f}  {row['arch']}  ({row['search_seconds']:.0f} s)",
          flush=True)
    return row


def run(args: argparse.Namespace) -> None:
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else list(DEV_SEEDS if args.mode == "fast" else HEADLINE_SEEDS))
    out = Path(args.out)
    start = time.perf_counter()
    for dataset in args.datasets.split(","):
        data_dir = out / Path(dataset).name.split(".")[0]
        data_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(data_dir / "settings.json",
                          json.dumps({**vars(args), "dataset": dataset}, indent=2) + "\n")
        for seed in seeds:
            folder = data_dir / f"seed{seed}"
            print(f"{dataset} seed {seed} [{time.perf_counter() - start:.0f} s]", flush=True)
            for arm in args.arms.split(","):
                if arm in POOL_SPACES:
                    pool_arm(args, folder, seed, dataset, arm)
                elif arm == "baseline":
                    space = get_space("cifar")
                    spec = baseline_net(space, args.baseline_token,
                                        constraint(space, args.table, args.budget))
                    splits = seed_splits(dataset, space, seed, args.train_images,
                                         args.test_images)
                    row = _cached(folder / f"baseline-{args.baseline_token}.json",
                                  lambda spec=spec, splits=splits, seed=seed: train_and_score(
                                      spec, splits, recipe(args, seed)))
                    print(f"  baseline: {row['test_acc']:.4f}  {row['arch']}", flush=True)
                elif arm in SEARCH_SPACES:
                    search_arm(args, folder, seed, dataset, arm)
                else:
                    raise SystemExit(f"unknown arm {arm!r}")
    print(f"done in {time.perf_counter() - start:.0f} s")


# --- report -----------------------------------------------------------------------------------

def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval (in points)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))
    return mean, mean - half, mean + half


def wins_vs_pool(found: dict[int, float], pools: dict[int, list[float]]) -> tuple[int, int, int]:
    """How many same-seed random band nets the found net beats (ties count one half), out of
    how many, and in how many seeds it beats every one: counts, not a bootstrap over a handful
    of seeds (which reports [1.00, 1.00] whenever every pair is won)."""
    seeds = sorted(set(found) & set(pools))
    wins = sum((found[s] > a) + 0.5 * (found[s] == a) for s in seeds for a in pools[s])
    pairs = sum(len(pools[s]) for s in seeds)
    return wins, pairs, sum(all(found[s] > a for a in pools[s]) for s in seeds)


def load_rows(out: Path) -> dict[str, dict[int, dict[str, object]]]:
    """``{dataset: {seed: {arm name: row or list of pool rows}}}``."""
    found: dict[str, dict[int, dict[str, object]]] = {}
    for seed_dir in sorted(out.glob("*/seed*")):
        arms: dict[str, object] = {}
        for path in sorted(seed_dir.glob("*.json")):
            arms[path.stem] = json.loads(path.read_text())
        for pool in POOL_SPACES:
            rows = [json.loads(p.read_text()) for p in sorted((seed_dir / pool).glob("*.json"))]
            if rows:
                arms[pool] = rows
        found.setdefault(seed_dir.parent.name, {})[int(seed_dir.name[4:])] = arms
    return found


def report(out: Path) -> None:
    for dataset, seeds in load_rows(out).items():
        names = sorted({name for arms in seeds.values() for name in arms})
        print(f"\n### {dataset}: {len(seeds)} seeds ({', '.join(map(str, seeds))})\n")
        print("| arm | test acc % (mean ± std) | seeds |\n|---|---:|---:|")
        per_seed: dict[str, dict[int, float]] = {}
        pools: dict[str, dict[int, list[float]]] = {}
        n = random_search_n(seeds)
        for name in names:
            for seed, arms in seeds.items():
                if name not in arms or (isinstance(arms[name], list)
                                        and len(arms[name]) < MIN_POOL):
                    continue  # a pool still being trained is left out
                if isinstance(arms[name], list):
                    pools.setdefault(name, {})[seed] = [100 * r["test_acc"] for r in arms[name]]
                    per_seed.setdefault(f"{name} mean", {})[seed] = statistics.mean(
                        pools[name][seed])
                    chosen = min(arms[name][:n], key=lambda r: r["heldout_loss"])
                    per_seed.setdefault(f"{name} random search (best of {n})", {})[seed] = (
                        100 * chosen["test_acc"])
                else:
                    per_seed.setdefault(name, {})[seed] = 100 * arms[name]["test_acc"]
        for name, values in per_seed.items():
            vals = list(values.values())
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            print(f"| {name} | {statistics.mean(vals):.2f} ± {std:.2f} | {len(vals)} |")
        print("\n| comparison (paired by seed) | mean diff (pt) | 95 % t-interval | n |\n"
              "|---|---:|---|---:|")
        searched = [n for n in per_seed if n.split("-")[0] in SEARCH_SPACES]
        references = [n for n in per_seed if n not in searched]
        for a in searched:
            for b in [*references, *[s for s in searched if s != a]]:
                common = sorted(set(per_seed[a]) & set(per_seed[b]))
                if len(common) < 2:
                    continue
                mean, low, high = t_interval([per_seed[a][s] - per_seed[b][s] for s in common])
                print(f"| {a} − {b} | {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | {len(common)} |")
        for a in searched:
            for pool in pools:
                wins, pairs, all_beaten = wins_vs_pool(per_seed[a], pools[pool])
                print(f"\n{a} beats {wins:g} of {pairs} same-seed {pool} nets; all of a seed's "
                      f"in {all_beaten} of {len(pools[pool])} seeds")
        for pool, values in pools.items():
            gains = [max(v) - statistics.mean(v) for v in values.values()]
            spread = [max(v) - min(v) for v in values.values()]
            print(f"headroom in {pool}: best − mean {statistics.mean(gains):.2f} pt, "
                  f"best − worst {statistics.mean(spread):.2f} pt (mean over seeds)")


def supernet_losses(settings: dict, seed: int, search_dir: Path, space: Space,
                    archs: list[str]) -> dict[str, float]:
    """Test loss of each of ``archs`` that ``space`` holds on ``search_dir``'s final
    supernet, BatchNorm re-estimated per net (:func:`nas.run.verdict.score_net` on the test
    images instead of the held-out ones)."""
    splits = seed_splits(settings["dataset"], space, seed, settings["train_images"],
                         settings["test_images"])
    splits = replace(splits, arch=splits.test)
    supernet = checkpoint.load_supernet(search_dir)
    limit = constraint(space, settings["table"], settings["budget"])
    losses = {}
    for arch in archs:
        try:
            spec = space.spec_from_string(arch)
        except HwnasError:
            continue  # a pool net of a family this space lacks
        losses[arch] = score_net(supernet, spec, splits, [limit]).heldout_loss
    return losses


def supernet_check(out: Path) -> None:
    """Does the search's final supernet rank its found net against the same-seed pool nets as
    stand-alone training does? Each net of a pool whose space the search's space holds is
    scored on the final supernet (BatchNorm re-estimated per net) on the seed's test images,
    which the pick never saw; per pool, how many same-seed pairs each ranks the found net
    ahead in, and in how many the two agree. Scores are cached per seed."""
    for data_dir in sorted(p.parent for p in out.glob("*/settings.json")):
        settings = json.loads((data_dir / "settings.json").read_text())
        counts: dict[tuple[str, str], list[int]] = {}
        for seed_dir in sorted(data_dir.glob("seed*")):
            seed = int(seed_dir.name[4:])
            for search_dir in sorted(seed_dir.glob("*-search")):
                name = search_dir.name.removesuffix("-search")
                found = json.loads((seed_dir / f"{name}.json").read_text())
                space = get_space(found["space"])
                pools = {pool: [json.loads(p.read_text())
                                for p in sorted((seed_dir / pool).glob("*.json"))]
                         for pool in POOL_SPACES}
                archs = [found["arch"], *(r["arch"] for rows in pools.values() for r in rows)]
                losses = _cached(seed_dir / f"{name}-supernet-check.json", functools.partial(
                    supernet_losses, settings, seed, search_dir, space, archs))
                for pool, rows in pools.items():
                    for row in rows:
                        if row["arch"] not in losses:
                            continue
                        cell = counts.setdefault((name, pool), [0, 0, 0, 0])
                        supernet_says = losses[found["arch"]] < losses[row["arch"]]
                        training_says = found["test_acc"] > row["test_acc"]
                        cell[0] += 1
                        cell[1] += supernet_says
                        cell[2] += training_says
                        cell[3] += supernet_says == training_says
        print(f"\n### {data_dir.name}: the final supernet against training, same-seed pairs\n")
        print("| search − pool | pairs | supernet: found ahead | training: found ahead | agree |"
              "\n|---|---:|---:|---:|---:|")
        for (name, pool), (pairs, supernet_ahead, trained_ahead, agree) in counts.items():
            print(f"| {name} − {pool} | {pairs} | {supernet_ahead} | {trained_ahead} | "
                  f"{agree} |")


def random_search_n(seeds: dict[int, dict[str, object]]) -> int:
    """N of equal-compute random search: 1 + a search's image-steps over one retraining's."""
    searched = [r for arms in seeds.values() for r in arms.values()
                if isinstance(r, dict) and "search_image_steps" in r]
    if not searched:
        return 1
    row = searched[0]
    return 1 + math.ceil(row["search_image_steps"] / row["retrain_image_steps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("fast", "full"), default="fast")
    parser.add_argument("--datasets", default="fashion-mnist")
    parser.add_argument("--seeds", help="comma-separated (default: the mode's seeds)")
    parser.add_argument("--arms", default="pool,hwnas")
    parser.add_argument("--space", help="space of the hwnas arm (default cifar)")
    parser.add_argument("--variant", default="", help="name of the lever (--set) for caching")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="SearchConfig override of the search arms")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--budget", type=float, help="ms (default: --fraction of the range)")
    parser.add_argument("--fraction", type=float, default=0.15)
    parser.add_argument("--floor", type=float, default=SearchConfig.budget_floor)
    parser.add_argument("--pool", type=int, default=4, help="random band nets per seed")
    parser.add_argument("--baseline-token", default="quad_k3_e2")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", action="store_true", help="only print the tables of --out")
    parser.add_argument("--supernet-check", action="store_true",
                        help="score each seed's found and pool nets on its search's final "
                             "supernet and compare with their training (cached)")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out))
        return
    torch.set_num_threads(args.threads)
    if args.supernet_check:
        supernet_check(Path(args.out))
        return
    if args.budget is None:
        args.budget = default_budget(args.table, args.fraction)
    run(args)


if __name__ == "__main__":
    main()
