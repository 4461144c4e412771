"""Kill anywhere: ``kill -9`` a real ``hwnas search`` process at random moments, resume it each
time, and require intact files and the uninterrupted run's architecture and metrics: three kills
and six, both with ``-m slow`` (CI runs them; the default suite resumes in-process kills in
``test_search_engine.py``). ``bench/chaos_resume.py`` does the
same at full size, also for ``--calibrate-budget`` and ``sweep``."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.run.checkpoint import load_checkpoint
from tests.helpers import SEARCH_TINY, tiny_table

ROOT = Path(__file__).resolve().parents[1]
RUN = ("import sys, cli; from tests.helpers import register_test_spaces; "
       "register_test_spaces(); sys.exit(cli.main(sys.argv[1:]))")


def _search(table: Path, out: Path, resume: bool, kill_after: float | None) -> str:
    argv = ["search", "--space", SEARCH_TINY.name, "--dataset", "synthetic", "--device",
            str(table), "--budget", "4ms", "--quick", "--checkpoint-minutes", "0", "--out",
            str(out), *(["--resume"] if resume else [])]
    proc = subprocess.Popen([sys.executable, "-c", RUN, *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed"
    assert proc.returncode == 0, proc.stderr.read()
    return "finished"


def _result(out: Path) -> tuple[list, list]:
    metrics = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    return (json.loads((out / "arch.json").read_text())["layers"],
            [{k: v for k, v in row.items() if k != "seconds"} for row in metrics])


def _killed_anywhere(tmp_path: Path, kills_wanted: int, seed: int, earliest: float) -> None:
    table = tiny_table(tmp_path)
    start = time.perf_counter()
    assert _search(table, tmp_path / "whole", False, None) == "finished"
    seconds = time.perf_counter() - start
    rng, out, resume, kills = random.Random(seed), tmp_path / "cut", False, 0
    while kills < kills_wanted:
        outcome = _search(table, out, resume, rng.uniform(earliest, 1.0) * seconds)
        for path in out.glob("*.json"):
            json.loads(path.read_text())  # whole, never half-written
        if (out / "checkpoint.pt").exists():
            load_checkpoint(out)
        if outcome == "finished":
            assert _result(out) == _result(tmp_path / "whole")
            resume = False
            for path in out.iterdir():
                path.unlink()
        else:
            kills, resume = kills + 1, True
    if resume:
        assert _search(table, out, True, None) == "finished"
    assert _result(out) == _result(tmp_path / "whole")
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_search_killed_three_times_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """Three kills after the imports (about half of a tiny run's time), so
    each kill lands while the search trains or writes."""
    _killed_anywhere(tmp_path, 3, seed=1, earliest=0.5)


@pytest.mark.slow
def test_search_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    _killed_anywhere(tmp_path, 6, seed=0, earliest=0.3)
