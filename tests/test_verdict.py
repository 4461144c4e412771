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
from nas.run import checkpoint
from nas.run import verdict as verdict_module
from nas.run.batches import prepare_data
from nas.run.verdict import (
    NetScore,
    ScorerRanking,
    _scored,
    band_candidates,
    compare_losses,
    judge,
    score_net,
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
    assert judged["judgement"] in ("better", "worse", "indistinguishable", "cannot tell")
    assert not re.search(r"\brank \d", judged["line"])  # no bare rank read as a judgement
    assert judged["found"]["arch"] == result.spec.to_string()
    assert len(judged["random"]) == 3
    for net in [judged["found"], *judged["random"]]:
        assert 0.9 * 4.0 <= net["latency_ms"]["fake"] <= 4.0  # all in the band
        assert 0 <= net["heldout_acc"] <= 1 and net["heldout_loss"] > 0
    losses = [n["heldout_loss"] for n in judged["random"]]
    assert judged["rank"] == 1 + sum(loss < judged["found"]["heldout_loss"] for loss in losses)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["verdict"]["rank"] == judged["rank"]
    assert (tmp_path / "run" / "verdict.png").is_file()
    assert not (tmp_path / "run" / "warmup.pt").exists()  # kept only with keep_warmup


@pytest.mark.parametrize("phase", ["warmup", "final"])
def test_verdict_scores_on_the_supernet_its_scorer_was_measured_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    monkeypatch.setitem(verdict_module.RANKINGS, "budget:family:0.9",
                        replace(VALIDATED, phase=phase))
    out = tmp_path / "run"
    result = search(tiny_config(out, verdict_nets=2, keep_warmup=True), [tiny_constraint(4.0)])
    final = checkpoint.load_supernet(out)
    warm = checkpoint.load_warmup(out, final)
    splits = prepare_data(tiny_config(out), torch.device("cpu"))
    on_warm, _ = _scored(warm, result.spec, splits, [tiny_constraint(4.0)], 32, on_test=True)
    on_final, _ = _scored(final, result.spec, splits, [tiny_constraint(4.0)], 32, on_test=True)
    assert on_warm.heldout_loss != pytest.approx(on_final.heldout_loss)
    on_arch = score_net(final, result.spec, splits, [tiny_constraint(4.0)], 32)
    assert on_arch.heldout_loss != pytest.approx(on_final.heldout_loss)  # the test split
    expected = on_warm if phase == "warmup" else on_final
    assert result.verdict["found"]["heldout_loss"] == pytest.approx(expected.heldout_loss)
    assert result.verdict["scorer"]["phase"] == phase


VALIDATED = ScorerRanking("test scorer", "final", 0.8, 0.6, 0.9, 0.7, "a test")
NOT_VALIDATED = ScorerRanking("test scorer", "final", 0.4, -0.2, 0.8, 0.7, "a test")


def test_judgement_on_a_synthetic_tie_and_a_clear_win() -> None:
    generator = torch.Generator().manual_seed(0)
    randoms = 2.0 + 0.5 * torch.randn(8, 400, generator=generator)
    tie = randoms.mean(dim=0) + 0.05 * torch.randn(400, generator=generator)
    win = randoms.mean(dim=0) - 0.3
    assert judge(tie, randoms, VALIDATED) == "indistinguishable"
    assert judge(win, randoms, VALIDATED) == "better"
    assert judge(randoms.mean(dim=0) + 0.3, randoms, VALIDATED) == "worse"
    assert judge(win, randoms, NOT_VALIDATED) == "cannot tell"  # a clear win it cannot judge
    delta = compare_losses(win, randoms)
    assert delta[0] == pytest.approx(-0.3, abs=1e-6) and delta[1] < delta[0] < delta[2] < 0


def test_verdict_wording_says_what_the_scorer_can_tell() -> None:
    mine = NetScore("a", 1.9, 0.5, {"cpu": 1.0})
    others = [NetScore(str(i), 2.0 + i / 100, 0.4, {"cpu": 0.95}) for i in range(4)]
    delta = (-0.1, -0.2, 0.01)
    tie = verdict_line("indistinguishable", mine, others, delta, VALIDATED, "cpu")
    assert "indistinguishable from random nets of its band at this fidelity" in tie
    assert "corrected ρ +0.80 [+0.60, +0.90]" in tie and not re.search(r"\brank \d", tie)
    win = verdict_line("better", mine, others, (-0.3, -0.4, -0.2), VALIDATED, "cpu")
    assert "scores better than random nets of its band" in win
    unknown = verdict_line("cannot tell", mine, others, delta, NOT_VALIDATED, "cpu")
    assert unknown.startswith("verdict: cannot tell whether the found net beats random nets")
    assert "corrected ρ +0.40 [-0.20, +0.80]" in unknown
    noisy = replace(VALIDATED, rho_ab=0.2)  # a noise ceiling too low to validate anything
    assert not noisy.validated and not NOT_VALIDATED.validated and VALIDATED.validated
    ceiling = verdict_line("cannot tell", mine, others, delta, noisy, "cpu")
    assert "two stand-alone trainings of the same nets agree only at Spearman ρ +0.20" in ceiling
    assert "no scorer can be validated there at this fidelity" in ceiling
    assert "Test loss on the supernet" in ceiling  # the numbers stay, as a sentence


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


def test_no_verdict_when_switched_off_or_its_warmup_snapshot_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert search(tiny_config(tmp_path / "b", verdict_nets=0),
                  [tiny_constraint(4.0)]).verdict is None
    final = search(tiny_config(tmp_path / "a", warmup_epochs=0), [tiny_constraint(4.0)])
    assert final.verdict is not None  # the default scorer is the final supernet
    monkeypatch.setitem(verdict_module.RANKINGS, "budget:family:0.9",
                        replace(VALIDATED, phase="warmup"))
    assert search(tiny_config(tmp_path / "c", warmup_epochs=0),
                  [tiny_constraint(4.0)]).verdict is None


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
    assert resumed.verdict == whole.verdict


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
    assert "verdict: cannot tell" in out and "not measured with these weight paths" in out
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
