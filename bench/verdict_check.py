"""Does a run's verdict agree with stand-alone training? The found net and the first ``--nets``
random band nets the verdict compared it with, each trained from scratch with
``bench/quality.py``'s recipe on the run's seed (its training subset, initialisation and batch
order) and scored on the fixed test set.

    python bench/verdict_check.py RUN_DIR [RUN_DIR ...] --nets 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from quality import seed_splits, train_and_score

from nas.run.train import Recipe
from search_spaces import get_space


def check(run_dir: Path, args: argparse.Namespace) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    config, judged = summary["config"], summary["verdict"]
    space = get_space(config["space"])
    splits = seed_splits(config["dataset"], space, config["seed"], args.train_images,
                         args.test_images)
    recipe = Recipe(args.epochs, 64, 0.05, 4e-5, config["seed"], augment=True)
    archs = [judged["found"]["arch"], *[r["arch"] for r in judged["random"][:args.nets]]]
    accs = [train_and_score(space.spec_from_string(a), splits, recipe)["test_acc"]
            for a in archs]
    gap = accs[0] - statistics.mean(accs[1:])
    agrees = {"better": gap > 0, "worse": gap < 0}.get(judged["judgement"])
    return {"run": str(run_dir), "judgement": judged["judgement"], "found": accs[0],
            "random": accs[1:], "gap_pt": 100 * gap, "agrees": agrees}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--nets", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        row = check(Path(run), args)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
