"""Which calibration model transfers a foreign table best, and how many networks it needs.

Measures ``-n`` networks of a space here once (the calibration's own draw: the all-skip net
and spread ones; fastest of 6 passes, raw), then, for each training size, draws ``--draws``
random training sets (the all-skip net and ``size - 1`` others), fits every model of
``calibrate.MODELS`` on them and the model 5-fold cross-validation picks (as ``calibrate``
does), and reports the mean and 90th percentile MAPE on the networks left out:

    taskset -c 0 python bench/latency_calibration_models.py --table cpu -n 80 --sizes 15,20,25,30

The measurements are kept in ``--cache`` (JSON), so a rerun with other sizes measures nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from latency_predictors import latency_matrix, load_table
from latency_predictors.fit.calibration import (
    MODELS,
    cross_validate,
    fit_model,
    predict,
    table_parts,
    without_calibration,
)
from latency_predictors.measure.calibrate import calibration_specs
from latency_predictors.measure.networks import backend_for, errors, measure_archs
from latency_predictors.metadata import GROUPINGS
from search_spaces import ArchSpec, get_space


def measured(table_name: str, space_name: str, n: int, cache: Path) -> tuple[list, np.ndarray]:
    """The ``n`` networks and their raw latencies here (ms), measured once, then cached."""
    space = get_space(space_name)
    if cache.is_file():
        data = json.loads(cache.read_text())
        specs = [ArchSpec.from_string(s, space.name, space.input) for s in data["specs"]]
        return specs, np.array(data["raw_ms"])
    torch.set_num_threads(1)
    table = load_table(table_name)
    specs = calibration_specs(space, n, seed=11)
    result = measure_archs(specs, backend_for(table), "measure")
    cache.write_text(json.dumps({"specs": [s.to_string() for s in specs],
                                 "raw_ms": result.raw_ms,
                                 "reference_ms": result.reference_times_ms}))
    return specs, np.array(result.raw_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="cpu", help="the foreign table to calibrate")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("-n", type=int, default=80, help="networks measured")
    parser.add_argument("--sizes", default="15,20,25,30", help="training set sizes")
    parser.add_argument("--draws", type=int, default=150)
    parser.add_argument("--cache", default="runs/calibration-models.json")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    specs, y = measured(args.table, args.space, args.n, cache)
    space = get_space(args.space)
    matrix = latency_matrix(space, without_calibration(load_table(args.table), space.name))
    parts = {g: table_parts(specs, space, matrix, g) for g in GROUPINGS}
    print(f"{len(y)} {space.name} networks measured here: {y.min():.3f}-{y.max():.3f} ms\n")
    print("| training nets | " + " | ".join(MODELS) + " | picked by 5-fold CV (picks) |")
    print("|---:|" + "---:|" * (len(MODELS) + 1))
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(size)
        scores: dict[str, list[float]] = {m: [] for m in [*MODELS, "cv"]}
        picks: dict[str, int] = {}
        for draw in range(args.draws):
            rest = rng.permutation(np.arange(1, len(y)))
            train, test = np.r_[0, rest[:size - 1]], rest[size - 1:]
            fit_parts = {g: p.rows(train) for g, p in parts.items()}
            test_parts = {g: p.rows(test) for g, p in parts.items()}
            fits = {m: fit_model(m, fit_parts, y[train]) for m in MODELS}
            for model, fit in fits.items():
                if fit is not None:
                    scores[model].append(errors(predict(fit, test_parts), y[test])["mape"])
            cv = {m: errors(p, y[train])["mape"]
                  for m, p in cross_validate(fit_parts, y[train], seed=draw).items()}
            best = min(cv, key=lambda m: round(cv[m], 2))
            picks[best] = picks.get(best, 0) + 1
            scores["cv"].append(errors(predict(fits[best], test_parts), y[test])["mape"])
        cells = [f"{np.mean(v):.2f} % (p90 {np.percentile(v, 90):.2f})" if v else "–"
                 for v in scores.values()]
        print(f"| {size} | " + " | ".join(cells[:-1]) + f" | {cells[-1]} ({picks}) |")


if __name__ == "__main__":
    main()
