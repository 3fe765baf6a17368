"""Architectures (one module each) and the input blocks and heads they are built from.

Importing this package registers the built-in architectures and input blocks by name.
"""

from polytask.models.base import MultiTaskModel
from polytask.models.cross_stitch import CrossStitch, CrossStitchUnit
from polytask.models.groups import GroupSharing
from polytask.models.hard import HardSharing
from polytask.models.heads import mlp
from polytask.models.input_blocks import INPUT_BLOCKS, register_input_block
from polytask.models.mmoe import MMoE
from polytask.models.mtrl import MTRL
from polytask.models.ple import CGC, PLE
from polytask.models.registry import (
    ARCHITECTURES,
    ModelParts,
    build_model,
    options_for,
    register_architecture,
)
from polytask.models.soft import SoftSharing
from polytask.models.tabular import TabularEncoder
from polytask.models.tied import TiedCopies

__all__ = [
    "ARCHITECTURES",
    "CGC",
    "INPUT_BLOCKS",
    "MTRL",
    "PLE",
    "CrossStitch",
    "CrossStitchUnit",
    "GroupSharing",
    "HardSharing",
    "MMoE",
    "ModelParts",
    "MultiTaskModel",
    "SoftSharing",
    "TabularEncoder",
    "TiedCopies",
    "build_model",
    "mlp",
    "options_for",
    "register_architecture",
    "register_input_block",
]
