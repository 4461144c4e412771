"""End-to-end searches on a tiny test-only space with synthetic data (CPU, seconds each)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import cli
from hwnas_common import HwnasError
from nas import SearchConfig, search
from nas.core.constraints import Constraint
from nas.core.engine import SearchEngine
from nas.deploy.retrain import retrain
from nas.run.checkpoint import load_checkpoint, load_supernet, load_warmup
from nas.run.search import RunResult
from tests.helpers import SEARCH_TINY as TINY
from tests.helpers import tiny_config, tiny_constraint, tiny_table


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    """The uninterrupted tiny run that the resume tests compare with, run once: a search seeds
    itself from its config, so every test would get the same one."""
    out = tmp_path_factory.mktemp("whole") / "run"
    torch.set_num_threads(1)
    return search(tiny_config(out), [tiny_constraint(4.0)]), out


@pytest.mark.real_plots
def test_tiny_search_writes_a_complete_run(tmp_path: Path) -> None:
    result = search(tiny_config(tmp_path / "run"), [tiny_constraint(4.0)])
    assert result is not None and result.latency_ms["fake"] <= 4.0
    for name in ("arch.json", "metrics.csv", "latency.json", "latency.csv", "accuracy.png",
                 "latency.png", "arch.png", "probs.png", "summary.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tables"][0]["provenance"] == "estimated"
    assert summary["seed"] == 0 and summary["versions"]["torch"]
    assert result.estimated_tables == ["fake"]
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_tight_budget_gives_lower_latency_than_loose(tmp_path: Path) -> None:
    # Same data, seed and loss; only the budget differs. The searched distribution's expected
    # latency must come out lower under the tight budget, and the derived architecture must
    # meet it. add_linear: its pressure grows as the budget shrinks (mul_log's log form keeps
    # rewarding lower latency however far below budget, so it is not monotone in T here).
    runs = {}
    for budget in (100.0, 2.0):
        out = tmp_path / f"b{budget}"
        result = search(tiny_config(out, budget, loss="add_linear", arch_lr=0.05, select_top=8),
                        [tiny_constraint(budget)])
        runs[budget] = (result, load_checkpoint(out)["history"][-1]["expected_ms[fake]"])
    assert runs[2.0][1] < runs[100.0][1]
    assert runs[2.0][0].latency_ms["fake"] <= min(2.0, runs[100.0][0].latency_ms["fake"])


def test_resume_after_kill_gives_the_same_run(tmp_path: Path,
                                             whole: tuple[RunResult, Path]) -> None:
    whole, whole_dir = whole
    assert search(tiny_config(tmp_path / "cut"), [tiny_constraint(4.0)],
                  stop_after_epoch=2) is None
    assert not (tmp_path / "cut" / "arch.json").exists()
    assert {"weight_opt", "arch_opt"} <= set(load_checkpoint(tmp_path / "cut")["engine"])
    resumed = search(tiny_config(tmp_path / "cut", resume=True), [tiny_constraint(4.0)])
    assert resumed.spec == whole.spec
    assert "weight_opt" not in load_checkpoint(tmp_path / "cut")["engine"]  # finished: slim
    a = load_checkpoint(whole_dir)["engine"]["supernet"]
    b = load_checkpoint(tmp_path / "cut")["engine"]["supernet"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_finished_run_keeps_no_optimiser_state_and_every_reader_reads_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, whole: tuple[RunResult, Path]) -> None:
    whole, whole_dir = whole
    state = load_checkpoint(whole_dir)
    assert set(state["engine"]) == {"supernet", "generator"}  # no optimiser state
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert sorted(p.name for p in whole_dir.glob("*.pt")) == ["checkpoint.pt"]  # no warmup.pt
    supernet = load_supernet(whole_dir)
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, state["engine"]["supernet"][key]), key
    table = tiny_table(tmp_path / "tables")
    assert cli.main(["export", str(whole_dir), "--format", "pt", "--train-epochs", "0",
                     "--out", str(tmp_path / "net.pt")]) == 0
    assert (tmp_path / "net.pt").is_file()
    assert cli.main(["sweep", str(whole_dir), "--device", str(table), "--budgets", "2.5ms",
                     "--trials", "2", "--out", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "sweep.json").is_file()
    capsys.readouterr()


def test_an_inherited_net_exported_untrained_scores_as_the_search_reported(
        whole: tuple[RunResult, Path]) -> None:
    """``export --train-epochs 0`` re-estimates the inherited child's BatchNorm statistics, as
    the search's inherited accuracy does (the supernet's running statistics mix every path's:
    without it the quick run's net scored 0.127 against the search's 0.369)."""
    result, run_dir = whole
    untrained = retrain(run_dir, 0, progress=False)
    assert untrained.test_accuracy == pytest.approx(result.test_accuracy, abs=0.05)


def test_resume_of_a_finished_run_redoes_its_end_from_the_slim_checkpoint(
        tmp_path: Path, whole: tuple[RunResult, Path]) -> None:
    whole, whole_dir = whole
    shutil.copytree(whole_dir, tmp_path / "run")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    again = search(tiny_config(tmp_path / "run", resume=True), [tiny_constraint(4.0)])
    assert again.spec == whole.spec
    for key in ("found", "random"):  # the scores (its line may name the run directory)
        assert again.verdict[key] == whole.verdict[key], key
    assert again.test_accuracy == whole.test_accuracy
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before  # already slim


def test_warmup_snapshot_only_with_keep_warmup(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", keep_warmup=True, epochs=1, verdict_nets=0)
    assert "keep_warmup" not in config.identity()  # a resume may change it
    fields = json.loads(json.dumps(config.to_dict()))  # summary.json's record of it
    assert SearchConfig(**{**fields, "devices": tuple(fields["devices"]),
                           "budgets_ms": tuple(fields["budgets_ms"])}) == config
    search(config, [tiny_constraint(4.0)])
    final = load_supernet(tmp_path / "run")
    warm = load_warmup(tmp_path / "run", final)
    assert load_checkpoint(tmp_path / "run")["history"][0]["phase"] == "warmup"
    assert any(not torch.equal(a, b) for a, b in zip(warm.state_dict().values(),
                                                     final.state_dict().values(), strict=True))


class _Killed(Exception):
    """Stands in for a kill -9 in the middle of a training step."""


@pytest.mark.parametrize("kill_at", [3, 12])  # weight steps: in warm-up, mid search epoch
def test_mid_epoch_checkpoint_resumes_to_the_same_run(tmp_path: Path, kill_at: int,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      whole: tuple[RunResult, Path]) -> None:
    whole, whole_dir = whole
    real_step, calls = SearchEngine.weight_step, []

    def dying_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            raise _Killed
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SearchEngine, "weight_step", dying_step)
    with pytest.raises(_Killed):  # checkpoint after every step, killed in step `kill_at`
        search(tiny_config(tmp_path / "cut", checkpoint_minutes=0), [tiny_constraint(4.0)])
    state = load_checkpoint(tmp_path / "cut")
    assert state["partial_epoch"]["step"] == (kill_at - 1) % 7  # 7 steps per epoch
    monkeypatch.setattr(SearchEngine, "weight_step", real_step)
    resumed = search(tiny_config(tmp_path / "cut", resume=True), [tiny_constraint(4.0)])
    assert resumed.spec == whole.spec
    a = load_checkpoint(whole_dir)
    b = load_checkpoint(tmp_path / "cut")
    assert "partial_epoch" not in b
    for key in a["engine"]["supernet"]:
        assert torch.equal(a["engine"]["supernet"][key], b["engine"]["supernet"][key]), key
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        assert {**row_a, "seconds": 0} == {**row_b, "seconds": 0}


def test_mid_search_epoch_checkpoint_keeps_the_loss_settings(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    real_step, calls = SearchEngine.weight_step, []

    def dying_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 10:  # step 3 of the first search epoch
            raise _Killed
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SearchEngine, "weight_step", dying_step)
    with pytest.raises(_Killed):
        search(tiny_config(tmp_path / "cut", checkpoint_minutes=0), [tiny_constraint(4.0)])
    monkeypatch.setattr(SearchEngine, "weight_step", real_step)
    with pytest.raises(HwnasError, match="different settings.*loss_strength"):
        search(tiny_config(tmp_path / "cut", resume=True, loss_strength=1.0),
               [tiny_constraint(4.0)])


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(tmp_path / "run")
    search(config, [tiny_constraint(4.0)], stop_after_epoch=1)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()

    def nan_loss(**_):
        return lambda logits, labels: logits.sum() * float("nan")

    monkeypatch.setattr("nas.core.engine.nn.CrossEntropyLoss", nan_loss)
    with pytest.raises(HwnasError, match="nan"):
        search(tiny_config(tmp_path / "run", resume=True), [tiny_constraint(4.0)])
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    assert not (tmp_path / "run" / "arch.json").exists()


def test_two_device_search_meets_both_budgets(tmp_path: Path) -> None:
    other = [[0.0, 3.0, 1.0, 0.5], [0.0, 2.0, 0.2, 4.0]]  # a device with another cost ranking
    config = SearchConfig(("fake", "other"), (3.0, 1.5), space=TINY.name, dataset="synthetic",
                          out=str(tmp_path / "run"), epochs=1, warmup_epochs=1, batch_size=32,
                          data_limit=256, progress=False, arch_every=1)
    result = search(config, [tiny_constraint(3.0), tiny_constraint(1.5, other, "other")])
    assert result.latency_ms["fake"] <= 3.0 and result.latency_ms["other"] <= 1.5
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "expected_ms[fake]" in header and "expected_ms[other]" in header


def test_arch_lr_schedule_gives_every_run_the_same_travel() -> None:
    config = tiny_config(Path("unused"), epochs=4, arch_every=5, arch_travel=10.0)
    assert config.arch_lr_for(100) == pytest.approx(10.0 / (4 * 20))
    assert config.arch_lr_for(3) == pytest.approx(10.0 / 1)  # fewer steps than arch_every
    long = tiny_config(Path("unused"), epochs=120, arch_every=5)
    assert long.arch_lr_for(5000) == 1e-3  # ProxylessNAS's lr is the floor
    assert tiny_config(Path("unused"), arch_lr=0.02).arch_lr_for(100) == 0.02


@pytest.mark.parametrize("weights", ["shared", "separate"])
def test_scheduled_search_ends_with_decisive_probabilities(tmp_path: Path, weights: str) -> None:
    """With the default schedule a short run's α leaves uniform: the derived net's candidates
    end far above 1/K and the entropy of p far below log K (a fixed lr of 1e-3 over the same
    22 architecture steps leaves p uniform to within 2 %). One flat softmax (ProxylessNAS's
    layout), so that uniform is 1/K for every candidate."""
    rows = []
    for arch_lr in (None, 1e-3):
        out = tmp_path / f"{weights}-{arch_lr}"
        search(tiny_config(out, 2.0, epochs=3, weights=weights, arch_lr=arch_lr,
                           budget_floor=0.0, choices="flat", arch_batches=1, select_top=0),
               # the derived net: the most probable one
               [tiny_constraint(2.0)])
        rows.append(load_checkpoint(out)["history"][-1])
    scheduled, fixed = rows
    uniform_entropy = math.log(len(TINY.candidates))
    assert scheduled["derived_prob"] > 0.6 and scheduled["entropy"] < 0.6 * uniform_entropy
    assert fixed["derived_prob"] < 0.3 and fixed["entropy"] > 0.98 * uniform_entropy
    assert scheduled["expected_ms[fake]"] < fixed["expected_ms[fake]"]


def test_latency_breakdown_adds_up_to_the_total_with_a_calibration_offset() -> None:
    from latency_predictors import latency_matrix, load_table
    from nas.run.report import latency_breakdown
    from search_spaces import get_space

    space = get_space("cifar")
    matrix = latency_matrix(space, load_table("cpu"))
    assert matrix.offset_ms != 0  # the shipped table is calibrated with an offset
    spec = space.sample(torch.Generator().manual_seed(3))
    (entry,) = latency_breakdown(spec, [Constraint(matrix, 5.0, "cpu")])
    parts = sum(entry["fixed_parts"].values()) + sum(layer["ms"] for layer in entry["layers"])
    assert parts == pytest.approx(entry["total_ms"], rel=1e-12)
    assert entry["fixed_ms"] == pytest.approx(sum(entry["fixed_parts"].values()), rel=1e-12)


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(
        tmp_path: Path, whole: tuple[RunResult, Path]) -> None:
    (tmp_path / "killed").mkdir()  # what a kill in the first epoch leaves
    resumed = search(tiny_config(tmp_path / "killed", resume=True), [tiny_constraint(4.0)])
    assert resumed.spec == whole[0].spec
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 3


def test_fine_tuning_on_more_images_than_the_search(tmp_path: Path) -> None:
    result = search(tiny_config(tmp_path / "run", epochs=1, retrain_epochs=1,
                                retrain_images=500), [tiny_constraint(4.0)])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert result.retrained_accuracy is not None
    assert summary["test_accuracy_finetuned"] == result.retrained_accuracy
    assert summary["config"]["retrain_images"] == 500


def test_child_training_augments_only_when_its_recipe_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.run import batches
    from nas.run.batches import Batches
    from nas.run.readers import load_dataset
    from nas.run.train import Recipe, train_child
    from search_spaces import build

    augmented = []
    crop_flip = batches.random_crop_flip
    monkeypatch.setattr(batches, "random_crop_flip",
                        lambda x, generator: augmented.append(len(x)) or crop_flip(x, generator))
    synth = load_dataset("synthetic", limit=128, shape=TINY.input, classes=TINY.num_classes)
    data = Batches(synth.train_x, synth.train_y, TINY.input, torch.device("cpu"),
                   torch.zeros(3), torch.ones(3))
    model = build(TINY.spec_from_indices([1] * TINY.num_layers))
    train_child(model, data, Recipe(1, 32, 0.01, 0.0, seed=0), progress=False)
    assert augmented == []  # the default: no augmentation
    train_child(model, data, Recipe(1, 32, 0.01, 0.0, seed=0, augment=True), progress=False)
    assert augmented == [32] * (len(data) // 32)
