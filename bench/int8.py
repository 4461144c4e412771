"""What int8 changes, measured: per block family the int8/fp32 latency ratio and the accuracy
lost to post-training quantization, and the search for int8 against the fp32 search quantized.

Two parts, each cached per piece under ``OUT`` (a killed run resumes), then a report:

- ``families``: for every block family of ``hybrid-cifar`` (MBConv and each interaction type),
  ``--nets`` nets whose blocks all come from that family (each layer skip with probability
  1/3, else a random kernel and expansion of the family; at least 3 blocks), each trained from
  scratch ``--epochs`` on ``--train-images`` Fashion-MNIST images (the search's fine-tuning
  recipe), exported and quantized as ``hwnas export --quantize int8`` does
  (:mod:`nas.deploy.quantized`: 32 training images calibrate) and scored on the 10,000 test
  images in fp32 and int8 (ONNX Runtime); with ``--time``, the fp32 and int8 exports timed
  here, round robin, 1 thread, batch 1, each keeping its fastest of 3 passes.
- ``headline``: per seed, the main job's search for int8 (``hwnas search --short --device
  cpu-int8 --budget 15%``) against the main job's search for fp32 at the fp32 budget whose
  random band nets have the same mean predicted int8 latency as the int8 budget's
  (:func:`matched_fp32_budget`, on the tables as true to this host), both fine-tuned nets
  quantized by ``hwnas export --quantize int8`` and the int8 arm's measured by ``hwnas measure
  --device cpu-int8`` (three runs of the command; their median against the budget: one run
  times one session 100 times and read 25 % above the export's figure once). The difference
  in int8 test accuracy is paired by seed (95 % t-interval), next to both arms' measured int8
  latency.

    python bench/int8.py families --out runs/int8            # train and score (no timing)
    flock /tmp/hwnas-cpu.lock python bench/int8.py families --time --out runs/int8
    python bench/int8.py headline --seeds 0,1,2,3 --out runs/int8     # the searches
    flock /tmp/hwnas-cpu.lock python bench/int8.py headline --time --seeds 0,1,2,3 --out runs/int8
    python bench/int8.py report --out runs/int8 > bench/results/int8-DATE.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas_common.fileio import atomic_write_text, atomic_write_with  # noqa: E402
from latency_predictors import latency_matrix, load_table, predict_latency  # noqa: E402
from latency_predictors.measure.adapt import host_true_table  # noqa: E402
from latency_predictors.measure.host import describe_host, host_fingerprint  # noqa: E402
from latency_predictors.measure.quantize import cpu_session, quantize_onnx  # noqa: E402
from nas.core.budget import RelativeBudget  # noqa: E402
from nas.core.constraints import Constraint  # noqa: E402
from nas.core.sampler import random_band_nets  # noqa: E402
from nas.deploy.quantized import (  # noqa: E402
    calibration_inputs,
    compare,
    fp32_onnx,
    time_models,
)
from nas.deploy.retrain import train_arch  # noqa: E402
from nas.run.batches import Batches, channel_stats  # noqa: E402
from nas.run.readers import load_dataset  # noqa: E402
from search_spaces import ArchSpec, get_space  # noqa: E402

SPACE = "hybrid-cifar"
FAMILIES = ("mbconv", "sum", "star", "quad", "poly2", "rbf")
INT8_TABLE, FP32_TABLE = "cpu-int8", "cpu"
BAND_NETS = 400  # random band nets per budget when matching the fp32 budget
FLOOR = 0.9  # the derivation's band: [0.9 B, B]


def _cached(path: Path, make: Callable[[], dict]) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    row = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(row, indent=2) + "\n")
    return row


# --- families -----------------------------------------------------------------------------------

def family_net(family: str, seed: int) -> ArchSpec:
    """A ``hybrid-cifar`` net whose blocks all come from ``family``: each layer skip with
    probability 1/3, else a random kernel and expansion of the family; at least 3 blocks."""
    space = get_space(SPACE)
    ours = [i for i, c in enumerate(space.candidates) if c.op != "skip" and c.family == family]
    skip = next(i for i, c in enumerate(space.candidates) if c.op == "skip")
    generator = torch.Generator().manual_seed(1000 * FAMILIES.index(family) + seed)
    while True:
        choice = [skip if float(torch.rand((), generator=generator)) < 1 / 3 else
                  ours[int(torch.randint(len(ours), (), generator=generator))]
                  for _ in range(space.num_layers)]
        if sum(c != skip for c in choice) >= 3:
            return space.spec_from_indices(choice)


def family_row(spec: ArchSpec, seed: int, epochs: int, images: int, folder: Path) -> dict:
    """Train ``spec`` from scratch, quantize it as the export does, and score both; the fp32
    and int8 ONNX files are kept in ``folder`` for :func:`family_latency`."""
    space = get_space(SPACE)
    start = time.perf_counter()
    trained = train_arch(spec, "fashion-mnist", epochs, seed=seed, data_limit=images,
                         progress=False)
    seconds = time.perf_counter() - start
    train_data = load_dataset("fashion-mnist", limit=images, shape=space.input)
    mean, std = channel_stats(train_data.train_x, space.input)
    full = load_dataset("fashion-mnist", shape=space.input)
    train = Batches(train_data.train_x, train_data.train_y, space.input, torch.device("cpu"),
                    mean, std)
    test = Batches(full.test_x, full.test_y, space.input, torch.device("cpu"), mean, std)
    fp32 = fp32_onnx(trained.model, spec)
    int8 = quantize_onnx(fp32, calibration_inputs(train, 32), "input")
    accuracy = compare(fp32, int8, test)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("fp32", fp32), ("int8", int8)):
        atomic_write_with(folder / f"{seed}-{name}.onnx", lambda tmp, m=model: tmp.write_bytes(m))
    return {"arch": spec.to_string(), "seed": seed, "train_seconds": round(seconds, 1),
            "fp32_accuracy": accuracy.fp32, "int8_accuracy": accuracy.int8,
            "agreement": accuracy.agreement, "test_images": len(test)}


def family_latency(spec: ArchSpec, folder: Path, seed: int) -> dict:
    """The kept fp32 and int8 exports timed here, round robin, 1 thread, batch 1, and the
    ``cpu-int8`` table's prediction."""
    sessions = {name: cpu_session((folder / f"{seed}-{name}.onnx").read_bytes())
                for name in ("fp32", "int8")}
    feed = {"input": np.random.default_rng(0).standard_normal(
        (1, *get_space(SPACE).input), dtype=np.float32)}
    ms = time_models({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()})
    return {"fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "host": describe_host(
        host_fingerprint()), "int8_predicted_ms": predict_latency(
            spec, host_true_table(load_table(INT8_TABLE), [SPACE]).table).total_ms}


