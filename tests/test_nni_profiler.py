"""The NNI profiler on our latency tables equals our predictor, pointwise and in expectation."""

from __future__ import annotations

import random

import nni.nas.profiler  # noqa: F401  (NNI is required: a broken import fails the suite)
import pytest
import torch

from hwnas_common import HwnasError
from latency_predictors import (
    KEY_COLUMNS,
    expected_latency,
    latency_matrix,
    make_table,
    new_metadata,
    predict_latency,
    required_keys,
)
from nas.nni.profiler import latency_penalty, latency_profiler
from nas.nni.space import layer_labels, nni_model_space, spec_to_sample
from tests.helpers import NNI_TINY as SPACE


@pytest.fixture(scope="module")
def setup():
    rng = random.Random(0)
    rows = []
    for key in required_keys(SPACE):
        ms = rng.uniform(0.01, 3.0)
        rows.append({**dict(zip(KEY_COLUMNS, key, strict=True)), "mean_ms": ms,
                     "median_ms": ms, "std_ms": 0.0, "samples": 10})
    table = make_table(rows, new_metadata("nni-testdev", "measured", spaces=[SPACE.name]),
                       "nni-testdev")
    model_space = nni_model_space(SPACE)
    matrix = latency_matrix(SPACE, table)
    return table, matrix, model_space, latency_profiler(model_space, matrix)


def test_profile_equals_predict_latency(setup) -> None:
    table, _, _, profiler = setup
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        spec = SPACE.sample(generator)
        assert profiler.profile(spec_to_sample(spec)) == pytest.approx(
            predict_latency(spec, table).total_ms, rel=1e-12)


def test_penalty_expectation_equals_expected_latency(setup) -> None:
    _, matrix, _, profiler = setup
    penalty = latency_penalty(profiler, baseline_ms=5.0)
    for seed in range(5):
        probs = [torch.softmax(torch.randn(len(SPACE.candidates),
                                           generator=torch.Generator().manual_seed(seed * 10 + i),
                                           dtype=torch.float64), 0)
                 for i in range(SPACE.num_layers)]
        nni_probs = {label: dict(zip(SPACE.tokens, p.tolist(), strict=True))
                     for label, p in zip(layer_labels(SPACE), probs, strict=True)}
        ours = float(expected_latency(probs, matrix))
        assert penalty.profile(nni_probs) == pytest.approx(ours, rel=1e-12)
        loss, details = penalty(torch.tensor(1.0, dtype=torch.float64), nni_probs)
        assert float(loss) == pytest.approx(1.0 + ours / 5.0 - 1.0, rel=1e-12)
        # NNI's probabilities are floats: the penalty is a constant, with no gradient to α.
        assert not isinstance(details["penalty"], torch.Tensor)


def test_matrix_of_another_shape_is_rejected(setup) -> None:
    _, matrix, model_space, _ = setup
    bad = type("Matrix", (), {"fixed_ms": 1.0, "per_layer": matrix.per_layer[:-1]})()
    with pytest.raises(HwnasError, match="do not fit space 'nni-tiny'"):
        latency_profiler(model_space, bad)
