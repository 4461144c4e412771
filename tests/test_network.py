"""Candidates, child networks and the supernet: shapes, numerics, weight inheritance."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from hwnas_common import HwnasError
from search_spaces import (
    SPACES,
    WEIGHT_MODES,
    ChildNet,
    LayerSpec,
    Supernet,
    build,
    get_space,
    make_candidate,
)
from search_spaces.network import slice_weight
from search_spaces.stats import count_macs, count_params

ALL_CANDIDATES = sorted({c for name in SPACES for c in get_space(name).candidates},
                        key=lambda c: c.token)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layer", ALL_CANDIDATES, ids=lambda c: c.token)
def test_candidate_forward_backward_finite(layer, dtype: torch.dtype) -> None:
    module = make_candidate(layer, channels=16, branches=4).to(dtype).train()
    x = torch.randn(4, 16, 8, 8, dtype=dtype, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("name", sorted(SPACES))
def test_child_network_shapes(name: str) -> None:
    space = get_space(name)
    model = build(space.sample(torch.Generator().manual_seed(1))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *space.input))
    assert out.shape == (2, space.num_classes) and torch.isfinite(out).all()


def test_layer_slots_match_the_real_feature_maps() -> None:
    space = get_space("imagenet")
    model = build(space.spec_from_string("|".join(["skip"] * space.num_layers)))
    shapes = []
    hooks = [layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:])))
             for layer in model.layers]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *space.input))
    for hook in hooks:
        hook.remove()
    assert shapes == [(s.channels, s.height, s.width) for s in space.layer_slots()]


@functools.cache
def _trained_supernet(space_name: str, weights: str = "shared") -> Supernet:
    """A supernet whose BN statistics and weights are not at their initial values (built once
    per space and weight mode; the tests only run it)."""
    supernet = Supernet(get_space(space_name), weights)
    generator = torch.Generator().manual_seed(0)
    for p in supernet.parameters():
        p.data.add_(0.02 * torch.randn(p.shape, generator=generator))
    supernet.train()
    n = len(get_space(space_name).candidates)
    with torch.no_grad():  # every candidate sees data, so every BN has running stats
        for index in range(n):
            supernet(torch.randn(4, *supernet.space.input), [index] * supernet.space.num_layers)
    return supernet.eval()


@pytest.mark.parametrize("weights", WEIGHT_MODES)
@pytest.mark.parametrize("space_name", ["cifar", "proxyless-cifar"])
def test_child_inherits_supernet_weights_exactly(space_name: str, weights: str) -> None:
    supernet = _trained_supernet(space_name, weights)
    space = supernet.space
    x = torch.randn(3, *space.input)
    for seed in range(4):
        spec = space.sample(torch.Generator().manual_seed(seed))
        paths = [space.candidate_index(layer) for layer in spec.layers]
        child = supernet.child(spec)
        assert isinstance(child, ChildNet) and not child.training
        with torch.no_grad():
            torch.testing.assert_close(child(x), supernet(x, paths), rtol=0, atol=0)
        fresh = build(spec).eval()
        fresh.load_state_dict(supernet.child_state_dict(spec))
        with torch.no_grad():  # the default memory format sums in another order
            torch.testing.assert_close(fresh(x), supernet(x, paths), rtol=1e-4, atol=1e-5)
            fresh.to(memory_format=torch.channels_last)  # the supernet's: exact
            torch.testing.assert_close(fresh(x), supernet(x, paths), rtol=0, atol=0)


def test_supernet_gated_forward_equals_chosen_path() -> None:
    supernet = _trained_supernet("cifar")
    space = supernet.space
    x = torch.randn(2, *space.input)
    pairs = [(1, 13)] * space.num_layers
    gates = [torch.tensor([0.0, 1.0], requires_grad=True) for _ in pairs]
    out = supernet(x, pairs, gates)
    with torch.no_grad():
        torch.testing.assert_close(out, supernet(x, [13] * space.num_layers))
    out.sum().backward()
    assert all(g.grad is not None and torch.isfinite(g.grad).all() for g in gates)


def test_supernet_parameters_and_derive() -> None:
    supernet = Supernet(get_space("proxyless-cifar"))
    alphas = supernet.arch_parameters()
    assert len(alphas) == 9 and all(a.shape == (7,) for a in alphas)
    n_weights = sum(p.numel() for p in supernet.weight_parameters())
    assert n_weights + 9 * 7 == count_params(supernet)
    with torch.no_grad():
        for index, alpha in enumerate(alphas):
            alpha[index % 7] = 1.0
    spec = supernet.derive()
    assert [supernet.space.candidate_index(layer) for layer in spec.layers] == [
        i % 7 for i in range(9)]
    with pytest.raises(HwnasError, match="need 9 paths"):
        supernet(torch.zeros(1, 3, 32, 32), [0])


def test_size_counters_on_hand_computed_net() -> None:
    space = get_space("cifar")
    model = build(space.spec_from_string("|".join(["skip"] * space.num_layers)))
    # stem 3x3 conv 3->32 at 32x32, downsamples 2x2 s2 (32->64 @16, 64->128 @8, 128->256 @4),
    # linear 256->10.
    macs = (32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 4 + 8 * 8 * 128 * 64 * 4
            + 4 * 4 * 256 * 128 * 4 + 256 * 10)
    assert count_macs(model, space.input) == macs
    # BN (2 parameters per channel) before and after each downsample conv.
    params = (3 * 9 * 32 + 32 + 2 * 32 + 2 * 32 + 32 * 4 * 64 + 64 + 2 * 64 + 2 * 64
              + 64 * 4 * 128 + 128 + 2 * 128 + 2 * 128 + 128 * 4 * 256 + 256 + 2 * 256
              + 2 * 256 + 256 * 10 + 10)
    assert count_params(model) == params


@pytest.mark.parametrize("weights", WEIGHT_MODES)
def test_gated_forward_gradients_equal_full_autograd(weights: str) -> None:
    """Running the zero-gate path without autograd changes no gradient (gates, input, weights)."""
    space = get_space("cifar")
    op = Supernet(space, weights).layers[0].train()
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    pair = [13, 29]  # quad_k3_e2, rbf_k7_e2
    params = [p for name, p in op.named_parameters() if name != "alpha"]

    def gradients(reference: bool) -> list[torch.Tensor]:
        op.zero_grad()
        x.grad = None
        gates = torch.tensor([0.0, 1.0], requires_grad=True)
        if reference:
            out = sum(g * op.run(j, x) for j, g in zip(pair, gates, strict=True))
        else:
            out = op(x, pair, gates)
        out.square().mean().backward()
        weights = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        return [gates.grad.clone(), x.grad.clone(), *[w.clone() for w in weights]]

    for got, want in zip(gradients(False), gradients(True), strict=True):
        torch.testing.assert_close(got, want)


def test_slice_weight_takes_leading_channels_and_the_centred_kernel() -> None:
    weight = torch.arange(6 * 4 * 7 * 7.0).view(6, 4, 7, 7)
    got = slice_weight(weight, (3, 2, 3, 3))
    for o, i, r, c in itertools.product(range(3), range(2), range(3), range(3)):
        assert got[o, i, r, c] == weight[o, i, r + 2, c + 2]
    assert slice_weight(weight, (6, 4, 5, 5))[0, 0, 0, 0] == weight[0, 0, 1, 1]
    assert slice_weight(torch.arange(8.0), (3,)).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(HwnasError, match="cannot slice"):
        slice_weight(weight, (7, 4, 7, 7))


@pytest.mark.parametrize("space_name", [  # hybrid-cifar holds both others' candidates
    pytest.param("cifar", marks=pytest.mark.slow),
    pytest.param("proxyless-cifar", marks=pytest.mark.slow), "hybrid-cifar"])
def test_shared_child_equals_supernet_path_for_every_candidate(space_name: str) -> None:
    """Exact slicing: for every candidate, a standalone child built from the sliced weights
    gives the supernet path's output bit for bit (eval mode, trained BN statistics)."""
    supernet = _trained_supernet(space_name, "shared")
    space = supernet.space
    x = torch.randn(2, *space.input)
    for index, candidate in enumerate(space.candidates):
        paths = [index] * space.num_layers
        child = supernet.child(space.spec_from_indices(paths))
        with torch.no_grad():
            torch.testing.assert_close(child(x), supernet(x, paths), rtol=0, atol=0,
                                       msg=candidate.token)


