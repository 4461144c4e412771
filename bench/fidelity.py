"""The fidelity ladder: at what training fidelity do two stand-alone trainings of the same band
nets agree on their ranking, and what does that cost per net on this host?

A verdict or a scorer can only be validated against a ruler: stand-alone training whose ranking
of the nets of one latency band repeats from one seed to the next. This measures that ruler.

Protocol, per data set (``--datasets``):

- **Band nets.** ``--nets`` nets drawn uniformly from the band ``[0.9 B, B]`` of ``--space``
  (exact sampler), B = ``--budget`` of the way from the space's fastest net to its slowest on
  ``--table`` as shipped (the main job's 15 %); the same nets on every rung.
- **Rungs** (``--rungs``, ``IMAGESxEPOCHS`` each): every net trained from scratch twice, with
  seeds A and B (initialisation and batch order), on the first ``IMAGES`` images of seed A's
  shuffle of the training split (0.9 of them for the weights: ``bench/quality.py``'s splits),
  with ``bench/ranking.py``'s recipe (:class:`nas.run.train.Recipe`: SGD nesterov, cosine lr
  0.05, batch 64, label smoothing 0.1, no augmentation); scored on a fixed ``--test-images``
  images of the test split.
- **Agreement.** ρ_AB, the Spearman correlation of the two seeds' test accuracies over the nets,
  with its 95 % interval by Fisher's z with the Fieller–Hartley–Pearson variance
  ``1.06 / (n − 3)`` (no resampling, so no draw is ever dropped), and the mean |A − B| next to
  the nets' spread.
- **Cost.** Training seconds per net (one thread; the wall time of ``train_and_score``).
- **Against the top rung.** Each rung's two-seed mean correlated with the highest rung's
  (Spearman, same interval): a cheap rung can agree with itself by ranking how fast nets start
  to learn, which is not how well they end.
- **The ruler**: the cheapest rung whose ρ_AB interval's lower bound is ≥ ``RULER_LOW`` (0.5)
  and, below the top rung, whose interval with the top rung lies above 0. Without a ruler no
  scorer and no verdict among these nets can be validated on this data.

Every trained net is cached under ``--out``; a killed run resumes. Rungs run in the order given
(cheapest first), every data set per rung; one process per data set can share ``--out``, and so
can one process per ``--shard I/N`` (nets I, I + N, ...), one thread each on a 2-core host.

    python bench/fidelity.py --out runs/fidelity --datasets fashion-mnist
    python bench/fidelity.py --out runs/fidelity --datasets ../shared/data/cifar10_jpg.tar.gz
    python bench/fidelity.py --out runs/fidelity --report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from quality import _cached, seed_splits, train_and_score
from scipy import stats

from hwnas_common.fileio import atomic_write_text
from latency_predictors import latency_matrix, load_table
from latency_predictors.measure.host import describe_host, host_fingerprint
from nas.core.budget import RelativeBudget
from nas.core.constraints import Constraint
from nas.core.sampler import random_band_nets
from nas.run.train import Recipe
from search_spaces import ArchSpec, get_space

RULER_LOW = 0.5  # the ruler: the lower bound of ρ_AB's 95 % interval reaches this
DEFAULT_RUNGS = "1000x2,2700x1,2700x4"


def spearman_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Spearman ρ of ``a`` and ``b`` with its 95 % interval: Fisher's z with the
    Fieller–Hartley–Pearson (1957) variance 1.06 / (n − 3)."""
    n = len(a)
    rho = float(stats.spearmanr(a, b)[0])
    if n < 4 or not math.isfinite(rho):
        return rho, math.nan, math.nan
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    half = 1.959964 * math.sqrt(1.06 / (n - 3))
    return rho, math.tanh(z - half), math.tanh(z + half)


