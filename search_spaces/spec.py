"""Architectures as data: ``LayerSpec`` (one searchable layer's choice) and ``ArchSpec``.

JSON form::

    {"space": "cifar", "input": [3, 32, 32],
     "layers": [{"op": "block", "kernel": 7, "expansion": 4, "interaction": "quad"},
                {"op": "skip"}, {"op": "mbconv", "kernel": 3, "expansion": 6},
                {"op": "fbnet", "kernel": 5, "expansion": 1, "groups": 2}, ...]}

Compact form (layers only; the space is given separately):
``quad_k7_e4|skip|mb_k3_e6|fb_k5_e1_g2|...`` (``fb_k3_e6`` for an FBNet block of 1 group).
Decoding is strict: unknown keys, ops, tokens or values raise :class:`HwnasError` naming the
valid ones. Whether a layer is allowed in a given space is checked by ``Space.validate``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas_common.errors import HwnasError

from .interactions import INTERACTIONS

OPS = ("skip", "block", "mbconv", "fbnet")
_LAYER_KEYS = {"skip": {"op"}, "block": {"op", "kernel", "expansion", "interaction"},
               "mbconv": {"op", "kernel", "expansion"},
               "fbnet": {"op", "kernel", "expansion", "groups"}}
_FIELDS = ("op", "kernel", "expansion", "interaction", "groups")
_TOKEN = re.compile(r"^(?P<name>[a-z0-9]+)_k(?P<kernel>\d+)_e(?P<expansion>\d+)"
                    r"(?:_g(?P<groups>\d+))?$")
_ARCH_KEYS = ("space", "input", "layers")


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HwnasError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer's candidate: skip, an interaction block, an MBConv block or an
    FBNet block (``groups``: the groups of its two 1×1 convolutions)."""

    op: str
    kernel: int | None = None
    expansion: int | None = None
    interaction: str | None = None
    groups: int | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise HwnasError(f"unknown layer op {self.op!r}; valid: {list(OPS)}")
        if self.op == "skip":
            if (self.kernel, self.expansion, self.interaction, self.groups) != (None,) * 4:
                raise HwnasError("a 'skip' layer takes no kernel, expansion, interaction or "
                                 "groups")
            return
        kernel = _positive_int(self.kernel, f"{self.op} kernel")
        _positive_int(self.expansion, f"{self.op} expansion")
        if kernel % 2 == 0:
            raise HwnasError(f"kernel must be odd, got {kernel}")
        if self.op == "block" and self.interaction not in INTERACTIONS:
            raise HwnasError(
                f"unknown interaction {self.interaction!r}; valid: {sorted(INTERACTIONS)}")
        if self.op != "block" and self.interaction is not None:
            raise HwnasError(f"an {self.op!r} layer takes no interaction")
        if self.op == "fbnet":
            _positive_int(self.groups, "fbnet groups")
        elif self.groups is not None:
            raise HwnasError(f"a {self.op!r} layer takes no groups")

    @property
    def family(self) -> str | None:
        """The weight-sharing family: the interaction of a block, ``mbconv``, ``fbnet`` (or
        ``fbnet_g2`` for 2 groups), None for skip.

        Candidates of one family differ only in kernel and expansion, so a weight-shared
        supernet holds one module per family and slices every member from it. Grouped weights
        cannot be sliced from dense ones, so each FBNet group count is a family of its own."""
        if self.op == "skip":
            return None
        if self.op == "fbnet":
            return "fbnet" if self.groups == 1 else f"fbnet_g{self.groups}"
        return self.interaction if self.op == "block" else self.op

    @property
    def token(self) -> str:
        """Compact form: ``skip``, ``quad_k7_e4``, ``mb_k3_e6``, ``fb_k3_e6`` or
        ``fb_k5_e1_g2`` (an FBNet block's groups when more than 1)."""
        if self.op == "skip":
            return "skip"
        if self.op == "fbnet":
            groups = f"_g{self.groups}" if self.groups != 1 else ""
            return f"fb_k{self.kernel}_e{self.expansion}{groups}"
        name = self.interaction if self.op == "block" else "mb"
        return f"{name}_k{self.kernel}_e{self.expansion}"

    @classmethod
    def from_token(cls, token: str) -> LayerSpec:
        if token == "skip":
            return cls("skip")
        match = _TOKEN.match(token)
        if match is None or (match["groups"] is not None
                             and (match["name"] != "fb" or int(match["groups"]) < 2)):
            raise HwnasError(f"malformed layer token {token!r}; expected 'skip', "
                             "'<interaction>_k<K>_e<E>', 'mb_k<K>_e<E>', 'fb_k<K>_e<E>' or "
                             "'fb_k<K>_e<E>_g<G>' (G >= 2)")
        name, kernel, expansion = match["name"], int(match["kernel"]), int(match["expansion"])
        if name == "mb":
            return cls("mbconv", kernel, expansion)
        if name == "fb":
            return cls("fbnet", kernel, expansion, groups=int(match["groups"] or 1))
        if name not in INTERACTIONS:
            raise HwnasError(f"unknown interaction {name!r} in token {token!r}; "
                             f"valid: {sorted(INTERACTIONS)}, 'mb' or 'fb'")
        return cls("block", kernel, expansion, name)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _FIELDS if getattr(self, key) is not None}

    @classmethod
    def from_dict(cls, data: Any) -> LayerSpec:
        if not isinstance(data, dict):
            raise HwnasError(f"a layer must be a JSON object, got {data!r}")
        op = data.get("op")
        if op not in _LAYER_KEYS:
            raise HwnasError(f"unknown layer op {op!r}; valid: {list(OPS)}")
        unknown = set(data) - _LAYER_KEYS[op]
        missing = _LAYER_KEYS[op] - set(data)
        if unknown or missing:
            valid = sorted(_LAYER_KEYS[op])
            raise HwnasError(f"layer {data!r}: unknown keys {sorted(unknown)}, missing keys "
                             f"{sorted(missing)}; a {op!r} layer has keys {valid}")
        return cls(**data)


