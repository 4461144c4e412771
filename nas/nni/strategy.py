"""Run NNI 3.0's ``Proxyless`` strategy on an hwnas space: the peer hwnas is measured against
(``docs/results.md``, "Search: the main job, step cost and memory"; ``bench/peer_nni.py``).

This drives NNI's own code end to end, as ``nni.nas.experiment.NasExperiment`` does for a
one-shot strategy, minus the experiment manager (no web UI, no NNI manager process):

1. ``Proxyless.mutate_model`` turns the :func:`~nas.nni.space.nni_model_space` into NNI's
   supernet (every ``LayerChoice`` becomes a ``ProxylessMixedLayer`` with logits α);
2. ``Proxyless.mutate_evaluator`` wraps NNI's ``Classification`` evaluator (Adam, cross-entropy)
   into NNI's ``DartsLightningModule``, whose ``training_step`` is one architecture step on a
   validation batch then one weight step on a training batch;
3. ``Lightning.evaluate`` runs ``pytorch_lightning.Trainer.fit`` on it.

The searched architecture comes back as an :class:`search_spaces.ArchSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from nas.nni.space import as_space, import_nni, nni_model_space, sample_to_spec
from search_spaces import ArchSpec, Space


@dataclass
class ProxylessRun:
    """What a run of NNI's Proxyless leaves behind."""

    space: Space
    supernet: nn.Module  # NNI's mutated model space (ProxylessMixedLayer per layer)
    module: Any  # NNI's DartsLightningModule (the strategy's training logic)
    trainer: Any  # the pytorch_lightning.Trainer that ran it

    def alphas(self) -> dict[str, torch.Tensor]:
        """Architecture logits per layer label, in ``space.candidates`` order (copies)."""
        found = {}
        for module in self.supernet.modules():
            if hasattr(module, "_arch_alpha") and hasattr(module, "label"):
                found[module.label] = module._arch_alpha.detach().clone()
        return dict(sorted(found.items(), key=lambda item: int(item[0].removeprefix("layer"))))

    def derive(self) -> ArchSpec:
        """The most probable candidate per layer (argmax α), as an ArchSpec."""
        return self.space.spec_from_indices([int(a.argmax()) for a in self.alphas().values()])

    def nni_export(self) -> ArchSpec:
        """NNI's own export; for Proxyless it *samples* from softmax(α) (it is ``resample``)."""
        return sample_to_spec(self.module.export(), self.space)


def run_proxyless(space: Space | str, train_data: Dataset, val_data: Dataset, *, steps: int,
                  batch_size: int, penalty: Any = None, learning_rate: float = 1e-3,
                  arc_learning_rate: float = 1e-3, callbacks: Sequence[Any] = (),
                  seed: int = 0) -> ProxylessRun:
    """``steps`` Proxyless steps (architecture step + weight step each) on CPU, one epoch.

    ``penalty`` is an ``ExpectationProfilerPenalty`` (see :func:`nas.nni.profiler.latency_penalty`)
    or None; ``callbacks`` are Lightning callbacks (e.g. timers). Batches are taken in order.
    """
    space = as_space(space)
    strategy_mod = import_nni("nni.nas.strategy")
    evaluator_mod = import_nni("nni.nas.evaluator.pytorch")
    torch.manual_seed(seed)
    strategy = strategy_mod.Proxyless(penalty=penalty, arc_learning_rate=arc_learning_rate,
                                      log_prob_every_n_step=max(steps, 1) + 1)
    supernet = strategy.mutate_model(nni_model_space(space))

    def loader(data: Dataset) -> Any:
        return evaluator_mod.DataLoader(data, batch_size=batch_size, shuffle=False)

    evaluator = evaluator_mod.Classification(
        learning_rate=learning_rate, train_dataloaders=loader(train_data),
        val_dataloaders=loader(val_data), num_classes=space.num_classes, max_epochs=1,
        limit_train_batches=steps, limit_val_batches=0, num_sanity_val_steps=0,
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    evaluator = strategy.mutate_evaluator(evaluator)
    evaluator.evaluate(supernet)
    return ProxylessRun(space, supernet, evaluator.module, evaluator.trainer)
