"""int8: the quantized backend and its tables, the shipped ``cpu-int8`` table's coverage,
``hwnas measure --precision int8``, the quantized export and quantization-aware fine-tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cli import main
from hwnas_common import HwnasError
from latency_predictors import load_table, predict_latency, profile_table
from latency_predictors.keys import required_keys
from latency_predictors.measure.backends import export_onnx, make_backend
from latency_predictors.measure.networks import backend_for
from latency_predictors.measure.quantize import (
    cpu_session,
    quantize_onnx,
    quantized_nodes,
    random_inputs,
)
from latency_predictors.metadata import precision_of
from latency_predictors.predictor import check_coverage
from nas.deploy.fake_quant import fake_quantized
from nas.deploy.quantized import load_net, net_data
from search_spaces import build, get_space
from tests.helpers import CLI_SPACE, SEARCH_TINY, cli_fails, search_argv, tiny_table

AGREEMENT = 0.9  # top-1 agreement of int8 with fp32 PyTorch a trained tiny net must reach
SHIPPED_SPACES = ("hybrid-cifar", "cifar", "proxyless-cifar")  # what cpu-int8 covers


def test_int8_backend_records_its_precision_and_recipe() -> None:
    backend = make_backend("onnxruntime", "cpu", 1, 0, 2, precision="int8")
    meta = backend.metadata()
    assert meta["dtype"] == "int8" and precision_of(meta) == "int8"
    assert meta["quantization"]["format"] == "QDQ"
    assert make_backend("onnxruntime").metadata()["dtype"] == "float32"
    with pytest.raises(HwnasError, match="does not time int8.*onnxruntime"):
        make_backend("torch", precision="int8")
    with pytest.raises(HwnasError, match="--ep cpu"):
        make_backend("onnxruntime", "cuda", precision="int8")


def test_quantize_onnx_quantizes_and_refuses_bad_calibration() -> None:
    spec = CLI_SPACE.spec_from_string("mb_k3_e3|sum_k3_e2")
    model = export_onnx(build(spec).eval(), tuple(spec.input))
    assert quantized_nodes(quantize_onnx(model, random_inputs(tuple(spec.input), 2))) > 0
    with pytest.raises(HwnasError, match="at least 1 input, got 0"):
        quantize_onnx(model, [])
    bad = random_inputs(tuple(spec.input), 1)[0] * np.nan
    with pytest.raises(HwnasError, match="calibration failed"):
        quantize_onnx(model, [bad])
    with pytest.raises(HwnasError, match="int8 quantization failed"):
        quantize_onnx(b"not an onnx model", random_inputs(tuple(spec.input), 1))


def test_int8_profile_is_an_int8_table_measured_in_int8(tmp_path: Path) -> None:
    table = profile_table(CLI_SPACE, "onnxruntime", "cpu", "tiny-int8", tmp_path / "t",
                          repeats=3, warmup=0, progress=False, passes=1, precision="int8")
    again = load_table(tmp_path / "t.csv")
    assert precision_of(again.metadata) == "int8" and again.metadata["quantization"]
    assert len(again.frame) == len(required_keys(CLI_SPACE))
    assert backend_for(table).precision == "int8"
    with pytest.raises(HwnasError, match="other settings.*dtype"):  # fp32 into an int8 table
        profile_table(SEARCH_TINY, "onnxruntime", "cpu", "tiny-int8", tmp_path / "t",
                      repeats=3, warmup=0, progress=False, passes=1)


@pytest.mark.parametrize("space", SHIPPED_SPACES)
def test_shipped_int8_table_covers_its_spaces(space: str) -> None:
    table = load_table("cpu-int8")
    assert precision_of(table.metadata) == "int8"
    check_coverage(get_space(space), table)
    assert table.calibration(space) is not None
    spec = get_space(space).sample(torch.Generator().manual_seed(0))
    assert predict_latency(spec, table).total_ms > 0


@pytest.mark.parametrize("space", ["imagenet", "hybrid-imagenet", "proxyless-imagenet",
                                   "fbnet-cifar"])
def test_shipped_int8_table_refuses_a_space_it_lacks_by_name(space: str) -> None:
    with pytest.raises(HwnasError, match=r"lacks \d+ rows.*--precision int8 --space " + space):
        check_coverage(get_space(space), load_table("cpu-int8"))


def test_tables_name_the_precision_they_time_or_estimate() -> None:
    assert ", fp16, " in load_table("vpu").describe()  # OpenVINO FP16 on the Myriad X
    assert ", fp32, " in load_table("a100").describe()
    assert ", int8, " in load_table("cpu-int8").describe()


def test_measure_int8(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(CLI_SPACE.spec_from_string("sum_k3_e2|skip").to_json())
    assert main(["measure", str(arch), "--precision", "int8", "--repeats", "3",
                 "--warmup", "0"]) == 0
    assert "int8 quantized" in capsys.readouterr().out
    cli_fails(["measure", str(arch), "--device", "cpu-int8", "--precision", "fp32"], capsys,
              "table 'cpu-int8' is int8")


def test_fake_quantization_is_close_and_leaves_a_plain_net() -> None:
    model = build(CLI_SPACE.spec_from_string("mb_k3_e3|sum_k3_e2")).eval()
    keys = set(model.state_dict())
    x = torch.randn(4, *CLI_SPACE.input)
    with torch.no_grad():
        want = model(x)
        with fake_quantized(model):
            got = model(x)
        after = model(x)
    assert not torch.equal(got, want)
    assert float((got - want).abs().max()) < 0.1 * float(want.abs().max()) + 1e-3
    assert torch.equal(after, want) and set(model.state_dict()) == keys


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny search on synthetic data whose found net was fine-tuned 3 epochs (model.pt)."""
    folder = tmp_path_factory.mktemp("int8-run")
    run = folder / "run"
    table = str(tiny_table(folder / "tables"))
    torch.set_num_threads(1)
    assert main(search_argv(run, table, "--budget", "30ms", "--retrain-epochs", "3")) == 0
    return run


