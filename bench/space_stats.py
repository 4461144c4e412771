"""Parameter count and MACs of representative architectures of every space preset.

Run: python bench/space_stats.py
"""

from __future__ import annotations

from search_spaces import SPACES, build, get_space
from search_spaces.stats import count_macs, count_params

TOKENS = {"interaction": ["skip", "sum_k3_e2", "star_k3_e2", "quad_k3_e2", "quad_k7_e4",
                         "poly2_k7_e4", "rbf_k7_e4"],
          "mbconv": ["skip", "mb_k3_e3", "mb_k7_e6"]}


def main() -> None:
    print(f"{'space':20s} {'architecture':22s} {'params':>12s} {'MACs':>15s}")
    for name in SPACES:
        space = get_space(name)
        for token in TOKENS["mbconv" if name.startswith("proxyless") else "interaction"]:
            model = build(space.spec_from_string("|".join([token] * space.num_layers)))
            print(f"{name:20s} {'all ' + token:22s} {count_params(model):12,d} "
                  f"{count_macs(model, space.input):15,d}")


if __name__ == "__main__":
    main()
