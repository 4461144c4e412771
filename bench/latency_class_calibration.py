"""Does a per-interaction-class calibration beat the affine one? Offline, on measured networks.

Reads a validation CSV written by ``hwnas validate --out DIR`` / ``bench/latency_validate.py
--out DIR`` (columns arch, measured_ms, ...), then over many random half/half splits fits on one
half and scores the other:
- affine:  measured ≈ a · table_sum + b
- class:   measured ≈ Σ_c s_c · (table sum of the layers of interaction class c) + s_f · fixed + b

Run: python bench/latency_class_calibration.py VALIDATION.csv [--device cpu] [--splits 200]
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from latency_predictors import latency_matrix, load_table
from search_spaces import INTERACTIONS, get_space


def features(csv_path: str, device: str, space_name: str) -> tuple[np.ndarray, np.ndarray]:
    space = get_space(space_name)
    matrix = latency_matrix(space, load_table(device))
    classes = sorted(INTERACTIONS) + ["mbconv"]
    rows, measured = [], []
    for row in csv.DictReader(open(csv_path)):
        spec = space.spec_from_string(row["arch"])
        f = np.zeros(len(classes) + 1)
        f[-1] = matrix.fixed_ms
        for i, layer in enumerate(spec.layers):
            if layer.op != "skip":
                name = layer.interaction if layer.op == "block" else "mbconv"
                f[classes.index(name)] += matrix.per_layer[i][space.candidate_index(layer)]
        rows.append(f)
        measured.append(float(row["measured_ms"]))
    return np.array(rows), np.array(measured)


def fit_predict(a: np.ndarray, y: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = 1.0 / y  # least squares on the relative error
    design = np.c_[a, np.ones(len(a))]
    coef = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)[0]
    return np.c_[b, np.ones(len(b))] @ coef


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--splits", type=int, default=200)
    args = parser.parse_args()
    x, y = features(args.csv, args.device, args.space)
    total = x.sum(axis=1, keepdims=True)
    used = x[:, x.any(axis=0)]

    def score(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
        rel = np.abs(p - t) / t
        return 100 * rel.mean(), 100 * (rel <= 0.10).mean()

    print(f"table sum, no calibration: MAPE {score(total[:, 0], y)[0]:.2f} %, "
          f"{score(total[:, 0], y)[1]:.0f} % within ±10 % ({len(y)} nets)")
    rng = np.random.default_rng(0)
    results = {"affine": [], "class": []}
    for _ in range(args.splits):
        order = rng.permutation(len(y))
        a, b = order[: len(y) // 2], order[len(y) // 2:]
        results["affine"].append(score(fit_predict(total[a], y[a], total[b]), y[b]))
        results["class"].append(score(fit_predict(used[a], y[a], used[b]), y[b]))
    for name, values in results.items():
        v = np.array(values)
        print(f"{name:6s}: held-out MAPE {v[:, 0].mean():.2f} %, {v[:, 1].mean():.0f} % within "
              f"±10 % (mean over {args.splits} half/half splits)")


if __name__ == "__main__":
    main()
