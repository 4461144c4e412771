"""The ``fbnet-cifar`` space (HW-NAS-Bench's FBNet_Infer, CIFAR-100) layer for layer, its blocks
and channel shuffle, its ONNX export and training, the latency rows of its projecting skips, and
the exact knapsack and budget sampler on a small space whose skip costs time."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas_common import HwnasError
from latency_predictors import estimate_table, latency_matrix, load_table, predict_latency
from latency_predictors.estimate.roofline import graph_costs
from latency_predictors.fit.calibration import table_parts
from latency_predictors.keys import (
    SKIP_PROJECTION,
    candidate_key,
    layer_keys,
    op_group,
    required_keys,
    space_ops,
)
from latency_predictors.measure.backends import export_onnx
from latency_predictors.measure.calibrate import calibration_specs
from nas.core.constraints import Constraint
from nas.core.derive import solve
from nas.core.sampler import BudgetSampler
from nas.deploy.export import export_model
from nas.deploy.retrain import train_arch
from search_spaces import (
    ArchSpec,
    ChannelShuffle,
    LayerSpec,
    Supernet,
    build,
    get_space,
    make_candidate,
    slot_candidate,
)
from search_spaces.stats import count_macs, count_params
from tests.helpers import FBNET_TINY, fake_table

SPACE = get_space("fbnet-cifar")
# The published definition (HW-NAS-Bench, FBNet_Infer for CIFAR): per searchable layer its
# input channels, output channels, stride and input height and width.
PUBLISHED = [(16, 16, 1, 32, 32),
             (16, 24, 1, 32, 32), (24, 24, 1, 32, 32), (24, 24, 1, 32, 32), (24, 24, 1, 32, 32),
             (24, 32, 2, 32, 32), (32, 32, 1, 16, 16), (32, 32, 1, 16, 16), (32, 32, 1, 16, 16),
             (32, 64, 2, 16, 16), (64, 64, 1, 8, 8), (64, 64, 1, 8, 8), (64, 64, 1, 8, 8),
             (64, 112, 1, 8, 8), (112, 112, 1, 8, 8), (112, 112, 1, 8, 8), (112, 112, 1, 8, 8),
             (112, 184, 2, 8, 8), (184, 184, 1, 4, 4), (184, 184, 1, 4, 4), (184, 184, 1, 4, 4),
             (184, 352, 1, 4, 4)]
TOKENS = ["fb_k3_e1", "fb_k3_e1_g2", "fb_k3_e3", "fb_k3_e6", "fb_k5_e1", "fb_k5_e1_g2",
          "fb_k5_e3", "fb_k5_e6", "skip"]  # HW-NAS-Bench's PRIMITIVES order


def block_params(c_in: int, c_out: int, kernel: int, expansion: int, groups: int) -> int:
    """Closed form: 1×1 conv (groups) + BN, k×k depthwise + BN, 1×1 conv (groups) + BN; no
    bias, 2 parameters per BatchNorm channel."""
    hidden = c_in * expansion
    return (c_in * hidden // groups + 2 * hidden + hidden * kernel * kernel + 2 * hidden
            + hidden * c_out // groups + 2 * c_out)


def projection_params(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out  # 1×1 conv without bias + BN


STEM_PARAMS = 3 * 16 * 9 + 2 * 16  # 3×3 conv 3 -> 16 without bias + BN
HEAD_PARAMS = 352 * 1504 + 2 * 1504 + 1504 * 100 + 100  # 1×1 conv + BN + linear with bias


def test_the_published_definition_layer_for_layer() -> None:
    assert SPACE.input == (3, 32, 32) and SPACE.num_classes == 100
    assert list(SPACE.tokens) == TOKENS
    assert [(s.channels, s.c_out, s.stride, s.height, s.width)
            for s in SPACE.layer_slots()] == PUBLISHED
    assert [(p.name, p.kind, p.c_in, p.c_out, p.height, p.width, p.stride)
            for p in SPACE.fixed_parts()] == [
        ("stem", "stem:conv3x3-relu", 3, 16, 32, 32, 1),
        ("head", "head:conv1x1-1504", 352, 100, 4, 4, 1)]


@pytest.mark.parametrize(("token", "slot", "expected"), [
    ("fb_k3_e6", 5, 24 * 144 + 144 * 2 + 144 * 9 + 144 * 2 + 144 * 32 + 32 * 2),
    ("fb_k3_e3", 2, 24 * 72 + 72 * 2 + 72 * 9 + 72 * 2 + 72 * 24 + 24 * 2),
    ("fb_k5_e1_g2", 13, 64 * 64 // 2 + 64 * 2 + 64 * 25 + 64 * 2 + 64 * 112 // 2 + 112 * 2),
    ("fb_k3_e1_g2", 0, 16 * 16 // 2 + 16 * 2 + 16 * 9 + 16 * 2 + 16 * 16 // 2 + 16 * 2),
    ("fb_k5_e6", 21, 184 * 1104 + 1104 * 2 + 1104 * 25 + 1104 * 2 + 1104 * 352 + 352 * 2),
    ("skip", 21, 184 * 352 + 352 * 2),
    ("skip", 9, 32 * 64 + 64 * 2),
    ("skip", 0, 0), ("skip", 14, 0)])
def test_candidate_parameter_counts(token: str, slot: int, expected: int) -> None:
    module = slot_candidate(LayerSpec.from_token(token), SPACE.layer_slots()[slot], 0)
    assert count_params(module) == expected


def test_grouped_blocks_have_half_the_pointwise_weights() -> None:
    slot = SPACE.layer_slots()[13]
    dense = count_params(slot_candidate(LayerSpec.from_token("fb_k5_e1"), slot, 0))
    grouped = count_params(slot_candidate(LayerSpec.from_token("fb_k5_e1_g2"), slot, 0))
    assert dense - grouped == (64 * 64 + 64 * 112) // 2


def test_whole_net_parameter_counts_and_macs() -> None:
    skips = SPACE.spec_from_string("|".join(["skip"] * 22))
    projections = sum(projection_params(c_in, c_out) for c_in, c_out, stride, _, _ in PUBLISHED
                      if (c_in, stride) != (c_out, 1))
    assert count_params(build(skips)) == STEM_PARAMS + projections + HEAD_PARAMS
    largest = SPACE.spec_from_string("|".join(["fb_k5_e6"] * 22))
    blocks = sum(block_params(c_in, c_out, 5, 6, 1) for c_in, c_out, *_ in PUBLISHED)
    assert count_params(build(largest)) == STEM_PARAMS + blocks + HEAD_PARAMS
    # a grouped block at 24 -> 32, stride 2, 32×32 input: each output needs C_in / groups inputs
    module = slot_candidate(LayerSpec.from_token("fb_k3_e1_g2"), SPACE.layer_slots()[5], 0)
    assert count_macs(module, (24, 32, 32)) == (
        24 * 32 * 32 * 12 + 24 * 16 * 16 * 9 + 32 * 16 * 16 * 12)


def test_output_shapes_and_stride_two_layers_halve_the_resolution() -> None:
    spec = SPACE.sample(torch.Generator().manual_seed(0))
    model = build(spec).eval()
    shapes = []
    hooks = [layer.register_forward_hook(lambda m, i, o: shapes.append(
        (tuple(i[0].shape[1:]), tuple(o.shape[1:])))) for layer in model.layers]
    with torch.no_grad():
        out = model(torch.randn(2, *SPACE.input))
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    for (c_in, c_out, stride, height, width), (got_in, got_out) in zip(PUBLISHED, shapes,
                                                                       strict=True):
        assert got_in == (c_in, height, width)
        assert got_out == (c_out, height // stride, width // stride)


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_channel_shuffle_permutes_channels(groups: int) -> None:
    per_group = 5
    x = torch.randn(2, groups * per_group, 3, 3)
    y = ChannelShuffle(groups)(x)
    for out_channel in range(groups * per_group):
        i, j = out_channel % groups, out_channel // groups  # group i, position j
        assert torch.equal(y[:, out_channel], x[:, i * per_group + j])
    assert sorted(y.sum(dim=(0, 2, 3)).tolist()) == sorted(x.sum(dim=(0, 2, 3)).tolist())


def test_a_grouped_block_shuffles_after_its_first_convolution() -> None:
    block = make_candidate(LayerSpec("fbnet", 3, 1, groups=2), 8, 0, 8, 1)
    kinds = [type(m).__name__ for m in block.body]
    assert kinds[:4] == ["Conv2d", "BatchNorm2d", "ReLU", "ChannelShuffle"]
    assert block.body[0].groups == 2 and block.body[-2].groups == 2 and block.residual


def test_every_op_of_the_space_builds_and_runs() -> None:
    ops = space_ops(SPACE)
    assert set(ops) == set(required_keys(SPACE))
    for key, (factory, shape) in ops.items():
        op, c_in, c_out, height, width, stride, _ = key
        with torch.no_grad():
            out = factory().eval()(torch.randn(1, *shape))
        if op.startswith("head"):
            assert out.shape == (1, c_out), key
        else:
            assert out.shape == (1, c_out, height // stride, width // stride), key


def test_strict_decoding_of_fbnet_layers() -> None:
    layer = LayerSpec("fbnet", 5, 1, groups=2)
    assert layer.token == "fb_k5_e1_g2" and LayerSpec.from_token("fb_k5_e1_g2") == layer
    assert layer.to_dict() == {"op": "fbnet", "kernel": 5, "expansion": 1, "groups": 2}
    assert LayerSpec.from_dict(layer.to_dict()) == layer
    assert LayerSpec.from_token("fb_k3_e6") == LayerSpec("fbnet", 3, 6, groups=1)
    spec = SPACE.sample(torch.Generator().manual_seed(2))
    assert ArchSpec.from_json(spec.to_json()) == spec
    for bad, message in [("fb_k3_e1_g1", "malformed"), ("mb_k3_e3_g2", "malformed"),
                         ("fb_k4_e1", "kernel must be odd")]:
        with pytest.raises(HwnasError, match=message):
            LayerSpec.from_token(bad)
    for data, message in [({"op": "fbnet", "kernel": 3, "expansion": 1}, "missing keys"),
                          ({"op": "mbconv", "kernel": 3, "expansion": 3, "groups": 2},
                           "unknown keys"),
                          ({"op": "fbnet", "kernel": 3, "expansion": 1, "groups": 0},
                           "positive integer")]:
        with pytest.raises(HwnasError, match=message):
            ArchSpec.from_json(json.dumps({"space": "fbnet-cifar", "input": [3, 32, 32],
                                           "layers": [data]}))
    with pytest.raises(HwnasError, match="keeps its input's shape"):
        make_candidate(LayerSpec("mbconv", 3, 3), 16, 0, 24, 2)


def _perturbed(supernet: Supernet) -> Supernet:
    """Weights off their initial values and running BN statistics for every candidate."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
        supernet.train()
        for index in range(len(supernet.space.candidates)):
            supernet(torch.randn(2, *supernet.space.input), [index] * supernet.space.num_layers)
    return supernet.eval()


