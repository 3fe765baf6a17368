"""Architectures (one module each) and the encoders and heads they are built from."""

from polytask.models.base import MultiTaskModel
from polytask.models.hard import HardSharing
from polytask.models.heads import mlp
from polytask.models.tabular import TabularEncoder

__all__ = ["HardSharing", "MultiTaskModel", "TabularEncoder", "mlp"]
