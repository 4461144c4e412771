"""Scoring nets on a supernet: the final pick by evaluation, and every run's verdict.

A net's *supernet score* is its held-out loss and accuracy with the supernet's weights and its
own BatchNorm statistics, re-estimated on ``BN_IMAGES`` training images (the supernet's running
statistics mix every path; OFA, Cai et al. 2020, §3.2), on up to ``EVAL_IMAGES`` images of the
architecture split (never the test split).

- :func:`select_by_evaluation` (``--select-top K``): the knapsack's net and up to K − 1 more
  band nets drawn around p (perturb-and-MAP: the knapsack on Gumbel-perturbed derivation
  scores), scored on the final supernet; the lowest held-out loss wins. Every candidate is a
  knapsack solution, so each meets the budget.
- :func:`verdict`: the found net against ``verdict_nets`` random band nets (the knapsack on
  i.i.d. Gumbel scores, :func:`nas.core.derive.random_band_net`), all scored on the supernet as
  it stood at the end of warm-up, before the search favoured any of them. Ranked by held-out
  loss. A user need not take the search on faith.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nas.core.constraints import Constraint
from nas.core.derive import gumbel_noise, random_band_net, solve
from nas.run.batches import Splits
from nas.run.evaluate import recalibrate_batchnorm
from search_spaces import ArchSpec, Supernet

BN_IMAGES = 500
EVAL_IMAGES = 1000


@dataclass(frozen=True)
class NetScore:
    """One net's supernet score and predicted latency (ms per table)."""

    arch: str
    heldout_loss: float
    heldout_acc: float
    latency_ms: dict[str, float]


def score_net(supernet: Supernet, spec: ArchSpec, splits: Splits,
              constraints: Sequence[Constraint], batch_size: int = 64) -> NetScore:
    """``spec``'s held-out loss and accuracy with ``supernet``'s weights (module docstring)."""
    device = next(supernet.parameters()).device
    child = supernet.child(spec).to(device)
    recalibrate_batchnorm(child, splits.weight.in_order(batch_size, limit=BN_IMAGES))
    loss = correct = count = 0.0
    with torch.no_grad():
        for x, y in splits.arch.in_order(256, limit=EVAL_IMAGES):
            logits = child(x)
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    space = supernet.space
    choice = [space.candidate_index(layer) for layer in spec.layers]
    return NetScore(spec.to_string(), loss / max(1, count), correct / max(1, count),
                    {c.source: c.matrix.total(choice) for c in constraints})


def band_candidates(supernet: Supernet, constraints: Sequence[Constraint], floor: float,
                    count: int, generator: torch.Generator) -> list[ArchSpec]:
    """The knapsack's net, then band nets of Gumbel-perturbed derivation scores, up to
    ``count`` distinct nets (at most ``4 · count`` draws)."""
    space = supernet.space
    scores = torch.tensor(supernet.derive_scores(), dtype=torch.float64)
    found = [solve(scores.tolist(), constraints, floor)]
    for _ in range(4 * count):
        if len(found) >= count:
            break
        choice = solve((scores + gumbel_noise(tuple(scores.shape), generator)).tolist(),
                       constraints, floor)
        if choice not in found:
            found.append(choice)
    return [space.spec_from_indices(choice) for choice in found]


def select_by_evaluation(supernet: Supernet, constraints: Sequence[Constraint], floor: float,
                         count: int, splits: Splits, generator: torch.Generator,
                         batch_size: int = 64) -> tuple[ArchSpec, list[NetScore]]:
    """The band net with the lowest held-out loss among :func:`band_candidates`."""
    specs = band_candidates(supernet, constraints, floor, count, generator)
    scores = [score_net(supernet, spec, splits, constraints, batch_size) for spec in specs]
    best = min(range(len(specs)), key=lambda i: scores[i].heldout_loss)
    return specs[best], scores


def verdict(warm: Supernet, found: ArchSpec, constraints: Sequence[Constraint], floor: float,
            count: int, splits: Splits, generator: torch.Generator,
            batch_size: int = 64) -> dict[str, Any]:
    """The found net next to ``count`` random band nets, all scored on ``warm`` (the supernet
    at the end of warm-up). Returns the scores, the found net's rank by held-out loss (1 =
    best) and the one-line summary ``line``."""
    space = warm.space
    randoms = [random_band_net(space, constraints, floor, generator) for _ in range(count)]
    mine = score_net(warm, found, splits, constraints, batch_size)
    others = [score_net(warm, spec, splits, constraints, batch_size) for spec in randoms]
    rank = 1 + sum(o.heldout_loss < mine.heldout_loss for o in others)
    accs = [o.heldout_acc for o in others]
    table = constraints[0].source
    lats = [o.latency_ms[table] for o in others]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    if all(o.arch == mine.arch for o in others):
        line = (f"verdict: the budget's band holds no net but the found one ({mine.arch}, "
                f"{mine.latency_ms[table]:.3g} ms on {table}): nothing to compare it with")
    else:
        line = (f"verdict: found net held-out acc {mine.heldout_acc:.3f} (loss "
                f"{mine.heldout_loss:.3f}); {count} random nets at {min(lats):.3g}-"
                f"{max(lats):.3g} ms on {table}: {statistics.mean(accs):.3f} ± {spread:.3f} "
                f"(best {max(accs):.3f}); rank {rank} of {count + 1} by held-out loss, on the "
                "supernet after warm-up")
    return {"found": asdict(mine), "random": [asdict(o) for o in others], "rank": rank,
            "of": count + 1, "line": line,
            "percentile": (count + 1 - rank) / count if count else math.nan}
