"""Latency-aware losses of ProxylessNAS (Cai et al., ICLR 2019, §3.3.1), one term per device.

With ``E_d`` the expected latency on device d (differentiable in α) and ``T_d`` its target:

- ``mul_log``:    ``CE · Π_d (log E_d / log T_d)^β``
- ``hinge_log``:  ``CE · Π_d max(1, log E_d / log T_d)^β``: no reward below the budget
- ``add_linear``: ``CE + Σ_d λ · (E_d − T_d) / T_d``  (the ``− T_d`` is a constant; it keeps the
  term at 0 on budget, as in ProxylessNAS's code)

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

import torch

from hwnas_common import HwnasError

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


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"mul_log": mul_log, "hinge_log": hinge_log,
                                                  "add_linear": add_linear}


def latency_loss(kind: str, ce: torch.Tensor, expected: Sequence[torch.Tensor],
                 targets: Sequence[float], strength: float | None = None) -> torch.Tensor:
    """The loss ``kind`` with its strength (β for mul_log, λ for add_linear; None: default)."""
    if kind not in LOSSES:
        raise HwnasError(f"unknown latency loss {kind!r}; valid: {sorted(LOSSES)}")
    if strength is None:
        return LOSSES[kind](ce, expected, targets)
    return LOSSES[kind](ce, expected, targets, strength)
