"""How few whole-net timings a table of a new device needs: ``hwnas tables fit`` on another
team's timings of FBNet-space nets, device by device, against baselines and every prior kind.

Input: any CSV of the help-fbnet format (``arch_id,ops,<device>...``; ``bench/help_fbnet.py``).
For every device column of ``--data`` (the target) and every K of ``--k``, ``--repeats`` times:

1. K nets are drawn (``help_fbnet.draw_nets``: the same nets for every device and method) and
   their timings are all the fit sees;
2. each method fits a table of ``fbnet-cifar`` on them (``latency_predictors.fit.fit_table``,
   nested cross-validation, the margin at ``--confidence``) and predicts every other net.

Methods (the same code path, only the priors differ):

- baselines, each a single linear model with an offset: ``flops`` (MACs), ``params``,
  ``op-count`` (the count of each of the 9 ops, non-negative);
- ``roofline``: the analytical roofline's per-op terms, weighed by the timings;
- ``estimated``: hwnas's shipped estimated tables (roofline per device class, anchored on
  published latencies) covering ``fbnet-cifar``;
- ``analytical``: roofline + estimated: every prior that needs no other device's timings;
- ``devices``: per-op tables of the ``--priors`` columns (default: the other columns of
  ``--data``; the target's own column is never a prior), each fitted on all that column's nets;
- ``best``: all of the above priors; cross-validation on the K timings picks one.

Reported per (device, K, method), mean ± std over repeats: Spearman ρ, Kendall τ, MAPE, the share
within ±10 %; and for budgets at the 25th, 50th and 75th percentile of the device's timings,
with the margin applied (derive under B / (1 + margin)):

- ``coverage``: of the nets predicted under the threshold, the share that measure ≤ B;
- ``band coverage``: the same for the nets predicted in [0.9, 1] × the threshold (the nets a
  search derives, which sit at the threshold);
- ``budget used``: the band nets' mean measured latency / B.

    python bench/device_transfer.py --data ../shared/data/help-fbnet/latency_ms.csv \\
        --out bench/results/device-transfer-2026-12-07.json
    python bench/device_transfer.py --data HELD_BACK.csv \\
        --priors ../shared/data/help-fbnet/latency_ms.csv
    python bench/device_transfer.py --data ../shared/data/help-fbnet/latency_ms.csv --k 10 \\
        --devices fpga,raspi4,eyeriss --help-repo PATH_TO_HELP_CHECKOUT   # HELP side by side
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from help_fbnet import END_TO_END, device_kind, draw_nets, load, to_hwnas_token
from scipy import stats

from latency_predictors import known_tables, latency_matrix, load_table, make_table, new_metadata
from latency_predictors.fit import TableError, fit_table, roofline_prior, table_error, table_prior
from latency_predictors.fit.fitting import MIN_ENTRY_MS
from latency_predictors.fit.priors import net_incidence, space_keys
from latency_predictors.fit.timings import Timings
from latency_predictors.keys import layer_keys
from latency_predictors.predictor import check_coverage
from search_spaces import get_space

SPACE = "fbnet-cifar"
HELP_UNSEEN = ("fpga", "raspi4", "eyeriss")  # HELP's test devices of this space
PERCENTILES = (25, 50, 75)


def specs_of(ops: list[list[str]]):
    space = get_space(SPACE)
    return [space.spec_from_string("|".join(to_hwnas_token(t) for t in net)) for net in ops]


def column_table(name: str, incidence: np.ndarray, ms: np.ndarray, keys) -> object:
    """A per-op table of one device column, fitted on all its nets: minimum-norm least squares
    on the op counts, then, per layer, its entries shifted to be positive where every choice of
    the layer is an op (a constant per layer is the same in every net, so the offset takes it);
    an entry below an identity skip's 0 ms becomes the smallest entry."""
    coef = np.linalg.lstsq(np.c_[incidence, np.ones(len(ms))], ms, rcond=None)[0]
    values, offset = coef[:-1].copy(), float(coef[-1])
    space = get_space(SPACE)
    index = {k: i for i, k in enumerate(keys)}
    for row in layer_keys(space):
        if None in row:  # an identity skip pins this layer's zero
            continue
        members = [index[k] for k in dict.fromkeys(row)]
        shift = MIN_ENTRY_MS - values[members].min()
        if shift > 0:
            values[members] += shift
            offset -= shift
    rows = [{"op": k[0], "c_in": k[1], "c_out": k[2], "height": k[3], "width": k[4],
             "stride": k[5], "branches": k[6], "mean_ms": v, "median_ms": v, "std_ms": 0.0,
             "samples": 1} for k, v in zip(keys, np.maximum(values, MIN_ENTRY_MS), strict=True)]
    meta = new_metadata(name, "fitted", runtime="help-fbnet", mode="whole-net timings",
                        threads=0, spaces=[SPACE],
                        calibration={SPACE: {"scale": 1.0, "offset_ms": float(offset)}})
    return make_table(rows, meta, name)


