"""Does NNI 3.0's Proxyless latency penalty move the architecture logits? A controlled test.

NNI's ``DartsLightningModule.training_step`` adds ``ExpectationProfilerPenalty(loss,
self.export_probs())`` to the architecture-step loss, and ``export_probs`` returns the softmax
probabilities as Python floats (``.cpu().tolist()``). If so, the penalty is a constant and its
gradient w.r.t. α is zero. Arms, all with the same seed, data and sampling:

- ``off``          no penalty
- ``off-repeat``   no penalty again (shows that two identical runs give identical α)
- ``add``          NNI penalty, ``loss + scale·(E[LAT]/T − 1)``
- ``mul``          NNI penalty, ``loss · (E[LAT]/T)^scale``
- ``add-tensor``   control: NNI's penalty again, but ``export_probs`` patched to return the
                   softmax as tensors, so the expectation is differentiable

Max |Δα| of each arm vs ``off`` after N steps answers the question; ``add-tensor`` shows that
the test would see an effect if there were one. Synthetic CIFAR-shaped data (random tensors),
a small version of the hwnas interaction space, and latencies ∝ MACs of each candidate
(a stand-in table; which table is used does not matter for whether a gradient flows).

Run:  flock /tmp/hwnas-cpu.lock python bench/nni_penalty.py --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator

import torch
from nni_common import macs_matrix, quiet_lightning
from torch.utils.data import TensorDataset

from latency_predictors import expected_latency
from nas.nni.profiler import latency_penalty, latency_profiler
from nas.nni.space import nni_model_space
from nas.nni.strategy import ProxylessRun, run_proxyless
from search_spaces import SPACES, LayerSpec, Space, register_space

SMALL = Space("nni-penalty-small", input=(3, 16, 16), stem="conv3x3", width=8, depths=(1, 1, 1),
              candidates=(LayerSpec("skip"), LayerSpec("block", 3, 2, "sum"),
                          LayerSpec("block", 3, 2, "star"), LayerSpec("block", 3, 2, "quad"),
                          LayerSpec("block", 7, 4, "quad"), LayerSpec("block", 5, 2, "rbf")),
              branches=2)


@contextlib.contextmanager
def tensor_export_probs() -> Iterator[None]:
    """Patch NNI's ``export_probs`` to return differentiable tensors (the control arm)."""
    from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
    from nni.nas.oneshot.pytorch.supermodule.proxyless import ProxylessMixedLayer

    original = BaseOneShotLightningModule.export_probs

    def export_probs(self: BaseOneShotLightningModule) -> dict:
        return {m.label: dict(zip(m.names, m._softmax(m._arch_alpha), strict=True))
                for m in self.supernet_modules() if isinstance(m, ProxylessMixedLayer)}

    BaseOneShotLightningModule.export_probs = export_probs
    try:
        yield
    finally:
        BaseOneShotLightningModule.export_probs = original


def recording(penalty, seen: dict):
    """Wrap ``penalty.forward`` to record what the first call returns (types, grad_fn)."""
    forward = penalty.forward

    def wrapped(loss, sample):
        loss_new, details = forward(loss, sample)
        if not seen:
            term = details["normalized_penalty"]
            seen.update(penalty_type=type(details["penalty"]).__name__,
                        normalized_type=type(term).__name__,
                        requires_grad=bool(getattr(term, "requires_grad", False)),
                        grad_fn=str(getattr(term, "grad_fn", None)),
                        probs_value_type=type(next(iter(next(iter(sample.values())).values())))
                        .__name__)
        return loss_new, details

    penalty.forward = wrapped
    return penalty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="penalty scale (λ or β)")
    parser.add_argument("--arc-lr", type=float, default=1e-2)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    quiet_lightning()
    torch.set_num_threads(1)  # bitwise-reproducible CPU kernels across arms
    if SMALL.name not in SPACES:
        register_space(SMALL)
    matrix = macs_matrix(SMALL)
    probs = [torch.full((len(SMALL.candidates),), 1 / len(SMALL.candidates))] * SMALL.num_layers
    target = 0.5 * float(expected_latency(probs, matrix))  # a budget below the uniform E[LAT]

    generator = torch.Generator().manual_seed(args.seed)
    n = args.steps * args.batch_size
    data = [TensorDataset(torch.randn(n, *SMALL.input, generator=generator),
                          torch.randint(SMALL.num_classes, (n,), generator=generator))
            for _ in range(2)]

    def arm(aggregate: str | None, seen: dict) -> tuple[ProxylessRun, float]:
        penalty = None
        if aggregate is not None:
            profiler = latency_profiler(nni_model_space(SMALL), matrix)
            penalty = recording(latency_penalty(profiler, target, args.scale,
                                                aggregate=aggregate), seen)
        start = time.perf_counter()
        run = run_proxyless(SMALL, *data, steps=args.steps, batch_size=args.batch_size,
                            penalty=penalty, arc_learning_rate=args.arc_lr, seed=args.seed)
        return run, time.perf_counter() - start

    arms: dict[str, tuple[ProxylessRun, float]] = {}
    seen: dict[str, dict] = {}
    for name, aggregate in (("off", None), ("off-repeat", None), ("add", "add"), ("mul", "mul")):
        seen[name] = {}
        arms[name] = arm(aggregate, seen[name])
    seen["add-tensor"] = {}
    with tensor_export_probs():
        arms["add-tensor"] = arm("add", seen["add-tensor"])

    base = arms["off"][0].alphas()
    results = {}
    for name, (run, seconds) in arms.items():
        alphas = run.alphas()
        delta = max(float((alphas[k] - base[k]).abs().max()) for k in base)
        probs = [torch.softmax(alphas[k].double(), 0) for k in alphas]
        results[name] = {"max_abs_delta_alpha_vs_off": delta,
                         "expected_latency_ms": float(expected_latency(probs, matrix)),
                         "argmax": run.derive().to_string(),
                         "nni_export": run.nni_export().to_string(), "seconds": round(seconds, 2),
                         "penalty_call": seen[name] or None}
    report = {"space": SMALL.name, "candidates": list(SMALL.tokens), "layers": SMALL.num_layers,
              "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
              "arc_lr": args.arc_lr, "scale": args.scale, "target_ms": target,
              "max_abs_alpha_off": max(float(a.abs().max()) for a in base.values()),
              "data": "synthetic CIFAR-shaped random tensors", "arms": results}
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