def run_families(args: argparse.Namespace) -> None:
    """Train and score every family net (no timing: it may share the machine), then, with
    ``--time``, time every net's exports (run it alone, under the machine's timing lock)."""
    torch.set_num_threads(1)
    for seed in range(args.nets):
        for family in FAMILIES:
            spec = family_net(family, seed)
            folder = Path(args.out) / "families" / family
            row = _cached(folder / f"{seed}.json",
                          lambda s=spec, sd=seed, f=folder: family_row(
                              s, sd, args.epochs, args.train_images, f))
            line = (f"{family} {seed}: {row['arch']} fp32 {row['fp32_accuracy']:.4f} int8 "
                    f"{row['int8_accuracy']:.4f}")
            if args.time:
                ms = _cached(folder / f"{seed}-latency.json",
                             lambda s=spec, f=folder, sd=seed: family_latency(s, f, sd))
                line += f"; latency x{ms['int8_ms'] / ms['fp32_ms']:.2f}"
            print(line, flush=True)


# --- headline -----------------------------------------------------------------------------------

def mean_int8_of_band(budget_ms: float, table_name: str, int8, count: int = BAND_NETS) -> float:
    """Mean predicted int8 latency (``int8``: the int8 table true to this host) of ``count``
    random nets of the band ``[0.9 B, B]`` of ``budget_ms`` on ``table_name``."""
    space = get_space(SPACE)
    table = host_true_table(load_table(table_name), [SPACE]).table
    limit = Constraint(latency_matrix(space, table), budget_ms, table_name)
    nets = random_band_nets(space, [limit], FLOOR, count, torch.Generator().manual_seed(0))
    return float(np.mean([predict_latency(net, int8).total_ms for net in nets]))


