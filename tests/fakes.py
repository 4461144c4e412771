"""Test doubles shared by the latency tests."""

from __future__ import annotations

from latency_predictors.backends import Backend


class FakeBackend(Backend):
    """A backend whose ``time`` a test defines (no runtime), on a machine that never drifts:
    the reference kernel always takes 1 ms."""

    name = runtime = "fake"
    runtime_version = mode = "fake"

    def __init__(self, repeats: int = 5) -> None:
        super().__init__("cpu", 1, 0, repeats)

    def prepare(self, module, input_shape):
        raise AssertionError("a fake backend is timed through time() only")

    def reference_ms(self) -> float:
        return 1.0
