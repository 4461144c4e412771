"""Retrain the architecture a search derived, from scratch or from the supernet's weights, and
keep the net a search fine-tuned.

The run directory names everything needed: ``arch.json`` (the derived ArchSpec),
``summary.json`` (data set, data limit, seed) and ``checkpoint.pt`` (the supernet, whose
weights a child inherits through ``Supernet.child(spec)``). A search with ``retrain_epochs``
also writes ``model.pt`` (:data:`MODEL_FILE`): the fine-tuned child with its test accuracy and
recipe (:func:`save_finetuned`), which ``hwnas export RUN_DIR`` exports (:func:`load_finetuned`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from hwnas_common import HwnasError
from nas.core.parallel import default_device
from nas.deploy.export import load_checkpoint, save_trained
from nas.run import checkpoint
from nas.run.data import Batches, channel_stats, load_dataset
from nas.run.evaluate import top1_accuracy
from search_spaces import ArchSpec, ChildNet, build, get_space

INITS = ("scratch", "inherit")
MODEL_FILE = "model.pt"  # a search's fine-tuned child, in its run directory


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
               progress: bool = True) -> RetrainResult:
    """Train ``spec`` (from ``init``'s weights, else from scratch) for ``epochs`` on the
    training split of ``dataset`` with :class:`Recipe` (the search's weight recipe); accuracy
    is on the test split."""
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
    train_child(model, train, Recipe(epochs, batch_size, lr, weight_decay, seed), progress)
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


@dataclass(frozen=True)
class Recipe:
    """How a child network is trained: SGD nesterov 0.9, cosine lr, label smoothing 0.1."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def train_child(model: nn.Module, train: Batches, recipe: Recipe, progress: bool = True,
                desc: str = "retrain") -> nn.Module:
    """Train ``model`` (already on ``train``'s device) in place with ``recipe``; return it.

    Training runs in ``channels_last`` memory format (the weights are back in the default one
    on return): on the loaded 2-vCPU Zen 3 guest it trained a main-job net at 148-170 images/s
    on one thread against 87-147 in the default format, in three runs
    (``bench/child_training.py``); batch 256 never trained faster than 64 there, so the recipe's
    batch and lr stand."""
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(recipe.seed)
    batch_size = min(recipe.batch_size, len(train))
    steps = max(1, recipe.epochs * (len(train) // batch_size))
    step = 0
    for epoch in range(recipe.epochs):
        model.train()
        for x, y in tqdm(train.epoch(batch_size, generator, augment=True),
                         total=len(train) // batch_size, desc=f"{desc} {epoch + 1}/"
                         f"{recipe.epochs}", disable=not progress, leave=False):
            for group in opt.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            if not torch.isfinite(loss):
                raise HwnasError(f"retraining loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            opt.step()
            step += 1
    return model.to(memory_format=torch.contiguous_format)


def save_finetuned(path: str | Path, spec: ArchSpec, model: nn.Module, test_accuracy: float,
                   recipe: Recipe, dataset: str, images: int) -> Path:
    """Write a search's fine-tuned child (``RUN_DIR/model.pt``) with its test accuracy and
    recipe, in the format of ``hwnas train`` (:func:`nas.deploy.export.save_trained`)."""
    return save_trained(path, spec, model, test_accuracy,
                        {"dataset": dataset, "images": images, "init": "inherit", **asdict(recipe),
                         "optimizer": "SGD nesterov 0.9, cosine lr, label smoothing 0.1"})


@dataclass(frozen=True)
class TrainedNet:
    """A trained net read back: its architecture, weights and what it records of its training."""

    path: Path
    spec: ArchSpec
    model: nn.Module  # on the CPU, eval mode
    test_accuracy: float | None
    trained: dict[str, Any]

    def describe(self) -> str:
        """``test accuracy 0.8771, fine-tuned 1 epoch on 45,000 fashion-mnist images``"""
        how = self.trained
        accuracy = ("test accuracy unrecorded" if self.test_accuracy is None
                    else f"test accuracy {self.test_accuracy:.4f}")
        if "epochs" not in how:
            return accuracy
        epochs = f"{how['epochs']} epoch{'s' if how['epochs'] != 1 else ''}"
        images = f"{how['images']:,} " if how.get("images") else ""
        return f"{accuracy}, trained {epochs} on {images}{how.get('dataset', '?')} images"


def load_finetuned(run_dir: str | Path) -> TrainedNet:
    """The fine-tuned child a search saved in ``run_dir`` (one clear error when it has none)."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise HwnasError(f"{run_dir} holds no fine-tuned net ({MODEL_FILE}: the search ran with "
                         "--retrain-epochs 0); export it with --train-epochs N to train it now, "
                         f"or export {Path(run_dir) / 'arch.json'} for the architecture alone")
    spec, model = load_checkpoint(path)
    record = torch.load(path, map_location="cpu", weights_only=True)
    return TrainedNet(path, spec, model, record.get("test_accuracy"), record.get("trained") or {})
