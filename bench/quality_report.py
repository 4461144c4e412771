"""One table from several ``bench/quality.py`` output folders (e.g. the same arms with two
latency losses): test accuracy mean ± std over seeds per data set and arm, the predicted and
measured latency where measured, and the gap to the ``random`` arm paired by seed.

    python bench/quality_report.py mul_log=runs/quality hinge_log=runs/quality-hinge
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latency_predictors import latency_matrix, load_table
from search_spaces import get_space


def mean_std(values: list[float], scale: float = 100.0) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * std:.2f}"


def load(folder: Path) -> list[dict]:
    """Every finished arm of a quality run, with its net's measured latency where measured."""
    measured = json.loads((folder / "latency.json").read_text()) if (
        folder / "latency.json").is_file() else {}
    rows = []
    for path in sorted(folder.glob("*/seed*/*.json")):
        row = json.loads(path.read_text())
        if "arm" in row:
            rows.append({**row, "measured_ms": measured.get(f"{row['space']}:{row['arch']}")})
    return rows


def predicted_ms(row: dict, table: str) -> float:
    space = get_space(row["space"])
    spec = space.spec_from_string(row["arch"])
    return latency_matrix(space, load_table(table)).total(
        [space.candidate_index(layer) for layer in spec.layers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=FOLDER of bench/quality.py outputs")
    parser.add_argument("--table", default="cpu", help="the table the searches used")
    args = parser.parse_args()
    rows = []
    for item in args.runs:
        label, _, folder = item.partition("=")
        rows += [{**r, "label": label} for r in load(Path(folder))]
    random = {(r["dataset"], r["seed"]): r for r in rows if r["arm"] == "random"}
    print("| data set | arm | loss | test acc % (mean ± std) | per seed | − random, paired "
          "(pt) | predicted / budget % | worst predicted vs measured | seeds |\n"
          "|---|---|---|---:|---|---:|---:|---:|---:|")
    for dataset in sorted({r["dataset"] for r in rows}):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            if r["dataset"] == dataset:
                groups.setdefault((r["arm"], "-" if r["arm"] == "random" else r["label"]),
                                  []).append(r)
        for (arm, label), group in sorted(groups.items()):
            group.sort(key=lambda r: r["seed"])
            accs = [r["test_acc"] for r in group]
            gaps = [r["test_acc"] - random[(dataset, r["seed"])]["test_acc"]
                    for r in group if (dataset, r["seed"]) in random and arm != "random"]
            used = statistics.mean(predicted_ms(r, args.table) / r["budget_ms"] for r in group)
            errors = [predicted_ms(r, args.table) / r["measured_ms"] - 1 for r in group
                      if r["measured_ms"]]
            worst = f"{100 * max(errors, key=abs):+.1f} %" if errors else ""
            print(f"| {dataset} | {arm} | {label} | {mean_std(accs)} | "
                  f"{' '.join(f'{100 * a:.1f}' for a in accs)} | "
                  f"{mean_std(gaps) if gaps else ''} | {100 * used:.0f} | {worst} | "
                  f"{len(group)} |")
            if arm == "random":
                means = [r["random_mean_acc"] for r in group]
                sizes = [r["random_n"] for r in group]
                print(f"| {dataset} | random, mean of the N nets (N = "
                      f"{', '.join(map(str, sizes))}) | - | {mean_std(means)} | | | | | |")


if __name__ == "__main__":
    main()
