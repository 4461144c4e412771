"""The hwnas search space as an NNI 3.0 ``ModelSpace`` (so NNI's strategies run on it), and the
sample ↔ ArchSpec map.

The NNI model space has the same skeleton and parameter names as :class:`search_spaces.ChildNet`
(``stem``, ``layers.{i}``, ``downsamples.{s}``, ``head``), with one ``LayerChoice`` per searchable
layer whose candidates are built by :func:`search_spaces.slot_candidate` and keyed by their token
(``skip``, ``quad_k7_e4``, ...). So an NNI sample is ``{"layer0": "quad_k7_e4", "layer1": "skip",
...}``, and a model frozen from a sample loads the state dict of ``build(spec)`` as it is::

    from nas.nni.space import nni_model_space, sample_to_spec, spec_to_sample
    model_space = nni_model_space("cifar")
    sample = spec_to_sample(spec)                 # {label: token}
    model = model_space.freeze(sample)            # same modules as build(spec)
    spec == sample_to_spec(sample, "cifar")       # exact round trip

NNI is imported only when a model space is built, so ``import nas`` does not import NNI.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hwnas_common import HwnasError
from search_spaces import (
    ArchSpec,
    Space,
    get_space,
    make_fixed_part,
    slot_candidate,
)
from search_spaces.network import walk_skeleton

NNI_INSTALL_HINT = ("NNI interop needs nni==3.0 with pytorch-lightning and torchmetrics: "
                    "pip install 'nni==3.0' 'pytorch-lightning==2.4.0' 'torchmetrics==1.2.1' "
                    "'filelock<3.12' 'typeguard<4.1.3'")


def import_nni(module: str) -> Any:
    """Import an NNI module, or raise :class:`HwnasError` saying what to install."""
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():
            # NNI 3.0 wraps every torch.nn class and warns about the few newer torch ones.
            warnings.filterwarnings("ignore", "<class .* is found to be not a nn.Module",
                                    RuntimeWarning)
            return importlib.import_module(module)
    except ImportError as err:
        raise HwnasError(f"cannot import {module} ({err}); {NNI_INSTALL_HINT}") from None


def as_space(space: Space | str) -> Space:
    return get_space(space) if isinstance(space, str) else space


def layer_label(index: int) -> str:
    """The NNI label of searchable layer ``index``."""
    return f"layer{index}"


def layer_labels(space: Space | str) -> list[str]:
    return [layer_label(i) for i in range(as_space(space).num_layers)]


def spec_to_sample(spec: ArchSpec, space: Space | str | None = None) -> dict[str, str]:
    """The NNI sample ``{layer label: candidate token}`` of ``spec``."""
    as_space(spec.space if space is None else space).validate(spec)
    return {layer_label(i): layer.token for i, layer in enumerate(spec.layers)}


def sample_to_spec(sample: Mapping[str, Any], space: Space | str) -> ArchSpec:
    """The ArchSpec of an NNI sample; strict: exactly one valid token per layer label."""
    space = as_space(space)
    labels = layer_labels(space)
    if set(sample) != set(labels):
        unknown = sorted(set(sample) - set(labels))
        missing = [label for label in labels if label not in sample]
        raise HwnasError(f"NNI sample for space {space.name!r}: unknown labels {unknown}, "
                         f"missing labels {missing}; valid labels: {labels}")
    layers = []
    for label in labels:
        token = sample[label]
        if token not in space.tokens:
            raise HwnasError(f"NNI sample {label}={token!r} is not a candidate of space "
                             f"{space.name!r}; valid: {list(space.tokens)}")
        layers.append(space.candidates[space.tokens.index(token)])
    return space.spec(layers)


@functools.cache
def _model_space_class() -> type[nn.Module]:
    """The ``ModelSpace`` subclass, created on first use so that NNI is imported lazily."""
    nni_nn = import_nni("nni.nas.nn.pytorch")
    nni_space = import_nni("nni.nas.space")

    class HwnasModelSpace(nni_nn.ModelSpace):
        """An hwnas space as an NNI model space; ``space`` is a registered space name."""

        def __init__(self, space: str) -> None:
            super().__init__()
            self.space = get_space(space)
            parts = {part.name: make_fixed_part(part) for part in self.space.fixed_parts()}
            self.stem = parts["stem"]
            # Inside NNI's freeze (a model context), build only the chosen candidate per layer:
            # LayerChoice then returns it as is, and the frozen net costs one child, not a supernet.
            arch = nni_space.current_model()
            chosen = None if arch is None else sample_to_spec(
                {label: arch[label] for label in layer_labels(self.space) if label in arch},
                self.space).layers
            self.layers = nn.ModuleList(
                nni_nn.LayerChoice({c.token: slot_candidate(c, slot, self.space.branches)
                                    for c in (self.space.candidates if chosen is None
                                              else (chosen[slot.index],))},
                                   label=layer_label(slot.index))
                for slot in self.space.layer_slots())
            self.downsamples = nn.ModuleList(parts[f"downsample{s}"] for s in
                                             range(1, len(self.space.depths))
                                             if not self.space.staged)
            self.head = parts["head"]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return walk_skeleton(self, x, lambda i, h: self.layers[i](h))

        def freeze(self, sample: dict[str, Any]) -> nn.Module:
            """The child of ``sample``, holding a copy of this space's weights of its choices.

            NNI's default deep-copies the whole space (every candidate) first; this builds the
            child alone and loads the chosen candidates' weights (also after a one-shot
            strategy replaced the LayerChoices, whose candidates keep their names).
            """
            spec = sample_to_spec(sample, self.space)
            with nni_space.model_context(spec_to_sample(spec)):
                child = type(self)(self.space.name)
            state = {}
            for key, value in self.state_dict().items():
                if key.startswith("layers."):
                    _, index, name, rest = (key.split(".", 3) + [""])[:4]
                    if name != spec.layers[int(index)].token or not rest:
                        continue  # another candidate, or the strategy's own state (α)
                    key = f"layers.{index}.{rest}"
                state[key] = value
            child.load_state_dict(state)
            return child.train(self.training)

    HwnasModelSpace.__module__ = __name__
    HwnasModelSpace.__qualname__ = "HwnasModelSpace"
    return HwnasModelSpace


def nni_model_space(space: Space | str) -> nn.Module:
    """A fresh NNI ``ModelSpace`` of a registered hwnas space (an ``nni...ModelSpace``)."""
    space = as_space(space)
    if get_space(space.name) is not space:
        raise HwnasError(f"space {space.name!r} must be registered (register_space) to be "
                         "offered to NNI, which rebuilds it by name when freezing")
    return _model_space_class()(space.name)


def freeze_spec(model_space: nn.Module, spec: ArchSpec) -> nn.Module:
    """``model_space.freeze`` for ``spec``: the modules and state-dict keys of ``build(spec)``,
    with the weights the model space holds for those choices (e.g. after a one-shot search)."""
    return model_space.freeze(spec_to_sample(spec, model_space.space))
