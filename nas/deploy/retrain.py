"""Train any architecture, or retrain the one a search derived, from scratch or from the
supernet's weights (``hwnas train``, ``hwnas export RUN_DIR --train-epochs N``).

The run directory names everything needed: ``arch.json`` (the derived ArchSpec),
``summary.json`` (data set, data limit, seed) and ``checkpoint.pt`` (the supernet, whose
weights a child inherits through ``Supernet.child(spec)``). Training is
:func:`nas.run.train.train_child` with the search's weight recipe; the net a search fine-tuned
itself is ``RUN_DIR/model.pt`` (:mod:`nas.run.trained`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hwnas_common import HwnasError
from nas.core.parallel import default_device
from nas.run import checkpoint
from nas.run.batches import Batches, channel_stats
from nas.run.evaluate import INHERITED_BN_IMAGES, recalibrate_batchnorm, top1_accuracy
from nas.run.readers import load_dataset
from nas.run.train import Recipe, train_child
from search_spaces import ArchSpec, ChildNet, build, get_space

INITS = ("scratch", "inherit")


@dataclass(frozen=True)
class RetrainResult:
    spec: ArchSpec
    model: ChildNet  # on the CPU, eval mode
    test_accuracy: float
    epochs: int
    init: str
    dataset: str = ""
    images: int = 0  # training images it was trained on


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HwnasError(f"{path}: unreadable ({type(err).__name__})") from None


def run_config(run_dir: Path) -> dict:
    """The search configuration a run directory records (``summary.json``)."""
    return _read_json(run_dir / "summary.json")["config"]


def inherited_child(run_dir: Path, spec: ArchSpec) -> ChildNet:
    """``spec``'s child with the weights of the supernet searched in ``run_dir``."""
    config = run_config(run_dir)
    if spec.space != config["space"]:
        raise HwnasError(f"{run_dir} searched space {config['space']!r}; the architecture is "
                         f"of space {spec.space!r}, so it cannot inherit its weights")
    return checkpoint.load_supernet(run_dir).child(spec).train()


def train_arch(spec: ArchSpec, dataset: str, epochs: int, init: ChildNet | None = None,
               batch_size: int = 64, seed: int = 0, data_limit: int | None = None,
               lr: float = 0.05, weight_decay: float = 4e-5,
               progress: bool = True, augment: bool = False) -> RetrainResult:
    """Train ``spec`` (from ``init``'s weights, BatchNorm statistics first re-estimated on
    ``INHERITED_BN_IMAGES`` training images, else from scratch) for ``epochs`` on the training
    split of ``dataset`` with :class:`Recipe` (the search's weight recipe; random crop and flip
    when ``augment``); accuracy is on the test split."""
    if epochs < 0:
        raise HwnasError(f"epochs must be >= 0, got {epochs}")
    space = get_space(spec.space)
    torch.manual_seed(seed)
    device = default_device()
    model = (init if init is not None else build(spec)).to(device)
    data = load_dataset(dataset, limit=data_limit, shape=space.input, classes=space.num_classes)
    mean, std = channel_stats(data.train_x, space.input)
    train = Batches(data.train_x, data.train_y, space.input, device, mean, std)
    test = Batches(data.test_x, data.test_y, space.input, device, mean, std)
    if init is not None:  # the supernet's running statistics mix every path's (OFA §3.2)
        recalibrate_batchnorm(model, train.in_order(batch_size, limit=INHERITED_BN_IMAGES))
    train_child(model, train, Recipe(epochs, batch_size, lr, weight_decay, seed, augment),
                progress)
    test_accuracy = top1_accuracy(model.eval(), test.in_order())
    return RetrainResult(spec, model.cpu().eval(), test_accuracy, epochs,
                         "scratch" if init is None else "inherit", dataset, len(train))


def retrain(run_dir: str | Path, epochs: int, init: str = "inherit",
            progress: bool = True) -> RetrainResult:
    """Train the run's derived architecture for ``epochs`` on the run's data, batch size,
    learning rate and seed, from the supernet's weights (``inherit``) or from ``scratch``."""
    if init not in INITS:
        raise HwnasError(f"unknown --init {init!r}; valid: {list(INITS)}")
    run_dir = Path(run_dir)
    spec = ArchSpec.from_dict(_read_json(run_dir / "arch.json"))
    config = run_config(run_dir)
    start = inherited_child(run_dir, spec) if init == "inherit" else None
    return train_arch(spec, config["dataset"], epochs, start, config["batch_size"],
                      config["seed"], config["data_limit"], config["weight_lr"],
                      config["weight_decay"], progress)
