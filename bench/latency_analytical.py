"""The analytical roofline model, checked: error on this x86 CPU, and MobileNetV2-class
predictions next to published figures (QuadraNet Table III).

1. Per-op error of the a-priori `x86` model vs the measured `cpu` table (onnxruntime CPU EP).
2. The same model with efficiencies fitted on the `cifar` rows, evaluated on the held-out
   `proxyless-cifar` rows (MBConv: an op family the fit never saw): wrong parameters vs wrong
   model form.
3. Whole-network error on random `cifar` architectures measured end to end here.
4. MobileNetV2 (300 M MACs, the ProxylessNAS model class) on every device model, next to
   QuadraNet Table III (nn-Meter predictions for ProxylessNAS models: Cortex-A76 CPU / Myriad
   VPU / A100 GPU) and to its end-to-end latency measured here.

With ``--write-tables DIR`` it then writes the shipped estimated tables with this x86 error in
their metadata (:func:`latency_predictors.estimate.tables.write_shipped_tables`; without a
fresh x86 check, ``python -m latency_predictors.estimate DIR`` carries the shipped
tables' over). CPU-heavy: run it as

    flock /tmp/hwnas-cpu.lock python bench/latency_analytical.py [--write-tables DIR]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from latency_predictors import load_table
from latency_predictors.estimate.devices import DEVICE_MODELS
from latency_predictors.estimate.reference_nets import mobilenet_v2
from latency_predictors.estimate.roofline import (
    fit_device,
    graph_latency_ms,
    predict_rows,
    row_costs,
)
from latency_predictors.estimate.tables import SPACES, write_shipped_tables
from latency_predictors.keys import fixed_key, layer_keys, space_ops
from latency_predictors.measure.backends import export_onnx, summarize
from latency_predictors.measure.host import describe_host, host_fingerprint
from latency_predictors.measure.networks import backend_for, measure_archs
from search_spaces import get_space
from search_spaces.stats import count_macs

# QuadraNet Table III (nn-Meter predictions): model -> (MFLOPs, Cortex-A76 ms, VPU ms, A100 ms)
QUADRANET = {"Proxyless-CPU": (333, 299.6, 53.1, 1.8), "Proxyless-VPU": (275, 379.1, 29.9, 1.7),
             "Proxyless-GPU": (1065, 1521.1, 146.1, 2.9)}


def mape(pred: dict, meas: dict, keys) -> float:
    return float(np.mean([abs(pred[k] / meas[k] - 1) for k in keys]) * 100)


def network_sum(space, spec, rows: dict) -> float:
    choice = [space.candidate_index(x) for x in spec.layers]
    fixed = sum(rows[fixed_key(p)] for p in space.fixed_parts())
    return fixed + sum(rows[k[c]] for k, c in zip(layer_keys(space), choice, strict=True)
                       if k[c] is not None)


def x86_errors(measured_table: str, n_archs: int, all_costs: dict) -> dict:
    table = load_table(measured_table)
    meas = table.lookup()
    small = {k for s in ("cifar", "proxyless-cifar") for k in space_ops(get_space(s))}
    costs = {k: v for k, v in all_costs.items() if k in small}
    x86 = DEVICE_MODELS["x86"]
    apriori = predict_rows(costs, x86)
    cifar_keys = set(space_ops(get_space("cifar")))
    held_out = [k for k in costs if k not in cifar_keys and k in meas]
    fitted_model = fit_device(costs, {k: meas[k] for k in cifar_keys}, x86)
    fitted = predict_rows(costs, fitted_model)
    space = get_space("cifar")
    generator = torch.Generator().manual_seed(2000)
    specs = [space.sample(generator) for _ in range(n_archs)]
    measured = np.array(measure_archs(specs, backend_for(table), "measure (analytical)").ms)
    whole_a = np.array([network_sum(space, s, apriori) for s in specs])
    whole_f = np.array([network_sum(space, s, fitted) for s in specs])
    return {
        "device": f"x86 model vs this host ({describe_host(host_fingerprint())}; onnxruntime "
                  "CPU EP, 1 thread)",
        "reference": f"measured table {measured_table!r} and {n_archs} end-to-end cifar archs",
        "per_op_mape_apriori": round(mape(apriori, meas, [k for k in costs if k in meas]), 1),
        "per_op_median_ratio_apriori": round(float(np.median(
            [apriori[k] / meas[k] for k in costs if k in meas])), 3),
        "whole_network_mape_apriori": round(float(np.mean(np.abs(whole_a / measured - 1))
                                                  * 100), 1),
        "fitted_on": "cifar rows",
        "fitted_params": {**fitted_model.eff, "node_overhead_us": fitted_model.node_overhead_us},
        "held_out_per_op_mape_fitted": round(mape(fitted, meas, held_out), 1),
        "held_out_rows": len(held_out),
        "whole_network_mape_fitted": round(float(np.mean(np.abs(whole_f / measured - 1))
                                                 * 100), 1),
    }


def mobilenet_report(measured_table: str) -> dict:
    model = mobilenet_v2()
    onnx_bytes = export_onnx(model, (3, 224, 224))
    report = {"macs_M": round(count_macs(model, (3, 224, 224)) / 1e6, 1), "estimated_ms": {}}
    for name, device in DEVICE_MODELS.items():
        ms = graph_latency_ms(onnx_bytes, device) + device.inference_overhead_us / 1e3
        report["estimated_ms"][name] = round(ms, 2)
    backend = backend_for(load_table(measured_table), repeats=20)
    report["measured_x86_ms"] = round(summarize(backend.time(model, (3, 224, 224)))["median_ms"],
                                      2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", default="cpu", help="measured table of this CPU")
    parser.add_argument("-n", type=int, default=20, help="end-to-end archs for the x86 check")
    parser.add_argument("--write-tables", default=None, metavar="DIR",
                        help="then write the shipped estimated tables with this x86 error")
    args = parser.parse_args()
    torch.set_num_threads(1)
    costs = row_costs(list(SPACES))
    errors = x86_errors(args.measured, args.n, costs)
    print("x86 check of the analytical model:", json.dumps(errors, indent=1))
    mbv2 = mobilenet_report(args.measured)
    print(f"\nMobileNetV2 ({mbv2['macs_M']} M MACs), analytical estimate per device (ms): "
          f"{mbv2['estimated_ms']}; measured here (x86, ORT 1 thread): "
          f"{mbv2['measured_x86_ms']} ms "
          f"(x86 model / measured = {mbv2['estimated_ms']['x86'] / mbv2['measured_x86_ms']:.2f})")
    print("QuadraNet Table III (nn-Meter predictions) for ProxylessNAS models:")
    est = mbv2["estimated_ms"]
    for model, (flops, cpu, vpu, gpu) in QUADRANET.items():
        print(f"  {model:<14} {flops:>5} M FLOPs: Cortex-A76 {cpu:7.1f} ms (ours/theirs "
              f"{est['cortex-a76'] / cpu:.2f}), VPU {vpu:6.1f} ms ({est['vpu'] / vpu:.2f}), "
              f"A100 {gpu:4.1f} ms ({est['a100'] / gpu:.2f})")
    if args.write_tables:
        for shipped in write_shipped_tables(args.write_tables, {**errors, "mobilenet_v2": mbv2},
                                            costs):
            print("wrote", shipped.path)


if __name__ == "__main__":
    main()
