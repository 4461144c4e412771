"""Search spaces of hwnas: interaction operators, blocks, skeletons, ArchSpec and the supernet."""

from .blocks import (
    CANDIDATE_BUILDERS,
    ChannelShuffle,
    FBNetBlock,
    InteractionBlock,
    MBConv,
    make_candidate,
    slot_candidate,
)
from .choices import CHOICE_MODES, ChoiceTree
from .interactions import INTERACTIONS, make_interaction, register_interaction
from .network import WEIGHT_MODES, ChildNet, MixedOp, Supernet, build, make_fixed_part
from .space import SPACES, FixedPart, LayerSlot, Space, get_space, register_space
from .spec import ArchSpec, LayerSpec, read_arch

__all__ = [
    "CANDIDATE_BUILDERS", "CHOICE_MODES", "ChannelShuffle", "ChoiceTree", "INTERACTIONS", "SPACES",
    "ArchSpec", "ChildNet", "FBNetBlock", "FixedPart",
    "InteractionBlock", "LayerSlot", "LayerSpec", "MBConv", "MixedOp", "Space",
    "Supernet", "WEIGHT_MODES", "build", "get_space", "make_candidate", "make_fixed_part",
    "make_interaction", "read_arch", "register_interaction", "register_space", "slot_candidate",
]