def test_shared_supernet_children_equal_their_paths_for_every_candidate() -> None:
    supernet = _perturbed(Supernet(SPACE, "shared"))
    assert sorted(supernet.layers[0].families) == ["fbnet", "fbnet_g2"]  # identity skip
    assert sorted(supernet.layers[5].families) == ["fbnet", "fbnet_g2", "skip"]  # projection
    x = torch.randn(2, *SPACE.input)
    specs = [SPACE.spec_from_indices([i] * SPACE.num_layers) for i in range(len(TOKENS))]
    specs.append(SPACE.sample(torch.Generator().manual_seed(4)))
    for spec in specs:
        paths = [SPACE.candidate_index(layer) for layer in spec.layers]
        with torch.no_grad():
            torch.testing.assert_close(supernet.child(spec)(x), supernet(x, paths), rtol=0,
                                       atol=0, msg=spec.to_string())


def test_separate_supernet_children_equal_their_paths() -> None:
    supernet = _perturbed(Supernet(FBNET_TINY, "separate"))
    x = torch.randn(2, *FBNET_TINY.input)
    for choice in itertools.product(range(len(FBNET_TINY.candidates)), repeat=3):
        spec = FBNET_TINY.spec_from_indices(list(choice))
        with torch.no_grad():
            torch.testing.assert_close(supernet.child(spec)(x), supernet(x, list(choice)),
                                       rtol=0, atol=0, msg=spec.to_string())


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    spec = SPACE.sample(generator)
    model = build(spec)
    for module in model.modules():  # BatchNorm statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    result = export_model(spec, model.eval(), "onnx", tmp_path / "fbnet.onnx", seed=3)
    with torch.no_grad():
        scale = float(model(torch.randn(1, *SPACE.input)).abs().max())
    assert result.max_abs_error < 1e-4 * max(1.0, scale)