def matched_fp32_budget(int8_budget_ms: float) -> tuple[float, float]:
    """The fp32 budget (ms on the ``cpu`` table true to this host) whose random band nets have
    the mean predicted int8 latency of the int8 budget's band, by bisection; and that mean."""
    int8 = host_true_table(load_table(INT8_TABLE), [SPACE]).table
    target = mean_int8_of_band(int8_budget_ms, INT8_TABLE, int8)
    fp32 = host_true_table(load_table(FP32_TABLE), [SPACE]).table
    matrix = latency_matrix(get_space(SPACE), fp32)
    low, high = matrix.fastest_ms() / FLOOR * 1.01, matrix.slowest_ms()
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if mean_int8_of_band(middle, FP32_TABLE, int8) < target else (
            low, middle)
    return (low + high) / 2, target


def _hwnas(*argv: str) -> str:
    """``hwnas ARGV``'s stdout; one torch thread unless OMP_NUM_THREADS says otherwise (two
    threads on a 2-vCPU guest with a neighbour's job trained 6× slower than one)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env=env)
    if done.returncode:
        raise RuntimeError(f"hwnas {' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def arm_search(run: Path, device: str, budget: str, seed: int) -> dict:
    """One arm of one seed: the main job's search (no timing: it may share the machine)."""
    start = time.perf_counter()
    resume = ["--resume"] if (run / "checkpoint.pt").is_file() else []  # a killed search
    _hwnas("search", "--short", "--device", device, "--budget", budget, "--seed", str(seed),
           "--out", str(run), *resume)
    return {"seconds": round(time.perf_counter() - start, 1)}


def arm_row(run: Path, device: str, budget: str, seed: int, measure: bool) -> dict:
    """One arm of one seed: its fine-tuned net quantized by ``hwnas export --quantize int8``
    and, with ``measure``, measured by ``hwnas measure --device cpu-int8`` (timing: alone)."""
    summary = json.loads((run / "summary.json").read_text())
    searched = json.loads((run.parent / f"{run.name}-search.json").read_text())
    (run / "model-int8.onnx").unlink(missing_ok=True)  # this bench's own, of a killed run
    start = time.perf_counter()
    exported = _hwnas("export", str(run), "--format", "onnx", "--quantize", "int8")
    export_seconds = time.perf_counter() - start
    row = {"arch": (run / "arch.json").read_text(), "seed": seed, "device": device,
           "budget": budget, "search_seconds": searched["seconds"],
           "export_seconds": round(export_seconds, 1), "export": exported.splitlines(),
           "fp32_accuracy": summary["test_accuracy_finetuned"],
           "int8_accuracy": _number(exported, "post-training int8: test accuracy "),
           "agreement": _number(exported, "top-1 agreement with fp32 ") / 100,
           "int8_ms": _number(exported, "batch 1): int8 ", " ms measured"),
           "fp32_ms": _number(exported, "the fp32 export's ", " ms"),
           "budget_ms": summary["tables"][0]["budget_ms"],
           "derived_under_ms": summary["tables"][0].get("derived_under_ms"),
           "host": describe_host(host_fingerprint())}
    if measure:  # three runs of the command: one is 100 timed runs of one session
        measured = [_hwnas("measure", str(run), "--device", INT8_TABLE) for _ in range(3)]
        row["measure"] = [m.splitlines() for m in measured]
        row["measured_int8_runs_ms"] = [_number(m, "median ", " ms") for m in measured]
        row["measured_int8_ms"] = statistics.median(row["measured_int8_runs_ms"])
    return row


