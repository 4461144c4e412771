"""``search(config) -> RunResult``: the ProxylessNAS search loop behind ``hwnas search``.

Warm-up epochs train weights on uniformly sampled paths; search epochs alternate weight steps
with an architecture step (held-out split) every ``arch_every`` weight steps. After every
epoch, and within an epoch every ``checkpoint_minutes``, a checkpoint holds the supernet, both
optimisers, the path-sampling and data-order generators and the torch/numpy/python RNG states
(mid-epoch: also the steps done, see :func:`_run_epoch`), so a resumed single-process run
reproduces an uninterrupted one exactly. A finished run's checkpoint keeps no optimiser state
(:func:`nas.run.checkpoint.slim_checkpoint`); ``--resume`` of a finished run redoes its end
(derivation, verdict, reports) from it. The final architecture comes from the exact knapsack
(:mod:`nas.core.derive`), so the predicted latency meets every budget. Under ``torchrun`` the
batches are split over the processes (:mod:`nas.run.distributed`, :class:`nas.core.parallel.Group`)
and rank 0 writes the run.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_text, remove_stale_temporaries
from nas.core.config import SearchConfig
from nas.core.constraints import Constraint, load_constraints
from nas.core.derive import check_feasible, derive_arch
from nas.core.engine import SearchEngine
from nas.core.parallel import Group
from nas.run import checkpoint, distributed, report
from nas.run.batches import Batches, Splits, prepare_data
from nas.run.evaluate import INHERITED_BN_IMAGES, recalibrate_batchnorm, top1_accuracy
from nas.run.rankings import Scope, weight_paths_key
from nas.run.readers import load_dataset
from nas.run.train import Recipe, train_child
from nas.run.trained import MODEL_FILE, save_finetuned
from nas.run.verdict import (
    CHECK_EPOCHS,
    CHECK_NETS,
    check_command,
    score_net,
    select_by_evaluation,
    verdict,
)
from search_spaces import ArchSpec, Supernet, get_space


@dataclass(frozen=True)
class RunResult:
    """What a finished search produced (all of it is also in ``run_dir``)."""

    run_dir: Path
    spec: ArchSpec
    latency_ms: dict[str, float]  # predicted latency of ``spec`` per table
    budgets_ms: dict[str, float]
    test_accuracy: float  # ``spec`` with the supernet's weights, BatchNorm re-estimated
    estimated_tables: list[str]
    retrained_accuracy: float | None = None  # after ``config.retrain_epochs`` of fine-tuning
    verdict: dict[str, Any] | None = None  # the found net against random band nets (verdict.py)
    calibration: dict[str, Any] | None = None  # --calibrate-budget: the chosen loss strength


def _check_run_dir(config: SearchConfig) -> tuple[Path, bool]:
    """The run directory and whether there is a checkpoint to resume from. ``--resume`` on a
    run killed before its first checkpoint starts it afresh (and says so); it also deletes the
    partial files a kill in the middle of a write left behind."""
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise HwnasError(f"--out {run_dir} is a file, not a run directory; choose another --out")
    if config.resume:
        remove_stale_temporaries(run_dir)
    exists = (run_dir / checkpoint.CHECKPOINT).exists() or (run_dir / "summary.json").exists()
    if exists and not config.resume:
        raise HwnasError(f"{run_dir} already holds a run; pass --resume to continue it or "
                         "choose another --out")
    if config.resume and not exists:
        if config.progress:
            tqdm.write(f"--resume: {run_dir} holds no checkpoint yet (killed in its first "
                       "epoch?); starting it afresh", file=sys.stderr)
        return run_dir, False
    return run_dir, config.resume


def _cycle(batches: Batches, batch_size: int, generator: torch.Generator) -> Iterator:
    while True:
        yield from batches.epoch(min(batch_size, len(batches)), generator, augment=False)


SaveProgress = Callable[[dict[str, Any]], None]


def _run_epoch(engine: SearchEngine, splits: Splits, epoch: int, data_gen: torch.Generator,
               partial: dict[str, Any] | None = None,
               save_progress: SaveProgress | None = None) -> dict[str, float]:
    """Train one epoch; every ``checkpoint_minutes`` hand ``save_progress`` the epoch's progress.

    The progress (``partial``) is the steps done, their losses and the data-order generator's
    state at the epoch's start. Resuming from it replays the epoch's data pipeline (order and
    augmentation draws, no training) up to that step, so the generator and every batch after it
    are those of an uninterrupted run; weights, optimisers, α and RNG states come from the
    checkpoint itself.
    """
    config = engine.config
    warm = epoch < config.warmup_epochs
    batch_size = min(config.batch_size, len(splits.weight))
    steps = len(splits.weight) // batch_size
    phase_epoch, phase_len = ((epoch, config.warmup_epochs) if warm
                              else (epoch - config.warmup_epochs, config.epochs))
    start = time.perf_counter()
    partial = partial or {"step": 0, "weight_losses": [], "arch_losses": [], "seconds": 0.0,
                          "data_start": data_gen.get_state()}
    data_gen.set_state(partial["data_start"])
    weight_losses, arch_losses = list(partial["weight_losses"]), list(partial["arch_losses"])
    held_out = _cycle(splits.arch, batch_size, data_gen)
    bar = tqdm(total=steps, initial=partial["step"], leave=False, disable=not config.progress,
               desc=f"epoch {epoch + 1}/{config.total_epochs}{' (warm-up)' if warm else ''}")
    last_save = time.monotonic()
    for step, (x, y) in enumerate(splits.weight.epoch(batch_size, data_gen, augment=True)):
        arch_batches = ([next(held_out) for _ in range(config.arch_batches)]
                        if not warm and (step + 1) % config.arch_every == 0 else None)
        if step < partial["step"]:
            continue  # replayed: the data pipeline only
        engine.set_lr((phase_epoch * steps + step) / (phase_len * steps))
        weight_losses.append(engine.weight_step(
            x, y, uniform=warm or config.weight_paths == "uniform"))  # budget paths ignore it
        if arch_batches is not None:
            arch_losses.append(engine.arch_step(arch_batches))
        bar.update()
        if save_progress and step + 1 < steps and (
                time.monotonic() - last_save >= 60 * config.checkpoint_minutes):
            save_progress({"step": step + 1, "weight_losses": weight_losses,
                           "arch_losses": arch_losses, "data_start": partial["data_start"],
                           "seconds": partial["seconds"] + time.perf_counter() - start})
            last_save = time.monotonic()
    bar.close()
    return {"weight_loss": float(np.mean(weight_losses)) if weight_losses else math.nan,
            "arch_loss": float(np.mean(arch_losses)) if arch_losses else None,
            "seconds": partial["seconds"] + time.perf_counter() - start}


def _epoch_row(engine: SearchEngine, splits: Splits, epoch: int, losses: dict[str, float],
               seconds: float) -> dict[str, Any]:
    """One metrics.csv row. ``heldout_acc`` and ``heldout_loss`` are the budget-derived net's
    on the held-out split with the supernet's weights and its own BatchNorm statistics
    (:func:`nas.run.verdict.score_net`; the supernet's running statistics mix every path's and
    put its accuracy at chance). ``entropy`` is the mean entropy of p over layers (nats;
    uniform is log K); ``derived_prob`` the mean probability of the derived net's choice per
    layer: both say how decisive α has become."""
    argmax = [engine.supernet.space.candidate_index(layer)
              for layer in engine.supernet.derive().layers]
    derived = derive_arch(engine.supernet, engine.constraints, engine.config.budget_floor)
    chosen = [engine.supernet.space.candidate_index(layer) for layer in derived.layers]
    probs = engine.probs().detach().double()
    entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum(dim=1).mean())
    heldout = score_net(engine.supernet, derived, splits, engine.constraints,
                        min(engine.config.batch_size, len(splits.weight)))
    row: dict[str, Any] = {"epoch": epoch + 1, "phase": "warmup" if epoch <
                           engine.config.warmup_epochs else "search", **losses,
                           "heldout_acc": heldout.heldout_acc,
                           "heldout_loss": heldout.heldout_loss,
                           "lr": engine.weight_opt.param_groups[0]["lr"],
                           "arch_lr": engine.arch_opt.param_groups[0]["lr"],
                           "entropy": entropy,
                           "derived_prob": float(probs[range(len(chosen)), chosen].mean()),
                           "derived": derived.to_string(), "seconds": seconds}
    with torch.no_grad():
        for c, value in zip(engine.constraints, engine.expected_latencies(), strict=True):
            row[report.latency_column("expected", c.source)] = float(value)
            row[report.latency_column("argmax", c.source)] = c.matrix.total(argmax)
            row[report.latency_column("derived", c.source)] = c.matrix.total(chosen)
    return row


def _epoch_line(row: dict[str, Any]) -> str:
    latency = ", ".join(f"E[LAT] {table} {ms:.4g} ms"
                        for table, ms in report.latency_columns(row, "expected").items())
    arch = ("no architecture steps in warm-up" if row["arch_loss"] is None
            else f"arch loss {row['arch_loss']:.4f}")
    return (f"epoch {row['epoch']} ({row['phase']}): weight loss {row['weight_loss']:.4f}, "
            f"{arch}, derived net's held-out acc {row['heldout_acc']:.4f}, {latency}, "
            f"p entropy {row['entropy']:.3f}, derived-path p {row['derived_prob']:.3f}, "
            f"{row['seconds']:.1f} s")


def _checkpoint(engine: SearchEngine, epoch: int, history: list, probs: list,
                data_gen: torch.Generator) -> dict[str, Any]:
    return {"engine": engine.state_dict(), "epoch": epoch, "history": history, "probs": probs,
            "data_generator": data_gen.get_state(), "rng": checkpoint.rng_states(),
            "config": engine.config.identity()}


LOSS_FIELDS = ("loss", "loss_strength")  # unused by warm-up epochs (no architecture steps)


def _restore(engine: SearchEngine, state: dict[str, Any], data_gen: torch.Generator) -> None:
    """Load a checkpoint of the same run. A checkpoint taken during warm-up may continue with
    another latency loss or strength (warm-up never uses them; budget calibration relies on it)."""
    begun = state["epoch"] + ("partial_epoch" in state)  # epochs with at least one step done
    ignore = LOSS_FIELDS if begun <= engine.config.warmup_epochs else ()
    diff = sorted(k for k, v in engine.config.identity().items()
                  if k not in ignore and state["config"].get(k) != v)
    if diff:
        raise HwnasError(f"--resume: the run was started with different settings ({diff}); "
                         "repeat the original options")
    if checkpoint.is_finished(state):  # no epoch left to train (epochs are in the identity)
        engine.supernet.load_state_dict(state["engine"]["supernet"])
        engine.generator.set_state(state["engine"]["generator"])
    else:
        engine.load_state_dict(state["engine"])
    data_gen.set_state(state["data_generator"])
    checkpoint.set_rng_states(state["rng"])


def search(config: SearchConfig, constraints: Sequence[Constraint] | None = None, *,
           stop_after_epoch: int | None = None, data: Splits | None = None) -> RunResult | None:
    """Run (or resume) a ProxylessNAS search under latency budgets and derive its net.

    Parameters
    ----------
    config
        Everything that determines the run (space, data, budgets, epochs, seed, ``out``).
    constraints
        One :class:`nas.core.constraints.Constraint` per device: a latency matrix of the
        space and its budget. Default: the tables and budgets of ``config``, loaded and made
        true to this host by :func:`nas.core.constraints.load_constraints`.
    stop_after_epoch
        Stop after this epoch as if killed (the checkpoint is kept; returns None).
    data
        The weight, architecture and test splits. Default: ``prepare_data(config)``; a
        benchmark passes its own seeded splits.

    Returns
    -------
    RunResult or None
        The derived architecture, its predicted latency per table, its accuracies and the
        verdict, all also written to ``config.out``. None on ranks other than 0 under
        ``torchrun`` and with ``stop_after_epoch``.

    Raises
    ------
    HwnasError
        For every user-input problem (tables, budgets, infeasibility, data, run directory,
        checkpoint), before anything is written; for a NaN loss mid-run, with the last good
        checkpoint kept.

    Examples
    --------
    >>> from nas import SearchConfig, search
    >>> result = search(SearchConfig(("vpu",), (30.0,), space="imagenet"))  # doctest: +SKIP
    >>> result.latency_ms["vpu"] <= 30.0  # doctest: +SKIP
    True
    """
    group, created = distributed.environment_group()
    try:
        return _search(config, constraints, group, stop_after_epoch, data)
    finally:
        if created:
            distributed.close()


def _search(config: SearchConfig, constraints: Sequence[Constraint] | None,
            group: Group, stop_after_epoch: int | None,
            data: Splits | None = None) -> RunResult | None:
    space = get_space(config.space)
    if constraints is None:
        constraints = load_constraints(space, config.devices, config.budgets_ms,
                                       confidence=config.confidence)
    check_feasible(space, constraints)
    run_dir, resume = _check_run_dir(config)
    state = checkpoint.load_checkpoint(run_dir) if resume else None
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    if not group.is_main:
        config = dataclasses.replace(config, progress=False)
    engine = SearchEngine(Supernet(space, config.weights, config.choices), constraints, config,
                          group.device(), group)
    splits = data if data is not None else prepare_data(config, engine.device)
    engine.set_arch_lr(config.arch_lr_for(len(splits.weight) // min(config.batch_size,
                                                                    len(splits.weight))))
    data_gen = torch.Generator().manual_seed(config.seed + 1)
    partial = state.get("partial_epoch") if state else None
    if state is not None:
        _restore(engine, state, data_gen)
        if config.progress:
            where = (f"in epoch {state['epoch'] + 1} after step {partial['step']}" if partial
                     else f"after epoch {state['epoch']}")
            tqdm.write(f"resuming {run_dir} {where} of {config.total_epochs}", file=sys.stderr)
    group.broadcast(engine.supernet)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    history = list(state["history"]) if state else []
    probs = list(state["probs"]) if state else []
    for epoch in range(state["epoch"] if state else 0, config.total_epochs):
        def save_partial(progress: dict[str, Any], epoch: int = epoch) -> None:
            checkpoint.save_checkpoint(run_dir, {**_checkpoint(engine, epoch, history, probs,
                                                           data_gen), "partial_epoch": progress})

        losses = _run_epoch(engine, splits, epoch, data_gen, partial,
                            save_partial if group.is_main else None)
        partial = None
        seconds = losses.pop("seconds")
        group.check_identical(list(engine.supernet.parameters()), "weights and α")
        group.average([b for b in engine.supernet.buffers() if b.is_floating_point()])
        if group.is_main:
            history.append(_epoch_row(engine, splits, epoch, losses, seconds))
            if config.progress:
                tqdm.write(_epoch_line(history[-1]), file=sys.stderr)
            probs.append(engine.probs().tolist())
            if epoch + 1 == config.warmup_epochs and config.keep_warmup:  # for bench/ranking.py
                checkpoint.save_warmup(run_dir, engine.supernet)
            checkpoint.save_checkpoint(run_dir, _checkpoint(engine, epoch + 1, history, probs,
                                                            data_gen))
            report.write_metrics(run_dir, history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            return None
    return _finish(engine, splits, run_dir, history, probs) if group.is_main else None


def inherited_accuracy(engine: SearchEngine, splits: Splits, spec: ArchSpec) -> float:
    """Test accuracy of ``spec``'s child with the supernet's weights and its BatchNorm
    statistics re-estimated on training data (the supernet's running statistics mix every
    path's; OFA §3.2)."""
    child = engine.supernet.child(spec).to(engine.device)
    batch = min(engine.config.batch_size, len(splits.weight))
    recalibrate_batchnorm(child, splits.weight.in_order(batch, limit=INHERITED_BN_IMAGES))
    return top1_accuracy(child, splits.test.in_order())


def finetune_accuracy(engine: SearchEngine, splits: Splits, spec: ArchSpec,
                      save_to: Path | None = None) -> float:
    """Test accuracy of ``spec``'s child after ``retrain_epochs`` of fine-tuning from its
    inherited weights (the search's weight recipe, cosine lr) on the weight split, or on the
    first ``retrain_images`` training images (the test split stays the search's); the
    fine-tuned child is saved to ``save_to`` when given."""
    config = engine.config
    child = engine.supernet.child(spec).to(engine.device)
    recipe = Recipe(config.retrain_epochs, config.batch_size, config.weight_lr,
                    config.weight_decay, config.seed)
    train = splits.weight
    if config.retrain_images is not None:  # the same seeded order, so a superset of the search's
        space = engine.supernet.space
        data = load_dataset(config.dataset, limit=config.retrain_images, shape=space.input,
                            classes=space.num_classes)
        train = Batches(data.train_x, data.train_y, space.input, engine.device,
                        splits.weight.mean.flatten(), splits.weight.std.flatten())
    train_child(child, train, recipe, config.progress, desc="fine-tune")
    accuracy = top1_accuracy(child.eval(), splits.test.in_order())
    if save_to is not None:
        save_finetuned(save_to, spec, child.cpu(), accuracy, recipe, config.dataset, len(train))
    return accuracy


def _finish(engine: SearchEngine, splits: Splits, run_dir: Path, history: list,
            probs: list) -> RunResult:
    space, constraints, config = engine.supernet.space, engine.constraints, engine.config
    spec = derive_arch(engine.supernet, engine.constraints, engine.config.budget_floor)
    batch = min(config.batch_size, len(splits.weight))
    if config.select_top > 1:
        spec, _ = select_by_evaluation(engine.supernet, constraints, config.budget_floor,
                                       config.select_top, splits,
                                       torch.Generator().manual_seed(config.seed + 2), batch)
    judged = _verdict(engine, splits, run_dir, spec, batch, history)
    accuracy = inherited_accuracy(engine, splits, spec)
    retrained = (finetune_accuracy(engine, splits, spec, run_dir / MODEL_FILE)
                 if config.retrain_epochs else None)
    breakdown = report.latency_breakdown(spec, constraints)
    atomic_write_text(run_dir / "arch.json", spec.to_json() + "\n")
    report.write_latency(run_dir, breakdown)
    report.write_plots(run_dir, history, probs, space.tokens, constraints)
    if judged is not None:
        report.write_verdict_plot(run_dir, judged)
    checkpoint.slim_checkpoint(run_dir)  # before summary.json: a finished run's is slim
    result = RunResult(run_dir, spec, {b["table"]: b["total_ms"] for b in breakdown},
                       {c.source: c.budget_asked_ms for c in constraints}, accuracy,
                       [c.source for c in constraints if c.estimated], retrained, judged)
    report.write_summary(run_dir, {
        "arch": spec.to_string(), "space": space.name, "seed": config.seed,
        "config": config.to_dict(), "tables": [c.describe() for c in constraints],
        "predicted_latency_ms": result.latency_ms, "budgets_ms": result.budgets_ms,
        "test_accuracy_inherited": accuracy, "test_accuracy_finetuned": retrained,
        "epochs": len(history), "device": str(engine.device),
        "search_seconds": sum(r["seconds"] for r in history), "verdict": judged})
    return result


def _verdict(engine: SearchEngine, splits: Splits, run_dir: Path, spec: ArchSpec,
             batch: int, history: list) -> dict[str, Any] | None:
    """The verdict of :mod:`nas.run.verdict` on the final supernet, in the run's own scope
    (None with ``verdict_nets`` 0)."""
    config = engine.config
    if not config.verdict_nets:
        return None
    limit = engine.constraints[0]
    fastest, slowest = limit.matrix.fastest_ms(), limit.matrix.slowest_ms()
    scope = Scope(config.space, config.dataset, config.data_limit, config.warmup_epochs,
                  config.epochs, weight_paths_key(config.weight_paths, config.path_prior,
                                                  config.path_floor), limit.source,
                  (limit.budget_ms - fastest) / max(slowest - fastest, 1e-12))
    epoch_seconds = history[0]["seconds"] if history else None
    minutes = (None if epoch_seconds is None
               else (CHECK_NETS + 1) * CHECK_EPOCHS * epoch_seconds / 60)
    nets = min(CHECK_NETS, config.verdict_nets)
    return verdict(engine.supernet, spec, engine.constraints, config.budget_floor,
                   config.verdict_nets, config.select_top, splits,
                   torch.Generator().manual_seed(config.seed + 3), scope,
                   check_command(run_dir, nets, minutes), batch)
