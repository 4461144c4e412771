"""Which fine-tuning recipe makes the main job's net most accurate in the same time.

The main job fine-tunes the net it found for one epoch on 45,000 Fashion-MNIST images from the
supernet's weights. This script takes a finished run (its supernet checkpoint and arch.json),
and fine-tunes the same child with several recipes, each on the same images and seeds (paired),
printing wall time and test accuracy per recipe and seed, then the mean ± std and the paired
difference against the first recipe with its 95 % CI:

    python bench/finetune_recipe.py RUN_DIR --seeds 0,1,2 \
        --recipes "bs64-lr0.05-aug,bs64-lr0.05-noaug,bs128-lr0.1-noaug"

A recipe is ``bs<batch>-lr<peak lr>-<aug|noaug>[-scratch][-e<epochs>]``: SGD nesterov 0.9,
cosine lr, label smoothing 0.1, weight decay 4e-5 (the search's weight recipe); ``aug`` is the
search's random crop and flip; ``scratch`` re-initialises the child instead of inheriting the
supernet's weights.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from quality import t_interval  # bench/quality.py, beside this script

from nas.run.batches import Batches, channel_stats, split_holdout
from nas.run.checkpoint import load_checkpoint, load_supernet
from nas.run.evaluate import top1_accuracy
from nas.run.readers import load_dataset
from nas.run.train import Recipe, train_child
from search_spaces import build, read_arch


def parse_recipe(name: str) -> dict:
    parts = name.split("-")
    recipe = {"batch": 64, "lr": 0.05, "augment": True, "scratch": False, "epochs": 1}
    for part in parts:
        if part.startswith("bs"):
            recipe["batch"] = int(part[2:])
        elif part.startswith("lr"):
            recipe["lr"] = float(part[2:])
        elif part in ("aug", "noaug"):
            recipe["augment"] = part == "aug"
        elif part == "scratch":
            recipe["scratch"] = True
        elif part.startswith("e"):
            recipe["epochs"] = int(part[1:])
        else:
            raise SystemExit(f"unknown recipe part {part!r} in {name!r}")
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--recipes", default="bs64-lr0.05-aug,bs64-lr0.05-noaug")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", type=int, default=45000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = load_checkpoint(args.run_dir)
    supernet = load_supernet(args.run_dir, state)
    spec = read_arch(args.run_dir)
    config = state["config"]
    space = supernet.space
    search_data = load_dataset(config["dataset"], limit=config["data_limit"], shape=space.input,
                               classes=space.num_classes)
    weight_idx, _ = split_holdout(len(search_data.train_y), config["arch_fraction"],
                                  config["seed"])
    mean, std = channel_stats(search_data.train_x[weight_idx], space.input)
    data = load_dataset(config["dataset"], limit=args.images, shape=space.input,
                        classes=space.num_classes)
    cpu = torch.device("cpu")
    train = Batches(data.train_x, data.train_y, space.input, cpu, mean, std)
    test = Batches(data.test_x, data.test_y, space.input, cpu, mean, std)
    print(f"net {spec.to_string()}; {len(train)} training images, {len(test)} test images, "
          f"{args.threads} threads")
    recipes = args.recipes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[float]] = {name: [] for name in recipes}
    print("| recipe | seed | seconds | test accuracy |\n|---|---:|---:|---:|")
    for seed in seeds:
        for name in recipes:
            recipe = parse_recipe(name)
            torch.manual_seed(seed)
            model = build(spec) if recipe["scratch"] else supernet.child(spec)
            start = time.perf_counter()
            train_child(model, train, Recipe(recipe["epochs"], recipe["batch"], recipe["lr"],
                                             4e-5, seed, recipe["augment"]), progress=False)
            seconds = time.perf_counter() - start
            accuracy = top1_accuracy(model.eval(), test.in_order())
            results[name].append(accuracy)
            print(f"| {name} | {seed} | {seconds:.0f} | {accuracy:.4f} |", flush=True)
    print("\n| recipe | test accuracy, mean ± std | paired difference vs "
          f"{recipes[0]} [95 % CI] |\n|---|---:|---:|")
    for name in recipes:
        accs = results[name]
        std_acc = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        diff, low, high = t_interval([a - b for a, b in
                                      zip(accs, results[recipes[0]], strict=True)])
        print(f"| {name} | {statistics.mean(accs):.4f} ± {std_acc:.4f} | "
              f"{diff:+.4f} [{low:+.4f}, {high:+.4f}] |")


if __name__ == "__main__":
    main()
