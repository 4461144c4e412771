"""Predictor: latency matrix, ArchSpec prediction and differentiable expected latency."""

from __future__ import annotations

import itertools

import pytest
import torch

from hwnas_common.errors import HwnasError
from latency_predictors import (
    expected_latency,
    latency_matrix,
    make_table,
    new_metadata,
    predict_latency,
    required_keys,
)
from tests.helpers import LATENCY_TINY as TINY


def metadata(**overrides):
    return new_metadata(**{"device": "testdev", "provenance": "measured", **overrides})


# hand-picked latencies (ms) of every key of TINY
MS = {("stem:conv3x3", 3, 4, 8, 8, 1, 0): 0.5, ("downsample", 4, 8, 8, 8, 2, 0): 0.25,
      ("head", 8, 10, 4, 4, 1, 0): 0.125, ("quad_k3_e2", 4, 4, 8, 8, 1, 0): 1.0,
      ("rbf_k5_e2", 4, 4, 8, 8, 1, 2): 3.0, ("quad_k3_e2", 8, 8, 4, 4, 1, 0): 2.0,
      ("rbf_k5_e2", 8, 8, 4, 4, 1, 2): 5.0}


def tiny_table(calibration=None, drop=()):
    rows = [dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"), key,
                     strict=True), mean_ms=ms, median_ms=ms, std_ms=0.0, samples=1)
            for key, ms in MS.items() if key not in drop]
    meta = metadata(spaces=[TINY.name], device="tinydev")
    if calibration:
        meta["calibration"] = {TINY.name: calibration}
    return make_table(rows, meta, "tiny")


def test_required_keys_match_hand_list():
    assert set(required_keys(TINY)) == set(MS)


def test_matrix_and_hand_computed_prediction():
    matrix = latency_matrix(TINY, tiny_table())
    assert matrix.fixed_ms == pytest.approx(0.875)
    assert matrix.per_layer == [[0.0, 1.0, 3.0], [0.0, 2.0, 5.0]]
    spec = TINY.spec_from_string("rbf_k5_e2|quad_k3_e2")
    pred = predict_latency(spec, tiny_table())
    assert pred.total_ms == pytest.approx(0.875 + 3.0 + 2.0)
    assert pred.layers == [(0, "rbf_k5_e2", 3.0), (1, "quad_k3_e2", 2.0)]
    assert pred.fixed_parts == {"stem": 0.5, "downsample1": 0.25, "head": 0.125}
    assert not pred.calibrated and "ESTIMATED" not in pred.format()


def test_calibration_is_affine():
    table = tiny_table({"scale": 2.0, "offset_ms": -0.5, "fitted_on_n": 3})
    spec = TINY.spec_from_string("skip|rbf_k5_e2")
    pred = predict_latency(spec, table)
    assert pred.total_ms == pytest.approx(2.0 * (0.875 + 5.0) - 0.5)
    assert pred.calibrated and pred.fixed_parts["calibration offset"] == -0.5
    assert latency_matrix(TINY, table).fixed_ms == pytest.approx(2 * 0.875 - 0.5)


def test_estimated_is_flagged():
    table = tiny_table()
    table.metadata["provenance"] = "estimated"
    pred = predict_latency(TINY.spec_from_string("skip|skip"), table)
    assert pred.total_ms == pytest.approx(0.875)
    assert "ESTIMATED" in pred.format()


def test_missing_rows_name_keys_and_command():
    drop = [("rbf_k5_e2", 8, 8, 4, 4, 1, 2), ("head", 8, 10, 4, 4, 1, 0)]
    with pytest.raises(HwnasError) as err:
        latency_matrix(TINY, tiny_table(drop=drop))
    text = str(err.value)
    assert "\n" not in text and "lacks 2 rows" in text
    assert "rbf_k5_e2@8x4x4/r2" in text and "head@8x4x4->10" in text
    assert f"hwnas profile --backend onnxruntime --ep cpu --space {TINY.name} --name tinydev" \
        in text


def test_wrong_space_spec():
    from search_spaces import get_space
    spec = get_space("cifar").sample(torch.Generator().manual_seed(0))
    with pytest.raises(HwnasError, match="lacks"):
        predict_latency(spec, tiny_table())


def random_probs(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
              for _ in range(2)]
    return logits, [torch.softmax(a, 0) for a in logits]


def test_expected_latency_equals_enumeration():
    matrix = latency_matrix(TINY, tiny_table({"scale": 1.5, "offset_ms": 0.1}))
    _, probs = random_probs(0)
    brute = 0.0
    for choice in itertools.product(range(3), repeat=2):
        p_arch = probs[0][choice[0]] * probs[1][choice[1]]
        spec = TINY.spec_from_indices(list(choice))
        brute += p_arch.item() * predict_latency(spec, tiny_table(
            {"scale": 1.5, "offset_ms": 0.1})).total_ms
    assert expected_latency(probs, matrix).item() == pytest.approx(brute, rel=1e-12)


def test_expected_latency_gradient():
    matrix = latency_matrix(TINY, tiny_table())
    logits, probs = random_probs(1)
    expected_latency(probs, matrix).backward()
    # d E / d p_li is exactly per_layer[l][i]
    p = [q.detach().clone().requires_grad_(True) for q in probs]
    expected_latency(p, matrix).backward()
    for layer in range(2):
        assert p[layer].grad.tolist() == pytest.approx(matrix.per_layer[layer])
    # gradient w.r.t. the logits vs central finite differences
    eps = 1e-6
    for layer, index in itertools.product(range(2), range(3)):
        def value(delta, layer=layer, index=index):
            shifted = [a.detach().clone() for a in logits]
            shifted[layer][index] += delta
            return float(expected_latency([torch.softmax(a, 0) for a in shifted], matrix))
        numeric = (value(eps) - value(-eps)) / (2 * eps)
        assert logits[layer].grad[index].item() == pytest.approx(numeric, abs=1e-7)


def test_expected_latency_shape_errors():
    matrix = latency_matrix(TINY, tiny_table())
    with pytest.raises(HwnasError, match="got 1 probability vectors"):
        expected_latency([torch.ones(3) / 3], matrix)
    with pytest.raises(HwnasError, match="expected \\(3,\\)"):
        expected_latency([torch.ones(3) / 3, torch.ones(2) / 2], matrix)


def test_expected_latency_float32_and_several_devices():
    fast = latency_matrix(TINY, tiny_table())
    slow = latency_matrix(TINY, tiny_table({"scale": 10.0, "offset_ms": 0.0}))
    probs = [torch.full((3,), 1 / 3, requires_grad=True) for _ in range(2)]
    loss = expected_latency(probs, fast) / 3 + expected_latency(probs, slow) / 30
    loss.backward()
    assert loss.dtype == torch.float32
    assert probs[0].grad.tolist() == pytest.approx([0.0, 2 / 3, 2.0])
