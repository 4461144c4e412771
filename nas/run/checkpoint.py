"""A search run's checkpoint (``RUN_DIR/checkpoint.pt``): RNG states, save and load with one
clear error for a missing, truncated or foreign file, the config it records, and the supernet it
holds. Loaded with ``torch.load(weights_only=True)``: a checkpoint is never unpickled code.

While a run trains, its checkpoint holds everything a resume needs, the optimisers' state
included; when it finishes, :func:`slim_checkpoint` drops that state (about 45 % of the file),
keeping what every reader of a finished run uses (config, history, p, supernet weights, the
generator and RNG states with which ``--resume`` of a finished run redoes its end)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_with
from search_spaces import Supernet, get_space

CHECKPOINT = "checkpoint.pt"
WARMUP = "warmup.pt"  # the supernet's weights at the end of warm-up, written only with
#                      SearchConfig.keep_warmup (bench/ranking.py scores nets on them)
RESUME_ONLY = ("weight_opt", "arch_opt")  # engine state that only continuing to train needs


def rng_states() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states, in a form ``torch.load(weights_only)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "python": [version, list(internal), gauss],
                              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                        has_gauss, cached]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_with(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def slim_checkpoint(run_dir: Path) -> None:
    """Rewrite a finished run's checkpoint (atomically) without :data:`RESUME_ONLY`; a
    checkpoint without them is left as it is."""
    state = load_checkpoint(run_dir)
    if not is_finished(state):
        state["engine"] = {k: v for k, v in state["engine"].items() if k not in RESUME_ONLY}
        save_checkpoint(run_dir, state)


def is_finished(state: dict[str, Any]) -> bool:
    """Whether a checkpoint is a finished run's (no optimiser state: it trains no further)."""
    return not any(key in state["engine"] for key in RESUME_ONLY)


def save_warmup(run_dir: Path, supernet: Supernet) -> None:
    """Keep the supernet's weights as they stand at the end of warm-up."""
    atomic_write_with(run_dir / WARMUP, lambda tmp: torch.save(supernet.state_dict(), tmp))


def load_warmup(run_dir: Path, like: Supernet) -> Supernet:
    """A copy of ``like`` (same space, weights and choices) holding the warm-up snapshot."""
    path = run_dir / WARMUP
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise HwnasError(f"{path}: unreadable warm-up snapshot ({type(err).__name__}); run "
                         "the search again") from None
    warm = Supernet(like.space, like.weights, like.choices)
    warm.load_state_dict(state)
    return warm.eval()


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of a run; one clear error if it is missing, truncated or foreign."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise HwnasError(f"{run_dir}: no search checkpoint ({CHECKPOINT}) in it")
    try:
        with warnings.catch_warnings():  # a foreign pickle warns before it fails
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"engine", "epoch", "history", "data_generator", "rng", "config"} - set(state)
    except Exception as err:  # truncated, corrupt or not a torch file
        raise HwnasError(f"{path}: corrupt checkpoint ({type(err).__name__}); delete it to "
                         "start over") from None
    if missing:
        raise HwnasError(f"{path}: not a search checkpoint (missing {sorted(missing)})")
    return state


def checkpoint_config(state: dict[str, Any]) -> dict[str, Any]:
    """The search config a checkpoint records; runs from before weight sharing had one set of
    weights per candidate, and their checkpoints say nothing about it."""
    return {"weights": "separate", **state["config"]}


def load_supernet(run_dir: Path, state: dict[str, Any] | None = None) -> Supernet:
    """The supernet a search run trained, from its checkpoint (eval mode); one clear error when
    the checkpoint comes from an hwnas whose supernet differs (e.g. before weight sharing)."""
    state = state or load_checkpoint(run_dir)
    config = checkpoint_config(state)
    supernet = Supernet(get_space(config["space"]), config["weights"],
                        config.get("choices", "flat"))
    try:
        supernet.load_state_dict(state["engine"]["supernet"])
    except RuntimeError:
        raise HwnasError(f"{run_dir}: its checkpoint holds a supernet of another hwnas version "
                         "(different parameters); run the search again") from None
    return supernet.eval()
