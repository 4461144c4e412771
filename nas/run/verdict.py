"""Scoring nets on a supernet: the final pick by evaluation, and every run's verdict.

A net's *supernet score* is its held-out loss and accuracy with the supernet's weights and its
own BatchNorm statistics, re-estimated on ``BN_IMAGES`` training images (the supernet's running
statistics mix every path; OFA, Cai et al. 2020, §3.2), on up to ``EVAL_IMAGES`` images of the
architecture split (never the test split).

- :func:`select_by_evaluation` (``--select-top K``): the knapsack's net and up to K − 1 more
  band nets drawn around p (perturb-and-MAP: the knapsack on Gumbel-perturbed derivation
  scores), scored on the final supernet; the lowest held-out loss wins. Every candidate is a
  knapsack solution, so each meets the budget.
- :func:`verdict`: the found net against ``verdict_nets`` nets drawn uniformly from its band
  (:func:`nas.core.sampler.random_band_nets`), all scored on the supernet whose in-band ranking
  ``bench/ranking.py`` measured (:data:`RANKINGS`), on up to ``EVAL_IMAGES`` images of the test
  split: the architecture split trained α and chose the final pick, so the found net would be
  favoured there. The found net's loss minus the random nets' mean, per test image, gives a
  difference with a 95 % interval (its scores' ``heldout_*`` fields are test-split figures);
  the verdict calls the net better, worse or indistinguishable only when that scorer is
  validated (corrected ρ ≥ 0.5 with its interval above 0, :class:`ScorerRanking`), and
  otherwise says it cannot tell. A user need
  not take the search on faith, nor be told noise.
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
from nas.core.derive import gumbel_noise, solve
from nas.core.sampler import random_band_nets
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


def _scored(supernet: Supernet, spec: ArchSpec, splits: Splits,
            constraints: Sequence[Constraint], batch_size: int,
            on_test: bool = False) -> tuple[NetScore, torch.Tensor]:
    """:func:`score_net` and the loss of every image it averaged: on the architecture split,
    or (``on_test``) on the test split, which neither the weights, α nor the final pick saw."""
    device = next(supernet.parameters()).device
    child = supernet.child(spec).to(device)
    recalibrate_batchnorm(child, splits.weight.in_order(batch_size, limit=BN_IMAGES))
    losses, correct = [], 0
    with torch.no_grad():
        held_out = splits.test if on_test else splits.arch
        for x, y in held_out.in_order(256, limit=EVAL_IMAGES):
            logits = child(x)
            losses.append(nn.functional.cross_entropy(logits, y, reduction="none").cpu())
            correct += int((logits.argmax(1) == y).sum())
    per_image = torch.cat(losses) if losses else torch.zeros(0)
    count = max(1, len(per_image))
    space = supernet.space
    choice = [space.candidate_index(layer) for layer in spec.layers]
    return NetScore(spec.to_string(), float(per_image.sum()) / count, correct / count,
                    {c.source: c.matrix.total(choice) for c in constraints}), per_image


def score_net(supernet: Supernet, spec: ArchSpec, splits: Splits,
              constraints: Sequence[Constraint], batch_size: int = 64) -> NetScore:
    """``spec``'s held-out loss and accuracy with ``supernet``'s weights (module docstring)."""
    return _scored(supernet, spec, splits, constraints, batch_size)[0]


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


@dataclass(frozen=True)
class ScorerRanking:
    """How well a scorer ranked nets of one band against stand-alone training, as measured by
    ``bench/ranking.py``: Spearman ρ with the two-seed stand-alone mean, corrected for that
    mean's noise (Spearman–Brown), with its 95 % bootstrap interval over the nets."""

    scorer: str
    phase: str  # the supernet scored: "warmup" (after warm-up) or "final" (end of the search)
    rho: float
    low: float
    high: float
    rho_ab: float  # the two stand-alone seeds' agreement: the noise ceiling
    measured: str  # command, date and host of the measurement

    @property
    def ceiling_too_low(self) -> bool:
        """Two stand-alone seeds agree below ρ 0.3: nothing can be validated in the band."""
        return not self.rho_ab >= MIN_RHO_AB

    @property
    def validated(self) -> bool:
        """Ranks well enough to judge by: a noise ceiling of at least ρ_AB 0.3, and corrected
        ρ ≥ 0.5 with its interval above 0."""
        return not self.ceiling_too_low and self.rho >= 0.5 and self.low > 0


MIN_RHO_AB = 0.3  # below this stand-alone training itself does not rank the band's nets


_MEASURED = ("bench/ranking.py, 20 band nets, 2026-12-01, AMD EPYC family 25 model 17")
# The measured in-band ranking of the final supernet, per weight-path setting (bench/ranking.py
# on development seeds at the main job's fidelity: 1 + 2 epochs on 2,700 images).
RANKINGS: dict[str, ScorerRanking] = {
    "budget:family:0.9": ScorerRanking("the final supernet (budget paths, family prior)",
                                       "final", 0.75, 0.21, 2.04, 0.32, _MEASURED),
    "budget:net:0.9": ScorerRanking("the final supernet (budget paths, net prior)", "final",
                                    -0.38, -1.38, 0.33, 0.32, _MEASURED),
    "budget:net:0": ScorerRanking("the final supernet (paths under the budget, net prior)",
                                  "final", -0.39, -1.38, 0.44, 0.32, _MEASURED),
    "uniform": ScorerRanking("the final supernet (uniform paths)", "final", 0.86, 0.46, 2.14,
                             0.32, _MEASURED),
}


