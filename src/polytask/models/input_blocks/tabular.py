"""The default input block: numeric columns and categorical embeddings, then one layer."""

from __future__ import annotations

from polytask.builtin_options import TabularOptions
from polytask.data.features import FeaturePreprocessor
from polytask.models.input_blocks.base import BlockFactory, register_input_block
from polytask.models.tabular import TabularEncoder
from polytask.options import Options


def tabular_block(
    options: Options, features: FeaturePreprocessor, out_features: int, dropout: float
) -> BlockFactory:
    n_numeric, cardinalities = len(features.numeric), features.cardinalities
    return lambda: TabularEncoder(n_numeric, cardinalities, [out_features], dropout=dropout)


register_input_block("tabular", TabularOptions, tabular_block)