def baseline_features(space, keys, incidence: np.ndarray) -> dict[str, np.ndarray]:
    """Per net: MACs, weights, and the count of each op token (the baselines' regressors)."""
    from latency_predictors.fit.priors import ROOFLINE_TERMS, _roofline_terms

    terms = _roofline_terms(space.name, keys)
    macs = terms[:, [ROOFLINE_TERMS.index("dense_macs"), ROOFLINE_TERMS.index(
        "depthwise_macs")]].sum(1)
    weights = terms[:, ROOFLINE_TERMS.index("weights")]
    tokens = sorted({k[0] for k in keys if not k[0].startswith(("stem", "head"))})
    counts = np.array([[1.0 if k[0] == t else 0.0 for t in tokens] for k in keys])
    return {"flops": incidence @ macs[:, None], "params": incidence @ weights[:, None],
            "op-count": incidence @ counts}


def least_squares(x: np.ndarray, y: np.ndarray):
    """Ordinary least squares with an intercept (minimum norm when underdetermined)."""
    design = np.c_[x, np.ones(len(y))]
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return lambda z: np.c_[z, np.ones(len(z))] @ coef


def baseline(x: np.ndarray, timed: np.ndarray, rest: np.ndarray, y: np.ndarray, confidence):
    """A baseline's predictions of the untimed nets and its margin from leave-one-out ratios."""
    model = least_squares(x[timed], y[timed])
    loo = np.array([least_squares(np.delete(x[timed], i, 0), np.delete(y[timed], i))(
        x[timed][i:i + 1])[0] for i in range(len(timed))])
    ratios = y[timed] / np.maximum(loo, MIN_ENTRY_MS)
    return model(x[rest]), TableError(ratios, "leave-one-out").margin(confidence)


def evaluate(pred: np.ndarray, y: np.ndarray, margin: float, all_y: np.ndarray) -> dict:
    out = {"rho": stats.spearmanr(pred, y)[0], "tau": stats.kendalltau(pred, y)[0],
           "mape": float(np.mean(np.abs(pred - y) / y) * 100),
           "within10": float(np.mean(np.abs(pred - y) / y <= 0.1) * 100),
           "margin": margin * 100}
    for p in PERCENTILES:
        budget = float(np.percentile(all_y, p))
        threshold = budget / (1 + margin)
        under = pred <= threshold
        band = under & (pred >= 0.9 * threshold)
        out[f"coverage_p{p}"] = float(np.mean(y[under] <= budget) * 100) if under.any() else None
        out[f"band_coverage_p{p}"] = (float(np.mean(y[band] <= budget) * 100)
                                      if band.any() else None)
        out[f"used_p{p}"] = float(np.mean(y[band]) / budget * 100) if band.any() else None
    return out


