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
  (:func:`nas.core.sampler.random_band_nets`), all scored on the final supernet on up to
  ``EVAL_IMAGES`` test images, which neither the weights, α nor the pick saw. **The nets are
  the unit**: the found net's loss minus the random nets' mean gets the interval in which a
  net drawn from the band itself would fall 95 % of the time (:func:`compare_nets`), next to
  the share of random nets that score as well. **The pick's own advantage is accounted for**:
  the found net is also compared with an *equal-effort random pick*, the best of as many
  random band nets as the pick scored, chosen by the same scorer on the same split as the pick.
  Whether a supernet score says anything about the nets after training is not assumed: the
  verdict calls the net better, worse or indistinguishable only under a validation record of
  the run's own scope (:mod:`nas.run.rankings`), and otherwise says it cannot tell, why, and
  what would tell.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from scipy.stats import t as student_t
from torch import nn

from nas.core.constraints import Constraint
from nas.core.derive import gumbel_noise, solve
from nas.core.sampler import random_band_nets
from nas.run.batches import Splits
from nas.run.evaluate import recalibrate_batchnorm
from nas.run.rankings import RankingRecord, Scope, nearest_record
from search_spaces import ArchSpec, Supernet

BN_IMAGES = 500
EVAL_IMAGES = 1000
CHECK_NETS = 3  # random band nets bench/verdict_check.py trains next to the found net
CHECK_EPOCHS = 4  # its stand-alone epochs (bench/ranking.py's fidelity)


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



def compare_nets(found: float, randoms: Sequence[float]) -> tuple[float, float, float]:
    """The found net's score minus the random nets' mean, with the 95 % interval over nets in
    which that difference falls when the found net is itself a draw from the band:
    ``± t(n − 1) · sd · √(1 + 1/n)`` (a prediction interval; n random nets)."""
    n = len(randoms)
    diff = found - statistics.mean(randoms)
    if n < 2:
        return diff, -math.inf, math.inf
    half = float(student_t.ppf(0.975, n - 1)) * statistics.stdev(randoms) * math.sqrt(1 + 1 / n)
    return diff, diff - half, diff + half


def supernet_judgement(delta: tuple[float, float, float], pick_gap: float) -> str:
    """What the supernet scores say (losses: lower is better): ``better`` when the found net
    beats the band (interval over nets below 0) and the equal-effort random pick, ``worse``
    when the band beats it, else ``indistinguishable``."""
    if delta[2] < 0 and pick_gap < 0:
        return "better"
    return "worse" if delta[1] > 0 else "indistinguishable"


WORDS = {"better": "better than random nets of its band",
         "worse": "worse than random nets of its band",
         "indistinguishable": "indistinguishable from random nets of its band"}


def why_not(record: RankingRecord | None, differences: list[str], scope: Scope) -> str:
    """Why no record lets the verdict speak about trained nets, in one clause."""
    if record is None:
        return f"no ranking has been measured for any scope, this run's being {scope.describe()}"
    if differences:
        text = (f"no measured ranking covers this run ({scope.describe()}); the nearest, "
                f"{record.measured}, differs in {', '.join(differences)}")
        return text + (f", and would not validate either: {'; '.join(record.objections())}"
                       if not record.validated else "")
    return (f"the ranking measured in this run's scope ({record.measured}) does not validate: "
            f"{'; '.join(record.objections())}")


def verdict_line(judgement: str, scored: str, mine: NetScore, others: Sequence[NetScore],
                 delta: tuple[float, float, float], as_good: int, pick: dict[str, Any],
                 record: RankingRecord | None, differences: list[str], scope: Scope,
                 table: str, check: str) -> str:
    """The verdict in plain words: what it can tell about trained nets, and the numbers."""
    lats = [o.latency_ms[table] for o in others]
    losses = [o.heldout_loss for o in others]
    spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
    numbers = (f"on the final supernet (test loss) it scores {WORDS[scored]}: found "
               f"{mine.heldout_loss:.3f}, {len(others)} random nets of its band "
               f"({min(lats):.3g}-{max(lats):.3g} ms on {table}) {statistics.mean(losses):.3f} "
               f"± {spread:.3f}, difference {delta[0]:+.3f} [{delta[1]:+.3f}, {delta[2]:+.3f}] "
               f"over nets, {as_good} of {len(others)} as good; an equal-effort random pick "
               f"(the best of {pick['of']} by the pick's own scorer) {pick['test_loss']:.3f}")
    if judgement == "cannot tell":
        return (f"verdict: cannot tell whether the found net beats random nets of its band "
                f"after training: {why_not(record, differences, scope)}. {numbers[0].upper()}"
                f"{numbers[1:]}. What would tell: {check}")
    assert record is not None
    return (f"verdict: after training, the found net is likely {WORDS[judgement]} ({numbers}; "
            f"the final supernet ranks this scope's band at corrected ρ {record.rho:+.2f} "
            f"[{record.low:+.2f}, {record.high:+.2f}], {record.measured})")


