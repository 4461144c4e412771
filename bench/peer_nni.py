"""Peer benchmark: NNI 3.0 ``Proxyless`` vs hwnas, one supernet step, same everything
(``docs/results.md``, "Search: the main job, step cost and memory").

Same space (``--space``, default ``cifar``: 9 layers × 31 candidates), batch size, device (CPU,
``--threads`` threads) and data: synthetic CIFAR-shaped tensors (``randn(N, 3, 32, 32)``, random
labels; a separate "validation" set for the architecture step). Arms, each in its own process
so that peak memory is its own:

- ``nni``:   NNI's real ``Proxyless`` strategy (nas/nni/strategy.py: ``Proxyless.mutate_model``
  + ``mutate_evaluator`` + ``Trainer.fit``). One step = NNI's ``DartsLightningModule
  .training_step``: an architecture step on a val batch, then a weight step on a train batch;
  NNI's ProxylessMixedLayer backward runs every candidate of every layer in both phases.
  Timed by a Lightning callback from ``on_train_batch_start`` to ``on_train_batch_end``.
- ``hwnas``: hwnas's engine (``nas.core.engine.SearchEngine``): one ``weight_step`` (one sampled
  path per layer) + one ``arch_step`` (two sampled paths per layer, gate gradient + latency
  term), weight-shared supernet (the default).
- ``hwnas-separate``: the same with one weight set per candidate (``--weights separate``).
- ``child``: the training step of the heaviest child (every layer ``quad_k7_e4``,
  ``search_spaces.build``): forward, cross-entropy, backward, Adam step. The physical floor.

Both supernet arms carry a latency term over the same stand-in latency matrix (∝ MACs, no
measured table of the space being shipped yet; its values do not change the step's cost):
NNI's ``ExpectationProfilerPenalty`` (``mul``) and hwnas's mul_log loss, budget = half the
uniform expected latency. Per arm: ``--warmup`` steps untimed, then ``--steps`` timed.
Reported: seconds per step (mean and median), train images/s (= batch size / mean step
time; each supernet step also consumes a val batch), step time / child step time, and peak
memory = peak RSS of the process (``ru_maxrss``) minus the RSS just before the first step
(optimiser state and activations; the weights are in that baseline), plus the baseline.

Run:  flock /tmp/hwnas-cpu.lock python bench/peer_nni.py --batch-size 32 --steps 5 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from nni_common import macs_matrix, quiet_lightning
from torch import nn
from torch.utils.data import TensorDataset

from latency_predictors import LatencyMatrix, expected_latency
from search_spaces import LayerSpec, Space, Supernet, build, get_space

ARMS = ("child", "hwnas", "hwnas-separate", "nni")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def synthetic(args: argparse.Namespace, seed: int) -> TensorDataset:
    space = get_space(args.space)
    n = (args.warmup + args.steps) * args.batch_size
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, *space.input, generator=generator),
                         torch.randint(space.num_classes, (n,), generator=generator))


def batches(data: TensorDataset, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = data.tensors
    return [(images[i:i + batch_size], labels[i:i + batch_size])
            for i in range(0, len(images), batch_size)]


def timed_loop(step: Callable[[int], None], args: argparse.Namespace) -> dict:
    """Run ``warmup`` + ``steps`` steps; per-step seconds of the timed ones and memory."""
    baseline = rss_bytes()
    times = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        step(index)
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    return {"step_seconds": times, "rss_before_steps": baseline, "peak_rss": peak_rss_bytes()}


def latency_setup(space: Space) -> tuple[LatencyMatrix, float]:
    """The stand-in latency matrix (∝ MACs) and a budget at half the uniform E[LAT]."""
    matrix = macs_matrix(space)
    uniform = [torch.full((len(space.candidates),), 1 / len(space.candidates))] * len(
        matrix.per_layer)
    return matrix, 0.5 * float(expected_latency(uniform, matrix))


def child_steps(args: argparse.Namespace) -> dict:
    space = get_space(args.space)
    model = build(space.spec([LayerSpec("block", 7, 4, "quad")] * space.num_layers)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = batches(synthetic(args, 1), args.batch_size)

    def step(index: int) -> None:
        images, labels = train[index]
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed_loop(step, args)


def hwnas_steps(args: argparse.Namespace, weights: str = "shared") -> dict:
    """hwnas's engine (``nas.core.engine.SearchEngine``): ``weight_step`` then ``arch_step``.

    Weight step: one sampled path per layer, SGD. Arch step: two sampled paths per layer, gate
    gradient plus autograd through the expected latency (mul_log loss, one device), Adam on α.
    """
    from nas.core.config import SearchConfig
    from nas.core.constraints import Constraint
    from nas.core.engine import SearchEngine

    space = get_space(args.space)
    matrix, budget = latency_setup(space)
    config = SearchConfig((matrix.device,), (budget,), space=args.space,
                          batch_size=args.batch_size, progress=False)
    engine = SearchEngine(Supernet(space, weights), [Constraint(matrix, budget, matrix.device)],
                          config, device=torch.device("cpu"))
    train = batches(synthetic(args, 1), args.batch_size)
    val = batches(synthetic(args, 2), args.batch_size)

    def step(index: int) -> None:
        engine.weight_step(*train[index])
        engine.arch_step([val[index]])

    return timed_loop(step, args)


def nni_steps(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl

    from nas.nni.profiler import latency_penalty, latency_profiler
    from nas.nni.space import nni_model_space
    from nas.nni.strategy import run_proxyless

    quiet_lightning()
    matrix, budget = latency_setup(get_space(args.space))
    penalty = latency_penalty(latency_profiler(nni_model_space(args.space), matrix), budget,
                              aggregate="mul")
    record: dict = {"step_seconds": []}

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == 0:
                record["rss_before_steps"] = rss_bytes()
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if batch_idx >= args.warmup:
                record["step_seconds"].append(time.perf_counter() - self.start)

    run_proxyless(args.space, synthetic(args, 1), synthetic(args, 2),
                  steps=args.warmup + args.steps, batch_size=args.batch_size,
                  penalty=penalty, callbacks=[StepTimer()])
    record["peak_rss"] = peak_rss_bytes()
    return record


def run_arm(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    record = {"child": child_steps, "hwnas": hwnas_steps, "nni": nni_steps,
              "hwnas-separate": lambda a: hwnas_steps(a, "separate")}[args.arm](args)
    times = record["step_seconds"]
    mean = statistics.mean(times)
    return {"arm": args.arm, "steps": len(times), "mean_s": mean,
            "median_s": statistics.median(times), "min_s": min(times),
            "train_images_per_s": args.batch_size / mean,
            "peak_rss_delta_mib": (record["peak_rss"] - record["rss_before_steps"]) / 2**20,
            "rss_before_steps_mib": record["rss_before_steps"] / 2**20,
            "step_seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default="child,hwnas,nni", help=f"subset of {ARMS}")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: one arm
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args)))
        return
    space = get_space(args.space)
    results = {}
    for arm in args.arms.split(","):
        command = [sys.executable, __file__, "--arm", arm, "--space", args.space,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[arm] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{arm:>14}: {results[arm]['mean_s']:.3f} s/step (median "
              f"{results[arm]['median_s']:.3f}), {results[arm]['train_images_per_s']:.1f} "
              f"train img/s, peak RSS delta {results[arm]['peak_rss_delta_mib']:.0f} MiB "
              f"(RSS before steps {results[arm]['rss_before_steps_mib']:.0f} MiB)", flush=True)
    if "child" in results:
        for arm, result in results.items():
            result["ratio_to_child"] = result["mean_s"] / results["child"]["mean_s"]
            print(f"{arm:>14}: {result['ratio_to_child']:.2f}x the heavy child's step time")
    for arm in ("hwnas", "hwnas-separate"):
        if "nni" in results and arm in results:
            speedup = results["nni"]["mean_s"] / results[arm]["mean_s"]
            print(f"{arm} is {speedup:.2f}x NNI Proxyless (step time)")
    report = {"space": args.space, "layers": space.num_layers,
              "candidates": len(space.candidates), "batch_size": args.batch_size,
              "threads": args.threads, "device": "cpu", "torch": torch.__version__,
              "data": "synthetic CIFAR-shaped randn tensors, random labels", "arms": results}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
