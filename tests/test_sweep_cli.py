"""``hwnas sweep RUN_DIR`` end to end on a tiny search run (synthetic data, CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli
from latency_predictors import latency_matrix, load_table
from nas import search
from search_spaces import ArchSpec
from tests.helpers import SEARCH_TINY as TINY
from tests.helpers import tiny_config, tiny_constraint, tiny_table


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "run"
    search(tiny_config(out), [tiny_constraint(4.0)])
    return out


def test_sweep_writes_front_and_best_specs_within_budgets(run_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    table = tiny_table(tmp_path)
    out = tmp_path / "sweep"
    code = cli.main(["sweep", str(run_dir), "--device", str(table), "--budgets", "1.5ms,2.5ms",
                     "--trials", "8", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ESTIMATED" in printed and "ProxylessNAS-derived" in printed
    for name in ("trials.csv", "pareto.csv", "pareto.png", "sweep.json"):
        assert (out / name).is_file(), name
    matrix = latency_matrix(TINY, load_table(str(table)))
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["trials_in_study"] == 8 and summary["provenance"] == "estimated"
    for budget in (1.5, 2.5):
        spec = ArchSpec.from_json((out / f"best_{budget:g}ms.json").read_text())
        choice = [TINY.candidate_index(layer) for layer in spec.layers]
        assert matrix.total(choice) <= budget
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 8


@pytest.mark.parametrize("args, message", [
    (["missing-run", "--device", "cpu", "--budgets", "1ms"], "no such run directory"),
    (["RUN", "--device", "cpu", "--budgets", "abc"], "budget"),
    (["RUN", "--device", "nope", "--budgets", "1ms"], "nope"),
])
def test_sweep_bad_input_is_one_line_exit_2(run_dir: Path, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture) -> None:
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert cli.main(["sweep", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error:") and message in err and err.count("\n") == 1
