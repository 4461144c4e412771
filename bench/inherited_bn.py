"""Why inherited accuracy looked low: a searched net's test accuracy with the supernet's weights,
evaluated (a) on the supernet path with the supernet's BatchNorm statistics, which mix every
path's, and (b) as a standalone child with its BatchNorm statistics re-estimated on training
data (what ``hwnas search`` reports since the weight-sharing change).

    python bench/inherited_bn.py runs/quality/fashion-mnist/seed*/shared-search
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas import SearchConfig
from nas.core.parallel import default_device
from nas.run.batches import prepare_data
from nas.run.checkpoint import load_checkpoint
from nas.run.evaluate import recalibrate_batchnorm, top1_accuracy
from search_spaces import ArchSpec, Supernet, get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished search run directories")
    args = parser.parse_args()
    print("| run | supernet path, supernet BN | child, BN re-estimated |\n|---|---:|---:|")
    for run in map(Path, args.runs):
        fields = json.loads((run / "summary.json").read_text())["config"]
        config = SearchConfig(**{**fields, "devices": tuple(fields["devices"]),
                                 "budgets_ms": tuple(fields["budgets_ms"]), "progress": False})
        supernet = Supernet(get_space(config.space), config.weights)
        supernet.load_state_dict(load_checkpoint(run)["engine"]["supernet"])
        spec = ArchSpec.from_json((run / "arch.json").read_text())
        paths = [supernet.space.candidate_index(layer) for layer in spec.layers]
        splits = prepare_data(config, default_device())
        supernet.eval()
        path_acc = top1_accuracy(lambda x, net=supernet, p=paths: net(x, p),
                                 splits.test.in_order())
        child = recalibrate_batchnorm(supernet.child(spec),
                                      splits.weight.in_order(config.batch_size, limit=2000))
        child_acc = top1_accuracy(child, splits.test.in_order())
        print(f"| {run} | {path_acc:.4f} | {child_acc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
