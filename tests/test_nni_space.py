"""NNI 3.0 interop: the NNI model space samples exactly our architectures and builds our nets."""

from __future__ import annotations

import subprocess
import sys

import nni.nas.nn.pytorch  # noqa: F401  (NNI is required: a broken import fails the suite)
import numpy as np
import pytest
import torch

from hwnas_common import HwnasError
from nas.nni.space import (
    freeze_spec,
    layer_labels,
    nni_model_space,
    sample_to_spec,
    spec_to_sample,
)
from search_spaces import LayerSpec, build, get_space
from tests.helpers import NNI_TINY as TINY


@pytest.fixture(scope="module")
def cifar_space():
    return nni_model_space("cifar")


def test_choices_are_our_candidates_in_order(cifar_space) -> None:
    space = get_space("cifar")
    choices = cifar_space.simplify()
    assert list(choices) == layer_labels(space)
    for choice in choices.values():
        assert list(choice.values) == list(space.tokens)


def test_every_spec_round_trips_through_a_sample() -> None:
    space = get_space("cifar")
    generator = torch.Generator().manual_seed(0)
    specs = [space.sample(generator) for _ in range(200)]
    specs += [space.spec([candidate] * space.num_layers) for candidate in space.candidates]
    for spec in specs:
        sample = spec_to_sample(spec)
        assert set(sample.values()) <= set(space.tokens)
        assert sample_to_spec(sample, space) == spec


def test_nni_samples_map_to_our_specs_and_back(cifar_space) -> None:
    choices = cifar_space.simplify()
    for seed in range(50):
        state = np.random.RandomState(seed)
        sample = {label: choice.random(random_state=state) for label, choice in choices.items()}
        assert set(sample) == set(choices)
        spec = sample_to_spec(sample, "cifar")
        assert spec_to_sample(spec) == sample
        assert cifar_space.contains(sample)


@pytest.mark.parametrize("space_name", ["cifar", "nni-tiny"])
def test_frozen_model_is_the_child_network(cifar_space, space_name: str) -> None:
    space = get_space(space_name)
    model_space = cifar_space if space_name == "cifar" else nni_model_space(space)
    spec = space.sample(torch.Generator().manual_seed(1))
    frozen, child = freeze_spec(model_space, spec), build(spec)
    assert {k: v.shape for k, v in frozen.state_dict().items()} == {
        k: v.shape for k, v in child.state_dict().items()}
    assert [type(m) for m in frozen.modules()][1:] == [type(m) for m in child.modules()][1:]
    frozen.load_state_dict(child.state_dict())
    x = torch.randn(2, *space.input)
    for mode in (True, False):
        frozen.train(mode)
        child.train(mode)
        torch.testing.assert_close(frozen(x), child(x), rtol=0, atol=0)


def test_heavy_and_skip_children_match_parameter_counts(cifar_space) -> None:
    space = get_space("cifar")
    for layer in (LayerSpec("skip"), LayerSpec("block", 7, 4, "quad")):
        spec = space.spec([layer] * space.num_layers)
        count = sum(p.numel() for p in freeze_spec(cifar_space, spec).parameters())
        assert count == sum(p.numel() for p in build(spec).parameters())


def test_freeze_keeps_the_spaces_weights_like_nnis_default_freeze() -> None:
    from nni.nas.nn.pytorch import MutableModule

    model_space = nni_model_space(TINY).eval()
    x = torch.randn(3, 3, 8, 8)
    for seed in range(3):
        spec = TINY.sample(torch.Generator().manual_seed(seed))
        ours = freeze_spec(model_space, spec)
        nni_default = MutableModule.freeze(model_space, spec_to_sample(spec))  # deep copy
        assert not ours.training
        torch.testing.assert_close(ours(x), nni_default(x), rtol=0, atol=0)


def test_bad_samples_are_clear_errors() -> None:
    space = get_space("cifar")
    sample = spec_to_sample(space.sample(torch.Generator().manual_seed(0)))
    with pytest.raises(HwnasError, match="missing labels \\['layer3'\\]"):
        sample_to_spec({k: v for k, v in sample.items() if k != "layer3"}, space)
    with pytest.raises(HwnasError, match="unknown labels \\['layer9'\\]"):
        sample_to_spec({**sample, "layer9": "skip"}, space)
    with pytest.raises(HwnasError, match="'quad_k9_e4' is not a candidate"):
        sample_to_spec({**sample, "layer0": "quad_k9_e4"}, space)
    with pytest.raises(HwnasError, match="not a candidate of space 'proxyless-cifar'"):
        sample_to_spec(sample, "proxyless-cifar")


def test_importing_nas_and_the_interop_modules_does_not_import_nni() -> None:
    code = ("import sys, nas, nas.nni.space, nas.nni.profiler; "
            "loaded = [m for m in sys.modules if m == 'nni' or m.startswith('nni.')]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
