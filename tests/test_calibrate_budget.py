"""Budget calibration (nas.tune.calibrate_budget): Optuna over the loss strength, shared warm-up,
resume after a kill, the best trial adopted as the run; CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import torch

from cli import main
from hwnas_common import HwnasError
from nas.run.checkpoint import load_checkpoint
from nas.run.search import search as real_search
from nas.tune import calibrate_budget
from nas.tune.calibrate_budget import calibrate_strength
from tests.helpers import cli_fails as _fails
from tests.helpers import search_argv as _search
from tests.helpers import tiny_config, tiny_constraint, tiny_table


def _config(out: Path, **overrides):
    return tiny_config(out, 2.0, loss="add_linear", arch_lr=0.05, **overrides)


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "calibration" / "calibration.csv").open()))


def test_calibration_shares_warm_up_and_adopts_the_trial_closest_to_budget(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = calibrate_strength(_config(out), [tiny_constraint(2.0)], trials=3)
    rows = _rows(out)
    assert [float(r["strength"]) for r in rows][0] == 0.1  # the paper's λ comes first
    assert len({r["strength"] for r in rows}) == 3
    warm = load_checkpoint(out / "calibration" / "warmup")
    assert warm["epoch"] == 1
    for row in rows:
        trial = load_checkpoint(out / "calibration" / f"trial-{int(row['trial']):03d}")
        for key in ("weight_loss", "heldout_acc", "seconds"):  # continued from the warm-up
            assert trial["history"][0][key] == warm["history"][0][key], key
        assert trial["config"]["loss_strength"] == float(row["strength"])
        gap = trial["history"][-1]["expected_ms[fake]"] / 2.0 - 1
        assert float(row["gap"]) == pytest.approx(gap)
    best = min(rows, key=lambda r: abs(float(r["gap"])))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"]["trial"] == int(best["trial"])
    assert summary["calibration"]["strength"] == float(best["strength"])
    assert result.spec.to_string() == best["arch"]
    assert result.latency_ms["fake"] <= 2.0
    assert (out / "arch.json").read_text() == (
        out / "calibration" / f"trial-{int(best['trial']):03d}" / "arch.json").read_text()


@pytest.mark.slow
def test_killed_calibration_resumes_the_interrupted_trial(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"

    def killed_in_second_trial(config, constraints, **kwargs):
        if config.out.endswith("trial-001"):
            real_search(config, constraints, stop_after_epoch=2)
            raise KeyboardInterrupt
        return real_search(config, constraints, **kwargs)

    monkeypatch.setattr(calibrate_budget, "search", killed_in_second_trial)
    with pytest.raises(KeyboardInterrupt):
        calibrate_strength(_config(out), [tiny_constraint(2.0)], trials=2)
    assert load_checkpoint(out / "calibration" / "trial-001")["epoch"] == 2
    monkeypatch.undo()
    with pytest.raises(HwnasError, match="already holds a calibration"):
        calibrate_strength(_config(out), [tiny_constraint(2.0)], trials=2)
    calibrate_strength(_config(out, resume=True), [tiny_constraint(2.0)], trials=2)
    assert [r["trial"] for r in _rows(out)] == ["0", "1"]
    assert not (out / "calibration" / "trial-002").exists()
    study = optuna.load_study(study_name=calibrate_budget.STUDY,
                              storage=f"sqlite:///{out / 'calibration' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # The interrupted trial, continued, equals the same strength run without interruption.
    strength = study.trials[1].params["strength"]
    alone = real_search(_config(tmp_path / "alone", loss_strength=strength),
                        [tiny_constraint(2.0)])
    assert alone.spec.to_string() == _rows(out)[1]["arch"]
    a = load_checkpoint(tmp_path / "alone")["engine"]["supernet"]
    b = load_checkpoint(out / "calibration" / "trial-001")["engine"]["supernet"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_a_calibration_continued_later_suggests_what_an_uninterrupted_one_does(
        tmp_path: Path) -> None:
    """Trials 0-2 in one process, trial 3 after a restart: the same strengths as 0-3 at once
    (an optimiser seeded once per process drew other acquisition starts after a restart)."""
    calibrate_strength(_config(tmp_path / "whole"), [tiny_constraint(2.0)], trials=4)
    calibrate_strength(_config(tmp_path / "cut"), [tiny_constraint(2.0)], trials=3)
    calibrate_strength(_config(tmp_path / "cut", resume=True), [tiny_constraint(2.0)], trials=4)
    assert [r["strength"] for r in _rows(tmp_path / "cut")] == [
        r["strength"] for r in _rows(tmp_path / "whole")]


@pytest.mark.parametrize(("flags", "match"), [
    (["--calibrate-budget", "0"], "expected an integer >= 1, got '0'"),
    (["--calibrate-budget", "2", "--loss-strength", "0.5"], "drop torchrun / --loss-strength"),
    (["--loss-strength", "-1"], "positive number"),
    (["--loss-strength", "nan"], "positive number")])
def test_bad_calibration_flags(tmp_path: Path, flags: list[str], match: str,
                               capsys: pytest.CaptureFixture) -> None:
    table = str(tiny_table(tmp_path / "tables"))
    _fails(_search(tmp_path / "run", table, "--budget", "3ms", *flags), capsys, match)
    assert not (tmp_path / "run").exists()


def test_non_numeric_loss_strength_is_an_argparse_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_search(tmp_path / "run", "cpu", "--budget", "3ms", "--loss-strength", "abc"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("hwnas: error: argument --loss-strength: expected a "
                                       "positive number, got 'abc'\n")


def test_cli_reports_the_calibrated_strength(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    table = str(tiny_table(tmp_path / "tables"))
    assert main(_search(tmp_path / "run", table, "--budget", "5ms",
                        "--calibrate-budget", "2")) == 0
    out = capsys.readouterr().out
    assert "calibrated hinge_log strength:" in out and "best of 2 trials" in out


def test_calibration_refuses_to_run_under_torchrun(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")  # rank 0 too, not only the others
    with pytest.raises(HwnasError, match="runs in one process"):
        calibrate_strength(_config(tmp_path / "run"), [tiny_constraint(2.0)], trials=2)
    assert not (tmp_path / "run").exists()