def two_seeds(text: str) -> list[int]:
    """``--seeds A,B``: exactly two stand-alone seeds."""
    seeds = [int(s) for s in text.split(",")]
    if len(seeds) != 2:
        raise argparse.ArgumentTypeError("give exactly two seeds A,B")
    return seeds


def shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: this process trains nets I, I + N, I + 2N, ..."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError("give I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError("I/N needs 0 <= I < N")
    return i, n


def parse_rung(text: str) -> tuple[int, int]:
    images, _, epochs = text.partition("x")
    return int(images), int(epochs)


def arch_key(spec: ArchSpec) -> str:
    return hashlib.sha1(spec.to_string().encode()).hexdigest()[:12]


def dataset_label(dataset: str) -> str:
    return "cifar10" if "cifar10" in dataset else Path(dataset).stem


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    space = get_space(args.space)
    matrix = latency_matrix(space, load_table(args.table))
    budget = RelativeBudget(args.budget).resolve(matrix.fastest_ms(), matrix.slowest_ms())
    limit = Constraint(matrix, budget, args.table)
    nets = random_band_nets(space, [limit], 0.9, args.nets,
                            torch.Generator().manual_seed(args.net_seed))
    print(f"{len(nets)} band nets of {args.space} at {budget:.4g} ms on {args.table}",
          flush=True)
    start = time.perf_counter()
    for dataset in args.datasets.split(","):
        folder = out / dataset_label(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in vars(args).items() if k not in ("shard", "report")}
        atomic_write_text(folder / "settings.json", json.dumps(
            {**kept, "dataset": dataset, "budget_ms": budget,
             "nets_drawn": [n.to_string() for n in nets],
             "host": describe_host(host_fingerprint()), "python": platform.python_version(),
             "torch": torch.__version__}, indent=2) + "\n")
    for rung in args.rungs.split(","):
        images, epochs = parse_rung(rung)
        for dataset in args.datasets.split(","):
            folder = out / dataset_label(dataset)
            splits = seed_splits(dataset, space, args.seeds[0], images, args.test_images)
            for index, spec in enumerate(nets):
                if index % args.shard[1] != args.shard[0]:
                    continue
                accs = []
                for seed in args.seeds:
                    recipe = Recipe(epochs, 64, 0.05, 4e-5, seed)
                    row = _cached(folder / rung / str(seed) / f"{arch_key(spec)}.json",
                                  lambda r=recipe, s=spec, d=splits: train_and_score(s, d, r))
                    accs.append(row["test_acc"])
                print(f"{folder.name} {rung} net {index}: {accs} "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
            print(summary_line(folder, rung, [n.to_string() for n in nets], args.seeds),
                  flush=True)


def rung_rows(folder: Path, rung: str, nets: list[str], seeds: list[int]) -> list[list[dict]]:
    """Both seeds' rows of every net trained at this rung, or [] while any is missing."""
    rows = []
    for arch in nets:
        key = hashlib.sha1(arch.encode()).hexdigest()[:12]
        paths = [folder / rung / str(seed) / f"{key}.json" for seed in seeds]
        if not all(p.is_file() for p in paths):
            return []
        rows.append([json.loads(p.read_text()) for p in paths])
    return rows


def two_seed_means(rows: list[list[dict]]) -> list[float]:
    return [(pair[0]["test_acc"] + pair[1]["test_acc"]) / 2 for pair in rows]


def rung_figures(rows: list[list[dict]]) -> dict:
    a = [r[0]["test_acc"] for r in rows]
    b = [r[1]["test_acc"] for r in rows]
    rho, low, high = spearman_interval(a, b)
    means = [(x + y) / 2 for x, y in zip(a, b, strict=True)]
    return {"nets": len(rows), "rho": rho, "low": low, "high": high,
            "acc": statistics.mean(means), "spread_std": statistics.stdev(means),
            "abs_ab": statistics.mean(abs(x - y) for x, y in zip(a, b, strict=True)),
            "seconds": statistics.mean(r["train_seconds"] for pair in rows for r in pair)}


def summary_line(folder: Path, rung: str, nets: list[str], seeds: list[int]) -> str:
    rows = rung_rows(folder, rung, nets, seeds)
    if not rows:
        return f"{folder.name} {rung}: incomplete"
    f = rung_figures(rows)
    return (f"{folder.name} {rung}: rho_AB {f['rho']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}], "
            f"{f['seconds']:.0f} s per net")


def report(out: Path) -> str:
    """The ladder's table: every data set under ``out``, every rung."""
    lines = ["| data | training images (weights) × epochs | ρ_AB [95 %] | test acc % | "
             "std over nets (pt) | mean abs(A − B) (pt) | s per net | ρ with the top rung "
             "[95 %] | ruler? |",
             "|---|---|---|---:|---:|---:|---:|---|---|"]
    notes = []
    for path in sorted(out.glob("*/settings.json")):
        settings = json.loads(path.read_text())
        nets, seeds, label = settings["nets_drawn"], settings["seeds"], path.parent.name
        notes.append(f"- {label}: {len(nets)} band nets of `{settings['space']}` in [0.9 B, B], "
                     f"B = {settings['budget_ms']:.4f} ms on `{settings['table']}` as shipped "
                     f"({100 * settings['budget']:g} %), net seed {settings['net_seed']}; "
                     f"stand-alone seeds {seeds[0]} and {seeds[1]}; "
                     f"{settings['test_images']:,} fixed test images; {settings['host']}; "
                     f"torch {settings['torch']}, {settings['threads']} thread(s)")
        ruler = None
        done = {rung: rung_rows(path.parent, rung, nets, seeds)
                for rung in settings["rungs"].split(",")}
        top = [rung for rung, rows in done.items() if rows][-1:]
        for rung, rows in done.items():
            images, epochs = parse_rung(rung)
            name = f"| {label} | {images:,} ({int(images * 0.9):,}) × {epochs} | "
            if not rows:
                lines.append(name + "not run | | | | | | |")
                continue
            f = rung_figures(rows)
            below_top = top[0] != rung
            cross = (spearman_interval(two_seed_means(rows), two_seed_means(done[top[0]]))
                     if below_top else None)
            usable = f["low"] >= RULER_LOW and (cross is None or cross[1] > 0)
            cross_text = "" if cross is None else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*cross)
            mark = "**yes**" if usable and ruler is None else "yes" if usable else "no"
            ruler = ruler or (rung if usable else None)
            lines.append(name + f"{f['rho']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}] | "
                         f"{100 * f['acc']:.2f} | {100 * f['spread_std']:.2f} | "
                         f"{100 * f['abs_ab']:.2f} | {f['seconds']:.0f} | {cross_text} | {mark} |")
    return "\n".join([*notes, "", *lines])


def band_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every in-band benchmark shares: where, which band, report only."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", action="store_true", help="only print the table of --out")
    parser.add_argument("--space", default="hybrid-cifar")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--budget", type=float, default=0.15,
                        help="relative: this share of the way from the fastest net to the "
                             "slowest (default 0.15, the main job's)")
    return parser


def main() -> None:
    parser = band_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion-mnist",
                        help="comma-separated --dataset values (a PATH is read as hwnas reads it)")
    parser.add_argument("--rungs", default=DEFAULT_RUNGS,
                        help=f"comma-separated IMAGESxEPOCHS (default {DEFAULT_RUNGS})")
    parser.add_argument("--nets", type=int, default=20)
    parser.add_argument("--net-seed", type=int, default=11)
    parser.add_argument("--seeds", type=two_seeds, default="300,301",
                        help="the two stand-alone seeds A,B")
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", type=shard, default="0/1",
                        help="I/N: train only nets I, I + N, ... (default 0/1: all)")
    args = parser.parse_args()
    if args.report:
        print(report(Path(args.out)))
        return
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
