"""Latency tables: round trip and strict validation (one-line HwnasError per problem)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hwnas_common.errors import HwnasError
from latency_predictors import COLUMNS, load_table, make_table, save_table
from latency_predictors.metadata import REQUIRED_METADATA
from latency_predictors.store import known_tables, table_paths


def metadata(**overrides):
    meta = {"device": "testdev", "provenance": "measured", "runtime": "onnxruntime",
            "runtime_version": "1.0", "mode": "CPUExecutionProvider", "threads": 1,
            "batch_size": 1, "dtype": "float32", "warmup": 5, "repeats": 20, "host": "h",
            "date": "2026-01-01T00:00:00Z", "tool_version": "0.1.0", "spaces": ["cifar"]}
    meta.update(overrides)
    return meta


ROWS = [
    {"op": "quad_k7_e4", "c_in": 64, "c_out": 64, "height": 16, "width": 16, "stride": 1,
     "branches": 0, "mean_ms": 0.41, "median_ms": 0.4, "std_ms": 0.02, "samples": 20},
    {"op": "rbf_k3_e2", "c_in": 64, "c_out": 64, "height": 16, "width": 16, "stride": 1,
     "branches": 4, "mean_ms": 0.73, "median_ms": 0.72, "std_ms": 0.03, "samples": 20},
    {"op": "stem:conv3x3", "c_in": 3, "c_out": 32, "height": 32, "width": 32, "stride": 1,
     "branches": 0, "mean_ms": 0.05, "median_ms": 0.05, "std_ms": 0.0, "samples": 20},
]


@pytest.fixture
def saved(tmp_path):
    path = save_table(make_table(ROWS, metadata(), "t"), tmp_path / "t")
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_round_trip(saved):
    table = load_table(saved)
    again = load_table(str(saved).replace(".csv", ".json"))
    assert table.metadata == metadata()
    assert len(table.frame) == 3 and list(table.frame.columns) == list(COLUMNS)
    assert table.lookup()[("rbf_k3_e2", 64, 64, 16, 16, 1, 4)] == pytest.approx(0.72)
    assert again.lookup() == table.lookup()
    assert table.name == "t" and not table.estimated


def test_lookup_by_name_in_user_dir(saved, monkeypatch):
    monkeypatch.setenv("HWNAS_TABLES", str(saved.parent))
    assert "t" in known_tables()
    assert load_table("t").device == "testdev"


def test_unknown_device_lists_known(monkeypatch, tmp_path):
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path))
    with pytest.raises(HwnasError, match="unknown device 'nosuch'; known devices") as err:
        load_table("nosuch")
    one_line(err)


def test_missing_file(tmp_path):
    with pytest.raises(HwnasError, match="does not exist"):
        load_table(tmp_path / "absent.csv")


def rewrite_csv(path, mutate):
    frame = pd.read_csv(path)
    frame = mutate(frame)
    path.write_text(frame.to_csv(index=False))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda f: f.drop(columns=["median_ms"]), "missing columns \\['median_ms'\\]"),
    (lambda f: f.assign(median_ms=[0.4, -1.0, 0.05]), "median_ms must be a finite number > 0"),
    (lambda f: f.assign(mean_ms=[0.4, math.nan, 0.05]), "mean_ms must be a finite number > 0"),
    (lambda f: f.assign(median_ms=[0.4, 0.0, 0.05]), "median_ms must be a finite number > 0"),
    (lambda f: f.assign(std_ms=[0.4, -0.1, 0.05]), "std_ms must be a finite number >= 0"),
    (lambda f: f.assign(c_in=[64, 2.5, 3]), "c_in must be an integer"),
    (lambda f: f.assign(samples=[20, 0, 20]), "samples must be an integer >= 1"),
    (lambda f: pd.concat([f, f.iloc[[0]]]), "duplicate key"),
    (lambda f: f.assign(op=["quad_k7_e4", "skip", "x"]), "bad op 'skip'"),
    (lambda f: f.iloc[0:0], "no rows"),
])
def test_bad_csv(saved, mutate, message):
    rewrite_csv(saved, mutate)
    with pytest.raises(HwnasError, match=message) as err:
        load_table(saved)
    one_line(err)


def test_truncated_csv(saved):
    text = saved.read_text()
    saved.write_text(text[: text.rindex(",") - 3])  # cut in the middle of the last row
    with pytest.raises(HwnasError) as err:
        load_table(saved)
    assert "must be" in one_line(err) or "malformed" in one_line(err)


@pytest.mark.parametrize("content", ["", "op,c_in\n\"unterminated\n", "a,b\n1,2,3,4\n"])
def test_malformed_csv(saved, content):
    saved.write_text(content)
    with pytest.raises(HwnasError) as err:
        load_table(saved)
    one_line(err)


def set_meta(saved, **changes):
    path = table_paths(saved)[1]
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("changes", "message"), [
    ({"device": None}, "lacks fields \\['device'\\]"),
    ({"provenance": "guessed"}, "unknown provenance 'guessed'; valid: \\['measured'"),
    ({"threads": "four"}, "'threads' must be int, got 'four'"),
    ({"batch_size": 8}, "batch_size must be 1"),
    ({"spaces": "cifar"}, "'spaces' must be list"),
    ({"devise": "typo"}, "unknown metadata fields \\['devise'\\]"),
    ({"calibration": {"cifar": {"scale": -1, "offset_ms": 0}}}, "scale must be > 0"),
    ({"calibration": {"cifar": {"scale": 1}}}, "'scale' and 'offset_ms'"),
    ({"calibration": {"cifar": {"scale": 1, "offset_ms": 0, "class_scales": {"sum": 0}}}},
     "class_scales must map op classes to finite numbers > 0"),
    ({"calibration": {"cifar": {"scale": 1, "offset_ms": 0, "class_scales": [1.0]}}},
     "class_scales must map"),
])
def test_bad_metadata(saved, changes, message):
    set_meta(saved, **changes)
    with pytest.raises(HwnasError, match=message) as err:
        load_table(saved)
    one_line(err)


def test_metadata_not_json(saved):
    table_paths(saved)[1].write_text("{not json")
    with pytest.raises(HwnasError, match="not valid JSON") as err:
        load_table(saved)
    one_line(err)


def test_save_refuses_bad_table(tmp_path):
    with pytest.raises(HwnasError, match="lacks fields"):
        make_table(ROWS, {k: v for k, v in metadata().items() if k != "host"})
    assert set(REQUIRED_METADATA) == set(metadata())
    assert not list(tmp_path.iterdir())
