"""Host fingerprints of measured tables, the other-host note, and few-shot adaptation."""

from __future__ import annotations

import pytest

from hwnas_common.errors import HwnasError
from latency_predictors import predict_latency
from latency_predictors.measure.adapt import adapt_table, check_writable
from latency_predictors.measure.host import (
    describe_host,
    host_fingerprint,
    host_mismatch,
    same_host,
)
from tests.helpers import CAL, Affine
from tests.helpers import fake_table as table

ZEN3 = {"model name": "AMD EPYC 7B13", "cpu family": "25", "model": "1",
        "flags": "fpu sse avx2 fma avx512f"}
XEON = {"model name": "Intel(R) Xeon(R) Platinum 8481C", "cpu family": "6", "model": "143",
        "flags": "fpu avx2 fma avx512f avx512_vnni amx_tile"}


def test_fingerprint_reads_model_numbers_and_vector_flags() -> None:
    zen3 = host_fingerprint(ZEN3)
    assert zen3["cpu_model"] == "AMD EPYC 7B13" and zen3["cpu_family"] == "25"
    assert zen3["vector_flags"] == ["avx2", "fma", "avx512f"]
    assert "family 25 model 1" in describe_host(zen3)
    xeon = host_fingerprint(XEON)
    assert "amx_tile" in xeon["vector_flags"] and not same_host(zen3, xeon)
    assert same_host(zen3, {**host_fingerprint(ZEN3), "os": "Linux 5.10"})
    generic = {**ZEN3, "model name": "AMD EPYC"}  # a VM hiding the model: numbers still differ
    assert not same_host(host_fingerprint(generic),
                         host_fingerprint({**generic, "cpu family": "26", "model": "2"}))


def test_other_host_note_names_both_hosts_and_the_adapt_command() -> None:
    here = host_fingerprint(XEON)
    other = table(host_fingerprint=host_fingerprint(ZEN3))
    note = host_mismatch(other, here)
    assert "AMD EPYC 7B13" in note and "Intel(R) Xeon(R)" in note
    assert "hwnas tables adapt fake --name fake-here" in note
    assert host_mismatch(table(host_fingerprint=here), here) is None
    assert "records no host fingerprint" in host_mismatch(table(), here)
    estimated = table()
    estimated.metadata["provenance"] = "estimated"
    assert host_mismatch(estimated, here) is None


def test_adapt_refits_the_calibration_to_this_host_and_records_the_source() -> None:
    source = table(host_fingerprint=host_fingerprint(ZEN3))
    truth = table()  # this host: 2 x the table + 0.3 ms
    adapted = adapt_table(source, [CAL.name], n=10, backend=Affine(truth), progress=False)
    entry = adapted.calibration(CAL.name)
    assert entry["scale"] == pytest.approx(2.0) and entry["offset_ms"] == pytest.approx(0.3)
    assert adapted.metadata["host_fingerprint"] == host_fingerprint()
    assert adapted.metadata["adapted_from"]["host_fingerprint"]["cpu_model"] == "AMD EPYC 7B13"
    assert host_mismatch(adapted) is None and host_mismatch(source) is not None
    spec = CAL.spec_from_string("sum_k3_e2|skip|mb_k3_e3|star_k5_e2")
    assert predict_latency(spec, adapted).total_ms == pytest.approx(
        2.0 * predict_latency(spec, source).total_ms + 0.3)
    assert source.calibration(CAL.name) is None  # the source is not modified


def test_adapt_rejects_bad_input_before_measuring(tmp_path) -> None:
    source = table()
    with pytest.raises(HwnasError, match="n >= 5"):
        adapt_table(source, [CAL.name], n=3)
    with pytest.raises(HwnasError, match="does not cover"):
        adapt_table(source, ["cifar"], n=10)
    estimated = table()
    estimated.metadata["provenance"] = "estimated"
    with pytest.raises(HwnasError, match="ESTIMATED"):
        adapt_table(estimated, [CAL.name], n=10)
    other_runtime = table()
    other_runtime.metadata["backend"] = "no-such-runtime"
    with pytest.raises(HwnasError, match="no-such-runtime"):
        adapt_table(other_runtime, [CAL.name], n=10)
    (tmp_path / "taken.csv").write_text("")
    with pytest.raises(HwnasError, match="already exists"):
        check_writable(tmp_path / "taken.csv")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(HwnasError, match="cannot write tables"):
        check_writable(tmp_path / "a-file" / "t.csv")
