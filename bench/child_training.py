"""Child-training throughput against the bound ONNX Runtime inference gives.

A training step costs about 3 inferences (forward, backward for activations and weights), so a
net that onnxruntime infers in ``t`` ms per image on one thread trains at most at about
``threads × 1000 / (3 t)`` images/s. This script measures the net's batch-1 inference
(onnxruntime CPU EP, 1 thread, fastest of 6 passes) and then its fine-tuning steps (the
search's recipe: SGD nesterov, label smoothing, on the main job's Fashion-MNIST batches with
augmentation) at several batch sizes, with and without ``channels_last``:

    python bench/child_training.py --budget-ms 0.6 --threads 2 --batches 64,128,256

The net is ``--arch`` or the first spread net of the space whose prediction on ``--table``
(adapted to this host, as the main job's search uses it) lies in [0.9, 1] × ``--budget-ms``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from latency_predictors import load_table, predict_latency
from latency_predictors.measure.adapt import host_true_table
from latency_predictors.measure.networks import backend_for, measure_archs, spread_sample
from nas.run.batches import Batches, channel_stats
from nas.run.readers import load_dataset
from search_spaces import build, get_space, read_arch


def pick_arch(space_name: str, table_name: str, budget_ms: float):
    space = get_space(space_name)
    hosted = host_true_table(load_table(table_name), [space_name])
    if hosted.note:
        print(hosted.note)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5000):
        spec = spread_sample(space, generator)
        if 0.9 * budget_ms <= predict_latency(spec, hosted.table).total_ms <= budget_ms:
            return spec, hosted.table
    raise SystemExit(f"no spread net of {space_name} within [0.9, 1] x {budget_ms} ms")


def train_rate(spec, data: Batches, batch: int, channels_last: bool, steps: int) -> float:
    """Images per second of ``steps`` fine-tuning steps (after 3 untimed ones)."""
    torch.manual_seed(0)
    model = build(spec).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=4e-5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    batches = iter(())
    start = 0.0
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        x_y = next(batches, None)
        if x_y is None:  # a new epoch
            batches = data.epoch(batch, generator, augment=True)
            x_y = next(batches)
        x, y = x_y
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", help="ArchSpec JSON file or RUN_DIR (default: picked)")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--table", default="cpu")
    parser.add_argument("--budget-ms", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="64,128,256")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.arch:
        spec, table = read_arch(args.arch), load_table(args.table)
    else:
        spec, table = pick_arch(args.space, args.table, args.budget_ms)
    torch.set_num_threads(1)
    inference = measure_archs([spec], backend_for(load_table(args.table)), progress=False)
    infer_ms = inference.raw_ms[0]
    bound = args.threads * 1000 / (3 * infer_ms)
    print(f"net {spec.to_string()}: predicted {predict_latency(spec, table).total_ms:.3f} ms, "
          f"onnxruntime batch-1 inference {infer_ms:.3f} ms (1 thread) -> training bound "
          f"~{bound:.0f} images/s on {args.threads} threads (3 x inference)")
    torch.set_num_threads(args.threads)
    space = get_space(spec.space)
    raw = load_dataset("fashion-mnist", limit=3000, shape=space.input,
                       classes=space.num_classes)
    mean, std = channel_stats(raw.train_x, space.input)
    data = Batches(raw.train_x, raw.train_y, space.input, torch.device("cpu"), mean, std)
    print("\n| batch | channels_last | images/s | share of the bound |\n|---:|---|---:|---:|")
    for batch in [int(b) for b in args.batches.split(",")]:
        for channels_last in (False, True):
            rate = train_rate(spec, data, batch, channels_last, args.steps)
            print(f"| {batch} | {'yes' if channels_last else 'no'} | {rate:.0f} | "
                  f"{100 * rate / bound:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
