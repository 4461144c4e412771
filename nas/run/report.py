"""The reports a search run writes into ``RUN_DIR/``, each file atomically: ``metrics.csv``,
``latency.json`` and ``latency.csv`` (per-layer breakdown per device), ``accuracy.png``,
``latency.png``, ``arch.png`` (entropy of p and the derived net's probability), ``probs.png``,
``summary.json`` (with package versions and the git revision). The checkpoint is
:mod:`nas.run.checkpoint`'s.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_common.fileio import atomic_path, atomic_write_text
from nas.core.constraints import Constraint
from search_spaces import ArchSpec

PACKAGES = ("hwnas", "torch", "numpy", "onnx", "onnxruntime", "pandas", "optuna", "matplotlib")


LATENCY_KINDS = ("expected", "argmax", "derived")  # E[LAT], the argmax net, the derived net


def latency_column(kind: str, table: str) -> str:
    """The ``metrics.csv`` column of one latency per epoch: ``expected_ms[cpu]`` etc."""
    if kind not in LATENCY_KINDS:
        raise ValueError(f"unknown latency column kind {kind!r}")
    return f"{kind}_ms[{table}]"


def latency_columns(row: dict[str, Any], kind: str) -> dict[str, float]:
    """``{table: ms}`` of one kind of latency column in a metrics row."""
    head = f"{kind}_ms["
    return {key[len(head):-1]: float(value) for key, value in row.items()
            if key.startswith(head) and key.endswith("]")}


def write_metrics(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    fields = list(history[0]) if history else ["epoch"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


def latency_breakdown(spec: ArchSpec, constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Per device: the table, the budget and ``spec``'s
    :class:`latency_predictors.LatencyPrediction` (total, fixed parts with the calibration
    offset, per-layer latency), as ``hwnas predict`` shows it."""
    return [{"table": c.source, "budget_ms": c.budget_asked_ms, "derived_under_ms": c.budget_ms,
             **c.matrix.predict(spec).to_dict()}
            for c in constraints]


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
            label="held-out (derived net, supernet weights, own BatchNorm statistics)")
    ax.set(xlabel="epoch", ylabel="accuracy", title="supernet accuracy")
    ax.legend()
    _save(fig, run_dir / "accuracy.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in constraints:
        tag = " (ESTIMATED)" if c.estimated else ""
        line = ax.plot(epochs, [row[latency_column("expected", c.source)] for row in history],
                       label=f"E[LAT] {c.source}{tag}")[0]
        ax.plot(epochs, [row[latency_column("derived", c.source)] for row in history], marker="o",
                markersize=3, linestyle=":", color=line.get_color(),
                label=f"derived net {c.source}")
        ax.axhline(c.budget_asked_ms, color=line.get_color(), linestyle="--",
                   label=f"budget {c.source}")
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


def write_verdict_plot(run_dir: Path, judged: dict[str, Any]) -> None:
    """verdict.png: test loss on the final supernet against predicted latency of the random
    band nets, the equal-effort random pick and the found net, titled with the verdict's
    judgement and the supernet's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = next(iter(judged["found"]["latency_ms"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["latency_ms"][table] for r in judged["random"]],
               [r["heldout_loss"] for r in judged["random"]], color="grey",
               label="random nets of the band")
    ax.scatter([judged["found"]["latency_ms"][table]], [judged["found"]["heldout_loss"]],
               color="C3", marker="*", s=160, label="found net")
    if "random_pick" in judged:
        pick = next(r for r in judged["random"] if r["arch"] == judged["random_pick"]["arch"])
        ax.scatter([pick["latency_ms"][table]], [pick["heldout_loss"]], facecolors="none",
                   edgecolors="C0", s=120, label="equal-effort random pick")
    scored = judged.get("supernet_judgement", judged["judgement"])
    ax.set(xlabel=f"predicted latency on {table} (ms)",
           ylabel="test loss on the final supernet",
           title=f"verdict: {judged['judgement']} (supernet scores: {scored})")
    ax.legend(fontsize=7)
    _save(fig, run_dir / "verdict.png")


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