def _number(text: str, before: str, after: str = " ") -> float:
    tail = text.split(before, 1)[1]
    return float(tail.split(after, 1)[0].strip(" ()%"))


def run_headline(args: argparse.Namespace) -> None:
    folder = Path(args.out) / "headline"
    space = get_space(SPACE)
    int8 = host_true_table(load_table(INT8_TABLE), [SPACE]).table
    matrix = latency_matrix(space, int8)
    int8_ms = RelativeBudget(args.budget_pct / 100).resolve(matrix.fastest_ms(),
                                                            matrix.slowest_ms())

    def budgets() -> dict:
        fp32_ms, target = matched_fp32_budget(int8_ms)
        return {"int8_budget": f"{args.budget_pct:g}%", "int8_budget_ms": int8_ms,
                "fp32_budget_ms": fp32_ms, "band_mean_int8_ms": target,
                "host": describe_host(host_fingerprint())}

    matched = _cached(folder / "budgets.json", budgets)
    print(f"int8 budget {matched['int8_budget']} = {int8_ms:.4f} ms on {INT8_TABLE}; matched "
          f"fp32 budget {matched['fp32_budget_ms']:.4f} ms on {FP32_TABLE}", flush=True)
    second = _second_match(folder, matched, args.seeds)
    arms = [("int8", INT8_TABLE, matched["int8_budget"]),
            ("fp32", FP32_TABLE, f"{matched['fp32_budget_ms']:.4f}ms")]
    if second is not None:
        arms.append(("fp32m", FP32_TABLE, f"{second:.4f}ms"))
    for seed in args.seeds:
        for arm, device, budget in arms:
            run = folder / f"{arm}-s{seed}"
            if args.time and not (folder / f"{arm}-s{seed}-search.json").is_file():
                print(f"seed {seed} {arm}: not searched yet", flush=True)
                continue  # never a search under the timing lock
            searched = _cached(folder / f"{arm}-s{seed}-search.json",
                               lambda r=run, d=device, b=budget, s=seed: arm_search(r, d, b, s))
            if not args.time:
                print(f"seed {seed} {arm}: searched in {searched['seconds']:.0f} s", flush=True)
                continue
            row = _cached(folder / f"{arm}-s{seed}.json",
                          lambda r=run, d=device, b=budget, s=seed, a=arm: arm_row(
                              r, d, b, s, a == "int8"))
            print(f"seed {seed} {arm}: int8 acc {row['int8_accuracy']:.4f} at "
                  f"{row['int8_ms']:.3f} ms (fp32 acc {row['fp32_accuracy']:.4f})", flush=True)


def _second_match(folder: Path, matched: dict, seeds: list[int]) -> float | None:
    """The fp32 budget matched on the searched nets: random band nets are no proxy for what
    a search returns (the fp32 search picks MBConv-heavy nets, which int8 speeds up more), so
    once both first arms are measured, the fp32 budget is scaled by the ratio of their mean
    measured int8 latencies (int8 arm over fp32 arm), once, for every seed; cached in
    ``budgets.json``."""
    if "fp32_budget_matched_ms" in matched:
        return float(matched["fp32_budget_matched_ms"])
    rows = {a: [folder / f"{a}-s{s}.json" for s in seeds] for a in ("int8", "fp32")}
    if not all(p.is_file() for ps in rows.values() for p in ps):
        return None
    mean = {a: statistics.mean(json.loads(p.read_text())["int8_ms"] for p in ps)
            for a, ps in rows.items()}
    budget = matched["fp32_budget_ms"] * mean["int8"] / mean["fp32"]
    matched.update({"fp32_budget_matched_ms": budget, "first_arms_int8_ms": mean})
    atomic_write_text(folder / "budgets.json", json.dumps(matched, indent=2) + "\n")
    return budget


