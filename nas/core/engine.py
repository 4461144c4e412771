"""The ProxylessNAS search engine: weight steps and architecture steps on a supernet.

Cai et al., "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware",
ICLR 2019:

- ``weight_step``: one binarized path per layer; only that child computes, so memory is that
  of one child. With ``weight_paths="budget"`` (the default) every step, warm-up included,
  trains a net drawn exactly among those the budgets admit (SPOS's uniform constraint
  sampling, :class:`nas.core.sampler.BudgetSampler`); with ``"uniform"`` a path from the prior
  (uniform at every step of the choice tree); with ``"p"`` (ProxylessNAS) from p after
  warm-up. SGD, nesterov momentum, cosine learning rate, label smoothing.
- ``arch_step`` (held-out data): ``arch_batches`` comparisons, each on its own held-out batch
  with its own two paths per layer and binary gates; the gate-gradient estimator of
  :mod:`nas.core.gradient` gives ∂L/∂(log p) of each comparison, their mean is carried to α
  through the choice tree (:mod:`search_spaces.choices`) by autograd, and the expected
  latency (one term per device, :mod:`nas.core.latency_loss`) adds its exact gradient. Adam
  with β1 = ``arch_beta1`` (ProxylessNAS: 0, so paths with a zero gradient do not move); with
  a flat tree, the logits sampled in the step are then shifted so the unsampled paths keep
  their probability (ProxylessNAS's rescaling).

Both steps split their batch into shards (``config.micro_batches`` per process, and one share
per data-parallel rank, :class:`nas.core.parallel.Group`), accumulate the gradients of the shards'
mean losses and average them over the ranks before the optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hwnas_common import HwnasError
from latency_predictors import expected_latency
from nas.core.config import PROXYLESS_ARCH_LR, SearchConfig
from nas.core.constraints import Constraint
from nas.core.gradient import pair_alpha_grad, rescale_logits, sample_pairs
from nas.core.latency_loss import latency_loss
from nas.core.parallel import Group, default_device
from nas.core.sampler import BudgetSampler, band_floor
from search_spaces import Supernet


class NonFiniteLoss(HwnasError):
    """The loss became NaN or infinite."""


class SearchEngine:
    """Holds the supernet, both optimisers and the path-sampling generator."""

    def __init__(self, supernet: Supernet, constraints: Sequence[Constraint],
                 config: SearchConfig, device: torch.device | None = None,
                 group: Group | None = None) -> None:
        self.group = group or Group()
        self.device = device or default_device()
        self.supernet = supernet.to(self.device)
        self.prior = torch.stack([layer.tree.log_probs(torch.zeros_like(layer.alpha)).exp()
                                  for layer in supernet.layers]).detach().cpu().float()
        self.constraints = list(constraints)
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)  # path sampling (CPU)
        self.budget_sampler = (self._budget_sampler() if config.weight_paths == "budget"
                               else None)
        self.weight_opt = torch.optim.SGD(self.supernet.weight_parameters(), lr=config.weight_lr,
                                          momentum=config.momentum, nesterov=True,
                                          weight_decay=config.weight_decay)
        self.arch_opt = torch.optim.Adam(self.supernet.arch_parameters(),
                                         lr=config.arch_lr or PROXYLESS_ARCH_LR,
                                         betas=(config.arch_beta1, 0.999), eps=1e-8)
        self.train_loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.arch_loss = nn.CrossEntropyLoss()

    def probs(self) -> torch.Tensor:
        """p = softmax(α) per layer, as a (layers × candidates) tensor."""
        return torch.stack(self.supernet.probs())

    def _budget_sampler(self) -> BudgetSampler:
        """Weight paths among the nets in ``[path_floor · B, B]`` on every device (every net
        under the budgets when none reaches the floor), uniform over nets (``path_prior``
        "net") or weighted by the choice tree's uniform prior ("family")."""
        config = self.config
        weights = (self.prior.double().numpy() if config.path_prior == "family"
                   else torch.ones_like(self.prior).double().numpy())
        return BudgetSampler(self.constraints, weights,
                             band_floor(self.constraints, config.path_floor))

    def sample_paths(self, uniform: bool) -> list[int]:
        """One path per layer for a weight step: a net the budgets admit (``weight_paths``
        "budget"), or from the prior (``uniform``: uniform at every step of the choice tree;
        for a flat tree, uniform over the candidates), or from p."""
        if self.budget_sampler is not None:
            return self.budget_sampler.sample(self.generator)
        layers, count = len(self.supernet.layers), len(self.supernet.space.candidates)
        if uniform and self.supernet.choices == "flat":
            return torch.randint(count, (layers,), generator=self.generator).tolist()
        p = self.prior if uniform else self.probs().detach().float().cpu()
        return torch.multinomial(p, 1, generator=self.generator)[:, 0].tolist()

    def set_arch_lr(self, lr: float) -> None:
        for group in self.arch_opt.param_groups:
            group["lr"] = lr

    def set_lr(self, progress: float) -> None:
        """Cosine schedule of the weight learning rate, ``progress`` in [0, 1]."""
        for group in self.weight_opt.param_groups:
            group["lr"] = self.config.weight_lr * 0.5 * (1 + math.cos(math.pi * progress))

    def _shards(self, images: torch.Tensor,
                labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.group.shards(images.to(self.device), labels.to(self.device),
                                 self.config.micro_batches)

    def weight_step(self, images: torch.Tensor, labels: torch.Tensor,
                    uniform: bool = False) -> float:
        """One SGD step of the weights of one sampled path; returns the training loss."""
        paths = self.sample_paths(uniform)
        self.supernet.train()
        self.weight_opt.zero_grad(set_to_none=True)
        shards = self._shards(images, labels)
        total = torch.zeros((), device=self.device)
        for x, y in shards:
            loss = self.train_loss(self.supernet(x, paths), y) / len(shards)
            loss.backward()
            total += loss.detach()
        grads = [p.grad for p in self.supernet.weight_parameters() if p.grad is not None]
        self.group.average([*grads, total])
        _check_finite(total, "weight")
        self.weight_opt.step()
        return float(total)

    def expected_latencies(self) -> list[torch.Tensor]:
        """E[LAT] per device (ms), differentiable in α."""
        probs = self.supernet.probs()
        return [expected_latency(probs, c.matrix) for c in self.constraints]

    def arch_step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One Adam step of α from ``len(batches)`` comparisons (one held-out batch each);
        returns their mean latency-aware loss."""
        alphas = self.supernet.arch_parameters()
        log_probs = [layer.log_probs() for layer in self.supernet.layers]
        logit_grads = [torch.zeros_like(lp) for lp in log_probs]  # ∂L/∂(log p), summed
        latency_grads = [torch.zeros_like(alpha) for alpha in alphas]
        sampled: list[set[int]] = [set() for _ in alphas]
        total = torch.zeros((), device=self.device)
        self.supernet.train()
        for images, labels in batches:
            pairs, gate_rows = sample_pairs(self.probs(), self.generator)
            gates = [row.to(self.device).requires_grad_(True) for row in gate_rows]
            shards = self._shards(images, labels)
            grads = [torch.zeros_like(t) for t in (*gates, *alphas)]
            for x, y in shards:
                ce = self.arch_loss(self.supernet(x, pairs, gates), y)
                loss = latency_loss(self.config.loss, ce, self.expected_latencies(),
                                    [c.budget_ms for c in self.constraints],
                                    self.config.loss_strength) / len(shards)
                for grad, part in zip(grads, torch.autograd.grad(loss, [*gates, *alphas]),
                                      strict=True):
                    grad += part
                total += loss.detach() / len(batches)
            self.group.average(grads)
            for layer, (lp, pair, gate_grad) in enumerate(zip(log_probs, pairs,
                                                              grads[:len(gates)], strict=True)):
                logit_grads[layer] += pair_alpha_grad(lp, pair, gate_grad).to(lp) / len(batches)
                sampled[layer].update(pair)
            for acc, part in zip(latency_grads, grads[len(gates):], strict=True):
                acc += part / len(batches)
        self.group.average([total])
        _check_finite(total, "architecture")
        tree_grads = torch.autograd.grad(log_probs, alphas, logit_grads)
        old = [alpha.detach().clone() for alpha in alphas]
        for alpha, tree_grad, latency_grad in zip(alphas, tree_grads, latency_grads,
                                                  strict=True):
            alpha.grad = latency_grad + tree_grad
        self.arch_opt.step()
        if self.supernet.choices == "flat":
            for alpha, before, indices in zip(alphas, old, sampled, strict=True):
                rescale_logits(alpha, sorted(indices), before)
        return float(total)

    def state_dict(self) -> dict:
        return {"supernet": self.supernet.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                "arch_opt": self.arch_opt.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.generator.set_state(state["generator"])


def _check_finite(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"{what} loss became {loss.item()}; stopped, the last good "
                            "checkpoint is kept (try a lower learning rate)")
