"""``text``: how the ``features.text`` columns are encoded.

Frozen (default): the data step embeds each text once (:mod:`polytask.data.text`) and the cached
embeddings become numeric features, so the block is ``tabular``. With ``fine_tune: true`` the
sentence transformer itself is the input block (:class:`~polytask.models.encoders.text.
FineTunedText`), trained with the rest of the body over token ids cut at ``max_length``.
"""

from __future__ import annotations

import copy

from pydantic import Field
from torch import nn

from polytask.config import DEFAULT_MAX_LENGTH, DEFAULT_TEXT_MODEL
from polytask.data.features import FeatureEncoder
from polytask.errors import ConfigError
from polytask.models.encoders import text as text_encoder
from polytask.models.input_blocks.base import BlockFactory, register_input_block
from polytask.models.input_blocks.tabular import tabular_block
from polytask.options import Options


class TextOptions(Options):
    """``model`` (the sentence transformer), ``fine_tune``, ``max_length`` (tokens)."""

    model: str = Field(DEFAULT_TEXT_MODEL, min_length=1)
    fine_tune: bool = False
    max_length: int = Field(DEFAULT_MAX_LENGTH, ge=2)


def text_block(
    config: TextOptions, features: FeatureEncoder, out_features: int, *, dropout: float
) -> BlockFactory | None:
    """A factory of :class:`~.text.FineTunedText` blocks when the text is fine-tuned, else None
    (frozen text is numeric features for ``tabular``). The model is loaded once; every body
    (one per expert or task tower in architectures with several) gets its own copy."""
    if not features.text:
        raise ConfigError(
            "model.encoder: 'text' encodes the features.text columns, but the data has none"
        )
    if not features.fine_tune:
        return None
    loaded = text_encoder.load_trainable_encoder(features.text_model)
    n_numeric, cardinalities = len(features.numeric), features.cardinalities

    def block() -> nn.Module:
        return text_encoder.FineTunedText(
            copy.deepcopy(loaded.module),
            loaded.dim,
            len(features.text),
            n_numeric,
            cardinalities,
            out_features,
            dropout=dropout,
        )

    return block


def text_input_block(
    options: TextOptions, features: FeatureEncoder, out_features: int, dropout: float
) -> BlockFactory:
    block = text_block(options, features, out_features, dropout=dropout)
    if block is not None:
        return block
    return tabular_block(options, features, out_features, dropout)


register_input_block("text", TextOptions, text_input_block)
