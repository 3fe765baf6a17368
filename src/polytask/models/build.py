"""Build the configured network for a set of fitted tasks and an input encoder."""

from __future__ import annotations

from collections.abc import Sequence

from polytask.config import ModelConfig
from polytask.data.features import FeatureEncoder
from polytask.models.base import MultiTaskModel
from polytask.models.hard import HardSharing
from polytask.models.heads import mlp
from polytask.models.tabular import TabularEncoder
from polytask.tasks import Task


def build_model(
    config: ModelConfig, encoder: FeatureEncoder, tasks: Sequence[Task]
) -> MultiTaskModel:
    """A tabular trunk over the encoded features and one MLP head per task."""
    trunk = TabularEncoder(
        len(encoder.numeric), encoder.cardinalities, config.trunk, dropout=config.dropout
    )
    heads = {
        t.name: mlp(trunk.out_features, config.head, t.output_size, dropout=config.dropout)
        for t in tasks
    }
    return HardSharing(trunk, heads)


def count_parameters(model: MultiTaskModel) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
