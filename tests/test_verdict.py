"""Every run's verdict (nas/run/verdict.py), the final pick by evaluation, and the search
levers (factorised choices, uniform weight paths, several comparisons per
architecture step, Adam β1) on a tiny synthetic search."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import cli
from hwnas_common import HwnasError
from nas import SearchConfig, SearchEngine, search
from nas.run import checkpoint, rankings
from nas.run.batches import prepare_data
from nas.run.rankings import RankingRecord, Scope, nearest_record
from nas.run.verdict import (
    NetScore,
    _scored,
    band_candidates,
    compare_nets,
    score_net,
    supernet_judgement,
    verdict_line,
)
from search_spaces import ArchSpec, Supernet
from tests.helpers import (
    SEARCH_TINY,
    cli_fails,
    search_argv,
    tiny_config,
    tiny_constraint,
    tiny_table,
)


def test_verdict_ranks_the_found_net_among_random_band_nets(tmp_path: Path) -> None:
    result = search(tiny_config(tmp_path / "run", verdict_nets=3), [tiny_constraint(4.0)])
    judged = result.verdict
    assert judged is not None and 1 <= judged["rank"] <= 4 and judged["of"] == 4
    assert judged["line"].startswith("verdict: ")
    assert not re.search(r"\brank \d", judged["line"])  # no bare rank read as a judgement
    assert judged["found"]["arch"] == result.spec.to_string()
    assert len(judged["random"]) == 3
    for net in [judged["found"], *judged["random"]]:
        assert 0.9 * 4.0 <= net["latency_ms"]["fake"] <= 4.0  # all in the band
        assert 0 <= net["heldout_acc"] <= 1 and net["heldout_loss"] > 0
    losses = [n["heldout_loss"] for n in judged["random"]]
    found = judged["found"]["heldout_loss"]
    assert judged["rank"] == 1 + sum(loss < found for loss in losses)
    assert judged["as_good"] == sum(loss <= found for loss in losses)
    assert judged["loss_difference"] == pytest.approx(list(compare_nets(found, losses)))
    # the equal-effort random pick is one of the random nets, scored on the test split
    pick = judged["random_pick"]
    picked = max(1, min(3, tiny_config(tmp_path / "run").select_top))  # as many as the pick's
    assert pick["of"] == picked and pick["test_loss"] in losses
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["verdict"]["rank"] == judged["rank"]
    assert (tmp_path / "run" / "verdict.png").is_file()


def test_verdict_scores_on_the_final_supernet_and_the_test_split(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = search(tiny_config(out, verdict_nets=2), [tiny_constraint(4.0)])
    final = checkpoint.load_supernet(out)
    splits = prepare_data(tiny_config(out), torch.device("cpu"))
    on_test, _ = _scored(final, result.spec, splits, [tiny_constraint(4.0)], 32, on_test=True)
    on_arch = score_net(final, result.spec, splits, [tiny_constraint(4.0)], 32)
    assert on_arch.heldout_loss != pytest.approx(on_test.heldout_loss)
    assert result.verdict["found"]["heldout_loss"] == pytest.approx(on_test.heldout_loss)


def test_the_interval_over_nets_covers_0_for_nets_that_differ_only_by_net_noise() -> None:
    """Found and random nets alike: their scores differ only by net-level noise, so the
    interval must cover 0 in about 95 % of draws (binomial sd over 4,000 draws: 0.34 %)."""
    generator = torch.Generator().manual_seed(0)
    draws, covered = 4000, 0
    for _ in range(draws):
        nets = (2.0 + 0.3 * torch.randn(9, generator=generator)).tolist()
        _, low, high = compare_nets(nets[0], nets[1:])
        covered += low <= 0 <= high
    assert 0.935 <= covered / draws <= 0.965
    # an interval over images would not cover: one net's per-image losses vs the others'
    _, low, high = compare_nets(1.0, [2.0, 2.1, 1.9, 2.05])
    assert high < 0


def test_supernet_judgement_needs_the_band_and_the_equal_effort_pick_beaten() -> None:
    assert supernet_judgement((-0.3, -0.5, -0.1), pick_gap=-0.05) == "better"
    assert supernet_judgement((-0.3, -0.5, -0.1), pick_gap=+0.05) == "indistinguishable"
    assert supernet_judgement((-0.1, -0.4, +0.2), pick_gap=-0.2) == "indistinguishable"
    assert supernet_judgement((+0.3, +0.1, +0.5), pick_gap=+0.3) == "worse"


SCOPE = Scope("hybrid-cifar", "fashion-mnist", 3000, 1, 2, "budget:family:0.9", "cpu", 0.15)
VALIDATED = RankingRecord(SCOPE, 0.8, 0.6, 0.9, 0.7, 0.45, 0.85, True, True, "a test")


def test_a_record_validates_only_fresh_with_a_ceiling_interval_above_0_3() -> None:
    assert VALIDATED.validated and VALIDATED.objections() == []
    low_ceiling = replace(VALIDATED, rho_ab_low=0.25)  # point estimate 0.7, interval below 0.3
    assert not low_ceiling.validated
    assert "an interval reaching below 0.3" in low_ceiling.objections()[0]
    assert not replace(VALIDATED, fresh=False).validated
    assert not replace(VALIDATED, complete_interval=False).validated
    assert not replace(VALIDATED, low=-0.1).validated
    # the shipped record of the main job's scope validates nothing, and says why
    record, differences = nearest_record(replace(SCOPE, band=0.13))
    assert differences == [] and record is not None and not record.validated
    assert "chosen on" in " ".join(record.objections())


def test_scope_differences_name_each_field_and_tolerate_a_close_band() -> None:
    assert SCOPE.differences(replace(SCOPE, band=0.19)) == []
    other = replace(SCOPE, dataset="cifar10", data_limit=None, band=0.5)
    assert other.differences(SCOPE) == ["dataset fashion-mnist not cifar10",
                                        "data limit 3000 not None", "band 15 % not 50 %"]


def test_wording_cannot_tell_names_the_nearest_record_and_what_would_tell() -> None:
    mine = NetScore("a", 1.9, 0.5, {"cpu": 1.0})
    others = [NetScore(str(i), 2.0 + i / 100, 0.4, {"cpu": 0.95}) for i in range(4)]
    delta = compare_nets(1.9, [o.heldout_loss for o in others])
    pick = {"arch": "0", "of": 4, "test_loss": 2.0}
    outside = replace(SCOPE, dataset="cifar10")
    line = verdict_line("cannot tell", "better", mine, others, delta, 0, pick, VALIDATED,
                        outside.differences(SCOPE), outside, "cpu", "run the check")
    assert line.startswith("verdict: cannot tell whether the found net beats random nets")
    assert "no measured ranking covers this run" in line and "a test" in line
    assert "dataset fashion-mnist not cifar10" in line and "What would tell: run the check" in line
    assert "it scores better than random nets of its band" in line and "0 of 4 as good" in line
    spoken = verdict_line("better", "better", mine, others, delta, 0, pick, VALIDATED, [],
                          SCOPE, "cpu", "run the check")
    assert spoken.startswith("verdict: after training, the found net is likely better")
    assert "corrected ρ +0.80 [+0.60, +0.90], a test" in spoken


def test_a_run_outside_every_record_says_cannot_tell_and_a_covering_one_speaks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = search(tiny_config(tmp_path / "a", verdict_nets=3), [tiny_constraint(4.0)])
    assert first.verdict["judgement"] == "cannot tell"  # no record of the tiny space
    assert "no measured ranking covers this run" in first.verdict["line"]
    assert "bench/verdict_check.py" in first.verdict["line"]
    scope = Scope(**first.verdict["scope"])
    monkeypatch.setattr(rankings, "RECORDS", (replace(VALIDATED, scope=scope),))
    second = search(tiny_config(tmp_path / "b", verdict_nets=3), [tiny_constraint(4.0)])
    assert second.verdict["judgement"] == second.verdict["supernet_judgement"]
    assert second.verdict["line"].startswith("verdict: after training")
    assert second.verdict["record"]["validated"] is True


def test_no_verdict_when_switched_off(tmp_path: Path) -> None:
    assert search(tiny_config(tmp_path / "b", verdict_nets=0),
                  [tiny_constraint(4.0)]).verdict is None
    assert search(tiny_config(tmp_path / "a", warmup_epochs=0),
                  [tiny_constraint(4.0)]).verdict is not None


def test_each_epoch_scores_the_derived_net_with_its_own_batchnorm_statistics(
        tmp_path: Path) -> None:
    """metrics.csv's held-out figures are the derived net's score_net on that epoch's
    supernet, not the supernet's path under running statistics that mix every path's."""
    out = tmp_path / "run"
    search(tiny_config(out, verdict_nets=0, select_top=1), [tiny_constraint(4.0)])
    last = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))[-1]
    final = checkpoint.load_supernet(out)
    splits = prepare_data(tiny_config(out), torch.device("cpu"))
    derived = ArchSpec.from_string(last["derived"], final.space.name, final.space.input)
    scored = score_net(final, derived, splits, [tiny_constraint(4.0)], 32)
    assert float(last["heldout_loss"]) == pytest.approx(scored.heldout_loss)
    assert float(last["heldout_acc"]) == pytest.approx(scored.heldout_acc)


def test_band_candidates_are_distinct_band_nets_led_by_the_knapsack_net() -> None:
    supernet = Supernet(SEARCH_TINY)
    with torch.no_grad():
        for layer in supernet.layers:
            layer.alpha.copy_(torch.tensor([0.0, 1.0, 0.5, -0.5]))
    limit = tiny_constraint(4.5)
    specs = band_candidates(supernet, [limit], 0.5, 5, torch.Generator().manual_seed(0))
    assert len({s.to_string() for s in specs}) == len(specs) >= 2
    assert specs[0].to_string() == "sum_k3_e2|sum_k3_e2"  # the most probable band net first
    for spec in specs:
        choice = [SEARCH_TINY.candidate_index(layer) for layer in spec.layers]
        assert 0.5 * 4.5 <= limit.matrix.total(choice) <= 4.5


@pytest.mark.parametrize("levers", [
    dict(choices="flat", weight_paths="p", arch_batches=1, select_top=0),
    dict(choices="family", weight_paths="uniform", arch_batches=3, arch_beta1=0.9,
         select_top=4)])
def test_search_levers_move_alpha_and_meet_the_budget(tmp_path: Path, levers: dict) -> None:
    out = tmp_path / "run"
    result = search(tiny_config(out, **levers), [tiny_constraint(4.0)])
    assert result.latency_ms["fake"] <= 4.0
    supernet = checkpoint.load_supernet(out)
    assert supernet.choices == levers.get("choices", SearchConfig.choices)
    for layer in supernet.layers:
        assert float(layer.probs().detach().sum()) == pytest.approx(1.0)
        assert float(layer.alpha.detach().abs().max()) > 1e-3  # α moved


def test_uniform_paths_follow_the_prior_of_the_choice_tree() -> None:
    engine = SearchEngine(Supernet(SEARCH_TINY, choices="family"), [tiny_constraint(4.0)],
                          tiny_config(Path("unused"), choices="family", weight_paths="uniform"))
    draws = torch.tensor([engine.sample_paths(uniform=True) for _ in range(2000)])
    skip_share = float((draws == 0).double().mean())  # root: {skip, interaction}
    assert skip_share == pytest.approx(0.5, abs=5 * (0.25 / draws.numel()) ** 0.5)
    flat = SearchEngine(Supernet(SEARCH_TINY), [tiny_constraint(4.0)],
                        tiny_config(Path("unused"), weight_paths="uniform"))
    draws = torch.tensor([flat.sample_paths(uniform=True) for _ in range(2000)])
    assert float((draws == 0).double().mean()) == pytest.approx(
        0.25, abs=5 * (0.1875 / draws.numel()) ** 0.5)


def test_budget_paths_train_only_nets_the_budget_admits() -> None:
    limit = tiny_constraint(4.0)
    for floor, prior in ((0.9, "net"), (0.0, "family")):
        engine = SearchEngine(Supernet(SEARCH_TINY, choices="family"), [limit],
                              tiny_config(Path("unused"), choices="family", path_floor=floor,
                                          path_prior=prior))
        for warm in (True, False):
            for _ in range(50):
                total = limit.matrix.total(engine.sample_paths(uniform=warm))
                assert floor * 4.0 <= total <= 4.0


def test_factorised_search_resumes_to_the_same_run(tmp_path: Path) -> None:
    levers = dict(choices="family", weight_paths="uniform", arch_batches=2, arch_beta1=0.5)
    whole = search(tiny_config(tmp_path / "whole", **levers), [tiny_constraint(4.0)])
    search(tiny_config(tmp_path / "cut", **levers), [tiny_constraint(4.0)], stop_after_epoch=2)
    resumed = search(tiny_config(tmp_path / "cut", resume=True, **levers),
                     [tiny_constraint(4.0)])
    assert resumed.spec == whole.spec
    def without_line(judged: dict) -> dict:  # the line names the run's own directory
        return {k: v for k, v in judged.items() if k != "line"}
    assert without_line(resumed.verdict) == without_line(whole.verdict)


@pytest.mark.parametrize("bad", [dict(choices="tree"), dict(weight_paths="greedy"),
                                 dict(arch_batches=0), dict(arch_beta1=1.0),
                                 dict(select_top=-1)])
def test_bad_lever_values_are_one_clear_error(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(HwnasError):
        tiny_config(tmp_path / "run", **bad)


def test_cli_prints_the_verdict_and_takes_the_lever_flags(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    table = str(tiny_table(tmp_path / "tables"))
    argv = search_argv(tmp_path / "run", table, "--budget", "4ms", "--choices", "flat",
                       "--weight-paths", "p", "--arch-batches", "3", "--select-top", "2",
                       "--verdict-nets", "2")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "verdict: cannot tell" in out and "no measured ranking covers this run" in out
    config = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]
    assert (config["choices"], config["arch_batches"], config["verdict_nets"]) == ("flat", 3, 2)
    cli_fails(search_argv(tmp_path / "bad", table, "--budget", "4ms", "--arch-batches", "0"),
              capsys, "--arch-batches: expected an integer >= 1")


def test_verdict_says_when_the_band_holds_only_the_found_net(tmp_path: Path) -> None:
    """A budget that only the all-skip net meets leaves nothing to compare with."""
    result = search(tiny_config(tmp_path / "run", budget_ms=0.6, verdict_nets=3),
                    [tiny_constraint(0.6)])
    assert result.spec.to_string() == "skip|skip"
    assert "holds no net but the found one" in result.verdict["line"]
