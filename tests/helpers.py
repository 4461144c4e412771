"""What several test modules share: the test-only spaces (registered for the whole session by
``conftest.py``, or by ``register_test_spaces`` in a worker process), a tiny search setup,
fake latency tables and a fake timing backend, and the CLI's one-line-error check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cli
from latency_predictors import (
    LatencyMatrix,
    make_table,
    new_metadata,
    predict_latency,
    required_keys,
    save_table,
)
from latency_predictors.measure.backends import Backend
from nas import SearchConfig
from nas.core.constraints import Constraint
from search_spaces import SPACES, LayerSpec, Space

# ---- test-only spaces --------------------------------------------------------------------
SEARCH_TINY = Space(
    "test-search-tiny", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 1), num_classes=4,
    candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                LayerSpec("block", 3, 2, "star"), LayerSpec("block", 5, 2, "quad")))
CAL = Space("latency-cal", input=(3, 8, 8), stem="conv3x3", width=4, depths=(2, 2),
            candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                        LayerSpec("block", 5, 2, "star"), LayerSpec("mbconv", 3, 3)))
# two classes at two kernel sizes each: a per-kernel truth no per-class fit can express
KERNELS = Space("latency-kernels", input=(3, 8, 8), stem="conv3x3", width=4, depths=(2, 2),
                candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                            LayerSpec("block", 7, 2, "sum"), LayerSpec("block", 3, 2, "star"),
                            LayerSpec("block", 7, 2, "star")))
# r-branch and element-wise blocks at two kernel sizes: a truth only per-kernel-branch expresses
KERNEL_BRANCH = Space("latency-kernel-branch", input=(3, 8, 8), stem="conv3x3", width=4,
                      depths=(2, 2), branches=2,
                      candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                                  LayerSpec("block", 3, 2, "poly2"),
                                  LayerSpec("block", 7, 2, "sum"),
                                  LayerSpec("block", 7, 2, "poly2")))
CLI_SPACE = Space("latency-cli", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 1),
                  candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                              LayerSpec("mbconv", 3, 3)))
LATENCY_TINY = Space("latency-tiny", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 1),
                     candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "quad"),
                                 LayerSpec("block", 5, 2, "rbf")), branches=2)
NNI_TINY = Space("nni-tiny", input=(3, 8, 8), stem="conv3x3", width=4, depths=(1, 2),
                 candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "quad"),
                             LayerSpec("block", 5, 2, "rbf"), LayerSpec("block", 3, 4, "star")),
                 branches=2)
NNI_STRATEGY_TINY = Space("nni-strategy-tiny", input=(3, 8, 8), stem="conv3x3", width=4,
                          depths=(1, 1), branches=2,
                          candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "quad"),
                                      LayerSpec("block", 3, 2, "star")))
# a staged skeleton (FBNet's): layer 1 changes channels and stride, so its skip is a projection
FBNET_TINY = Space("fbnet-tiny", input=(3, 8, 8), stem="conv3x3-relu", width=4, depths=(1, 2),
                   num_classes=4, stage_widths=(4, 8), stage_strides=(1, 2),
                   candidates=(LayerSpec("fbnet", 3, 1, groups=1),
                               LayerSpec("fbnet", 3, 1, groups=2),
                               LayerSpec("fbnet", 5, 3, groups=1), LayerSpec("skip")))
TEST_SPACES = (SEARCH_TINY, CAL, KERNELS, KERNEL_BRANCH, CLI_SPACE, LATENCY_TINY, NNI_TINY,
               NNI_STRATEGY_TINY, FBNET_TINY)


def register_test_spaces() -> None:
    """Register the test spaces in a worker process (spawned ranks, subprocess scripts)."""
    for space in TEST_SPACES:
        if space.name not in SPACES:
            SPACES.register(space.name, space)


# ---- a tiny search ---------------------------------------------------------------------------
ROWS = [[0.0, 1.0, 2.0, 3.0], [0.0, 1.5, 2.5, 3.5]]  # SEARCH_TINY's layers × candidates (ms)
FIXED_MS = 0.5


def tiny_constraint(budget_ms: float, rows: list[list[float]] = ROWS,
                    name: str = "fake") -> Constraint:
    matrix = LatencyMatrix(SEARCH_TINY.name, name, "estimated", False, FIXED_MS, rows)
    return Constraint(matrix, budget_ms, name)


def tiny_table(folder: Path, name: str = "fake") -> Path:
    """A latency table file for SEARCH_TINY: 0.1 ms per fixed part, 1 ms per block row."""
    rows = [dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"), key,
                     strict=True), mean_ms=1.0 if "_k" in key[0] else 0.1,
                 median_ms=1.0 if "_k" in key[0] else 0.1, std_ms=0.0, samples=1)
            for key in required_keys(SEARCH_TINY)]
    table = make_table(rows, new_metadata(name, "estimated", spaces=[SEARCH_TINY.name]), name)
    return save_table(table, folder / f"{name}.csv")


def tiny_config(out: Path, budget_ms: float = 4.0, **overrides) -> SearchConfig:
    """A tiny search: 1 + 2 epochs on 256 synthetic images; the final pick and the verdict score
    2 nets each (the same code as 8, in a fraction of the time)."""
    fields = dict(space=SEARCH_TINY.name, dataset="synthetic", out=str(out), epochs=2,
                  warmup_epochs=1, batch_size=32, data_limit=256, progress=False, arch_every=1,
                  select_top=2, verdict_nets=2)
    return SearchConfig(("fake",), (budget_ms,), **{**fields, **overrides})


def search_argv(out: Path, table: str, *extra: str) -> list[str]:
    """``hwnas search`` of SEARCH_TINY on synthetic data, quick."""
    return ["search", "--space", SEARCH_TINY.name, "--dataset", "synthetic", "--device", table,
            "--out", str(out), "--quick", *extra]


def cli_code(argv: list[str]) -> int:
    """``hwnas ARGV``'s exit code, also when argparse rejects an argument (it exits)."""
    try:
        return cli.main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def cli_fails(argv: list[str], capsys: pytest.CaptureFixture, match: str) -> None:
    """The command exits 2 with one ``hwnas: error:`` line containing ``match`` (its own error,
    or argparse's for an argument out of range)."""
    assert cli_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hwnas: error:"), err
    assert match in err, err
    assert "Traceback" not in err