def ranking_key(weight_paths: str, path_prior: str, path_floor: float) -> str:
    """The :data:`RANKINGS` key of a search's weight-path settings."""
    if weight_paths != "budget":
        return weight_paths
    return f"budget:{path_prior}:{path_floor:g}"


def compare_losses(found: torch.Tensor, randoms: torch.Tensor) -> tuple[float, float, float]:
    """The found net's held-out loss minus the random nets' mean, with a 95 % interval over
    the held-out images (paired: every net is scored on the same images). ``found`` holds one
    loss per image, ``randoms`` one row per random net."""
    diff = (found - randoms.mean(dim=0)).double()
    mean = float(diff.mean())
    half = 1.96 * float(diff.std()) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    return mean, mean - half, mean + half


def judge(found: torch.Tensor, randoms: torch.Tensor, ranking: ScorerRanking) -> str:
    """``better`` / ``worse`` / ``indistinguishable`` on a validated scorer, by whether the
    loss difference's interval excludes 0; ``cannot tell`` on a scorer that is not validated."""
    if not ranking.validated:
        return "cannot tell"
    _, low, high = compare_losses(found, randoms)
    return "better" if high < 0 else "worse" if low > 0 else "indistinguishable"


PHASES = {"warmup": "after warm-up", "final": "at the end of the search"}


def verdict_line(judgement: str, mine: NetScore, others: Sequence[NetScore],
                 delta: tuple[float, float, float], ranking: ScorerRanking,
                 table: str) -> str:
    """The verdict in plain words: what the scorer can tell, and the numbers behind it."""
    lats = [o.latency_ms[table] for o in others]
    losses = [o.heldout_loss for o in others]
    spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
    numbers = (f"test loss on the supernet {PHASES[ranking.phase]}: found "
               f"{mine.heldout_loss:.3f}, "
               f"{len(others)} random nets of its band ({min(lats):.3g}-{max(lats):.3g} ms on "
               f"{table}) {statistics.mean(losses):.3f} ± {spread:.3f}, difference "
               f"{delta[0]:+.3f} [{delta[1]:+.3f}, {delta[2]:+.3f}]")
    if math.isnan(ranking.rho_ab):
        reliability = (f"the ranking inside one band of {ranking.scorer} was "
                       f"{ranking.measured}")
    elif ranking.ceiling_too_low:
        reliability = (f"inside one band even two stand-alone trainings of the same nets agree "
                       f"only at Spearman ρ {ranking.rho_ab:+.2f} ({ranking.measured}), so no "
                       "scorer can be validated there at this fidelity")
    else:
        reliability = (f"{ranking.scorer}: corrected ρ {ranking.rho:+.2f} [{ranking.low:+.2f}, "
                       f"{ranking.high:+.2f}] with stand-alone training inside one band, "
                       f"{ranking.measured}")
    if judgement == "cannot tell":
        return ("verdict: cannot tell whether the found net beats random nets of its band "
                f"after training: {reliability}. {numbers[0].upper()}{numbers[1:]}")
    words = {"better": "better than random nets of its band",
             "worse": "worse than random nets of its band",
             "indistinguishable": "indistinguishable from random nets of its band at this "
                                  "fidelity"}[judgement]
    return f"verdict: the found net scores {words} ({numbers}; {reliability})"


def verdict(supernet: Supernet, found: ArchSpec, constraints: Sequence[Constraint], floor: float,
            count: int, splits: Splits, generator: torch.Generator, ranking: ScorerRanking,
            batch_size: int = 64) -> dict[str, Any]:
    """The found net next to ``count`` random nets of its band (drawn uniformly by the exact
    sampler), all scored on ``supernet`` (the one ``ranking.phase`` names). Returns the scores,
    the found net's rank by held-out loss (1 = best), the loss difference with its interval,
    the judgement of :func:`judge` and the one-line ``line``."""
    randoms = random_band_nets(supernet.space, constraints, floor, count, generator)
    mine, mine_losses = _scored(supernet, found, splits, constraints, batch_size, on_test=True)
    scored = [_scored(supernet, spec, splits, constraints, batch_size, on_test=True)
              for spec in randoms]
    others = [s for s, _ in scored]
    rank = 1 + sum(o.heldout_loss < mine.heldout_loss for o in others)
    table = constraints[0].source
    if all(o.arch == mine.arch for o in others):
        judgement, delta = "alone", (0.0, 0.0, 0.0)
        line = (f"verdict: the budget's band holds no net but the found one ({mine.arch}, "
                f"{mine.latency_ms[table]:.3g} ms on {table}): nothing to compare it with")
    else:
        losses = torch.stack([losses for _, losses in scored])
        judgement = judge(mine_losses, losses, ranking)
        delta = compare_losses(mine_losses, losses)
        line = verdict_line(judgement, mine, others, delta, ranking, table)
    return {"found": asdict(mine), "random": [asdict(o) for o in others], "rank": rank,
            "of": count + 1, "judgement": judgement, "loss_difference": list(delta),
            "scorer": asdict(ranking) | {"validated": ranking.validated},
            "line": line}


def scorer_ranking(weight_paths: str, path_prior: str, path_floor: float) -> ScorerRanking:
    """The measured ranking of the verdict's scorer for a search with these weight paths;
    settings whose supernet was never measured get a record that validates nothing."""
    key = ranking_key(weight_paths, path_prior, path_floor)
    return RANKINGS.get(key, ScorerRanking(
        f"the supernet trained with {key} paths", "final", math.nan, math.nan, math.nan,
        math.nan, "not measured with these weight paths"))
