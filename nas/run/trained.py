"""A trained child network as a file: ``{"arch", "state_dict"}`` (tensors and plain data only,
read with ``torch.load(weights_only=True)``), plus its test accuracy and how it was trained.

Three commands write this format: ``hwnas train`` (:func:`save_trained`), a search with
``retrain_epochs``, which keeps the net it fine-tuned as ``RUN_DIR/model.pt``
(:data:`MODEL_FILE`, :func:`save_finetuned`), and ``hwnas export --format pt``
(:func:`net_record`). :func:`load_trained` rebuilds the net from any of them;
``hwnas export RUN_DIR`` exports a run's fine-tuned net (:func:`load_finetuned`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_with
from nas.run.train import Recipe
from search_spaces import ArchSpec, build

MODEL_FILE = "model.pt"  # a search's fine-tuned child, in its run directory


def net_record(spec: ArchSpec, model: nn.Module) -> dict:
    """The architecture and weights that :func:`load_trained` rebuilds."""
    return {"arch": spec.to_dict(), "state_dict": model.state_dict()}


def save_trained(path: str | Path, spec: ArchSpec, model: nn.Module, test_accuracy: float,
                 how: dict) -> Path:
    """Write a trained net (``hwnas train``) as a file ``export`` and :func:`load_trained`
    read, with its test accuracy and how it was trained; atomically."""
    state = {**net_record(spec, model), "test_accuracy": test_accuracy, "trained": how}
    path = Path(path)
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))
    return path


def load_trained(path: str | Path) -> tuple[ArchSpec, nn.Module]:
    """Rebuild the child network of a file of this format (eval mode)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        spec = ArchSpec.from_dict(data["arch"])
        model = build(spec)
        model.load_state_dict(data["state_dict"])
    except HwnasError:
        raise
    except Exception as err:  # unreadable, truncated or foreign file
        raise HwnasError(f"{path}: not a valid hwnas checkpoint ({type(err).__name__})") from None
    return spec, model.eval()


def save_finetuned(path: str | Path, spec: ArchSpec, model: nn.Module, test_accuracy: float,
                   recipe: Recipe, dataset: str, images: int) -> Path:
    """Write a search's fine-tuned child (``RUN_DIR/model.pt``) with its test accuracy and
    recipe, in the format of ``hwnas train`` (:func:`save_trained`)."""
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
    spec, model = load_trained(path)
    record = torch.load(path, map_location="cpu", weights_only=True)
    return TrainedNet(path, spec, model, record.get("test_accuracy"), record.get("trained") or {})
