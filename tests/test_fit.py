"""``hwnas tables fit``: a table from whole-net timings (latency_predictors.fit), and the margin
a table's error gives a search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latency_predictors import latency_matrix, load_table, make_table, new_metadata
from latency_predictors.fit import TableError, fit_table, roofline_prior, table_error, table_prior
from latency_predictors.fit.priors import space_keys
from latency_predictors.fit.timings import Timings
from latency_predictors.keys import op_class
from tests.helpers import CAL, cli_fails, fake_table

CLASS_SCALE = {"sum": 0.5, "star": 2.0, "mbconv": 1.5}


def _truth(prior):
    """A device whose every op of class c takes CLASS_SCALE[c] x the prior's entry, its fixed
    parts 0.8 x, plus 0.25 ms per inference: exactly what the per-class model can express."""
    classes = {}
    for layer in CAL.candidates:
        if layer.op != "skip":
            classes[layer.token] = op_class(layer)
    lookup = prior.lookup()
    rows = []
    for key in space_keys(CAL):
        value = lookup[key] * CLASS_SCALE.get(classes.get(key[0], ""), 0.8)
        rows.append(dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"),
                             key, strict=True), mean_ms=value, median_ms=value, std_ms=0.0,
                         samples=1))
    return latency_matrix(CAL, make_table(rows, new_metadata("truth", "measured",
                                                             spaces=[CAL.name]))), 0.25


def _nets(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return [CAL.sample(generator) for _ in range(n)]


def _ms(matrix, offset, specs, noise=0.0, seed=0):
    exact = np.array([matrix.predict(s).total_ms + offset for s in specs])
    return exact * np.exp(noise * np.random.default_rng(seed).standard_normal(len(specs)))


def test_fit_recovers_a_synthetic_additive_device_exactly():
    prior = fake_table()
    truth, offset = _truth(prior)
    specs = _nets(60, 0)
    timings = Timings(tuple(dict.fromkeys(specs)), np.empty(0), "synthetic")
    timings = Timings(timings.specs, _ms(truth, offset, timings.specs), "synthetic")
    result = fit_table(timings, CAL, [table_prior(prior, CAL), roofline_prior(CAL)], "dev")
    assert result.chosen == "fake/per-class"
    fresh = _nets(200, 1)
    fitted = latency_matrix(CAL, result.table)
    predicted = np.array([fitted.predict(s).total_ms for s in fresh])
    np.testing.assert_allclose(predicted, _ms(truth, offset, fresh), rtol=1e-6)
    assert result.error.mape < 1e-4
    assert result.table.provenance == "fitted"


def test_a_prior_that_cannot_express_the_device_is_not_exact():
    """The check above can fail: one scale cannot express three class scales."""
    from latency_predictors.fit.fitting import candidates_of, select

    prior = fake_table()
    truth, offset = _truth(prior)
    specs = tuple(dict.fromkeys(_nets(60, 0)))
    ms = _ms(truth, offset, specs)
    affine = [c for c in candidates_of([table_prior(prior, CAL)], specs, CAL)
              if c.model == "affine"]
    assert select(affine, ms).error.mape > 1.0


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_margin_coverage_on_a_noisy_device_is_what_was_asked(confidence):
    """Lognormal noise of 5 % per net: over 10 fits of 150 nets, the share of fresh nets that
    measure within prediction x (1 + margin) is within 2 points of the confidence."""
    prior = fake_table()
    truth, offset = _truth(prior)
    fresh = _nets(2000, 99)
    fresh_ms = _ms(truth, offset, fresh, noise=0.05, seed=99)
    covered = []
    for seed in range(10):
        specs = tuple(dict.fromkeys(_nets(150, seed + 10)))
        timings = Timings(specs, _ms(truth, offset, specs, noise=0.05, seed=seed), "synthetic")
        result = fit_table(timings, CAL, [table_prior(prior, CAL)], "dev")
        fitted = latency_matrix(CAL, result.table)
        predicted = np.array([fitted.predict(s).total_ms for s in fresh])
        margin = table_error(result.table, CAL.name).margin(confidence)
        covered.append(np.mean(fresh_ms <= predicted * (1 + margin)))
    assert abs(np.mean(covered) - confidence) <= 0.02, covered


def test_margin_math_against_a_direct_computation():
    ratios = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    logs = np.log(ratios)
    from scipy.stats import t

    expected = np.exp(logs.mean() + t.ppf(0.95, 4) * logs.std(ddof=1) * np.sqrt(1 + 1 / 5)) - 1
    assert TableError(ratios, "x").margin(0.95) == pytest.approx(expected)
    assert TableError(ratios, "x").margin(0.0) == 0.0
    assert TableError(np.full(5, 0.5), "x").margin(0.95) == 0.0  # never above the budget


def test_every_shipped_table_states_its_error():
    for name in ("cpu", "a100", "vpu", "cortex-a76", "h100"):
        table = load_table(name)
        error = table_error(table, table.metadata["spaces"][0])
        assert error is not None and error.n >= 5, name
        assert 0.0 <= error.margin() < 1.0, (name, error.margin())


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit_argv(tmp_path, timings):
    return ["tables", "fit", str(timings), "--space", CAL.name, "--prior", "fake",
            "--device", "dev", "--out", str(tmp_path / "out.csv")]


@pytest.fixture
def fake_prior(tmp_path, monkeypatch):
    from latency_predictors import save_table

    folder = tmp_path / "tables"
    folder.mkdir()
    save_table(fake_table(), folder / "fake.csv")
    monkeypatch.setenv("HWNAS_TABLES", str(folder))
    return folder


def _good_lines(n=8):
    truth, offset = _truth(fake_table())
    specs = tuple(dict.fromkeys(_nets(n + 4, 3)))[:n]
    return ["arch,ms", *(f"{s.to_string()},{m:.5f}" for s, m in
                         zip(specs, _ms(truth, offset, specs), strict=True))]


@pytest.mark.parametrize("edit, match", [
    (lambda lines: [*lines[:2], lines[2].replace("sum_k3_e2", "foo_k3_e2")
                    if "sum_k3_e2" in lines[2] else "foo_k3_e2" + lines[2][lines[2].find("|"):],
                    *lines[3:]], "line 3"),
    (lambda lines: [*lines[:3], lines[3].rsplit(",", 1)[0] + ",0", *lines[4:]], "> 0"),
    (lambda lines: [*lines[:3], lines[3].rsplit(",", 1)[0] + ",-1.5", *lines[4:]], "> 0"),
    (lambda lines: [*lines, lines[1]], "listed again"),
    (lambda lines: lines[:4], "at least 5"),
    (lambda lines: ["net,latency", *lines[1:]], "header"),
])
def test_bad_timings_are_one_line_and_write_nothing(tmp_path, capsys, fake_prior, edit, match):
    timings = _write(tmp_path / "t.csv", edit(_good_lines()))
    cli_fails(_fit_argv(tmp_path, timings), capsys, match)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.json").exists()


def test_fit_cli_writes_a_fitted_table_with_its_error(tmp_path, capsys, fake_prior):
    from tests.helpers import cli_code

    timings = _write(tmp_path / "t.csv", _good_lines(12))
    assert cli_code(_fit_argv(tmp_path, timings)) == 0
    out = capsys.readouterr().out
    assert "fitted" in out and "at 95 %" in out
    table = load_table(str(tmp_path / "out.csv"))
    assert table.provenance == "fitted" and table.metadata["fit"]["n"] == 12
    assert table_error(table, CAL.name).n == 12
    cli_fails(_fit_argv(tmp_path, timings), capsys, "already exists")  # never overwritten


def test_search_derives_under_the_margin_and_saves_it(tmp_path, capsys):
    """A table that states a 10 %-spread error: the search prints its margin in one line,
    derives under budget / (1 + margin) and saves both in summary.json."""
    import json

    from latency_predictors import save_table
    from tests.helpers import search_argv, tiny_table

    path = tiny_table(tmp_path / "tables")
    table = load_table(str(path))
    ratios = [0.9, 1.0, 1.1, 0.95, 1.05, 1.0, 1.08, 0.92, 1.02, 0.98]
    table.metadata["error"] = {"ratios": ratios, "what": "test ratios"}
    path.unlink()
    path.with_suffix(".json").unlink()
    save_table(table, path)
    run = tmp_path / "run"
    from tests.helpers import cli_code

    assert cli_code(search_argv(run, str(path), "--budget", "3.5ms")) == 0
    out = capsys.readouterr().out
    margin = TableError(np.array(ratios), "x").margin(0.95)
    line = next(li for li in out.splitlines() if li.startswith("budget 3.5 ms on"))
    assert f"+{100 * margin:.1f} % at 95 %" in line
    assert f"derived under {3.5 / (1 + margin):.4g} ms" in line
    summary = json.loads((run / "summary.json").read_text())
    saved = summary["tables"][0]
    assert saved["budget_ms"] == 3.5
    assert saved["derived_under_ms"] == pytest.approx(3.5 / (1 + margin))
    assert saved["margin"]["confidence"] == 0.95
    assert summary["predicted_latency_ms"][str(path)] <= 3.5 / (1 + margin) + 1e-9
