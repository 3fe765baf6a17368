"""Architectures (one module each) and the encoders and heads they are built from."""

from polytask.models.base import MultiTaskModel
from polytask.models.cross_stitch import CrossStitch, CrossStitchUnit
from polytask.models.groups import GroupSharing
from polytask.models.hard import HardSharing
from polytask.models.heads import mlp
from polytask.models.mmoe import MMoE
from polytask.models.ple import CGC, PLE
from polytask.models.registry import ARCHITECTURES, ModelParts, build_model, options_for
from polytask.models.soft import SoftSharing
from polytask.models.tabular import TabularEncoder
from polytask.models.tied import TiedCopies

__all__ = [
    "ARCHITECTURES",
    "CGC",
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
]
