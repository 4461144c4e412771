"""How a layer's architecture logits are laid out: one flat softmax, or a tree of choices.

``flat`` (ProxylessNAS): one logit per candidate, ``p = softmax(α)``.

``family`` (the factorised choice of FBNetV2 and Single-Path NAS): the layer first chooses the
kind of block (skip, interaction, MBConv or FBNet), an interaction block then its interaction
type, an FBNet block its groups (``g1``, ``g2``), and every block its (kernel, expansion). Each
internal node of that tree has a softmax over its children, and a candidate's probability is
the product along its path::

    log p(quad_k5_e2) = log p(interaction) + log p(quad | interaction) + log p(k5_e2 | quad)

so MBConv is one of three kinds in the hybrid space instead of 6 candidates in 37, in prior
probability and in uniform training paths alike. α is one vector per layer either way: the
logits of the tree's edges (for ``flat`` the tree is the root and its 31 or 37 leaves).

The derivation compares candidates with different numbers of siblings, and a plain
``Σ log p`` then favours the candidate with the fewest (skip, one leaf under the root, wins
every layer while p is diffuse). :meth:`ChoiceTree.derive_scores` therefore scores each step
against a uniform choice, ``Σ_path log(n_siblings · p(child | parent))``: 0 for every candidate
at α = 0, and the plain ``log p`` plus a constant for ``flat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hwnas_common import HwnasError

from .spec import LayerSpec

CHOICE_MODES = ("flat", "family")


def candidate_path(layer: LayerSpec, mode: str) -> tuple[str, ...]:
    """The node names from the root to ``layer``'s leaf."""
    if mode not in CHOICE_MODES:
        raise HwnasError(f"unknown choices {mode!r}; valid: {list(CHOICE_MODES)}")
    if mode == "flat":
        return (layer.token,)
    if layer.op == "skip":
        return ("skip",)
    size = f"k{layer.kernel}_e{layer.expansion}"
    if layer.op == "mbconv":
        return ("mbconv", size)
    if layer.op == "fbnet":
        return ("fbnet", f"g{layer.groups}", size)
    return ("interaction", str(layer.interaction), size)


@dataclass(frozen=True)
class ChoiceTree:
    """The edges of a choice tree and, per candidate, the edges of its path.

    ``groups[g]`` lists the edges leaving one internal node (a softmax); ``incidence`` is the
    (candidates × edges) 0/1 matrix of paths, so ``log p = incidence @ edge_log_probs``.
    """

    mode: str
    groups: tuple[tuple[int, ...], ...]
    incidence: torch.Tensor  # float64, (candidates, edges)

    @classmethod
    def of(cls, candidates: tuple[LayerSpec, ...], mode: str) -> ChoiceTree:
        edges: dict[tuple[str, ...], int] = {}  # node path (prefix) -> edge index
        groups: dict[tuple[str, ...], list[int]] = {}  # parent prefix -> its edges
        paths = []
        for layer in candidates:
            path = candidate_path(layer, mode)
            indices = []
            for depth in range(1, len(path) + 1):
                prefix = path[:depth]
                if prefix not in edges:
                    edges[prefix] = len(edges)
                    groups.setdefault(path[:depth - 1], []).append(edges[prefix])
                indices.append(edges[prefix])
            paths.append(indices)
        incidence = torch.zeros(len(candidates), len(edges), dtype=torch.float64)
        for row, indices in enumerate(paths):
            incidence[row, indices] = 1.0
        return cls(mode, tuple(tuple(g) for g in groups.values()), incidence)

    @property
    def num_edges(self) -> int:
        return self.incidence.shape[1]

    def edge_log_probs(self, alpha: torch.Tensor) -> torch.Tensor:
        """log p(child | parent) of every edge (a log-softmax within each group)."""
        parts = torch.empty_like(alpha)
        for group in self.groups:
            index = list(group)
            parts[index] = torch.log_softmax(alpha[index], dim=0)
        return parts

    def log_probs(self, alpha: torch.Tensor) -> torch.Tensor:
        """log p of every candidate (differentiable in ``alpha``)."""
        if self.mode == "flat":
            return torch.log_softmax(alpha, dim=0)
        return self.incidence.to(alpha) @ self.edge_log_probs(alpha)

    def derive_scores(self, alpha: torch.Tensor) -> torch.Tensor:
        """``Σ_path log(n_siblings · p(child | parent))`` per candidate (module docstring)."""
        sizes = torch.empty(self.num_edges, dtype=torch.float64)
        for group in self.groups:
            sizes[list(group)] = float(len(group))
        edge = self.edge_log_probs(alpha.detach().double()) + sizes.log()
        return self.incidence @ edge
