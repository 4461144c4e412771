"""Host-true by default: a measured table of another host is adapted before a command uses it,
once per host (cached in the user's table directory), with --no-adapt as the way out.

Every test runs on a fake foreign fingerprint and a fake backend, with ``$HWNAS_TABLES`` in a
temporary folder (conftest), so nothing is measured for real and ``~/.hwnas`` is never touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli
import latency_predictors.measure.adapt as adapt
from latency_predictors import (
    load_table,
    make_table,
    new_metadata,
    predict_latency,
    required_keys,
    save_table,
)
from latency_predictors.measure.adapt import ADAPTED_DIR, host_true_table
from latency_predictors.measure.host import host_fingerprint
from latency_predictors.store import table_dirs
from latency_predictors.table import KEY_COLUMNS
from search_spaces import read_arch
from tests.helpers import CAL, SEARCH_TINY, Affine, fake_table, search_argv

THERE = host_fingerprint({"model name": "AMD EPYC", "cpu family": "26", "model": "2",
                          "flags": "avx2 fma avx512f"})
HERE = host_fingerprint({"model name": "AMD EPYC", "cpu family": "25", "model": "1",
                         "flags": "avx2 fma"})


FAST = ("--data-limit", "96", "--batch-size", "16")  # the search is not what is tested


class Counting(Affine):
    """Measures 2 x the table sum + 0.3 ms and counts the networks it times."""

    def __init__(self, truth):
        super().__init__(truth)
        self.calls = 0

    def time(self, module, input_shape):
        self.calls += 1
        return super().time(module, input_shape)


def _foreign(space=CAL):
    return fake_table(space, host_fingerprint=THERE)


def test_a_foreign_table_is_adapted_once_and_cached_in_the_user_folder() -> None:
    source = _foreign()
    backend = Counting(fake_table())
    first = host_true_table(source, [CAL.name], backend=backend, here=HERE, progress=False)
    assert backend.calls > 0 and first.path is not None
    assert first.path.parent == table_dirs()[0] / ADAPTED_DIR and first.path.is_file()
    assert "adapted to this host" in first.note and "--no-adapt" in first.note
    assert first.note.count("\n") == 0
    table = first.table
    assert table.metadata["host_fingerprint"] == host_fingerprint()
    assert table.metadata["spaces"] == [CAL.name]
    assert table.metadata["adapted_from"]["host_fingerprint"] == THERE
    spec = CAL.spec_from_string("sum_k3_e2|skip|mb_k3_e3|star_k5_e2")
    truth = 2 * predict_latency(spec, source).total_ms + 0.3  # what this host "measures"
    assert predict_latency(spec, table).total_ms == pytest.approx(truth, rel=1e-3)
    backend.calls = 0
    again = host_true_table(source, [CAL.name], backend=backend, here=HERE, progress=False)
    assert backend.calls == 0 and again.path == first.path  # from the cache
    assert "using its adaptation" in again.note
    assert predict_latency(spec, again.table).total_ms == pytest.approx(truth, rel=1e-3)
    other = host_true_table(source, [CAL.name], backend=backend, progress=False,
                            here={**HERE, "cpu_model_number": "17"})  # another host
    assert backend.calls > 0 and other.path != first.path


class SlowStart(Affine):
    """A host whose first reference timings, at start-up, run 1.6x slower than the ones
    around the networks (as a Zen 3 guest, family 25 model 1, did: 0.126 ms, then 0.077 ms)."""

    def __init__(self, truth):
        super().__init__(truth)
        self.references = 0

    def reference_ms(self) -> float:
        self.references += 1
        return 1.6 if self.references <= 9 else 1.0


def test_the_adaptation_keeps_the_networks_at_the_speed_they_were_measured_at() -> None:
    source = _foreign()
    backend = SlowStart(fake_table())
    table = host_true_table(source, [CAL.name], backend=backend, here=HERE,
                            progress=False).table
    assert table.metadata["reference"]["ms"] == pytest.approx(1.0)  # timed around the nets
    spec = CAL.spec_from_string("skip|skip|mb_k3_e3|skip")
    truth = 2 * predict_latency(spec, source).total_ms + 0.3  # what this host "measures"
    assert predict_latency(spec, table).total_ms == pytest.approx(truth, rel=1e-3)


def test_a_new_space_is_added_to_the_cached_adaptation() -> None:
    keys = list(dict.fromkeys([*required_keys(CAL), *required_keys(SEARCH_TINY)]))
    rows = [dict(zip(KEY_COLUMNS, key, strict=True), mean_ms=v, median_ms=v, std_ms=0.0,
                 samples=1) for v, key in enumerate(keys, start=1)]
    source = make_table(rows, new_metadata("fake", "measured", spaces=[CAL.name,
                                                                       SEARCH_TINY.name],
                                           backend="onnxruntime", ep="cpu",
                                           host_fingerprint=THERE), "fake")
    backend = Counting(source)
    host_true_table(source, [CAL.name], backend=backend, here=HERE, progress=False)
    both = host_true_table(source, [SEARCH_TINY.name], backend=backend, here=HERE,
                           progress=False)
    assert both.table.metadata["spaces"] == [CAL.name, SEARCH_TINY.name]
    assert set(both.table.metadata["calibration"]) == {CAL.name, SEARCH_TINY.name}
    assert load_table(both.path).metadata["spaces"] == [CAL.name, SEARCH_TINY.name]


def test_no_adapt_same_host_estimated_and_unknown_hosts_are_used_as_they_are() -> None:
    backend = Counting(fake_table())
    source = _foreign()
    kept = host_true_table(source, [CAL.name], adapt=False, backend=backend, here=HERE)
    assert kept.table is source and backend.calls == 0 and kept.path is None
    assert kept.note.startswith("--no-adapt:") and "milliseconds on that machine" in kept.note
    local = fake_table(host_fingerprint=HERE)
    assert host_true_table(local, [CAL.name], backend=backend, here=HERE).note is None
    estimated = fake_table()
    estimated.metadata["provenance"] = "estimated"
    assert host_true_table(estimated, [CAL.name], here=HERE) == (
        adapt.HostTable(estimated, None))
    unknown = host_true_table(fake_table(), [CAL.name], backend=backend, here=HERE)
    assert "records no host fingerprint" in unknown.note and backend.calls == 0
    only_cached = host_true_table(source, [CAL.name], measure=False, here=HERE)
    assert only_cached.table is source and "not adapted to this host" in only_cached.note


def test_a_runtime_missing_here_is_one_line_and_the_table_as_measured() -> None:
    source = fake_table(CAL, host_fingerprint=THERE)
    source.metadata["backend"] = "openvino"  # not installed with hwnas
    hosted = host_true_table(source, [CAL.name], here=HERE)
    assert hosted.table is source and hosted.note.count("\n") == 0
    assert "cannot be adapted here" in hosted.note and "openvino" in hosted.note.lower()


@pytest.fixture
def foreign_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A measured SEARCH_TINY table of another host, this host faked as HERE and timed by the
    fake backend (2 x table + 0.3 ms)."""
    monkeypatch.setattr(adapt, "host_fingerprint", lambda: HERE)
    truth = fake_table(SEARCH_TINY)
    monkeypatch.setattr(adapt, "adapt_backend", lambda table: Affine(truth))
    return str(save_table(fake_table(SEARCH_TINY, host_fingerprint=THERE), tmp_path / "zen5"))


