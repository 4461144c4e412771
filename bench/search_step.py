"""Supernet search steps vs training one child: time per step and peak memory.

Step kinds:

- ``weight``: ``SearchEngine.weight_step`` (one path per layer sampled from p);
- ``arch``: ``SearchEngine.arch_step`` (two paths per layer, gates, latency loss);
- ``child``: one SGD step of the standalone child of the very paths ``weight`` sampled;
- ``heavy``: one SGD step of the heaviest child (every layer ``quad_k7_e4``).

Times: the four kinds interleaved round by round in one process (medians), so load on a
shared machine hits them alike. Memory: each of weight / arch / heavy in a fresh process.

Goals: weight ≤ 1.3 × child; weight + arch ≤ 2 × heavy; peak memory of a search step
≤ 1.2 × heavy's. Peak memory, two views: ``peak_step_mb``, what the measured steps add over
the memory held before them (activations, gradients; every momentum buffer already exists),
and ``peak_total_mb``, everything over the process before the model is built (weights
included: the supernet holds every candidate's weights, which no one-shot method avoids).
CUDA: ``max_memory_allocated``; CPU: peak RSS sampled every millisecond during the measured
steps. Latencies do not change the cost of a step, so the arch step uses a constant matrix.

    flock /tmp/hwnas-cpu.lock python bench/search_step.py --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import threading
import time

import torch

JOBS = ("weight", "arch", "child", "heavy")


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def _engine(space, device, weights):
    from latency_predictors import LatencyMatrix
    from nas import SearchConfig
    from nas.core.constraints import Constraint
    from nas.core.engine import SearchEngine
    from search_spaces import Supernet

    rows = [[0.0] + [1.0] * (len(space.candidates) - 1) for _ in range(space.num_layers)]
    matrix = LatencyMatrix(space.name, "bench", "estimated", False, 1.0, rows)
    config = SearchConfig(("bench",), (5.0,), space=space.name)
    return SearchEngine(Supernet(space, weights), [Constraint(matrix, 5.0, "bench")], config,
                        device)


def _child_stepper(spec, device):
    from search_spaces import build

    model = build(spec).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


class _PeakRss:
    """Highest RSS seen while active, sampled every millisecond by a background thread.

    ``ru_maxrss`` is a high-water mark since process start, so it cannot isolate a phase that
    peaks lower than an earlier one.
    """

    def __enter__(self) -> _PeakRss:
        self.peak_kb = _rss_kb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.peak_kb = max(self.peak_kb, _rss_kb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _rss_kb())


def _touch_all_candidates(engine, x, y) -> None:
    """One weight step through every candidate index, so every momentum buffer exists.

    The optimiser state then no longer grows during the measured steps: what they add is the
    working memory of a step (activations, gradients), the figure comparable with a child's.
    """
    supernet = engine.supernet
    for c in range(len(supernet.space.candidates)):
        engine.weight_opt.zero_grad(set_to_none=True)
        engine.train_loss(supernet(x, [c] * len(supernet.layers)), y).backward()
        engine.weight_opt.step()


def _heavy_stepper(space, device):
    from search_spaces import LayerSpec

    heavy = space.spec([LayerSpec("block", 7, 4, "quad")] * space.num_layers)
    return _child_stepper(heavy, device)


def _heaviest_stepper(space, device):
    """The child with the most MACs: the costliest candidate in every layer."""
    from search_spaces import build
    from search_spaces.stats import count_macs

    def macs(candidate):
        return count_macs(build(space.spec([candidate] * space.num_layers)), space.input)

    return _child_stepper(space.spec([max(space.candidates, key=macs)] * space.num_layers),
                          device)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _memory_job(job: str, space_name: str, batch: int, steps: int, weights: str,
                queue) -> None:
    """Peak memory of one job in a fresh process (see module doc)."""
    from search_spaces import get_space

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    space = get_space(space_name)
    x = torch.randn(batch, *space.input, device=device)
    y = torch.randint(space.num_classes, (batch,), device=device)
    base = _rss_kb()
    if job in ("heavy", "heaviest"):
        step = (_heavy_stepper if job == "heavy" else _heaviest_stepper)(space, device)
        step(x, y)
    else:
        engine = _engine(space, device, weights)
        _touch_all_candidates(engine, x, y)
        step = (engine.weight_step if job == "weight"
                else lambda x, y: engine.arch_step([(x, y)]))
    _sync(device)
    step_base = _rss_kb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step_base = torch.cuda.memory_allocated() // 1024
    with _PeakRss() as rss:
        for _ in range(steps):
            step(x, y)
        _sync(device)
    peak_kb = (torch.cuda.max_memory_allocated() // 1024 if device.type == "cuda"
               else rss.peak_kb)
    queue.put({"job": job, "peak_step_mb": (peak_kb - step_base) / 1024,
               "peak_total_mb": (peak_kb - (0 if device.type == "cuda" else base)) / 1024})


def _timed(fn, x, y, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn(x, y)
    _sync(device)
    return 1000 * (time.perf_counter() - start)


def time_steps(space_name: str, batch: int, rounds: int, warmup: int,
               weights: str) -> dict[str, float]:
    """Median ms per step; the four kinds interleaved round by round, so load on a shared
    machine hits them alike. ``child`` trains the child of the exact paths the preceding
    ``weight_step`` sampled."""
    from search_spaces import get_space

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    space = get_space(space_name)
    x = torch.randn(batch, *space.input, device=device)
    y = torch.randint(space.num_classes, (batch,), device=device)
    engine, heavy = _engine(space, device, weights), _heavy_stepper(space, device)
    times: dict[str, list[float]] = {job: [] for job in JOBS}
    for i in range(warmup + rounds):
        state = engine.generator.get_state()
        paths = engine.sample_paths(False)
        engine.generator.set_state(state)  # weight_step draws exactly these paths
        child = _child_stepper(space.spec_from_indices(paths), device)
        child(x, y)  # first step of a fresh child allocates its optimiser state
        sample = {"weight": _timed(engine.weight_step, x, y, device),
                  "child": _timed(child, x, y, device),
                  "arch": _timed(lambda x, y: engine.arch_step([(x, y)]), x, y, device),
                  "heavy": _timed(heavy, x, y, device)}
        if i >= warmup:
            for job, ms in sample.items():
                times[job].append(ms)
    return {job: sorted(v)[len(v) // 2] for job, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-steps", type=int, default=5)
    parser.add_argument("--memory-only", action="store_true", help="skip the timing")
    parser.add_argument("--weights", default="shared", help="supernet weights: shared|separate")
    args = parser.parse_args()
    if not args.memory_only:
        ms = time_steps(args.space, args.batch_size, args.rounds, args.warmup, args.weights)
        print(json.dumps({"median_ms": ms, "threads": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available()}), flush=True)
    # glibc raises its mmap threshold after large blocks are freed, after which freed tensors
    # stay in the heap and RSS stops following live memory; a fixed threshold keeps every
    # large tensor mmap'ed, returned to the OS when freed (inherited by the spawned jobs).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    ctx = mp.get_context("spawn")
    mem = {}
    for job in ("weight", "arch", "heavy", "heaviest"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_job, args=(job, args.space, args.batch_size,
                                                     args.memory_steps, args.weights, queue))
        proc.start()
        mem[job] = queue.get()
        proc.join()
        print(json.dumps(mem[job]), flush=True)
    ratios = {} if args.memory_only else {
        "weight_over_child": (ms["weight"] / ms["child"], 1.3),
        "weight_plus_arch_over_heavy": ((ms["weight"] + ms["arch"]) / ms["heavy"], 2.0)}
    for kind, reference in (("step", "heavy"), ("step", "heaviest"), ("total", "heaviest")):
        for job in ("weight", "arch"):
            ratios[f"peak_{kind}_{job}_over_{reference}"] = (
                mem[job][f"peak_{kind}_mb"] / mem[reference][f"peak_{kind}_mb"], 1.2)
    for name, (value, goal) in ratios.items():
        print(f"{name}: {value:.3f} (goal <= {goal}) {'ok' if value <= goal else 'MISSED'}")


if __name__ == "__main__":
    main()