def test_a_child_trains_with_the_search_recipe() -> None:
    spec = SPACE.sample(torch.Generator().manual_seed(1))
    before = build(spec)
    torch.manual_seed(0)
    result = train_arch(spec, "synthetic", epochs=1, init=build(spec), batch_size=16,
                        data_limit=32, progress=False)
    assert 0.0 <= result.test_accuracy <= 1.0 and result.images == 32
    trained = dict(result.model.named_parameters())
    assert any(not torch.equal(trained[name], p) for name, p in before.named_parameters())


def test_projecting_skips_have_rows_and_identity_skips_none() -> None:
    skip = LayerSpec("skip")
    slots = SPACE.layer_slots()
    keys = [candidate_key(skip, slot, SPACE.branches) for slot in slots]
    changing = [i for i, (c_in, c_out, stride, _, _) in enumerate(PUBLISHED)
                if (c_in, stride) != (c_out, 1)]
    assert [i for i, key in enumerate(keys) if key is not None] == changing == [
        1, 5, 9, 13, 17, 21]
    assert keys[5] == (SKIP_PROJECTION, 24, 32, 32, 32, 2, 0)
    assert keys[5] in required_keys(SPACE)
    assert candidate_key(LayerSpec.from_token("fb_k3_e6"), slots[5], 0) == (
        "fb_k3_e6", 24, 32, 32, 32, 2, 0)
    assert op_group(skip, "class", slots[5]) == op_group(skip, "kernel", slots[5]) == "proj"
    assert op_group(skip, "class", slots[6]) is None and op_group(skip) is None
    assert op_group(LayerSpec.from_token("fb_k5_e1_g2"), "class") == "fbnet_g2"


