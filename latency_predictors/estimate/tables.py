"""Estimated latency tables: one device's (:func:`estimate_table`) and the shipped ones.

The shipped estimated tables (``latency_predictors/tables/NAME.*``) are one per device of
:data:`latency_predictors.estimate.devices.DEVICE_MODELS` that ships one, for the six spaces of
:data:`SPACES`: a device with anchors in ``anchors.csv`` gets its parameters fitted on them
(:func:`latency_predictors.estimate.anchors.fit_anchored`, leave-one-out error in the table's
``anchoring``); one without keeps its datasheet parameters and is labelled a-priori,
unanchored. Every table carries the x86 check of the model form (``analytical_error``, from
``bench/latency_analytical.py``). To write them again (about 10 s, no timing)::

    python -m latency_predictors.estimate latency_predictors/tables

which carries the x86 check over from the shipped ``a100`` table;
``python bench/latency_analytical.py --write-tables DIR`` measures it afresh first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces import Space, get_space

from ..keys import space_ops
from ..metadata import new_metadata
from ..store import load_table, save_table
from ..table import KEY_COLUMNS, LatencyTable, make_table
from .anchors import AnchorFit, device_anchors, fit_anchored, load_anchors, reference_costs
from .devices import DEVICE_MODELS
from .roofline import DeviceModel, NodeCost, predict_rows, row_costs

SPACES = ("cifar", "proxyless-cifar", "hybrid-cifar", "imagenet", "proxyless-imagenet",
          "hybrid-imagenet", "fbnet-cifar")


def estimate_table(device: DeviceModel | str, spaces: list[Space | str],
                   analytical_error: dict[str, Any] | None = None,
                   costs: dict[tuple, list[NodeCost]] | None = None,
                   anchoring: dict[str, Any] | None = None) -> LatencyTable:
    """An ``estimated`` table of ``device`` (a model or a name of :data:`DEVICE_MODELS`)
    covering ``spaces`` (``costs``: precomputed :func:`row_costs` of those spaces, to share the
    ONNX exports between devices; ``anchoring``: :meth:`AnchorFit.summary` of the fit that gave
    ``device`` its parameters, None for datasheet parameters)."""
    device = DEVICE_MODELS[device] if isinstance(device, str) else device
    spaces = [get_space(s) if isinstance(s, str) else s for s in spaces]
    costs = costs if costs is not None else row_costs(spaces)
    needed = {k for s in spaces for k in space_ops(s)}
    rows = [{**dict(zip(KEY_COLUMNS, key, strict=True)), "mean_ms": ms, "median_ms": ms,
             "std_ms": 0.0, "samples": 1}
            for key, ms in predict_rows(costs, device).items() if key in needed]
    meta = new_metadata(device.name, "estimated", runtime="analytical-roofline",
                        runtime_version="1", mode=device.description, threads=0,
                        dtype="float16" if device.dtype_bytes == 2 else "float32",
                        spaces=sorted(s.name for s in spaces), model=device.to_dict(),
                        notes="estimated by latency_predictors.estimate.roofline (roofline, "
                              + (f"parameters fitted on {anchoring['n_anchors']} published "
                                 "batch-1 latencies in latency_predictors/estimate/anchors.csv"
                                 if anchoring else "datasheet parameters, a-priori, unanchored")
                              + "); replace it by a measured table from `hwnas profile` on "
                              "the real device")
    if analytical_error:
        meta["analytical_error"] = analytical_error
    if anchoring:
        meta["anchoring"] = anchoring
    return make_table(rows, meta, device.name)


@dataclass(frozen=True)
class ShippedTable:
    """One written table and the anchored fit of its device (None: datasheet parameters)."""

    path: Path
    fit: AnchorFit | None


def write_shipped_tables(folder: str | Path, analytical_error: dict[str, Any],
                         costs: dict[tuple, list[NodeCost]] | None = None) -> list[ShippedTable]:
    """Write the estimated table of every device that ships one into ``folder``, fitted on its
    anchors where it has any (``costs``: :func:`row_costs` of :data:`SPACES`, if at hand)."""
    anchors = load_anchors()
    anchored = {a.device for a in anchors if a.fit}
    reference = reference_costs(sorted({a.net for a in anchors if a.fit}))
    costs = costs if costs is not None else row_costs(list(SPACES))
    models = [m for m in DEVICE_MODELS.values() if m.ships_table]
    fits = {m.name: fit_anchored(m, device_anchors(m.name, anchors), reference)
            for m in models if m.name in anchored}
    borrowed = borrowed_error(fits)
    written = []
    for model in models:
        fit = fits.get(model.name)
        table = estimate_table(fit.model if fit else model, list(SPACES), analytical_error,
                               costs, fit.summary() if fit else None)
        table.metadata["notes"] += model.table_note
        if fit is None:
            table.metadata["error"] = borrowed
        written.append(ShippedTable(save_table(table, Path(folder) / model.name), fit))
    return written


def borrowed_error(fits: dict[str, AnchorFit]) -> dict[str, Any]:
    """The error an a-priori table states (:mod:`latency_predictors.fit.error`): with no
    figure of its own device, the leave-one-out ratios published / predicted of every anchored
    device pooled, and it says whose they are."""
    ratios = [a["published_ms"] / a["loo_ms"] for fit in fits.values()
              for a in fit.summary()["anchors"]]
    return {"ratios": [round(r, 5) for r in ratios],
            "what": f"borrowed: leave-one-out on the {len(ratios)} published latencies of "
                    f"{', '.join(sorted(fits))}, no figure of this device"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where to write NAME.csv + NAME.json "
                        "(the shipped ones: latency_predictors/tables)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    error = load_table("a100").metadata.get("analytical_error") or {}
    for shipped in write_shipped_tables(args.folder, error):
        if (fit := shipped.fit) is not None:
            print(f"{fit.model.name}: fitted on {len(fit.anchors)} anchors, in-sample MAPE "
                  f"{fit.fit_mape:.1f} %, leave-one-out MAPE {fit.loo_mape:.1f} %, "
                  f"{fit.summary()['params']}")
        print("wrote", shipped.path)
