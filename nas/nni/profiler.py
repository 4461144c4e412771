"""hwnas latency tables as an NNI 3.0 profiler, so NNI's strategies search under hwnas's tables.

The profiler is an ``nni.nas.profiler.ExpressionProfiler`` whose expression is the table sum of
:func:`latency_predictors.predict_latency`::

    latency(sample) = fixed_ms + Σ_l switch_case(layer_l, {token: per_layer[l][i]})

so NNI can evaluate it on a sample (``profile``), filter samples by it
(``RangeProfilerFilter``), or take its expectation under the strategy's probabilities
(``ExpectationProfilerPenalty``, NNI's one-shot latency penalty)::

    from latency_predictors import latency_matrix, load_table
    from nas.nni.space import nni_model_space
    from nas.nni.profiler import latency_profiler
    model_space = nni_model_space("cifar")
    profiler = latency_profiler(model_space, latency_matrix(space, load_table("cpu")))
    profiler.profile(sample)                    # == predict_latency(spec, table).total_ms
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from hwnas_common import HwnasError
from latency_predictors import LatencyMatrix
from nas.nni.space import import_nni, layer_labels


def latency_expression(model_space: nn.Module, matrix: LatencyMatrix) -> Any:
    """The NNI ``MutableExpression`` ``fixed_ms + Σ_l lat[l][choice_l]`` over the layer choices."""
    mutable = import_nni("nni.mutable")
    space = model_space.space
    choices = model_space.simplify()
    labels = layer_labels(space)
    if set(choices) != set(labels):
        raise HwnasError(f"NNI model space has choices {sorted(choices)}, expected {labels}")
    if len(matrix.per_layer) != len(labels) or any(
            len(row) != len(space.candidates) for row in matrix.per_layer):
        shape = [len(row) for row in matrix.per_layer]
        raise HwnasError(f"latency matrix rows {shape} do not fit space {space.name!r}: "
                         f"{len(labels)} layers x {len(space.candidates)} candidates")
    expression: Any = float(matrix.fixed_ms)
    for label, row in zip(labels, matrix.per_layer, strict=True):
        per_token = {token: float(ms) for token, ms in zip(space.tokens, row, strict=True)}
        expression = expression + mutable.MutableExpression.switch_case(choices[label], per_token)
    return expression


@functools.cache
def _profiler_class() -> type:
    """The ``ExpressionProfiler`` subclass, created on first use so NNI is imported lazily."""
    profiler = import_nni("nni.nas.profiler")

    class TableLatencyProfiler(profiler.ExpressionProfiler):
        """Predicted latency (ms) of a sample from an hwnas latency matrix (table sum)."""

        def __init__(self, model_space: nn.Module, matrix: LatencyMatrix) -> None:
            super().__init__(model_space)
            self.matrix = matrix
            self.expression = latency_expression(model_space, matrix)

    TableLatencyProfiler.__module__ = __name__
    TableLatencyProfiler.__qualname__ = "TableLatencyProfiler"
    return TableLatencyProfiler


def latency_profiler(model_space: nn.Module, matrix: LatencyMatrix) -> Any:
    """An NNI ``ExpressionProfiler`` of ``model_space``
    (from :func:`nas.nni.space.nni_model_space`)."""
    return _profiler_class()(model_space, matrix)


def latency_penalty(profiler: Any, baseline_ms: float, scale: float = 1.0, *,
                    nonlinear: str = "linear", aggregate: str = "add") -> Any:
    """NNI's ``ExpectationProfilerPenalty`` over ``profiler`` (for ``Proxyless(penalty=...)``).

    NNI feeds it the strategy's probabilities as Python floats (``export_probs``), so the
    penalty carries no gradient to the architecture logits (``CHANGELOG.md``, 2026-11-22).
    """
    oneshot = import_nni("nni.nas.oneshot.pytorch.profiler")
    return oneshot.ExpectationProfilerPenalty(profiler, baseline_ms, scale,
                                              nonlinear=nonlinear, aggregate=aggregate)