# ---- fake latency tables and timing ------------------------------------------------------
def fake_table(space: Space = CAL, **extra):
    """A measured-looking table of ``space``: row k (required_keys order) takes k ms."""
    rows = [dict(zip(("op", "c_in", "c_out", "height", "width", "stride", "branches"), key,
                     strict=True), mean_ms=v, median_ms=v, std_ms=0.0, samples=1)
            for v, key in enumerate(required_keys(space), start=1)]
    return make_table(rows, new_metadata("fake", "measured", spaces=[space.name],
                                         backend="onnxruntime", ep="cpu", **extra), "fake")


class FakeBackend(Backend):
    """A backend whose ``time`` a test defines (no runtime), on a machine that never drifts:
    the reference kernel always takes 1 ms."""

    name = runtime = "fake"
    runtime_version = mode = "fake"

    def __init__(self, repeats: int = 5) -> None:
        super().__init__("cpu", 1, 0, repeats)

    def prepare(self, module, input_shape):  # a run returns the samples time() defines
        return lambda: self.time(module, input_shape)

    def time_run(self, run, repeats=None, warmup=None):
        return run()

    def reference_ms(self) -> float:
        return 1.0


class Affine(FakeBackend):
    """'Measures' a ChildNet as 2 x its table sum + 0.3 ms (+ optional noise)."""

    def __init__(self, truth, noise=0.0):
        super().__init__()
        self.truth, self.noise, self.rng = truth, noise, np.random.default_rng(0)

    def time(self, module, input_shape):
        value = 2.0 * predict_latency(module.spec, self.truth).total_ms + 0.3
        return value * (1 + self.noise * self.rng.standard_normal(self.repeats))
