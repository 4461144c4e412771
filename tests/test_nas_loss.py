"""Latency losses: values, the paper's form at its own scale, gradients' direction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hwnas_common import HwnasError
from nas.core.latency_loss import (
    LOSSES,
    PAPER_TARGET_MS,
    add_linear,
    hinge_log,
    latency_loss,
    mul_log,
)


def test_mul_log_equals_the_paper_at_80_ms() -> None:
    ce, e = torch.tensor(2.0), torch.tensor(95.0)
    paper = ce * (math.log(95.0) / math.log(80.0)) ** 0.3
    assert float(mul_log(ce, [e], [PAPER_TARGET_MS], beta=0.3)) == pytest.approx(float(paper))


def test_mul_log_is_scale_free_and_one_on_budget() -> None:
    ce = torch.tensor(1.5)
    at_budget = [float(mul_log(ce, [torch.tensor(t)], [t])) for t in (0.2, 1.0, 30.0)]
    assert at_budget == pytest.approx([1.5] * 3)
    ratios = [float(mul_log(ce, [torch.tensor(2 * t)], [t])) for t in (0.2, 1.0, 30.0)]
    assert ratios == pytest.approx([ratios[0]] * 3) and ratios[0] > 1.5


def test_add_linear_two_devices() -> None:
    ce = torch.tensor(1.0)
    value = add_linear(ce, [torch.tensor(3.0), torch.tensor(1.0)], [2.0, 2.0], lam=0.5)
    assert float(value) == pytest.approx(1.0 + 0.5 * 0.5 + 0.5 * -0.5)


@pytest.mark.parametrize("kind", ["mul_log", "hinge_log", "add_linear"])
def test_gradient_pushes_expected_latency_down(kind: str) -> None:
    alpha = torch.zeros(3, requires_grad=True)
    lat = torch.tensor([0.0, 1.0, 4.0])
    expected = 0.5 + (torch.softmax(alpha, 0) * lat).sum()  # 2.17 ms, over the 1 ms budget
    latency_loss(kind, torch.tensor(2.0), [expected], [1.0]).backward()
    assert alpha.grad[2] > alpha.grad[1] > alpha.grad[0]


def test_unknown_loss() -> None:
    with pytest.raises(HwnasError, match="unknown latency loss"):
        latency_loss("square", torch.tensor(1.0), [], [])


def test_hinge_log_is_mul_log_above_the_budget_and_ce_below() -> None:
    ce = torch.tensor(1.7)
    for target in (0.3, 1.0, 40.0):
        for factor in (1.0, 1.5, 3.0):
            e = torch.tensor(factor * target)
            assert float(hinge_log(ce, [e], [target])) == pytest.approx(
                float(mul_log(ce, [e], [target])))
        for factor in (0.2, 0.5, 0.99):
            e = torch.tensor(factor * target, requires_grad=True)
            loss = hinge_log(ce, [e], [target])
            loss.backward()
            assert float(loss) == pytest.approx(1.7) and float(e.grad) == 0.0
    # two devices: only the one over its budget contributes
    over, under = torch.tensor(2.0), torch.tensor(0.5)
    assert float(hinge_log(ce, [over, under], [1.0, 1.0])) == pytest.approx(
        float(mul_log(ce, [over], [1.0])))


def test_docs_loss_table_is_the_registry() -> None:
    """docs/search.md's loss table: one row per registered loss, in registration order, with
    its record's values."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "search.md").read_text(
        encoding="utf-8")
    header = next(line for line in readme.splitlines() if line.startswith("| `--loss` |"))
    lines = readme.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    assert rows == [[name, loss.formula, loss.strength, f"{loss.default:g}",
                     "[{:g}, {:g}]".format(*loss.search_range)]
                    for name, loss in LOSSES.items()]


def test_default_strength_is_the_records() -> None:
    ce, e = torch.tensor(1.3), [torch.tensor(3.0)]
    for name, loss in LOSSES.items():
        assert float(latency_loss(name, ce, e, [2.0])) == float(
            loss.function(ce, e, [2.0], loss.default))
