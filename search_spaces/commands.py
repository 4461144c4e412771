"""CLI subcommands of search_spaces: ``hwnas space`` (describe a space, sample architectures)."""

from __future__ import annotations

import argparse

import torch

from hwnas_common.cli_types import int_at_least

from .space import SPACES, get_space


def _space(args: argparse.Namespace) -> int:
    space = get_space(args.name)
    if args.sample:
        generator = torch.Generator().manual_seed(args.seed)
        for _ in range(args.sample):
            print(space.sample(generator).to_json(indent=None))
        return 0
    print(f"space {space.name}: input {list(space.input)}, widths {list(space.widths)}, "
          f"depths {list(space.depths)}, {len(space.candidates)} candidates per layer")
    print("candidates: " + " ".join(space.tokens))
    print(f"fixed parts: {', '.join(part.name for part in space.fixed_parts())}")
    for slot in space.layer_slots():
        change = "" if slot.keeps_shape else f", output {slot.c_out} channels, stride {slot.stride}"
        print(f"  layer {slot.index}: stage {slot.stage}, input "
              f"{slot.channels}x{slot.height}x{slot.width}{change}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("space", help="describe a search space or sample architectures")
    p.add_argument("name", nargs="?", default="cifar", help=f"one of {sorted(SPACES)}")
    p.add_argument("--sample", type=int_at_least(0), default=0, metavar="N",
                   help="print N random ArchSpecs as JSON lines (default 0: the space's "
                   "summary)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="(default 0)")
    p.set_defaults(func=_space)
