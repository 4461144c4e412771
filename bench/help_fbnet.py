"""Reading another team's whole-net timings of FBNet-space nets (the help-fbnet CSV format:
``arch_id,ops,<device>...``, ``ops`` the 22 blocks ``|``-separated in HW-NAS-Bench's tokens) and
drawing the timed nets of a transfer experiment, so every bench that reads such a file (our
transfer bench, the HELP peer) draws the same nets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# How the devices of the source were timed, by name; a column of another name is "other".
KINDS = {"gpu": ("1080ti", "2080ti", "titan"), "xeon": ("silver", "gold", "platinum"),
         "phone": ("samsung", "pixel2", "essential"),
         "lut": ("fpga", "raspi", "eyeriss", "pixel3")}
END_TO_END = ("gpu", "xeon", "phone")


def device_kind(column: str) -> str:
    """``gpu`` / ``xeon`` / ``phone`` (end-to-end timings), ``lut`` (sums of per-block lookup
    table entries) or ``other``, from the column's name."""
    name = column.lower()
    if name.startswith("pixel3"):
        return "lut"
    for kind, stems in KINDS.items():
        if any(name.startswith(stem) for stem in stems):
            return kind
    return "other"


def to_hwnas_token(token: str) -> str:
    """HW-NAS-Bench's block token as hwnas's ``fbnet-cifar`` token: ``k3_e1_g2`` ->
    ``fb_k3_e1_g2``; ``skip`` stays."""
    return token if token == "skip" else f"fb_{token}"


def load(path: str | Path) -> tuple[list[list[str]], pd.DataFrame]:
    """``(ops, latency)``: per net its 22 tokens (as in the file) and one column of
    milliseconds per device, rows in file order."""
    frame = pd.read_csv(path)
    if "ops" not in frame.columns:
        raise SystemExit(f"{path}: no 'ops' column; expected arch_id,ops,<device>...")
    ops = [str(s).split("|") for s in frame["ops"]]
    devices = frame.drop(columns=[c for c in ("arch_id", "ops") if c in frame.columns])
    return ops, devices.astype(float)


def draw_nets(n_nets: int, k: int, repeat: int, seed: int = 0) -> np.ndarray:
    """The ``k`` nets timed in repeat ``repeat``: the same for every device and every bench."""
    return np.random.default_rng([seed, k, repeat]).choice(n_nets, size=k, replace=False)
