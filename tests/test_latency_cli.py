"""CLI of latency_predictors: happy paths on a tiny space and one-line error paths (exit 2)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from latency_predictors import load_table, make_table, new_metadata, required_keys, save_table
from latency_predictors.commands import _space_summary
from latency_predictors.table import LatencyTable
from tests.helpers import CLI_SPACE, cli_code


def run(capsys, *argv):
    code = cli_code(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("hwnas: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def tables(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path))
    rows = [dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"), key,
                     strict=True), mean_ms=1.0, median_ms=1.0, std_ms=0.0, samples=1)
            for key in required_keys(CLI_SPACE)]
    for device, provenance in (("meas", "measured"), ("est", "estimated")):
        save_table(make_table(rows, new_metadata(device, provenance, spaces=[CLI_SPACE.name],
                                                 backend="onnxruntime", ep="cpu")),
                   tmp_path / device)
    arch = tmp_path / "arch.json"
    arch.write_text(CLI_SPACE.spec_from_string("sum_k3_e2|skip").to_json())
    return tmp_path, arch


def test_predict_breakdown(capsys, tables):
    _, arch = tables
    code, out, _ = run(capsys, "predict", str(arch), "--device", "meas")
    assert code == 0 and "predicted latency on meas: 4.0000 ms" in out
    assert "layer 0 sum_k3_e2" in out and "ESTIMATED" not in out
    code, out, _ = run(capsys, "predict", str(arch), "--device", "est")
    assert code == 0 and out.count("ESTIMATED") >= 1


def test_tables_list_show_check(capsys, tables):
    folder, _ = tables
    code, out, _ = run(capsys, "tables", "list")
    assert code == 0 and "meas: device meas, measured" in out and "ESTIMATED" in out
    code, out, _ = run(capsys, "tables", "show", "est")
    assert code == 0 and "ESTIMATED" in out and "sum_k3_e2" in out
    code, out, _ = run(capsys, "tables", "check", str(folder / "meas.csv"))
    assert code == 0 and out.strip().endswith("covering ['latency-cli']")


def test_tables_show_summarises_each_space():
    meta = {"profile_seconds": {"s": 12.0},
            "pass_spread": {"s": {"median_pct": 0.4, "max_pct": 15.0, "max_op": "x",
                                  "ops_over_10pct": 2, "ops": 9}},
            "calibration": {"s": {"scale": 0.95, "offset_ms": -0.1, "applied": True,
                                  "mape_before": 8.0, "mape_after": 1.5,
                                  "within_10pct_after": 100.0, "fitted_on_n": 40},
                            "t": {"scale": 1.0, "offset_ms": 0.0, "applied": False,
                                  "mape_before": 3.0}}}
    table = LatencyTable(pd.DataFrame(), meta, "x")
    line = _space_summary(table, "s")
    assert line.startswith("profiled in 12.0 s; passes agree within 0.4 % (median), at worst "
                           "15.0 % (x); 2 of 9 ops differ by > 10 %")
    assert "calibration affine: 0.9500 × table sum -0.1000 ms; cross-validated MAPE 8.00 % " \
        "-> 1.50 %" in line
    assert "not applied" in _space_summary(table, "t")
    assert _space_summary(table, "u") == "uncalibrated; no stated error"
    meta["calibration"]["s"]["cv_ratios"] = [1.0, 1.1, 0.9, 1.0, 1.05]
    assert "; error MAPE 5.0 %, +" in _space_summary(table, "s")


def test_measure_with_prediction(capsys, tables):
    _, arch = tables
    code, out, _ = run(capsys, "measure", str(arch), "--repeats", "3", "--warmup", "1",
                       "--device", "est")
    assert code == 0 and "measured latency-cli architecture" in out
    assert "predicted by table 'est': 4.0000 ms" in out and "ESTIMATED" in out
    code, out, _ = run(capsys, "measure", str(arch), "--repeats", "3", "--warmup", "1")
    assert code == 0 and "no table measured on this host, nor the 'cpu' table, covers" in out


def test_measure_defaults_to_a_table_of_this_host(capsys, tables):
    from latency_predictors.measure.host import host_fingerprint

    folder, arch = tables
    here = load_table("meas")
    here.metadata["host_fingerprint"] = host_fingerprint()
    save_table(here, folder / "meas")
    code, out, _ = run(capsys, "measure", str(arch), "--repeats", "3", "--warmup", "1")
    assert code == 0 and "predicted by table 'meas'" in out and "note:" not in out


def test_profile_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path))
    code, _, err = run(capsys, "profile", "--space", CLI_SPACE.name, "--name", "mine",
                       "--calibrate", "3", "--quiet")
    assert_one_line_error(code, err, "needs n >= 5 architectures, got 3")
    assert not list(tmp_path.iterdir())  # refused before profiling anything
    code, out, _ = run(capsys, "profile", "--space", CLI_SPACE.name, "--name", "mine",
                       "--repeats", "2", "--warmup", "0", "--quiet")
    assert code == 0 and f"wrote {tmp_path / 'mine.csv'}" in out
    code, out, _ = run(capsys, "tables", "check", "mine")
    assert code == 0


@pytest.mark.parametrize(("argv", "needles"), [
    (["predict", "{arch}", "--device", "nosuch"], ["unknown device 'nosuch'", "known devices"]),
    (["predict", "{folder}/missing.json", "--device", "meas"], ["no such file"]),
    (["predict", "{folder}/meas.json", "--device", "meas"], ["ArchSpec keys must be"]),
    (["tables", "check", "{folder}/bad.csv"], ["missing columns"]),
    (["tables", "show"], ["needs a table name"]),
    (["profile", "--backend", "onnxruntime", "--ep", "tensorrt", "--name", "x",
      "--out", "{folder}/x.csv"], ["TensorrtExecutionProvider is not available"]),
    (["profile", "--backend", "openvino", "--name", "x", "--out", "{folder}/x.csv"],
     ["pip install openvino"]),
    (["validate", "--device", "est", "--space", "latency-cli", "-n", "2"], ["is estimated"]),
    (["predict", "{arch}", "--device", "{folder}/cifar_only.csv"], ["lacks 7 rows",
                                                                   "hwnas profile"]),
])
def test_cli_errors(capsys, tables, argv, needles):
    folder, arch = tables
    (folder / "bad.csv").write_text("op,c_in\nx,1\n")
    (folder / "bad.json").write_text(json.dumps(new_metadata("bad", "measured")))
    other = make_table([{"op": "head", "c_in": 1, "c_out": 1, "height": 1, "width": 1,
                         "stride": 1, "branches": 0, "mean_ms": 1, "median_ms": 1,
                         "std_ms": 0, "samples": 1}], new_metadata("c", "measured"))
    save_table(other, folder / "cifar_only")
    if "openvino" in argv and _has_openvino():
        pytest.skip("openvino is installed here")
    argv = [a.format(arch=arch, folder=folder) for a in argv]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *needles)


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def test_validate_spread_sampler_measures_searched_like_archs(capsys, tables, tmp_path):
    import torch

    from latency_predictors.measure.networks import spread_sample

    code, out, _ = run(capsys, "validate", "--device", "meas", "--space", "latency-cli", "-n",
                       "4", "--seed", "7", "--sampler", "spread", "--quiet", "--out",
                       str(tmp_path / "val"))
    assert code == 0 and "on 4 random latency-cli architectures" in out
    generator = torch.Generator().manual_seed(7)
    expected = [spread_sample(CLI_SPACE, generator).to_string() for _ in range(4)]
    rows = (tmp_path / "val" / "validation.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == expected


def test_validate_unknown_sampler_is_one_error(tables):
    from hwnas_common import HwnasError
    from latency_predictors import load_table, validate_table

    with pytest.raises(HwnasError, match="unknown sampler 'gauss'"):
        validate_table(load_table("meas"), CLI_SPACE, n=1, sampler="gauss")


def test_adapt_cli_errors_are_one_line_and_write_nothing(capsys, tables) -> None:
    folder, _ = tables
    code, _, err = run(capsys, "tables", "adapt", "meas", "--name", "x", "-n", "2")
    assert_one_line_error(code, err, "argument -n: expected an integer >= 5, got '2'")
    code, _, err = run(capsys, "tables", "adapt", "est", "--name", "x")
    assert_one_line_error(code, err, "ESTIMATED")
    code, _, err = run(capsys, "tables", "adapt", "meas")
    assert_one_line_error(code, err, "needs --name")
    code, _, err = run(capsys, "tables", "adapt", "meas", "--name", "x", "--out",
                       str(folder / "arch.json" / "x.csv"))
    assert_one_line_error(code, err, "cannot write tables")
    assert not (folder / "x.csv").exists() and not (folder / "x.json").exists()