def test_estimated_matrix_prices_projections_and_grouped_blocks() -> None:
    table = estimate_table("vpu", [FBNET_TINY])
    matrix = latency_matrix(FBNET_TINY, table)
    skip = FBNET_TINY.candidate_index(LayerSpec("skip"))
    assert [row[skip] > 0 for row in matrix.per_layer] == [False, True, False]
    assert all(ms > 0 for row in matrix.per_layer for i, ms in enumerate(row) if i != skip)
    skips = FBNET_TINY.spec_from_indices([skip] * 3)
    assert predict_latency(skips, table).total_ms == pytest.approx(
        matrix.fixed_ms + matrix.per_layer[1][skip])
    grouped = make_candidate(LayerSpec("fbnet", 3, 1, groups=2), 24, 0, 32, 2)
    costs = graph_costs(export_onnx(grouped, (24, 32, 32)))
    convs = [(c.kind, c.flops) for c in costs if c.op_type == "Conv"]
    assert convs == [("dense", 2.0 * 24 * 32 * 32 * 12), ("depthwise", 2.0 * 24 * 16 * 16 * 9),
                     ("dense", 2.0 * 32 * 16 * 16 * 12)]
    assert [c.op_type for c in costs if c.op_type == "Transpose"] == ["Transpose"]


def test_a_table_without_the_space_is_one_clear_error() -> None:
    with pytest.raises(HwnasError, match="lacks 104 rows for space 'fbnet-cifar'") as err:
        latency_matrix(SPACE, load_table("cpu"))
    assert "\n" not in str(err.value) and "hwnas profile" in str(err.value)


def test_calibration_groups_and_the_all_skip_net() -> None:
    table = fake_table(FBNET_TINY)
    matrix = latency_matrix(FBNET_TINY, table)
    specs = calibration_specs(FBNET_TINY, 6, seed=0)
    assert specs[0].to_string() == "skip|skip|skip"
    parts = table_parts(specs, FBNET_TINY, matrix)
    assert parts.classes == ("fbnet", "fbnet_g2", "proj")
    np.testing.assert_allclose(parts.total, [matrix.total(
        [FBNET_TINY.candidate_index(layer) for layer in spec.layers]) for spec in specs])
    assert parts.by_class[0].tolist() == [0.0, 0.0, matrix.per_layer[1][3]]


