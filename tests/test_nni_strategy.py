"""NNI's real Proxyless strategy runs on an hwnas space; its latency penalty moves no logit."""

from __future__ import annotations

import logging

import nni.nas.strategy  # noqa: F401  (NNI is required: a broken import fails the suite)
import pytest
import pytorch_lightning  # noqa: F401
import torch
from torch.utils.data import TensorDataset

from latency_predictors import LatencyMatrix
from nas.nni.profiler import latency_penalty, latency_profiler
from nas.nni.space import layer_labels, nni_model_space, spec_to_sample
from nas.nni.strategy import run_proxyless
from tests.helpers import NNI_STRATEGY_TINY as SPACE


def data(seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(12, 3, 8, 8, generator=generator),
                         torch.randint(10, (12,), generator=generator))


@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # PL 2.4 on torch 2.13
def test_proxyless_penalty_on_or_off_gives_identical_logits() -> None:
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    matrix = LatencyMatrix(SPACE.name, "hand", "estimated", False, 1.0,
                           [[0.0, 2.0, 5.0], [0.0, 3.0, 7.0]])
    penalty = latency_penalty(latency_profiler(nni_model_space(SPACE), matrix), baseline_ms=2.0)
    runs = [run_proxyless(SPACE, data(1), data(2), steps=3, batch_size=4, penalty=p,
                          arc_learning_rate=0.05) for p in (None, penalty)]
    off, on = (run.alphas() for run in runs)
    assert list(off) == layer_labels(SPACE)
    assert runs[0].trainer.global_step == 6  # an architecture and a weight step per batch
    assert any(float(a.abs().max()) > 0.05 for a in off.values())  # α did move
    for label in off:
        torch.testing.assert_close(on[label], off[label], rtol=0, atol=0)
    spec = runs[1].derive()
    assert runs[1].nni_export().space == spec.space == SPACE.name
    # Freezing NNI's searched supernet gives the child with the searched weights.
    frozen = runs[1].supernet.freeze(spec_to_sample(spec))
    for index, layer in enumerate(spec.layers):
        searched = runs[1].supernet.layers[index][layer.token].state_dict()
        for key, value in frozen.layers[index].state_dict().items():
            torch.testing.assert_close(value, searched[key], rtol=0, atol=0)
