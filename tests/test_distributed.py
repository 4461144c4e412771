"""Data-parallel search (nas.core.parallel, nas.run.distributed): sharding, averaging and a
real 2-process gloo run.

The 2-process run must equal a 1-process run with the same global batch, seed and
``micro_batches=2`` (the same BatchNorm shards). With two shards the equality is exact: the
ranks' mean (g0 + g1) / 2 and the accumulated g0 / 2 + g1 / 2 are the same floats, because
scaling by a power of two commutes with rounding. The processes are started with
``torch.multiprocessing`` and a file store (no TCP rendezvous); they read RANK / WORLD_SIZE as
under torchrun and find the process group already initialised.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hwnas_common import HwnasError
from nas import search
from nas.core.parallel import Group, RanksDiverged
from nas.run.checkpoint import load_checkpoint
from tests.helpers import register_test_spaces, tiny_config, tiny_constraint


def test_shards_split_the_global_batch_in_rank_order() -> None:
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    parts = [Group(rank, 2).shards(x, y, micro_batches=2) for rank in (0, 1)]
    assert [len(p) for p in parts] == [2, 2]
    labels = [shard_y.tolist() for p in parts for _, shard_y in p]
    assert labels == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert [s.tolist() for s in Group().shards(x, y)[0][1:]] == [list(range(10))]
    with pytest.raises(HwnasError, match="cannot be split"):
        Group(1, 4).shards(x[:3], y[:3])


def _gloo_worker(rank: int, store_path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank,
                            world_size=2)
    group = Group(rank, 2)
    grads = [torch.full((3,), float(rank)), torch.tensor(2.0 * rank + 1)]
    group.average(grads)
    same = torch.ones(4)
    group.check_identical([same], "ones")
    try:
        group.check_identical([torch.full((2,), float(rank))], "rank ids")
        diverged = ""
    except RanksDiverged as err:
        diverged = str(err)
    torch.save({"grads": grads, "diverged": diverged}, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_average_and_divergence_check_over_two_gloo_processes(tmp_path: Path) -> None:
    out = str(tmp_path / "result")
    mp.spawn(_gloo_worker, args=(str(tmp_path / "store"), out), nprocs=2)
    for rank in (0, 1):
        result = torch.load(f"{out}.{rank}")
        assert torch.equal(result["grads"][0], torch.full((3,), 0.5))
        assert float(result["grads"][1]) == 2.0
        assert "rank ids differ between ranks (max gap 1)" in result["diverged"]


def _search_worker(rank: int, store_path: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    register_test_spaces()  # a spawned rank does not run the test run's fixtures
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank,
                            world_size=2)
    try:
        result = search(tiny_config(Path(out)), [tiny_constraint(4.0)])
        assert (result is None) == (rank != 0)  # rank 0 alone reports
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_search_matches_one_process_with_two_micro_batches(tmp_path: Path) -> None:
    mp.spawn(_search_worker, args=(str(tmp_path / "store"), str(tmp_path / "ddp")), nprocs=2)
    single = search(tiny_config(tmp_path / "one", micro_batches=2), [tiny_constraint(4.0)])
    assert (tmp_path / "ddp" / "arch.json").read_text() == single.spec.to_json() + "\n"
    ddp_net = load_checkpoint(tmp_path / "ddp")["engine"]["supernet"]
    one_net = load_checkpoint(tmp_path / "one")["engine"]["supernet"]
    alphas = [k for k in one_net if k.endswith("alpha")]
    assert alphas, "no architecture parameters found in the checkpoint"
    for key, value in one_net.items():
        if "running" not in key and "num_batches" not in key:  # BN statistics differ by design
            assert torch.equal(ddp_net[key], value), key
    # Whole batches on one process normalise BN differently: a real, different run.
    whole = load_checkpoint(Path(search(tiny_config(tmp_path / "whole"),
                                        [tiny_constraint(4.0)]).run_dir))
    assert any(not torch.allclose(whole["engine"]["supernet"][k], one_net[k]) for k in alphas)