def _pick_scores(supernet: Supernet, specs: Sequence[ArchSpec], splits: Splits,
                 constraints: Sequence[Constraint], batch_size: int) -> list[float]:
    """Each net's held-out loss on the architecture split: the final pick's own scorer."""
    return [score_net(supernet, spec, splits, constraints, batch_size).heldout_loss
            for spec in specs]


def verdict(supernet: Supernet, found: ArchSpec, constraints: Sequence[Constraint], floor: float,
            count: int, pick_count: int, splits: Splits, generator: torch.Generator,
            scope: Scope, check: str, batch_size: int = 64,
            records: tuple[RankingRecord, ...] | None = None) -> dict[str, Any]:
    """The found net next to ``count`` random nets of its band (drawn uniformly by the exact
    sampler), all scored on the final ``supernet`` on the test split, and next to the
    equal-effort random pick: the best by architecture-split loss of the first
    ``pick_count`` of them (at least 1). Returns the scores, the found net's rank (1 = best),
    the difference over nets, the supernet's judgement, the verdict about trained nets
    (better / worse / indistinguishable under a validating record of ``scope``, else
    ``cannot tell``; ``alone`` when the band holds no other net), the record it read and the
    one-line ``line``, whose last clause is ``check``: what would tell."""
    supernet = supernet.eval()
    randoms = random_band_nets(supernet.space, constraints, floor, count, generator)
    mine = _scored(supernet, found, splits, constraints, batch_size, on_test=True)[0]
    others = [_scored(supernet, spec, splits, constraints, batch_size, on_test=True)[0]
              for spec in randoms]
    rank = 1 + sum(o.heldout_loss < mine.heldout_loss for o in others)
    table = constraints[0].source
    record, differences = nearest_record(scope, records)
    base = {"found": asdict(mine), "random": [asdict(o) for o in others], "rank": rank,
            "of": count + 1, "scope": asdict(scope),
            "record": None if record is None else record.to_dict(),
            "record_differences": differences}
    if all(o.arch == mine.arch for o in others):
        return base | {"judgement": "alone", "line": (
            f"verdict: the budget's band holds no net but the found one ({mine.arch}, "
            f"{mine.latency_ms[table]:.3g} ms on {table}): nothing to compare it with")}
    picked = randoms[:max(1, min(pick_count, len(randoms)))]
    by_pick = _pick_scores(supernet, picked, splits, constraints, batch_size)
    best = min(range(len(picked)), key=by_pick.__getitem__)
    pick = {"arch": others[best].arch, "of": len(picked),
            "test_loss": others[best].heldout_loss}
    delta = compare_nets(mine.heldout_loss, [o.heldout_loss for o in others])
    scored = supernet_judgement(delta, mine.heldout_loss - pick["test_loss"])
    speaks = record is not None and not differences and record.validated
    judgement = scored if speaks else "cannot tell"
    as_good = sum(o.heldout_loss <= mine.heldout_loss for o in others)
    line = verdict_line(judgement, scored, mine, others, delta, as_good, pick, record,
                        differences, scope, table, check)
    return base | {"judgement": judgement, "supernet_judgement": scored,
                   "loss_difference": list(delta), "as_good": as_good, "random_pick": pick,
                   "line": line}


def check_command(run_dir: Path, nets: int, minutes: float | None) -> str:
    """What would tell, in one clause: training the found net and ``nets`` of the verdict's
    random nets from scratch (``bench/verdict_check.py``), with its estimated cost."""
    cost = (f" (about {max(1.0, minutes):.0f} min at this run's speed)" if minutes is not None
            else "")
    return (f"`python bench/verdict_check.py {run_dir} --nets {nets}` trains the found net and "
            f"{nets} of these random nets from scratch and compares them, nets as the unit"
            f"{cost}")