def test_shared_supernet_holds_one_module_per_family() -> None:
    space = get_space("hybrid-cifar")
    shared, separate = Supernet(space, "shared"), Supernet(space, "separate")
    assert sorted(shared.layers[0].families) == ["mbconv", "poly2", "quad", "rbf", "star", "sum"]
    n_shared = sum(p.numel() for p in shared.weight_parameters())
    n_separate = sum(p.numel() for p in separate.weight_parameters())
    assert 4 < n_separate / n_shared < 6
    block = shared.layers[0].families["quad"]
    assert block.mixer.f_a.kernel_size == (7, 7) and block.mlp[0].out_channels == 4 * 32


def test_small_path_trains_only_its_slice_and_its_batchnorm_entries() -> None:
    space = get_space("hybrid-cifar")
    op = Supernet(space, "shared").layers[0].train()
    mb = op.families["mbconv"]
    before = mb.body[1].running_mean.clone()
    index = space.candidate_index(LayerSpec("mbconv", 3, 3))
    op.run(index, torch.randn(4, 32, 8, 8)).square().mean().backward()
    grad = mb.body[3].weight.grad  # depthwise 7x7 over 6C hidden channels
    assert grad[:96, :, 2:5, 2:5].abs().sum() > 0
    outside = grad.clone()
    outside[:96, :, 2:5, 2:5] = 0
    assert outside.abs().sum() == 0
    moved = (mb.body[1].running_mean != before)
    assert moved[:96].all() and not moved[96:].any()
