"""Kill anywhere: kill -9 a job at random moments, resume it each time, check what it leaves.

    python bench/chaos_resume.py --job search --kills 10 --out runs/chaos
    python bench/chaos_resume.py --job calibrate-budget --kills 4 --out runs/chaos
    python bench/chaos_resume.py --job sweep --kills 4 --out runs/chaos

First the job runs uninterrupted (its duration T). Then the same job runs again and is killed
with SIGKILL at ``--kills`` moments drawn uniformly (seeded) in [0.05 T, T]: each moment is
measured from the (re)start, so kills land in start-up, mid-epoch, in a checkpoint write, in
the derivation or the final reports. After every kill the files on disk are checked (every
JSON parses, the checkpoint loads, no partial write is visible under a final name) and the job
is resumed; once it finishes, its result must equal the uninterrupted run's, with no temporary
file left behind. Searches use ``--checkpoint-minutes 0.1`` so that kills fall between
mid-epoch checkpoints too.

- ``search``: ``hwnas search --quick``; required: the same ``arch.json`` and metrics (up to
  the seconds column).
- ``calibrate-budget``: ``hwnas search --quick --calibrate-budget 3``; required: the same
  chosen strength and architecture.
- ``sweep``: ``hwnas sweep`` on the uninterrupted search's run, with an sqlite study; a rerun
  adds its trials to the study (a kill loses only the trial in flight); required: intact files
  and a complete sweep at the end (the trial sequence differs after a kill, so the result is
  reported, not compared).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nas.run.checkpoint import load_checkpoint

BASE = ["search", "--quick", "--device", "cpu", "--budget", "0.6ms", "--checkpoint-minutes",
        "0.1"]


def command(job: str, out: Path, search_dir: Path, resume: bool) -> list[str]:
    hwnas = [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]
    if job == "sweep":
        return [*hwnas, "sweep", str(search_dir), "--device", "cpu", "--budgets",
                "0.5ms,0.7ms", "--trials", "20", "--storage", f"sqlite:///{out}/study.db",
                "--study", "chaos", "--out", str(out)]
    extra = ["--calibrate-budget", "3"] if job == "calibrate-budget" else []
    return [*hwnas, *BASE, *extra, "--out", str(out), *(["--resume"] if resume else [])]


def intact(folder: Path) -> list[str]:
    """Problems with what is on disk under final names (empty: everything is whole)."""
    problems = []
    for path in folder.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            problems.append(f"{path}: not valid JSON")
    for path in folder.rglob("checkpoint.pt"):
        try:
            load_checkpoint(path.parent)
        except Exception as err:  # noqa: BLE001 - any failure is a finding
            problems.append(f"{path}: {err}")
    for path in folder.rglob("*.csv"):
        try:
            list(csv.reader(path.read_text().splitlines()))
        except (csv.Error, UnicodeDecodeError) as err:
            problems.append(f"{path}: {err}")
    return problems


def result(job: str, folder: Path) -> dict:
    if job == "sweep":
        return {"trials": len(list(csv.reader((folder / "trials.csv").read_text()
                                                  .splitlines()))) - 1}
    summary = json.loads((folder / "summary.json").read_text())
    metrics = list(csv.DictReader((folder / "metrics.csv").read_text().splitlines()))
    found = {"arch": json.loads((folder / "arch.json").read_text())["layers"],
             "metrics": [{k: v for k, v in row.items() if k != "seconds"} for row in metrics]}
    if job == "calibrate-budget":
        found["strength"] = summary["calibration"]["strength"]
    return found


def run(cmd: list[str], kill_after: float | None) -> tuple[str, float]:
    """Run ``cmd``; SIGKILL it after ``kill_after`` s. Returns (outcome, seconds)."""
    if "--storage" in cmd:  # the sweep's sqlite study lives in its output folder
        Path(cmd[cmd.index("--out") + 1]).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed", time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read()}")
    return "finished", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("search", "calibrate-budget", "sweep"),
                        default="search")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.out) / args.job
    shutil.rmtree(root, ignore_errors=True)
    search_dir = Path(args.out) / "search-for-sweep"
    if args.job == "sweep" and not (search_dir / "summary.json").is_file():
        shutil.rmtree(search_dir, ignore_errors=True)
        run(command("search", search_dir, search_dir, False), None)
    whole = root / "whole"
    _, seconds = run(command(args.job, whole, search_dir, False), None)
    reference = result(args.job, whole)
    print(f"{args.job}: uninterrupted run {seconds:.1f} s", flush=True)
    rng = random.Random(args.seed)
    cut, rows, finished = root / "cut", [], []

    def check_finished() -> None:
        found = result(args.job, cut)
        finished.append({"same_result": found == reference if args.job != "sweep" else None,
                         "leftover_temporaries": [str(p) for p in cut.rglob(".*.tmp")],
                         "result": found if args.job == "sweep" else None})

    resume, killed = False, 0
    while killed < args.kills:  # a run that finishes before its kill is checked, then redone
        moment = rng.uniform(0.05, 1.0) * seconds
        outcome, _ = run(command(args.job, cut, search_dir, resume), moment)
        problems = intact(cut)
        rows.append({"at_s": round(moment, 2), "resumed": resume, "outcome": outcome,
                     "problems": problems})
        print(f"run {len(rows)}: kill at {moment:.1f} s -> {outcome}; files intact: "
              f"{not problems}", *problems, flush=True)
        if outcome == "killed":
            killed, resume = killed + 1, True
        else:
            check_finished()
            shutil.rmtree(cut)
            resume = False
    if resume:
        run(command(args.job, cut, search_dir, resume=True), None)
        check_finished()
    report = {"job": args.job, "uninterrupted_s": round(seconds, 1), "runs": rows,
              "finished": finished, "all_intact": all(not r["problems"] for r in rows)}
    (root / "chaos.json").write_text(json.dumps(report, indent=1) + "\n")
    same = [f["same_result"] for f in finished]
    print(f"{args.job}: {killed} kills in {len(rows)} runs; files intact after every kill: "
          f"{report['all_intact']}; finished runs equal to the uninterrupted one: "
          f"{same}; temporaries left: {sum(len(f['leftover_temporaries']) for f in finished)}")

if __name__ == "__main__":
    main()
