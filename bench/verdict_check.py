"""Does a run's verdict agree with stand-alone training? The found net and the first ``--nets``
random band nets the verdict compared it with, each trained from scratch on the run's own data
(its weight split, the same images the search trained on; :func:`nas.run.batches.prepare_data`)
with ``bench/ranking.py``'s recipe (:class:`nas.run.train.Recipe`, no augmentation) and the
run's seed, and scored on the run's own test split.

Training's judgement takes the nets as the unit (:func:`nas.run.verdict.compare_nets` on test
accuracy): ``better`` when the found net's lead over the random nets' mean lies above the
interval a random band net would fall in, ``worse`` below it, else ``indistinguishable``. The
verdict agrees when it said ``cannot tell`` (it claimed nothing) or the same word; the
supernet's own judgement is compared too, as evidence for a validation record.

    python bench/verdict_check.py RUN_DIR [RUN_DIR ...] --nets 3 > results.jsonl
    python bench/verdict_check.py --report results.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from quality import train_and_score

from latency_predictors.measure.host import describe_host, host_fingerprint
from nas import SearchConfig
from nas.run.batches import prepare_data
from nas.run.train import Recipe
from nas.run.verdict import CHECK_EPOCHS, CHECK_NETS, compare_nets
from search_spaces import get_space


def training_judgement(found: float, randoms: list[float]) -> tuple[str, tuple]:
    """Better / worse / indistinguishable by test accuracy, nets as the unit."""
    delta = compare_nets(found, randoms)
    word = "better" if delta[1] > 0 else "worse" if delta[2] < 0 else "indistinguishable"
    return word, delta


def check(run_dir: Path, args: argparse.Namespace) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    fields = summary["config"]
    config = SearchConfig(**{**fields, "devices": tuple(fields["devices"]),
                             "budgets_ms": tuple(fields["budgets_ms"]), "progress": False})
    judged = summary["verdict"]
    space = get_space(config.space)
    splits = prepare_data(config, torch.device("cpu"))
    recipe = Recipe(args.epochs, 64, 0.05, 4e-5, config.seed)
    archs = [judged["found"]["arch"], *[r["arch"] for r in judged["random"][:args.nets]]]
    start = time.perf_counter()
    accs = [train_and_score(space.spec_from_string(a), splits, recipe)["test_acc"]
            for a in archs]
    word, delta = training_judgement(accs[0], accs[1:])
    said = judged["judgement"]
    return {"run": str(run_dir), "seed": config.seed, "verdict": said,
            "supernet_judgement": judged.get("supernet_judgement"), "training": word,
            "found": accs[0], "random": accs[1:], "gap_pt": [100 * d for d in delta],
            "agrees": said in ("cannot tell", word),
            "supernet_agrees": judged.get("supernet_judgement") == word,
            "train_images": len(splits.weight), "test_images": len(splits.test),
            "epochs": args.epochs, "seconds": round(time.perf_counter() - start, 1),
            "host": describe_host(host_fingerprint())}


def report(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| run (seed) | verdict | supernet scores | training (nets as unit) | found % | "
             "random % | found − random mean, pt [95 % over nets] | agrees |",
             "|---|---|---|---|---:|---|---|---|"]
    for r in rows:
        g = r["gap_pt"]
        lines.append(f"| {Path(r['run']).name} ({r['seed']}) | {r['verdict']} | "
                     f"{r['supernet_judgement']} | {r['training']} | {100 * r['found']:.2f} | "
                     f"{' / '.join(f'{100 * a:.2f}' for a in r['random'])} | "
                     f"{g[0]:+.2f} [{g[1]:+.2f}, {g[2]:+.2f}] | "
                     f"{'yes' if r['agrees'] else '**no**'} |")
    gaps = [r["gap_pt"][0] for r in rows]
    lines += ["", f"{len(rows)} runs; the verdict agrees with training in "
              f"{sum(r['agrees'] for r in rows)}; the supernet's own judgement in "
              f"{sum(r['supernet_agrees'] for r in rows)}; found − random mean over runs "
              f"{statistics.mean(gaps):+.2f} pt; {rows[0]['train_images']:,} training images × "
              f"{rows[0]['epochs']} epochs, {rows[0]['test_images']:,} test images per net; "
              f"{rows[0]['host']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--report", type=Path, help="print the table of a results file")
    parser.add_argument("--nets", type=int, default=CHECK_NETS)
    parser.add_argument("--epochs", type=int, default=CHECK_EPOCHS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    torch.set_num_threads(args.threads)
    for run in args.runs:
        print(json.dumps(check(Path(run), args)), flush=True)


if __name__ == "__main__":
    main()
