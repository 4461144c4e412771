"""Data-loss bench: after a finished run, try the plausible mistakes and require that every file
that existed before each attempt is byte-identical (and keeps its mode) afterwards.

    python bench/dataloss.py --out runs/dataloss

It runs ``hwnas search --quick --device cpu --budget 0.6ms --no-adapt`` into ``OUT/run``, adds
files of the user's own (notes, a copy of the architecture, a folder with a ``trials.csv``,
another program's temporary file inside the run folder, a table in the user's table folder),
then runs each attempt of :data:`ATTEMPTS` as a real ``hwnas`` process. Before every attempt it
records the SHA-256 and mode of every file under ``OUT``, so files an earlier attempt created
count as the user's too. An attempt passes when nothing recorded changed or vanished; what it
printed (the refusal line, or what it wrote instead) is reported with its exit code. Writes
``OUT/dataloss.json``; exits 1 when any file was lost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HWNAS = [sys.executable, str(ROOT / "cli.py")]
SEARCH = ["search", "--quick", "--device", "cpu", "--budget", "0.6ms", "--no-adapt"]

# (what the user meant to do, argv with RUN, ARCH, NOTES, MINE and TABLES as placeholders)
ATTEMPTS: list[tuple[str, list[str]]] = [
    ("export a pt over the run's checkpoint",
     ["export", "RUN", "--format", "pt", "--out", "RUN/checkpoint.pt", "--train-epochs", "0"]),
    ("export ONNX over the run's arch.json",
     ["export", "RUN", "--format", "onnx", "--out", "RUN/arch.json", "--train-epochs", "0"]),
    ("export over the run's summary, with --force",
     ["export", "ARCH", "--format", "onnx", "--out", "RUN/summary.json", "--force"]),
    ("export an architecture over an unrelated file",
     ["export", "ARCH", "--format", "onnx", "--out", "NOTES"]),
    ("export a JSON onto itself", ["export", "ARCH", "--format", "json", "--out", "ARCH"]),
    ("export the same architecture twice (the second time over the first export)",
     ["export", "ARCH", "--format", "onnx"]),
    ("(again)", ["export", "ARCH", "--format", "onnx"]),
    ("train into the run's checkpoint",
     ["train", "RUN", "--epochs", "1", "--data-limit", "256", "--out", "RUN/checkpoint.pt"]),
    ("train over an unrelated file",
     ["train", "ARCH", "--epochs", "1", "--data-limit", "256", "--out", "NOTES"]),
    ("train over its own architecture file, with --force",
     ["train", "ARCH", "--epochs", "1", "--data-limit", "256", "--out", "ARCH", "--force"]),
    ("calibrate the budget into the finished run", [*SEARCH, "--calibrate-budget", "2",
                                                    "--out", "RUN"]),
    ("calibrate the budget into the finished run, with --resume",
     [*SEARCH, "--calibrate-budget", "2", "--out", "RUN", "--resume"]),
    ("calibrate the budget into a file", [*SEARCH, "--calibrate-budget", "2", "--out", "NOTES"]),
    ("search again into the finished run", [*SEARCH, "--out", "RUN"]),
    ("resume the run with another budget",
     [*SEARCH[:-2], "0.7ms", "--no-adapt", "--out", "RUN", "--resume"]),
    ("search into a file", [*SEARCH, "--out", "NOTES"]),
    ("sweep into the run's folder",
     ["sweep", "RUN", "--device", "cpu", "--budgets", "0.6ms", "--trials", "2", "--no-adapt",
      "--out", "RUN"]),
    ("sweep into the user's folder that holds a trials.csv",
     ["sweep", "RUN", "--device", "cpu", "--budgets", "0.6ms", "--trials", "2", "--no-adapt",
      "--out", "MINE"]),
    ("sweep with an unrelated file as its sqlite storage",
     ["sweep", "RUN", "--device", "cpu", "--budgets", "0.6ms", "--trials", "2", "--no-adapt",
      "--storage", "sqlite:///NOTES"]),
    ("sweep twice with other budgets into one folder (the second into the first's study)",
     ["sweep", "RUN", "--device", "cpu", "--budgets", "0.6ms", "--trials", "2", "--no-adapt"]),
    ("(again, other budgets)", ["sweep", "RUN", "--device", "cpu", "--budgets", "0.5ms",
                                "--trials", "2", "--no-adapt"]),
    ("profile a table named like a path", ["profile", "--backend", "onnxruntime", "--space",
                                           "cifar", "--name", "../escaped"]),
    ("adapt a table onto the user's existing table",
     ["tables", "adapt", "cpu", "--name", "mine"]),
    ("profile onto the run's arch.json (a table path RUN/arch)",
     ["profile", "--backend", "onnxruntime", "--space", "cifar", "--name", "x", "--out",
      "RUN/arch"]),
]


def fill(argv: list[str], places: dict[str, Path]) -> list[str]:
    """``argv`` with its placeholders (a whole argument, or its start) replaced."""
    out = []
    for arg in argv:
        for key, path in places.items():
            if arg == key or arg.startswith(f"{key}/"):
                arg = str(path) + arg[len(key):]
                break
            if arg == f"sqlite:///{key}":
                arg = f"sqlite:///{path}"
                break
        out.append(arg)
    return out


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mode & 0o777)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run([*HWNAS, *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("hwnas: error:")),
                lines[-1] if lines else "")
    return proc.returncode, said, time.perf_counter() - start


def set_up(out: Path, env: dict[str, str]) -> dict[str, Path]:
    """The finished run and the user's own files around it."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run_dir = out / "run"
    code, said, seconds = run([*SEARCH, "--out", str(run_dir)], env)
    if code != 0:
        sys.exit(f"the search failed ({code}): {said}")
    print(f"finished run in {seconds:.0f} s: {run_dir}", flush=True)
    arch, notes, mine = out / "arch.json", out / "notes.txt", out / "mine"
    shutil.copyfile(run_dir / "arch.json", arch)
    notes.write_text("the user's notes\n")
    notes.chmod(0o600)
    mine.mkdir()
    (mine / "trials.csv").write_text("the user's own trials\n")
    (run_dir / ".editor-swap.tmp").write_text("another program's temporary file\n")
    (run_dir / "notes.md").write_text("the user's notes about this run\n")
    tables = Path(env["HWNAS_TABLES"])
    tables.mkdir()
    for suffix in (".csv", ".json"):
        shutil.copyfile(ROOT / "latency_predictors" / "tables" / f"cpu{suffix}",
                        tables / f"mine{suffix}")
    return {"RUN": run_dir, "ARCH": arch, "NOTES": notes, "MINE": mine, "TABLES": tables}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dataloss", help="work folder (replaced)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    env = {**os.environ, "HWNAS_TABLES": str(out / "tables"), "OMP_NUM_THREADS": "1"}
    places = set_up(out, env)
    results, lost_any = [], False
    for meant, argv in ATTEMPTS:
        before = snapshot(out)
        code, said, seconds = run(fill(argv, places), env)
        after = snapshot(out)
        lost = sorted(name for name, digest in before.items() if after.get(name) != digest)
        new = sorted(set(after) - set(before))
        lost_any |= bool(lost)
        shown = " ".join(["hwnas", *argv])
        results.append({"meant": meant, "command": shown, "exit": code, "said": said,
                        "lost": lost, "new": new, "seconds": round(seconds, 1)})
        verdict = f"LOST {lost}" if lost else "kept every file"
        print(f"[{verdict}] exit {code}, {seconds:.0f} s: {shown}\n    {said}"
              + (f"\n    new: {new}" if new else ""), flush=True)
    (out / "dataloss.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{len(results)} attempts, {sum(bool(r['lost']) for r in results)} lost a file; "
          f"{sum(r['exit'] == 0 for r in results)} exited 0; wrote {out / 'dataloss.json'}")
    return 1 if lost_any else 0


if __name__ == "__main__":
    sys.exit(main())
