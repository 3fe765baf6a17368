"""Build the configured network for a set of fitted tasks and fitted feature preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from polytask.config import ModelConfig
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.base import MultiTaskModel
from polytask.models.heads import mlp
from polytask.models.input_blocks import input_block, input_gate
from polytask.models.registry import build_model
from polytask.models.tabular import TabularEncoder
from polytask.tasks import Task


def build_network(
    config: ModelConfig, features: FeaturePreprocessor, tasks: Sequence[Task]
) -> MultiTaskModel:
    """The configured architecture over the configured input block, with MLP heads.

    The body is a sequence of blocks (the input block, ``model.encoder``: tabular embedding +
    first layer, CNN or GRU, each ending at width ``trunk[0]``, then one block per further
    trunk width), so layer-wise architectures (cross-stitch, tied) can address its layers.
    """
    n_numeric, cardinalities = len(features.numeric), features.cardinalities
    first_block = input_block(config.encoder, features, config.trunk[0], dropout=config.dropout)
    block_gate = input_gate(config.encoder, features)

    def body() -> nn.Module:
        first = first_block()
        blocks = [
            mlp(width, [out], dropout=config.dropout)
            for width, out in zip(config.trunk, config.trunk[1:], strict=False)
        ]
        return nn.Sequential(first, *blocks)

    def head(in_features: int, out_features: int) -> nn.Module:
        return mlp(in_features, config.head, out_features, dropout=config.dropout)

    def gate(n_experts: int) -> nn.Module:
        if block_gate is not None:  # the input block's own (e.g. over molecules)
            return block_gate(n_experts)
        if not n_numeric and not cardinalities:
            raise ConfigError(
                f"model.arch '{config.arch}' gates on the tabular features, but the data has "
                "none (only fine-tuned text); add a numeric or categorical feature"
            )
        inputs = TabularEncoder(n_numeric, cardinalities, [])
        return nn.Sequential(inputs, nn.Linear(inputs.out_features, n_experts))

    return build_model(
        config.arch,
        encoder_factory=body,
        encoder_width=config.trunk[-1],
        output_sizes={t.name: t.output_size for t in tasks},
        head_factory=head,
        gate_factory=gate,
        **config.options,
    )


def count_parameters(model: MultiTaskModel) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