def test_search_adapts_a_foreign_table_by_default_and_the_budget_means_ms_here(
        tmp_path: Path, foreign_tiny: str, capsys: pytest.CaptureFixture) -> None:
    source = load_table(foreign_tiny)
    budget = 20.0
    run = tmp_path / "run"
    assert cli.main(search_argv(run, foreign_tiny, "--budget", f"{budget}ms", *FAST)) == 0
    out = capsys.readouterr().out
    assert sum("adapted to this host" in line for line in out.splitlines()) == 1
    summary = json.loads((run / "summary.json").read_text())
    identity = summary["tables"][0]["metadata"]
    assert identity["adapted_from"]["host_fingerprint"] == THERE
    spec = read_arch(str(run))
    here_ms = 2 * predict_latency(spec, source).total_ms + 0.3  # the fake host's truth
    assert here_ms <= budget * 1.001
    assert summary["predicted_latency_ms"][foreign_tiny] == pytest.approx(here_ms, rel=1e-3)
    kept = tmp_path / "kept"
    assert cli.main(search_argv(kept, foreign_tiny, "--budget", f"{budget}ms", *FAST,
                                "--no-adapt")) == 0
    out = capsys.readouterr().out
    assert "--no-adapt:" in out and "adapted to this host" not in out
    assert "adapted_from" not in json.loads((kept / "summary.json").read_text())["tables"][0][
        "metadata"]


def test_predict_and_measure_use_the_adapted_table(
        tmp_path: Path, foreign_tiny: str, capsys: pytest.CaptureFixture) -> None:
    arch = tmp_path / "arch.json"
    spec = SEARCH_TINY.spec_from_string("sum_k3_e2|skip")
    arch.write_text(spec.to_json())
    source = load_table(foreign_tiny)
    assert cli.main(["predict", str(arch), "--device", foreign_tiny]) == 0
    out = capsys.readouterr().out
    assert "adapted to this host" in out
    assert f"{2 * predict_latency(spec, source).total_ms + 0.3:.3f}" in out
    assert cli.main(["predict", str(arch), "--device", foreign_tiny, "--no-adapt"]) == 0
    out = capsys.readouterr().out
    assert "--no-adapt:" in out and f"{predict_latency(spec, source).total_ms:.3f}" in out
    assert cli.main(["measure", str(arch), "--device", foreign_tiny, "--repeats", "3",
                     "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "using its adaptation to this host" in out and "vs measured here now" in out
    assert cli.main(["measure", str(arch), "--device", foreign_tiny, "--repeats", "3",
                     "--warmup", "1", "--no-adapt"]) == 0
    out = capsys.readouterr().out
    assert "--no-adapt:" in out and "the table is foreign" not in out  # no reference recorded