@pytest.fixture
def trained_run(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`finished_run` of the test's own."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def test_quantized_export_agrees_with_fp32_and_says_what_it_cost(
        trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(trained_run), "--format", "onnx", "--quantize", "int8",
                 "--calibration-images", "16"]) == 0
    out = capsys.readouterr().out
    agreement = float(out.split("top-1 agreement with fp32 ")[1].split(" %")[0])
    assert agreement >= 100 * AGREEMENT, out
    assert "latency here" in out and "× the fp32 export's" in out
    assert "calibrated on 16 training images" in out
    written = trained_run / "model-int8.onnx"
    assert quantized_nodes(written.read_bytes()) > 0
    # the file against fp32 PyTorch on the run's test images
    net = load_net(trained_run)
    session = cpu_session(written.read_bytes())
    same = total = 0
    with torch.no_grad():
        for images, _ in net_data(trained_run, net).test.in_order():
            top32 = net.model(images).argmax(dim=1)
            for x, want in zip(images.numpy(), top32.tolist(), strict=True):
                same += int(session.run(None, {"input": x[None]})[0].argmax()) == want
                total += 1
    assert total > 0 and same / total >= AGREEMENT
    # the same file again is the user's now: refused, unchanged
    before = written.read_bytes()
    cli_fails(["export", str(trained_run), "--quantize", "int8"], capsys, "already exists")
    assert written.read_bytes() == before
    # quantization-aware fine-tuning is measured the same way
    assert main(["export", str(trained_run), "--quantize", "int8", "--qat-epochs", "1",
                 "--calibration-images", "8", "--out", str(trained_run / "qat.onnx")]) == 0
    out = capsys.readouterr().out
    assert "quantization-aware fine-tuning, int8" in out and (trained_run / "qat.onnx").is_file()


def test_quantized_export_refuses_in_one_line_and_writes_nothing(
        tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(trained_run, bare)
    (bare / "model.pt").unlink()  # a search run with --retrain-epochs 0
    cli_fails(["export", str(bare), "--quantize", "int8"], capsys, "holds no fine-tuned net")
    assert not (bare / "model-int8.onnx").exists()
    cli_fails(["export", str(trained_run), "--quantize", "int8", "--calibration-images", "0"],
              capsys, "expected an integer >= 1")
    cli_fails(["export", str(trained_run), "--quantize", "int8", "--calibration-images",
               "100000"], capsys, "calibration asks for 100000")
    cli_fails(["export", str(trained_run), "--quantize", "int8", "--format", "pt"], capsys,
              "writes ONNX")
    cli_fails(["export", str(trained_run / "arch.json"), "--quantize", "int8"], capsys,
              "needs a trained net")
    assert not list(trained_run.glob("*int8*")) and not list(tmp_path.glob("*.onnx"))