@dataclass(frozen=True)
class ArchSpec:
    """A whole architecture: its space name, input shape (C, H, W) and one LayerSpec per layer."""

    space: str
    input: tuple[int, int, int]
    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise HwnasError(f"space must be a non-empty string, got {self.space!r}")
        if not isinstance(self.input, tuple) or len(self.input) != 3:
            raise HwnasError(f"input must be a (C, H, W) tuple, got {self.input!r}")
        for dim in self.input:
            _positive_int(dim, "input dimension")
        if not isinstance(self.layers, tuple) or not all(
                isinstance(layer, LayerSpec) for layer in self.layers):
            raise HwnasError("layers must be a tuple of LayerSpec")

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "input": list(self.input),
                "layers": [layer.to_dict() for layer in self.layers]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_string(self) -> str:
        """The compact form of the layers, e.g. ``quad_k7_e4|skip|star_k3_e2``."""
        return "|".join(layer.token for layer in self.layers)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        if not isinstance(data, dict):
            raise HwnasError(f"an ArchSpec must be a JSON object, got {type(data).__name__}")
        if set(data) != set(_ARCH_KEYS):
            raise HwnasError(f"ArchSpec keys must be {list(_ARCH_KEYS)}, got {sorted(data)}")
        if not isinstance(data["input"], list) or not isinstance(data["layers"], list):
            raise HwnasError("ArchSpec 'input' and 'layers' must be JSON lists")
        return cls(data["space"], tuple(data["input"]),
                   tuple(LayerSpec.from_dict(layer) for layer in data["layers"]))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise HwnasError(f"ArchSpec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_string(cls, text: str, space: str, input: tuple[int, int, int]) -> ArchSpec:
        """Decode the compact form; the space name and input shape are given separately."""
        if not text:
            raise HwnasError("empty architecture string")
        return cls(space, tuple(input), tuple(LayerSpec.from_token(t) for t in text.split("|")))


def read_arch(path: str | Path) -> ArchSpec:
    """The ArchSpec in a JSON file, or in ``arch.json`` of a search run directory; one clear
    error when it is missing, not text, or malformed."""
    path = Path(path)
    file = path / "arch.json" if path.is_dir() else path
    if not file.is_file():
        where = (f"{path} is a folder without arch.json" if path.is_dir()
                 else f"{path}: no such file")
        raise HwnasError(f"{where} (expected an ArchSpec JSON file or a search run directory)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HwnasError(f"{file}: not a text file (expected ArchSpec JSON)") from None
    return ArchSpec.from_json(text)