def _constraints(budget_shares: list[float]) -> list[Constraint]:
    """FBNET_TINY on two fake devices (one a fake table, one its square root), budgets at the
    given shares of the way from the fastest net to the slowest."""
    base = latency_matrix(FBNET_TINY, fake_table(FBNET_TINY))
    rooted = type(base)(base.space, "rooted", base.provenance, False, math.sqrt(base.fixed_ms),
                        [[math.sqrt(v) for v in row] for row in base.per_layer])
    return [Constraint(m, m.fastest_ms() + share * (m.slowest_ms() - m.fastest_ms()), m.device)
            for m, share in zip((base, rooted), budget_shares, strict=False)]


def _nets() -> list[tuple[int, ...]]:
    return list(itertools.product(range(len(FBNET_TINY.candidates)), repeat=3))


@pytest.mark.parametrize(("shares", "floor"), [([0.3], 0.0), ([0.6], 0.8), ([0.5, 0.4], 0.0),
                                               ([0.7, 0.5], 0.7)])
def test_the_knapsack_is_exact_with_a_skip_that_costs_time(shares: list[float],
                                                           floor: float) -> None:
    constraints = _constraints(shares)
    assert constraints[0].matrix.per_layer[1][3] > 0  # the projecting skip
    rng = np.random.default_rng(len(shares) * 10 + int(floor * 10))
    for _ in range(5):
        scores = np.log(rng.uniform(0.01, 1.0, size=(3, 4))).tolist()
        feasible = [c for c in _nets() if all(k.matrix.total(c) <= k.budget_ms
                                              for k in constraints)]
        band = [c for c in feasible if all(k.matrix.total(c) >= floor * k.budget_ms
                                           for k in constraints)]
        best = max(band or feasible, key=lambda c: sum(scores[i][j] for i, j in enumerate(c)))
        got = solve(scores, constraints, floor)
        assert math.isclose(sum(scores[i][j] for i, j in enumerate(got)),
                            sum(scores[i][j] for i, j in enumerate(best)), rel_tol=1e-9)
        assert tuple(got) in (band or feasible)


def test_the_budget_sampler_draws_exactly_with_a_skip_that_costs_time() -> None:
    from scipy import stats

    constraints = _constraints([0.5])
    weights = np.random.default_rng(3).uniform(0.2, 1.0, size=(3, 4))
    floor = 0.5
    admitted = {c: float(np.prod([weights[layer][i] for layer, i in enumerate(c)]))
                for c in _nets() if floor * constraints[0].budget_ms
                <= constraints[0].matrix.total(c) <= constraints[0].budget_ms}
    assert 8 <= len(admitted) < 64
    sampler = BudgetSampler(constraints, weights, floor, cells=64)
    generator = torch.Generator().manual_seed(0)
    draws = 40 * len(admitted)
    counts = dict.fromkeys(admitted, 0)
    for _ in range(draws):
        choice = tuple(sampler.sample(generator))
        assert choice in counts, choice
        counts[choice] += 1
    norm = sum(admitted.values())
    keys = sorted(admitted)
    expected = [draws * admitted[k] / norm for k in keys]
    assert stats.chisquare([counts[k] for k in keys], expected).pvalue > 1e-3


def test_the_nni_model_space_freezes_to_the_child() -> None:
    from nas.nni.space import freeze_spec, nni_model_space

    spec = FBNET_TINY.spec_from_string("fb_k3_e1_g2|skip|fb_k5_e3")
    frozen, child = freeze_spec(nni_model_space(FBNET_TINY), spec), build(spec)
    assert {k: v.shape for k, v in frozen.state_dict().items()} == {
        k: v.shape for k, v in child.state_dict().items()}
    frozen.load_state_dict(child.state_dict())
    x = torch.randn(2, *FBNET_TINY.input)
    torch.testing.assert_close(frozen.eval()(x), child.eval()(x), rtol=0, atol=0)


def test_layer_keys_of_classic_spaces_keep_their_shape() -> None:
    """A classic skeleton's slots keep the shape: every skip there is an identity."""
    for name in ("cifar", "proxyless-imagenet"):
        space = get_space(name)
        skip = space.candidate_index(LayerSpec("skip"))
        assert all(row[skip] is None for row in layer_keys(space))
        assert all(s.keeps_shape for s in space.layer_slots())
