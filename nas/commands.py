"""CLI subcommands of nas: ``hwnas export`` (and the search commands)."""

from __future__ import annotations

import argparse
from pathlib import Path

from search_spaces import ArchSpec, HwnasError

from .export import FORMATS, export_model


def read_arch(path: str | Path) -> ArchSpec:
    """Read an ArchSpec JSON file (one clear error if it is missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"{path}: no such architecture file")
    return ArchSpec.from_json(path.read_text())


def _export(args: argparse.Namespace) -> int:
    spec = read_arch(args.arch)
    out = args.out or Path(args.arch).with_suffix({"onnx": ".onnx", "torchscript": ".ts",
                                                   "json": ".json", "pt": ".pt"}[args.format])
    result = export_model(spec, None, args.format, out)
    line = f"wrote {result.path} ({result.format})"
    if result.max_abs_error is not None:
        line += f"; max abs error vs PyTorch: {result.max_abs_error:.3g}"
    print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export an architecture (ONNX, TorchScript, ...)")
    p.add_argument("arch", help="ARCH.json")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", help="output file (default: next to ARCH.json)")
    p.set_defaults(func=_export)
