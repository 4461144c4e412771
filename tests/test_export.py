"""Export: ONNX checked against PyTorch with onnxruntime, TorchScript, JSON and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cli
from nas.deploy.export import export_model
from nas.run.trained import load_trained
from search_spaces import build, get_space


def _with_nontrivial_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()


def _specs(space_name: str, n_random: int, covering: bool) -> list:
    """Random specs, skip-heavy specs and (optionally) specs covering every candidate."""
    space = get_space(space_name)
    tokens = list(space.tokens)
    layers = space.num_layers
    texts = ["|".join(["skip"] * (layers - 1) + [tokens[-1]]), "|".join(["skip"] * layers)]
    if covering:
        texts += ["|".join((tokens * layers)[i:i + layers]) for i in range(0, len(tokens), layers)]
    texts += [space.sample(torch.Generator().manual_seed(s)).to_string() for s in range(n_random)]
    return [space.spec_from_string(text) for text in texts]


def _check_onnx(space_name: str, n_random: int, covering: bool, tmp_path: Path) -> None:
    specs = _specs(space_name, n_random, covering)
    if covering:
        assert {layer for spec in specs for layer in spec.layers} == set(
            get_space(space_name).candidates)
    for index, spec in enumerate(specs):
        model = _with_nontrivial_bn(build(spec), index)
        result = export_model(spec, model, "onnx", tmp_path / f"{index}.onnx", seed=index)
        assert result.max_abs_error < 1e-3, (spec.to_string(), result.max_abs_error)


@pytest.mark.parametrize("space_name", ["cifar", "proxyless-cifar"])
def test_onnx_matches_pytorch_every_candidate(space_name: str, tmp_path: Path) -> None:
    _check_onnx(space_name, 4, True, tmp_path)


@pytest.mark.parametrize("space_name", ["imagenet", "proxyless-imagenet"])
def test_onnx_matches_pytorch_imagenet(space_name: str, tmp_path: Path) -> None:
    _check_onnx(space_name, 1, False, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["imagenet", "proxyless-imagenet"])
def test_onnx_matches_pytorch_imagenet_every_candidate(space_name: str, tmp_path: Path) -> None:
    _check_onnx(space_name, 3, True, tmp_path)


def test_torchscript_json_and_checkpoint(tmp_path: Path) -> None:
    spec = get_space("cifar").sample(torch.Generator().manual_seed(5))
    model = _with_nontrivial_bn(build(spec), 0)
    ts = export_model(spec, model, "torchscript", tmp_path / "m.ts")
    assert ts.max_abs_error == 0.0
    loaded_ts = torch.jit.load(str(tmp_path / "m.ts"))
    x = torch.randn(2, *spec.input)
    with torch.no_grad():
        torch.testing.assert_close(loaded_ts(x), model(x))
    export_model(spec, model, "pt", tmp_path / "m.pt")
    spec2, model2 = load_trained(tmp_path / "m.pt")
    assert spec2 == spec
    with torch.no_grad():
        torch.testing.assert_close(model2(x), model(x), rtol=0, atol=0)
    export_model(spec, None, "json", tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text().strip() == spec.to_json()


def test_cli_export_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(get_space("cifar").sample(torch.Generator().manual_seed(0)).to_json())
    onnx_out = str(tmp_path / "a.onnx")
    assert cli.main(["export", str(arch), "--format", "onnx", "--out", onnx_out]) == 0
    assert "max abs error vs PyTorch" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "cifar", "input": [3, 32, 32], "layers": [{"op": "cube"}]}')
    for args in ([str(bad)], [str(tmp_path / "missing.json")]):
        out = tmp_path / "x.onnx"
        assert cli.main(["export", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hwnas: error:") and err.count("\n") == 1 and "Traceback" not in err
        assert not out.exists()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="not a valid hwnas checkpoint"):
        load_trained(corrupt)
    assert not list(tmp_path.glob(".*.tmp"))


def test_onnx_of_a_child_sliced_from_shared_weights_matches_the_supernet(tmp_path: Path) -> None:
    """Child export from a weight-shared supernet: the ONNX file of ``supernet.child(spec)``
    computes the supernet path's output (small kernels and expansions are slices)."""
    import onnxruntime as ort

    from search_spaces import Supernet

    space = get_space("hybrid-cifar")
    supernet = Supernet(space, "shared")
    with torch.no_grad():
        for p in supernet.weight_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    supernet.eval()
    spec = space.spec_from_string("mb_k3_e3|quad_k5_e2|skip|rbf_k3_e4|star_k7_e2|mb_k5_e6|"
                                  "sum_k3_e4|poly2_k5_e2|quad_k3_e4")
    paths = [space.candidate_index(layer) for layer in spec.layers]
    result = export_model(spec, supernet.child(spec), "onnx", tmp_path / "child.onnx")
    x = torch.randn(1, *space.input)  # exported at batch 1
    session = ort.InferenceSession(str(tmp_path / "child.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = supernet(x, paths).numpy()
    assert result.max_abs_error < 1e-3
    assert abs(got - want).max() < 1e-3


def test_export_that_disagrees_with_pytorch_fails_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A corrupted export (the ONNX file of a net with other weights) is caught by the check
    against PyTorch: exit 2, one line, no file."""
    from nas.deploy import export

    arch = tmp_path / "arch.json"
    arch.write_text(get_space("cifar").sample(torch.Generator().manual_seed(0)).to_json())
    write = export.export_onnx_file

    def corrupted(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
        other = build(get_space("cifar").sample(torch.Generator().manual_seed(0))).eval()
        with torch.no_grad():
            for p in other.parameters():
                p.add_(0.5)
        write(other, input_shape, path)

    monkeypatch.setattr(export, "export_onnx_file", corrupted)
    out = tmp_path / "net.onnx"
    assert cli.main(["export", str(arch), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disagrees with PyTorch" in err and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["arch.json"]