def summarise(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
        out[key] = ([float(np.mean(values)), float(np.std(values))] if values else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CSV of the help-fbnet format")
    parser.add_argument("--report", help="print the markdown tables of a JSON this bench wrote")
    parser.add_argument("--priors", default=None, help="CSV whose columns may serve as priors "
                        "(default: --data, leave-one-device-out)")
    parser.add_argument("--devices", default="all", help="columns of --data to predict")
    parser.add_argument("--k", default="5,10,20,50")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--methods", default="flops,params,op-count,roofline,estimated,"
                        "analytical,devices,best")
    parser.add_argument("--out", default=None, help="JSON of every figure")
    parser.add_argument("--help-repo", default=None, help="a checkout of HELP's public "
                        "repository: also run bench/help_peer.py on the devices of --devices "
                        "that are HELP's unseen ones, K=10, the same draws, in this run")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return
    if not args.data:
        parser.error("--data is required")
    start = time.perf_counter()
    space = get_space(SPACE)
    keys = space_keys(space)
    ops, latency = load(args.data)
    specs = specs_of(ops)
    incidence = net_incidence(specs, space, keys)
    choices = np.array([[space.candidate_index(layer) for layer in s.layers] for s in specs])
    layer_index = np.arange(space.num_layers)
    prior_ops, prior_latency = (ops, latency) if args.priors is None else load(args.priors)
    prior_incidence = (incidence if args.priors is None
                       else net_incidence(specs_of(prior_ops), space, keys))
    column_tables = {c: table_prior(column_table(c, prior_incidence,
                                                 prior_latency[c].to_numpy(), keys), space,
                                    f"{device_kind(c)} timings")
                     for c in prior_latency.columns}
    estimated = []
    for name in known_tables():
        table = load_table(name)
        if table.estimated:
            try:
                check_coverage(space, table)
            except Exception:
                continue
            estimated.append(table_prior(table, space))
    roof = [roofline_prior(space)]
    regressors = baseline_features(space, keys, incidence)
    devices = list(latency.columns) if args.devices == "all" else args.devices.split(",")
    methods = args.methods.split(",")
    results: dict = {"data": args.data, "priors": args.priors or args.data, "k": {},
                     "estimated_priors": [p.name for p in estimated],
                     "confidence": args.confidence, "repeats": args.repeats}
    print(f"{len(specs)} nets, devices {devices}; estimated priors "
          f"{[p.name for p in estimated]}", flush=True)
    for device in devices:
        y_all = latency[device].to_numpy()
        others = [p for c, p in column_tables.items() if c != device]
        priors = {"roofline": roof, "estimated": estimated,
                  "analytical": roof + estimated, "devices": others,
                  "best": others + estimated + roof}
        for k in map(int, args.k.split(",")):
            per_method: dict[str, list] = {m: [] for m in methods}
            chosen: dict[str, list] = {m: [] for m in methods}
            for repeat in range(args.repeats):
                timed = draw_nets(len(specs), k, repeat, args.seed)
                rest = np.setdiff1d(np.arange(len(specs)), timed)
                timings = Timings(tuple(specs[i] for i in timed), y_all[timed], "help-fbnet")
                for method in methods:
                    if method in regressors:
                        pred, margin = baseline(regressors[method], timed, rest, y_all,
                                                args.confidence)
                        per_method[method].append(evaluate(pred, y_all[rest], margin, y_all))
                        chosen[method].append("least squares")
                        continue
                    if not priors[method]:
                        continue
                    result = fit_table(timings, space, priors[method], device)
                    matrix = latency_matrix(space, result.table)
                    per_layer = np.array(matrix.per_layer)
                    pred = matrix.fixed_ms + per_layer[layer_index, choices[rest]].sum(1)
                    margin = table_error(result.table, SPACE).margin(args.confidence)
                    per_method[method].append(evaluate(pred, y_all[rest], margin, y_all))
                    chosen[method].append(result.chosen)
            entry = {m: {**summarise(v), "chosen": chosen[m]}
                     for m, v in per_method.items() if v}
            results["k"].setdefault(str(k), {})[device] = entry
            line = "  ".join(f"{m} ρ {e['rho'][0]:.3f} MAPE {e['mape'][0]:.1f}"
                             for m, e in entry.items())
            print(f"{device:14s} ({device_kind(device)}) K={k:<3d} {line}  "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["groups"] = group_means(results, devices, methods)
    for k, groups in results["groups"].items():
        for kind, by_method in groups.items():
            print(f"K={k} {kind}: " + "  ".join(
                f"{m} ρ {v['rho']:.3f} MAPE {v['mape']:.2f} cov {v['coverage']:.1f} "
                f"band {v['band_coverage']:.1f} used {v['used']:.1f}"
                for m, v in by_method.items()))
    if args.help_repo:
        results["help"] = help_side_by_side(args, devices, results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=float))
        print("wrote", args.out)


def help_side_by_side(args: argparse.Namespace, devices: list[str], results: dict) -> dict:
    """HELP (bench/help_peer.py) on its unseen devices with 10 timings, next to hwnas's K=10
    figures of this run; the same draws (``help_fbnet.draw_nets``)."""
    unseen = [d for d in HELP_UNSEEN if d in devices]
    if not unseen or "10" not in results["k"]:
        raise SystemExit(f"--help-repo needs K=10 and one of {HELP_UNSEEN} in --devices")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "help.json"
        subprocess.run([sys.executable, str(Path(__file__).with_name("help_peer.py")),
                        "--help-repo", args.help_repo, "--data", args.data, "--devices",
                        ",".join(unseen), "--k", "10", "--repeats", str(args.repeats),
                        "--seed", str(args.seed), "--out", str(out)], check=True)
        peer = json.loads(out.read_text())
    side: dict = {"help_commit": peer["help_commit"]}
    for device in unseen:
        ours = results["k"]["10"][device]
        theirs = {protocol: peer["summary"][protocol][device]["all-other"]["rho"]
                  for protocol in ("hwnas-draws", "help-published", "reference-only")}
        side[device] = {"hwnas": {m: ours[m]["rho"] for m in ours},
                        "help": {p: [v["mean"], v["std"]] for p, v in theirs.items()}}
        print(f"{device}: hwnas best ρ {ours['best']['rho'][0]:.3f}, analytical "
              f"{ours['analytical']['rho'][0]:.3f}; HELP (its 10 reference nets + these 10) "
              f"{theirs['hwnas-draws']['mean']:.3f}, HELP as published "
              f"{theirs['help-published']['mean']:.3f}", flush=True)
    return side


def report(results: dict) -> str:
    """Markdown: per device group, every method's mean ρ (MAPE %) at each K; then the budget
    at K=10 and 50 (coverage: per device the lowest of the three budgets, the mean and the
    lowest over the group's devices; band coverage; budget used); then per device at K=10."""
    devices = list(next(iter(results["k"].values())))
    methods = list(next(iter(next(iter(results["k"].values())).values())))
    groups = group_means(results, devices, methods)
    ks = list(results["k"])
    lines = []
    for kind in ("gpu+xeon", "gpu", "xeon", "phone", "lut"):
        if kind not in groups[ks[0]]:
            continue
        lines += [f"\n**{kind}** ({len(group_members(devices)[kind])} devices): Spearman ρ "
                  "(MAPE %), mean over devices of the mean over repeats\n",
                  "| method | " + " | ".join(f"K={k}" for k in ks) + " |",
                  "|---" * (len(ks) + 1) + "|"]
        for method in methods:
            lines.append(f"| {method} | " + " | ".join(
                f"{groups[k][kind][method]['rho']:.3f} ({groups[k][kind][method]['mape']:.2f})"
                for k in ks) + " |")
    lines += ["\n**budget** (end-to-end devices; margin at "
              f"{results['confidence']:.0%}): coverage % mean / lowest device, band coverage "
              "% mean / lowest device, budget used %\n",
              "| method | K | coverage | band coverage | budget used |", "|---|---|---|---|---|"]
    for k in (k for k in ("10", "50") if k in ks):
        for method in methods:
            v = groups[k]["end-to-end"][method]
            lines.append(f"| {method} | {k} | {v['coverage']:.1f} / {v['coverage_min']:.1f} | "
                         f"{v['band_coverage']:.1f} / {v['band_coverage_min']:.1f} | "
                         f"{v['used']:.1f} |")
    if "10" in ks:
        lines += ["\n| device (K=10): ρ / MAPE % | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for device, entry in results["k"]["10"].items():
            lines.append(f"| {device} ({device_kind(device)}) | " + " | ".join(
                f"{entry[m]['rho'][0]:.3f} / {entry[m]['mape'][0]:.1f}" for m in methods) + " |")
    return "\n".join(lines)


def group_members(devices: list[str]) -> dict[str, list[str]]:
    """The devices of each kind, of GPUs and Xeons together, and of every end-to-end kind."""
    kinds = {d: device_kind(d) for d in devices}
    groups = {kind: [d for d in devices if kinds[d] == kind] for kind in set(kinds.values())}
    groups["gpu+xeon"] = [d for d in devices if kinds[d] in ("gpu", "xeon")]
    groups["end-to-end"] = [d for d in devices if kinds[d] in END_TO_END]
    return groups


def group_means(results: dict, devices: list[str], methods: list[str]) -> dict:
    """Per K, per device group (``group_members``), per method: the mean over devices of the
    mean ρ and MAPE; coverage and band coverage, per device the lowest of the three budgets,
    their mean and lowest over devices; budget used, the mean over devices and budgets."""
    out: dict = {}
    for k, by_device in results["k"].items():
        for kind, members in group_members(devices).items():
            if not members:
                continue
            for method in methods:
                entries = [by_device[d][method] for d in members if method in by_device[d]]
                if not entries:
                    continue

                def lowest(prefix: str, entries=entries) -> list[float]:
                    """Per device, the lowest over the three budgets."""
                    return [min(values) for e in entries if (values := [
                        e[f"{prefix}_p{p}"][0] for p in PERCENTILES
                        if e[f"{prefix}_p{p}"] is not None])]

                cover, band = lowest("coverage"), lowest("band_coverage")
                used = [e[f"used_p{p}"][0] for e in entries for p in PERCENTILES
                        if e[f"used_p{p}"] is not None]
                out.setdefault(k, {}).setdefault(kind, {})[method] = {
                    "rho": float(np.mean([e["rho"][0] for e in entries])),
                    "mape": float(np.mean([e["mape"][0] for e in entries])),
                    "coverage": float(np.mean(cover)), "coverage_min": float(np.min(cover)),
                    "band_coverage": float(np.mean(band)),
                    "band_coverage_min": float(np.min(band)),
                    "used": float(np.mean(used)) if used else float("nan")}
    return out


if __name__ == "__main__":
    main()
