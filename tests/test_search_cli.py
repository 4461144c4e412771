"""``hwnas search`` / ``hwnas export RUN_DIR``: bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from tests.helpers import cli_fails as _fails
from tests.helpers import search_argv as _search
from tests.helpers import tiny_table


@pytest.fixture
def table(tmp_path: Path) -> str:
    return str(tiny_table(tmp_path / "tables"))


@pytest.mark.parametrize(("budget", "match"), [("abc", "malformed budget"),
                                               ("-3ms", "malformed budget"),
                                               ("0", "malformed budget"),
                                               ("0ms", "positive"),
                                               ("0.01ms", "smallest achievable")])
def test_bad_budget(tmp_path: Path, table: str, budget: str, match: str,
                    capsys: pytest.CaptureFixture) -> None:
    _fails(_search(tmp_path / "run", table, f"--budget={budget}"), capsys, match)
    assert not (tmp_path / "run").exists()


def test_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(_search(tmp_path / "run", "no-such-device", "--budget", "3ms"), capsys,
           "unknown device")
    assert not (tmp_path / "run").exists()


def test_device_and_budget_counts_differ(tmp_path: Path, table: str,
                                         capsys: pytest.CaptureFixture) -> None:
    _fails(_search(tmp_path / "run", table, "--budget", "3ms,4ms"), capsys, "one budget per")


@pytest.mark.parametrize("kind", ["missing", "no-images", "corrupt-image"])
def test_unreadable_data(tmp_path: Path, table: str, kind: str,
                         capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    if kind != "missing":
        (data / "train" / "cat").mkdir(parents=True)
    if kind == "corrupt-image":
        (data / "train" / "cat" / "0.jpg").write_bytes(b"not a jpeg")
    argv = _search(tmp_path / "run", table, "--budget", "30ms")
    argv[argv.index("synthetic")] = str(data)
    _fails(argv, capsys, str(data))
    assert not (tmp_path / "run").exists()


def test_corrupt_checkpoint_on_resume(tmp_path: Path, table: str,
                                      capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80garbage")
    _fails(_search(run, table, "--budget", "30ms", "--resume"), capsys, "corrupt checkpoint")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]


def test_search_then_export_run_dir(tmp_path: Path, table: str,
                                    capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_search(run, table, "--budget", "30ms")) == 0
    out = capsys.readouterr().out
    assert "ESTIMATED" in out and "architecture:" in out
    assert (run / "arch.json").is_file()
    summary = (run / "summary.json").read_text()
    assert len(summary) < 20_000  # the table's identity, not its contents
    assert len(json.loads(summary)["tables"][0]["metadata"]["sha256"]) == 64
    _fails(_search(run, table, "--budget", "30ms"), capsys, "already holds a run")
    assert main(["export", str(run), "--format", "onnx", "--train-epochs", "1",
                 "--init", "inherit"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (run / "model.onnx").is_file()


def test_train_any_arch_then_export_its_weights(tmp_path: Path, table: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_search(run, table, "--budget", "30ms")) == 0
    assert main(["predict", str(run), "--device", table]) == 0  # a run directory is an arch
    capsys.readouterr()
    weights = tmp_path / "net.pt"
    for init in ("scratch", str(run)):
        assert main(["train", str(run / "arch.json"), "--dataset", "synthetic", "--epochs", "1",
                     "--init", init, "--out", str(weights), "--force"]) == 0
        out = capsys.readouterr().out
        assert "test accuracy" in out and f"hwnas export {weights}" in out
    assert main(["export", str(weights), "--format", "onnx"]) == 0
    assert "max abs error" in capsys.readouterr().out and weights.with_suffix(".onnx").is_file()
    other = tmp_path / "other.json"
    other.write_text('{"space": "cifar", "input": [3, 32, 32], "layers": '
                     + str(['{"op": "skip"}'] * 9).replace("'", "") + "}")
    _fails(["train", str(other), "--dataset", "synthetic", "--init", str(run)], capsys,
           "cannot inherit")
    _fails(["train", str(run / "arch.json"), "--dataset", "synthetic", "--init",
            str(tmp_path / "nowhere")], capsys, "unreadable")


def test_checkpoint_of_another_supernet_is_one_error(tmp_path: Path, table: str,
                                                     capsys: pytest.CaptureFixture) -> None:
    import torch

    run = tmp_path / "run"
    assert main(_search(run, table, "--budget", "30ms")) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["engine"]["supernet"].pop(next(iter(state["engine"]["supernet"])))  # an old layout
    torch.save(state, run / "checkpoint.pt")
    capsys.readouterr()
    _fails(["train", str(run), "--dataset", "synthetic", "--epochs", "1", "--init", str(run)],
           capsys, "another hwnas version")
    _fails(["sweep", str(run), "--device", table, "--budgets", "30ms", "--trials", "1"], capsys,
           "another hwnas version")


def test_search_keeps_its_fine_tuned_net_and_export_uses_it(
        tmp_path: Path, table: str, capsys: pytest.CaptureFixture) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    from nas.run.trained import load_trained

    run = tmp_path / "run"
    assert main(_search(run, table, "--budget", "30ms", "--retrain-epochs", "1")) == 0
    out = capsys.readouterr().out
    next_line = next(line for line in out.splitlines() if line.startswith("next:"))
    assert "model.pt" in next_line and "--train-epochs" not in next_line
    record = torch.load(run / "model.pt", weights_only=True)
    summary = json.loads((run / "summary.json").read_text())
    assert record["test_accuracy"] == summary["test_accuracy_finetuned"]
    assert record["trained"]["epochs"] == 1 and record["trained"]["init"] == "inherit"
    assert record["trained"]["augment"] is False
    assert record["trained"]["dataset"] == "synthetic" and record["trained"]["images"] > 0
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "exporting the fine-tuned net" in out and "retrain" not in out
    spec, model = load_trained(run / "model.pt")
    x = torch.randn(1, *spec.input)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)
    assert main(["export", str(run), "--format", "pt"]) == 0  # never over the fine-tuned net
    assert (run / "model-export.pt").is_file()
    assert torch.load(run / "model.pt", weights_only=True)["test_accuracy"] == (
        record["test_accuracy"])


def test_export_of_a_run_without_fine_tuning(tmp_path: Path, table: str,
                                             capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_search(run, table, "--budget", "30ms")) == 0
    out = capsys.readouterr().out
    assert "--train-epochs" in next(line for line in out.splitlines() if line.startswith("next:"))
    _fails(["export", str(run), "--format", "onnx"], capsys, "holds no fine-tuned net")
    assert not (run / "model.onnx").exists()
    assert main(["export", str(run), "--format", "onnx", "--train-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "on the search's training data" in out and "synthetic training images" in out
