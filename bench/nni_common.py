"""Shared by the NNI benchmarks: a stand-in latency matrix and quiet Lightning logs."""

from __future__ import annotations

import logging

from latency_predictors import LatencyMatrix
from search_spaces import Space, make_candidate, make_fixed_part
from search_spaces.stats import count_macs


def macs_matrix(space: Space, ms_per_mmac: float = 0.05) -> LatencyMatrix:
    """A stand-in latency matrix: ``ms_per_mmac`` ms per million MACs of each op.

    Used where no measured table of the space is at hand; the cost of the latency term in a
    search step does not depend on the values, and whether a gradient flows does not either.
    """
    fixed = sum(count_macs(make_fixed_part(p), (p.c_in, p.height, p.width))
                for p in space.fixed_parts() if p.kind != "head")
    per_layer = [[count_macs(make_candidate(c, s.channels, space.branches),
                             (s.channels, s.height, s.width)) * ms_per_mmac / 1e6
                  for c in space.candidates] for s in space.layer_slots()]
    return LatencyMatrix(space.name, "macs-proxy", "estimated", False,
                         fixed * ms_per_mmac / 1e6, per_layer)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
