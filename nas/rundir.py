"""Everything a search run writes, each file atomically (``hwnas_common.fileio``).

``RUN_DIR/``: ``checkpoint.pt`` (every epoch), ``metrics.csv``, ``arch.json``, ``latency.json``
and ``latency.csv`` (per-layer breakdown per device), ``accuracy.png``, ``latency.png``,
``arch.png`` (entropy of p and the derived net's probability), ``probs.png``,
``summary.json``.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import random
import subprocess
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_path, atomic_write_text, atomic_write_with
from search_spaces import ArchSpec, Space, Supernet, get_space

from .constraints import Constraint

CHECKPOINT = "checkpoint.pt"
PACKAGES = ("hwnas", "torch", "numpy", "onnx", "onnxruntime", "pandas", "optuna", "matplotlib")


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
    supernet = Supernet(get_space(config["space"]), config["weights"])
    try:
        supernet.load_state_dict(state["engine"]["supernet"])
    except RuntimeError:
        raise HwnasError(f"{run_dir}: its checkpoint holds a supernet of another hwnas version "
                         "(different parameters); run the search again") from None
    return supernet.eval()


def write_metrics(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    fields = list(history[0]) if history else ["epoch"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


def latency_breakdown(space: Space, spec: ArchSpec,
                      constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Per device: total, budget, provenance, fixed parts and per-layer latency of ``spec``."""
    choice = [space.candidate_index(layer) for layer in spec.layers]
    result = []
    for c in constraints:
        layers = [{"index": i, "token": layer.token, "ms": c.matrix.per_layer[i][k]}
                  for i, (layer, k) in enumerate(zip(spec.layers, choice, strict=True))]
        parts = dict(c.matrix.fixed_parts)
        if c.matrix.offset_ms:  # so that the parts and layers add up to the total
            parts["calibration offset"] = c.matrix.offset_ms
        result.append({"table": c.source, "device": c.device, "provenance": c.matrix.provenance,
                       "budget_ms": c.budget_ms, "total_ms": c.matrix.total(choice),
                       "fixed_ms": c.matrix.fixed_ms, "fixed_parts": parts, "layers": layers})
    return result


def write_latency(run_dir: Path, breakdown: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "latency.json", json.dumps(breakdown, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "device", "provenance", "part", "token", "ms"])
    for entry in breakdown:
        head = [entry["table"], entry["device"], entry["provenance"]]
        for name, ms in entry["fixed_parts"].items():
            writer.writerow([*head, name, "", ms])
        for layer in entry["layers"]:
            writer.writerow([*head, f"layer{layer['index']}", layer["token"], layer["ms"]])
        writer.writerow([*head, "total", "", entry["total_ms"]])
    atomic_write_text(run_dir / "latency.csv", buffer.getvalue())


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    full = {**summary, "versions": versions(), "git_revision": git_revision()}
    atomic_write_text(run_dir / "summary.json", json.dumps(full, indent=2, default=str) + "\n")


def write_plots(run_dir: Path, history: Sequence[dict[str, Any]],
                probs: Sequence[Sequence[Sequence[float]]], tokens: Sequence[str],
                constraints: Sequence[Constraint]) -> None:
    """accuracy.png, latency.png, arch.png and probs.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["heldout_acc"] for row in history],
            label="held-out (derived net's supernet path)")
    ax.set(xlabel="epoch", ylabel="accuracy", title="supernet accuracy")
    ax.legend()
    _save(fig, run_dir / "accuracy.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in constraints:
        tag = " (ESTIMATED)" if c.estimated else ""
        line = ax.plot(epochs, [row[f"expected_ms[{c.source}]"] for row in history],
                       label=f"E[LAT] {c.source}{tag}")[0]
        ax.plot(epochs, [row[f"derived_ms[{c.source}]"] for row in history], marker="o",
                markersize=3, linestyle=":", color=line.get_color(),
                label=f"derived net {c.source}")
        ax.axhline(c.budget_ms, color=line.get_color(), linestyle="--", label=f"budget {c.source}")
    ax.set(xlabel="epoch", ylabel="ms", title="expected latency and the derived net's latency")
    ax.legend(fontsize=7)
    _save(fig, run_dir / "latency.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["entropy"] for row in history], label="mean entropy of p (nats)")
    ax.axhline(np.log(len(tokens)), color="grey", linestyle="--",
               label=f"uniform (log {len(tokens)})")
    ax.set(xlabel="epoch", ylabel="nats", title="how decisive α is")
    twin = ax.twinx()
    twin.plot(epochs, [row["derived_prob"] for row in history], color="C1",
              label="derived net's mean p")
    twin.set(ylabel="probability", ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    _save(fig, run_dir / "arch.png")
    _plot_probs(run_dir, probs, tokens)


def _plot_probs(run_dir: Path, probs: Sequence[Sequence[Sequence[float]]],
                tokens: Sequence[str], top: int = 5) -> None:
    """One panel per layer: p of the layer's ``top`` most probable candidates at the end, per
    epoch, and the rest summed (a heat map of 31 candidates per layer was unreadable)."""
    import matplotlib.pyplot as plt

    table = np.asarray(probs)  # epochs × layers × candidates
    epochs = np.arange(1, len(table) + 1)
    layers, cols = table.shape[1], min(3, table.shape[1])
    rows = (layers + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(4.2 * cols, 2.9 * rows),
                             sharex=True, sharey=True)
    for layer in range(layers):
        ax = axes[layer // cols][layer % cols]
        order = np.argsort(table[-1, layer])[::-1][:top]
        for index in order:
            ax.plot(epochs, table[:, layer, index], marker=".", label=tokens[index])
        rest = table[:, layer].sum(axis=1) - table[:, layer, order].sum(axis=1)
        ax.plot(epochs, rest, color="lightgray", linestyle="--", label="all others")
        ax.axhline(1 / len(tokens), color="gray", linewidth=0.6, linestyle=":")
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("p")
    for extra in range(layers, rows * cols):
        axes[extra // cols][extra % cols].set_visible(False)
    fig.suptitle(f"architecture probabilities (dotted: uniform 1/{len(tokens)})", fontsize=10)
    fig.tight_layout()
    _save(fig, run_dir / "probs.png")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:  # epochs are whole numbers
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
