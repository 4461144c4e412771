"""ONNX (onnxruntime CPU) vs PyTorch agreement over many random architectures of each space.

Run: python bench/export_agreement.py [-n 50]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from nas.deploy.export import export_model
from search_spaces import SPACES, build, get_space


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50, help="random specs per space")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in SPACES:
            space = get_space(name)
            n = args.n if "imagenet" not in name else max(1, args.n // 10)
            errors = []
            for seed in range(n):
                spec = space.sample(torch.Generator().manual_seed(seed))
                result = export_model(spec, build(spec), "onnx", Path(tmp) / "m.onnx", seed=seed)
                errors.append(result.max_abs_error)
            print(f"{name:20s} {n:3d} random specs: max abs error {max(errors):.2e}, "
                  f"median {sorted(errors)[len(errors) // 2]:.2e}")


if __name__ == "__main__":
    main()
