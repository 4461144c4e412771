"""Latency-aware losses of ProxylessNAS (Cai et al., ICLR 2019, §3.3.1), one term per device.

With ``E_d`` the expected latency on device d (differentiable in α) and ``T_d`` its target,
every loss adds or multiplies one term per device to the cross-entropy CE. Each loss is one
:class:`LatencyLoss` record in :data:`LOSSES`: its function, its formula, the name of its
strength (β or λ), the strength's default and the range ``--calibrate-budget`` searches.
``--loss`` and ``--loss-strength`` (their help), budget calibration
(:mod:`nas.tune.calibrate_budget`) and the loss table of ``docs/search.md`` ("Search defaults",
checked by ``tests/test_nas_loss.py``) read it, so a new loss is one registered record.
``add_linear``'s ``− T_d`` is a constant; it keeps the term at 0 on budget, as in ProxylessNAS's
code.

Defaults follow ProxylessNAS's ImageNet search script (mit-han-lab/proxylessnas,
``search/imagenet_arch_search.py``): β = 0.3 (``grad_reg_loss_beta``), λ = 0.1
(``grad_reg_loss_lambda``). Its extra factor 0.2 on the ``mul#log`` loss is dropped: the
architecture step uses Adam, which is invariant to a constant scale of the loss.

Units for ``mul_log``: the paper takes logs of milliseconds with T = 80 ms, so
``log E / log T = 1 + log(E/T) / log 80``. In raw milliseconds the ratio changes sign at 1 ms
and divides by zero at T = 1 ms — well inside the range of our ``cifar`` tables. We therefore
measure latency in units of ``T/80``: identical to the paper at T = 80 ms, scale-free
elsewhere. The base is clamped at a small positive value (reached only when E < T/80, where
the latency term no longer matters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hwnas_common import Registry

PAPER_TARGET_MS = 80.0  # ProxylessNAS's mobile target (ref_values['mobile']['1.00'])
DEFAULT_BETA = 0.3
DEFAULT_LAMBDA = 0.1
_MIN_BASE = 1e-3


def mul_log(ce: torch.Tensor, expected: Sequence[torch.Tensor], targets: Sequence[float],
            beta: float = DEFAULT_BETA) -> torch.Tensor:
    """``CE · Π_d (log E_d / log T_d)^β`` with latencies in units of ``T_d / 80`` (module doc)."""
    loss = ce
    for value, target in zip(expected, targets, strict=True):
        ratio = torch.log(value * (PAPER_TARGET_MS / target)) / math.log(PAPER_TARGET_MS)
        loss = loss * ratio.clamp_min(_MIN_BASE) ** beta
    return loss


def hinge_log(ce: torch.Tensor, expected: Sequence[torch.Tensor], targets: Sequence[float],
              beta: float = DEFAULT_BETA) -> torch.Tensor:
    """``CE · Π_d max(1, log E_d / log T_d)^β``: mul_log above the budget, CE alone below it.

    A budget is a ceiling, not a target: a net far below it is not better. mul_log keeps
    rewarding lower latency however far below the budget, and with Adam (which normalises each
    logit's gradient) its deterministic latency gradient outweighs the noisy gate gradient of
    the cross-entropy, so a search whose α can move drifts to the cheapest ops (measured:
    CIFAR-10 searches ended at a third of the budget, nearly all skip)."""
    loss = ce
    for value, target in zip(expected, targets, strict=True):
        ratio = torch.log(value * (PAPER_TARGET_MS / target)) / math.log(PAPER_TARGET_MS)
        loss = loss * ratio.clamp_min(1.0) ** beta
    return loss


def add_linear(ce: torch.Tensor, expected: Sequence[torch.Tensor], targets: Sequence[float],
               lam: float = DEFAULT_LAMBDA) -> torch.Tensor:
    """``CE + Σ_d λ · (E_d − T_d) / T_d``."""
    loss = ce
    for value, target in zip(expected, targets, strict=True):
        loss = loss + lam * (value - target) / target
    return loss


@dataclass(frozen=True)
class LatencyLoss:
    """Everything hwnas asks of one latency loss."""

    function: Callable[..., torch.Tensor]  # (ce, expected, targets, strength) -> loss
    formula: str  # as the loss table of docs/search.md writes it
    strength: str  # the name of its strength: "β" or "λ"
    default: float  # the strength when none is given (ProxylessNAS's value)
    search_range: tuple[float, float]  # what --calibrate-budget searches, log-uniform


LOSSES: Registry[LatencyLoss] = Registry("latency loss")
LOSSES.register("mul_log", LatencyLoss(mul_log, "CE · Π_d (log E_d / log T_d)^β", "β",
                                       DEFAULT_BETA, (0.01, 3.0)))
LOSSES.register("hinge_log", LatencyLoss(hinge_log, "CE · Π_d max(1, log E_d / log T_d)^β", "β",
                                         DEFAULT_BETA, (0.01, 3.0)))
LOSSES.register("add_linear", LatencyLoss(add_linear, "CE + Σ_d λ · (E_d − T_d) / T_d", "λ",
                                          DEFAULT_LAMBDA, (0.01, 10.0)))


def latency_loss(kind: str, ce: torch.Tensor, expected: Sequence[torch.Tensor],
                 targets: Sequence[float], strength: float | None = None) -> torch.Tensor:
    """The loss ``kind`` of :data:`LOSSES` with its strength (None: the loss's default)."""
    loss = LOSSES[kind]
    return loss.function(ce, expected, targets, loss.default if strength is None else strength)