# --- report -------------------------------------------------------------------------------------

def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))
    return mean, mean - half, mean + half


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    rows = {f: [{**json.loads(p.read_text()), **json.loads(p.with_name(
                    f"{p.stem}-latency.json").read_text())}
                for p in sorted((out / "families" / f).glob("[0-9].json"))
                if p.with_name(f"{p.stem}-latency.json").is_file()]
            for f in FAMILIES}
    print("| family | nets | int8 / fp32 latency | fp32 ms | int8 ms | int8 table error | "
          "fp32 acc % | PTQ drop (points) | top-1 agreement % |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family, rs in rows.items():
        if not rs:
            continue
        ratio = [r["int8_ms"] / r["fp32_ms"] for r in rs]
        drop = [100 * (r["fp32_accuracy"] - r["int8_accuracy"]) for r in rs]
        error = [100 * (r["int8_predicted_ms"] / r["int8_ms"] - 1) for r in rs]
        print(f"| {family} | {len(rs)} | {_mean_std(ratio)} | "
              f"{statistics.mean(r['fp32_ms'] for r in rs):.3f} | "
              f"{statistics.mean(r['int8_ms'] for r in rs):.3f} | "
              f"{statistics.mean(error):+.1f} % | "
              f"{100 * statistics.mean(r['fp32_accuracy'] for r in rs):.2f} | "
              f"{_mean_std(drop)} | "
              f"{100 * statistics.mean(r['agreement'] for r in rs):.1f} |")
    print("\nPer net:\n")
    for family, rs in rows.items():
        for r in rs:
            print(f"- {family} {r['seed']}: `{r['arch']}` fp32 {r['fp32_accuracy']:.4f}, int8 "
                  f"{r['int8_accuracy']:.4f}, agreement {r['agreement']:.3f}; {r['fp32_ms']:.3f}"
                  f" → {r['int8_ms']:.3f} ms (table {r['int8_predicted_ms']:.3f} ms); trained "
                  f"in {r['train_seconds']:.0f} s")
    folder = out / "headline"
    if not (folder / "budgets.json").is_file():
        return
    matched = json.loads((folder / "budgets.json").read_text())
    names = {"int8": f"searched for int8 ({matched['int8_budget']} = "
                     f"{matched['int8_budget_ms']:.4f} ms on `{INT8_TABLE}`)",
             "fp32": f"searched for fp32 ({matched['fp32_budget_ms']:.4f} ms on `{FP32_TABLE}`: "
                     "matched on random band nets), quantized",
             "fp32m": f"searched for fp32 ({matched.get('fp32_budget_matched_ms', 0):.4f} ms on "
                      f"`{FP32_TABLE}`: matched on the searched nets), quantized"}
    arms = {a: {json.loads(p.read_text())["seed"]: json.loads(p.read_text())
                for p in folder.glob(f"{a}-s[0-9]*.json") if not p.stem.endswith("-search")}
            for a in names}
    print(f"\nHeadline, int8 test accuracy at one int8 budget. The first fp32 budget gives "
          f"random band nets the mean predicted int8 latency of the int8 budget's "
          f"({matched['band_mean_int8_ms']:.4f} ms); the second scales it by the measured int8 "
          f"latency of the first two arms' nets ({matched.get('first_arms_int8_ms')}).\n")
    print("| arm | seeds | int8 test acc % | fp32 test acc % | PTQ drop (points) | int8 ms "
          "measured (export) | fp32 ms measured (export) | search (s) |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for arm, rows in arms.items():
        rs = list(rows.values())
        if not rs:
            continue
        print(f"| {names[arm]} | {len(rs)} | "
              f"{_mean_std([100 * r['int8_accuracy'] for r in rs])} | "
              f"{_mean_std([100 * r['fp32_accuracy'] for r in rs])} | "
              f"{_mean_std([100 * (r['fp32_accuracy'] - r['int8_accuracy']) for r in rs])} | "
              f"{_mean_std([r['int8_ms'] for r in rs])} | "
              f"{_mean_std([r['fp32_ms'] for r in rs])} | "
              f"{statistics.mean(r['search_seconds'] for r in rs):.0f} |")
    print()
    for other in ("fp32m", "fp32"):
        seeds = sorted(set(arms["int8"]) & set(arms[other]))
        if len(seeds) < 2:
            continue
        diff = [100 * (arms["int8"][s]["int8_accuracy"] - arms[other][s]["int8_accuracy"])
                for s in seeds]
        gap = [100 * (arms["int8"][s]["int8_ms"] / arms[other][s]["int8_ms"] - 1)
               for s in seeds]
        mean, low, high = t_interval(diff)
        lat, lat_low, lat_high = t_interval(gap)
        print(f"- int8 − {other}: int8 test accuracy {mean:+.2f} points [{low:+.2f}, "
              f"{high:+.2f}] (95 % t-interval, {len(seeds)} paired seeds); the int8 arm's "
              f"measured int8 latency {lat:+.1f} % [{lat_low:+.1f}, {lat_high:+.1f}] relative "
              f"to the {other} arm's")
    within = [r for r in arms["int8"].values() if "measured_int8_ms" in r]
    if within:
        ratios = [r["measured_int8_ms"] / r["budget_ms"] for r in within]
        print(f"\nBudget: the int8 arm's nets measured by `hwnas measure --device {INT8_TABLE}` "
              f"(median of 3 runs) at {min(ratios):.3f}-{max(ratios):.3f} × the budget; "
              f"{sum(x > 1.05 for x in ratios)} of {len(ratios)} over budget + 5 %")
    print("\nPer seed:\n")
    for s in sorted(arms["int8"]):
        for arm, rows in arms.items():
            if s not in rows:
                continue
            r = rows[s]
            spec = ArchSpec.from_json(r["arch"]).to_string()
            measured = ("; hwnas measure: " + ", ".join(
                f"{v:.4f}" for v in r["measured_int8_runs_ms"]) + " ms"
                if "measured_int8_runs_ms" in r else "")
            print(f"- seed {s} {arm}: `{spec}` int8 {r['int8_accuracy']:.4f}, fp32 "
                  f"{r['fp32_accuracy']:.4f}, agreement {r['agreement']:.3f}; int8 "
                  f"{r['int8_ms']:.3f} ms, fp32 {r['fp32_ms']:.3f} ms (export){measured}, budget "
                  f"{r['budget_ms']:.4f} ms on {r['device']}; "
                  f"search {r['search_seconds']:.0f} s, export {r['export_seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["families", "headline", "report"])
    parser.add_argument("--out", default="runs/int8")
    parser.add_argument("--nets", type=int, default=3, help="families: nets per family")
    parser.add_argument("--epochs", type=int, default=1, help="families: training epochs")
    parser.add_argument("--train-images", type=int, default=10_000,
                        help="families: training images")
    parser.add_argument("--time", action="store_true", help="families: time the trained "
                        "nets' exports; headline: export and measure the searched nets (run "
                        "it alone on the machine)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        default=[0, 1, 2, 3], help="headline: paired seeds")
    parser.add_argument("--budget-pct", type=float, default=15.0,
                        help="headline: the int8 budget, %% of the way from the fastest "
                        "hybrid-cifar net to its slowest on cpu-int8")
    args = parser.parse_args()
    {"families": run_families, "headline": run_headline, "report": report}[args.part](args)


if __name__ == "__main__":
    main()
