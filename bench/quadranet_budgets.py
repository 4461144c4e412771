"""QuadraNet's three budgets (Cortex-A76 300 ms, VPU 30 ms, A100 3 ms; QuadraNet section IV.B)
on the anchored estimated tables: the nets found by `hwnas search` runs, their predicted latency
on all three devices and their MACs, next to QuadraNet Table III and to the published
ProxylessNAS nets costed by the same anchored device models.

    python bench/quadranet_budgets.py RUN_DIR [RUN_DIR ...] [--out FILE.md]

Each RUN_DIR is a finished search (its ``arch.json`` and ``summary.json``); see
``docs/results.md``, "QuadraNet's three budgets, searched", for the search commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hwnas_common.fileio import atomic_write_text
from latency_predictors import load_table, predict_latency
from latency_predictors.estimate.anchors import TABLE3_PROXIES, load_anchors, reference_costs
from latency_predictors.estimate.reference_nets import build_reference
from latency_predictors.estimate.roofline import DeviceModel, node_latency_us
from search_spaces import build, read_arch
from search_spaces.stats import count_macs

DEVICES = ("cortex-a76", "vpu", "a100")
TABLE3_FLOPS = {"quadranet-proxyless-cpu": "333M", "quadranet-proxyless-vpu": "275M",
                "quadranet-proxyless-gpu": "1065M"}


def _run_rows(run_dirs: list[str]) -> list[str]:
    tables = {d: load_table(d) for d in DEVICES}
    rows = []
    for run in run_dirs:
        spec = read_arch(run)
        summary = json.loads((Path(run) / "summary.json").read_text())
        budgets = ", ".join(f"{c['table']} {c['budget_ms']:g} ms"
                            for c in summary.get("tables", []))
        shape = tuple(spec.input)
        macs = count_macs(build(spec), shape) / 1e6
        ms = [predict_latency(spec, tables[d]).total_ms for d in DEVICES]
        blocks = sum(layer.op != "skip" for layer in spec.layers)
        rows.append(f"| `{Path(run).name}` ({budgets or 'see summary.json'}): {blocks} of "
                    f"{len(spec.layers)} layers are blocks | {macs:.0f}M | "
                    + " | ".join(f"{m:.1f} ms" for m in ms) + " |")
    return rows


def _reference_rows() -> list[str]:
    costs = reference_costs(sorted(TABLE3_PROXIES.values()))
    models = {d: DeviceModel(**load_table(d).metadata["model"]) for d in DEVICES}
    published = {(a.device, a.net): a.latency_ms for a in load_anchors()}
    rows = []
    for quadranet, proxy in TABLE3_PROXIES.items():
        table3 = [published[(d, quadranet)] for d in DEVICES]
        rows.append(f"| QuadraNet Table III {quadranet.removeprefix('quadranet-')} | "
                    f"{TABLE3_FLOPS[quadranet]} FLOPs | "
                    + " | ".join(f"{m:g} ms" for m in table3) + " |")
        model, shape = build_reference(proxy)
        macs = count_macs(model, shape) / 1e6
        ours = [(sum(node_latency_us(c, models[d]) for c in costs[proxy])
                 + models[d].inference_overhead_us) / 1e3 for d in DEVICES]
        rows.append(f"| published {proxy} on the anchored tables | {macs:.0f}M MACs | "
                    + " | ".join(f"{m:.1f} ms" for m in ours) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="search run directories")
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| net | MACs | Cortex-A76 | VPU | A100 |", "| --- | --- | --- | --- | --- |",
             *_reference_rows(), *_run_rows(args.runs)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
