"""Budget adherence, measured: short searches at several budgets and seeds on the default
path, where a table of another host is adapted to this one first, and every searched
net measured end to end here (onnxruntime CPU EP, 1 thread, as the table).

    python bench/budget_adherence.py --budgets 1.2,1.6,2.0 --seeds 0,1,2 --out runs/adherence

Per net: predicted latency (on the table the search used: the host-true one), measured latency
here now (the fastest of 6 passes, ``measure_archs``), measured / budget. Goals:
measured ≤ budget + 5 % for every net, and ≥ 90 % of the budget used on average. The
searches derive with the default budget floor (0.9; ``--budget-floor`` changes it) and adapt a
foreign table unless ``--no-adapt``. Searches are cached in ``OUT`` (a killed run resumes);
measuring happens after all searches, so no timing overlaps training.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from latency_predictors import load_table, predict_latency
from latency_predictors.measure.adapt import host_true_table
from latency_predictors.measure.networks import backend_for, measure_archs, table_reference_ms
from nas import SearchConfig, search
from search_spaces import ArchSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--budgets", default="0.4,0.7,1.0", help="ms, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-limit", type=int, default=1500)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--loss", default=SearchConfig.loss)
    parser.add_argument("--budget-floor", type=float, default=SearchConfig.budget_floor)
    parser.add_argument("--no-adapt", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the searches")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hosted = host_true_table(load_table(args.table), [args.space], not args.no_adapt)
    print(hosted.note or f"table {args.table!r} is this host's")
    table = hosted.table
    runs = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = Path(args.out) / f"{budget:g}ms-seed{seed}"
            if not (out / "arch.json").is_file():
                search(SearchConfig((args.table,), (budget,), space=args.space,
                                    data_limit=args.data_limit, seed=seed,
                                    warmup_epochs=args.warmup_epochs, epochs=args.epochs,
                                    out=str(out), progress=False, loss=args.loss,
                                    budget_floor=args.budget_floor,
                                    resume=(out / "checkpoint.pt").is_file()))
            runs.append((budget, seed, ArchSpec.from_json((out / "arch.json").read_text())))
            print(f"searched {budget:g} ms seed {seed}", flush=True)
    torch.set_num_threads(1)
    measured = measure_archs([spec for _, _, spec in runs], backend_for(table), "measure",
                             reference_ms=table_reference_ms(table))
    rows = []
    for (budget, seed, spec), raw, ms in zip(runs, measured.raw_ms, measured.ms, strict=True):
        rows.append({"budget_ms": budget, "seed": seed, "arch": spec.to_string(),
                     "predicted_ms": predict_latency(spec, table).total_ms,
                     "measured_ms": raw, "used": raw / budget, "normalised_ms": ms})
    (Path(args.out) / "adherence.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nreference kernel {measured.reference_now_ms:.4f} ms during the measurement, "
          f"{measured.reference_ms:.4f} ms when the table was made (normalised: measured at "
          "that speed, a second figure where the table is this host's)")
    print("\n| budget | seed | predicted | measured here | measured / budget | normalised / "
          "budget |\n|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['budget_ms']:g} ms | {r['seed']} | {r['predicted_ms']:.3f} ms | "
              f"{r['measured_ms']:.3f} ms | {100 * r['used']:.1f} % | "
              f"{100 * r['normalised_ms'] / r['budget_ms']:.1f} % |")
    over = [r for r in rows if r["used"] > 1.05]
    print(f"\n{len(over)} of {len(rows)} nets measured over budget + 5 %; mean budget used "
          f"{100 * statistics.mean(r['used'] for r in rows):.1f} %; worst "
          f"{100 * max(r['used'] for r in rows):.1f} %")


if __name__ == "__main__":
    main()
