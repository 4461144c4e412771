"""The examples in the public entry points' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["nas.run.search", "nas.core.derive", "search_spaces.network",
                                    "latency_predictors.predictor", "latency_predictors.store"])
def test_docstring_examples_run(module: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path))  # the shipped tables only
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
