"""ArchSpec: exact round trips (property tests over random specs) and strict decoding."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas_common import HwnasError
from search_spaces import SPACES, ArchSpec, LayerSpec, get_space


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 2**31 - 1))
def test_round_trip_json_and_string(name: str, seed: int) -> None:
    space = get_space(name)
    spec = space.sample(torch.Generator().manual_seed(seed))
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_json(spec.to_json(indent=None)) == spec
    assert space.spec_from_string(spec.to_string()) == spec
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert space.validate(spec) is spec


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_candidate_token_round_trips(name: str) -> None:
    for layer in get_space(name).candidates:
        assert LayerSpec.from_token(layer.token) == layer
        assert LayerSpec.from_dict(layer.to_dict()) == layer


def test_sampling_is_seeded_and_covers_candidates() -> None:
    space = get_space("cifar")
    a = space.sample(torch.Generator().manual_seed(3))
    assert a == space.sample(torch.Generator().manual_seed(3))
    seen = {layer for seed in range(60)
            for layer in space.sample(torch.Generator().manual_seed(seed)).layers}
    assert seen == set(space.candidates)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("quad_k7_e4|cube_k3_e2", "unknown interaction 'cube'"),
    ("quad_k7", "malformed layer token"),
    ("quad_k4_e2", "kernel must be odd"),
    ("skip|skip", "has 9 searchable layers"),
    ("|".join(["mb_k3_e6"] * 9), "not a candidate of space 'cifar'"),
    ("|".join(["quad_k9_e4"] * 9), "valid: ['skip', 'sum_k3_e2'"),
])
def test_strict_string_decoding(text: str, message: str) -> None:
    with pytest.raises(HwnasError, match=None) as err:
        get_space("cifar").spec_from_string(text)
    assert message in str(err.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "ArchSpec keys must be"),
    (lambda d: d.pop("input"), "ArchSpec keys must be"),
    (lambda d: d["layers"][0].update(op="conv"), "unknown layer op 'conv'"),
    (lambda d: d["layers"][0].update(kernel="7"), "positive integer"),
    (lambda d: d["layers"][0].update(colour="red"), "unknown keys ['colour']"),
    (lambda d: d["layers"][0].pop("kernel"), "missing keys ['kernel']"),
    (lambda d: d["layers"].__setitem__(1, {"op": "skip", "kernel": 3}), "unknown keys ['kernel']"),
    (lambda d: d["layers"][0].update(interaction="cube"), "valid: ['poly2', 'quad', 'rbf'"),
    (lambda d: d.update(input=[3, 32]), "(C, H, W)"),
    (lambda d: d.update(layers="quad"), "must be JSON lists"),
])
def test_strict_json_decoding(mutate, message: str) -> None:
    data = get_space("cifar").spec_from_string("|".join(["quad_k7_e4", "skip"] * 4 + ["skip"]))
    data = data.to_dict()
    mutate(data)
    with pytest.raises(HwnasError) as err:
        ArchSpec.from_json(json.dumps(data))
    assert message in str(err.value)


def test_validation_against_space() -> None:
    spec = get_space("cifar").sample(torch.Generator().manual_seed(0))
    with pytest.raises(HwnasError, match="not 'imagenet'"):
        get_space("imagenet").validate(spec)
    wrong_input = ArchSpec("cifar", (3, 28, 28), spec.layers)
    with pytest.raises(HwnasError, match="does not match space"):
        get_space("cifar").validate(wrong_input)
    with pytest.raises(HwnasError, match="not valid JSON"):
        ArchSpec.from_json("{oops")
    with pytest.raises(HwnasError, match="unknown space 'tiny'; valid"):
        get_space("tiny")


def test_atomic_write_is_whole_or_nothing_with_normal_permissions(tmp_path) -> None:
    import os

    from hwnas_common.fileio import atomic_path, atomic_write_text

    target = tmp_path / "a.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "hello" and os.listdir(tmp_path) == ["a.txt"]


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
