"""Does the supernet rank the nets the search chooses between? (Yu et al., "Evaluating the
Search Phase of Neural Architecture Search", ICLR 2020), measured inside one latency band.

It reads a ``bench/quality.py`` output folder: for every seed with a search arm that kept its
warm-up snapshot (``ARM-search/warmup.pt``) and a random band pool whose nets belong to the
searched space (``pool``, ``cifar`` nets, are nets of ``hybrid-cifar`` too), it scores each pool
net on that seed's warm-up supernet exactly as the verdict does (:func:`nas.run.verdict.score_net`:
BatchNorm re-estimated on 500 training images, held-out loss on the seed's architecture split)
and compares with the net's stand-alone test accuracy from the quality run (same seed, same
recipe). No training: forward passes only.

Reported, with 95 % bootstrap intervals over seeds:

- Spearman ρ between the supernet score (−held-out loss) and stand-alone accuracy, within each
  seed (a band pool belongs to one seed's data), averaged over seeds;
- the same for the free baselines: parameter count and MACs.

Not measured here: the reliability of the stand-alone ranking itself (ρ_AB between two training
seeds of the same nets, Spearman–Brown 2 ρ_AB / (1 + ρ_AB)), which needs every pool trained
twice.

    python bench/ranking.py --quality runs/quality --arm hybrid
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from quality import seed_splits
from scipy import stats

from latency_predictors import latency_matrix, load_table
from nas.core.constraints import Constraint
from nas.run.verdict import score_net
from search_spaces import Supernet, build, get_space
from search_spaces.stats import count_macs, count_params

SPACES = {"hybrid": "hybrid-cifar", "hwnas": "cifar", "mbconv": "proxyless-cifar"}


def score_seed(seed_dir: Path, arm: str, settings: dict, dataset: str) -> list[dict]:
    """Every pool net of one seed: supernet score, stand-alone accuracy, params, MACs."""
    space = get_space(SPACES[arm])
    snapshot = seed_dir / f"{arm}-search" / "warmup.pt"
    pool = [json.loads(p.read_text()) for p in sorted((seed_dir / "pool").glob("*.json"))]
    if not (seed_dir / f"{arm}.json").is_file() or len(pool) < 3:
        return []  # the seed's search is not finished, or its pool too small
    config = json.loads((seed_dir / f"{arm}-search" / "summary.json").read_text())["config"]
    warm = Supernet(space, config["weights"], config.get("choices", "flat"))
    warm.load_state_dict(torch.load(snapshot, map_location="cpu", weights_only=True))
    seed = int(seed_dir.name[4:])
    splits = seed_splits(dataset, space, seed, settings["train_images"], settings["test_images"])
    limit = Constraint(latency_matrix(space, load_table(settings["table"])),
                       settings["budget"], settings["table"])
    rows = []
    for net in pool:
        spec = space.spec_from_string(net["arch"])
        score = score_net(warm.eval(), spec, splits, [limit], settings["batch_size"])
        model = build(spec)
        rows.append({"seed": seed, "arch": net["arch"], "supernet": -score.heldout_loss,
                     "standalone": net["test_acc"], "params": count_params(model),
                     "macs": count_macs(model, space.input)})
    return rows


def mean_rho(rows: list[dict], key: str, seeds: list[int]) -> float:
    values = []
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        rho = stats.spearmanr([r[key] for r in mine], [r["standalone"] for r in mine])[0]
        if np.isfinite(rho):
            values.append(rho)
    return float(np.mean(values)) if values else float("nan")


def bootstrap(rows: list[dict], key: str, draws: int = 2000) -> tuple[float, float, float]:
    seeds = sorted({r["seed"] for r in rows})
    rng = np.random.default_rng(0)
    boot = [mean_rho(rows, key, list(rng.choice(seeds, len(seeds)))) for _ in range(draws)]
    return (mean_rho(rows, key, seeds), float(np.nanpercentile(boot, 2.5)),
            float(np.nanpercentile(boot, 97.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", required=True, help="a bench/quality.py output folder")
    parser.add_argument("--arm", default="hybrid", choices=sorted(SPACES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.quality)
    rows = []
    for settings_file in sorted(out.glob("*/settings.json")):
        settings = json.loads(settings_file.read_text())
        for seed_dir in sorted(settings_file.parent.glob("seed*")):
            rows += score_seed(seed_dir, args.arm, settings, settings["dataset"])
    if not rows:
        raise SystemExit(f"{out}: no seed with a {args.arm} warm-up snapshot and a pool")
    (out / f"ranking-{args.arm}.json").write_text(json.dumps(rows, indent=1) + "\n")
    seeds = sorted({r["seed"] for r in rows})
    spread = [max(r["standalone"] for r in rows if r["seed"] == s)
              - min(r["standalone"] for r in rows if r["seed"] == s) for s in seeds]
    print(f"{len(rows)} band nets over {len(seeds)} seeds; stand-alone spread within a seed "
          f"{100 * statistics.mean(spread):.2f} pt (mean)")
    print("| score | Spearman ρ with stand-alone accuracy (mean over seeds) | 95 % bootstrap |\n"
          "|---|---:|---|")
    for key, label in (("supernet", f"supernet after warm-up ({args.arm})"),
                       ("params", "parameter count"), ("macs", "MACs")):
        rho, low, high = bootstrap(rows, key)
        print(f"| {label} | {rho:+.2f} | [{low:+.2f}, {high:+.2f}] |")


if __name__ == "__main__":
    main()
