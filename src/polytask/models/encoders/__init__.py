"""Input encoders: the first block of every architecture's body, chosen by ``model.encoder``.

* ``tabular`` (default, :mod:`polytask.models.tabular`): numeric columns + categorical embeddings.
* ``cnn`` (:mod:`.cnn`): numeric pixel columns reshaped to ``(channels, height, width)``.
* ``gru`` (:mod:`.sequence`): a GRU over lag columns picked by name prefix, joined with the
  remaining features.
* ``text`` (:mod:`.text`) over the ``features.text`` columns: frozen (default), its cached
  embeddings become numeric feature columns in the data step (:mod:`polytask.data.text`) and
  the model uses ``tabular``; with ``fine_tune: true`` the sentence transformer itself is the
  input block (:class:`~.text.FineTunedText`), trained with the rest of the body.

:func:`input_block` checks the choice against the fitted features and raises a ConfigError
naming the key when they do not fit (e.g. ``cnn`` on a table that is not an image).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from torch import nn

from polytask.config import EncoderConfig
from polytask.data.features import FeatureEncoder
from polytask.errors import ConfigError
from polytask.models.encoders import text as text_encoder
from polytask.models.encoders.cnn import ConvEncoder
from polytask.models.encoders.sequence import SequenceEncoder
from polytask.models.tabular import TabularEncoder

__all__ = [
    "ConvEncoder",
    "SequenceEncoder",
    "image_shape",
    "input_block",
    "sequence_layout",
    "text_block",
]


def image_shape(config: EncoderConfig, features: FeatureEncoder) -> tuple[int, int, int]:
    """``(channels, height, width)`` for the numeric features; a square is inferred when
    height/width are not given."""
    if features.categorical:
        raise ConfigError(
            "model.encoder.type: 'cnn' reads numeric pixel columns only, but the data has "
            f"{len(features.categorical)} categorical feature(s) (e.g. "
            f"'{features.categorical[0]}'); drop them with features.drop or use 'tabular'"
        )
    n, channels = len(features.numeric), config.channels
    height, width = config.height, config.width
    if height is None and width is None:
        side = math.isqrt(n // channels) if n % channels == 0 else 0
        if side == 0 or channels * side * side != n:
            raise ConfigError(
                f"model.encoder: 'cnn' needs the {n} numeric feature columns to form "
                f"{channels} channel(s) of a square image; {n} is not {channels}×side²; "
                "set model.encoder.height and width (and channels)"
            )
        height = width = side
    elif height is None or width is None:
        known = height if height is not None else width
        assert known is not None
        if n % (channels * known):
            raise ConfigError(
                f"model.encoder: {n} numeric feature columns do not divide into "
                f"{channels} channel(s) × {known}"
            )
        other = n // (channels * known)
        height, width = (known, other) if height is not None else (other, known)
    if channels * height * width != n:
        raise ConfigError(
            f"model.encoder: channels×height×width = {channels}×{height}×{width} = "
            f"{channels * height * width}, but the data has {n} numeric feature columns"
        )
    return channels, height, width


def sequence_layout(
    config: EncoderConfig, features: FeatureEncoder
) -> tuple[list[list[int]], list[int]]:
    """Positions of each sequence channel's columns (table order, oldest first) and of the
    remaining (static) numeric columns."""
    prefixes = config.sequence or []
    if not prefixes:
        raise ConfigError("model.encoder.sequence: 'gru' needs the lag column prefix(es)")
    channels = []
    for prefix in prefixes:
        found = [i for i, name in enumerate(features.numeric) if name.startswith(prefix)]
        if not found:
            shown = features.numeric[:5]
            raise ConfigError(
                f"model.encoder.sequence: no numeric feature column starts with '{prefix}' "
                f"(numeric features: {shown}{' …' if len(features.numeric) > 5 else ''})"
            )
        channels.append(found)
    lengths = {len(c) for c in channels}
    if len(lengths) > 1:
        counts = {p: len(c) for p, c in zip(prefixes, channels, strict=True)}
        raise ConfigError(
            f"model.encoder.sequence: every prefix must match the same number of steps: {counts}"
        )
    used = {i for channel in channels for i in channel}
    if len(used) != sum(len(c) for c in channels):
        raise ConfigError("model.encoder.sequence: the prefixes overlap (a column matches two)")
    static = [i for i in range(len(features.numeric)) if i not in used]
    return channels, static


def text_block(
    config: EncoderConfig, features: FeatureEncoder, out_features: int, *, dropout: float
) -> Callable[[], nn.Module] | None:
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


def input_block(
    config: EncoderConfig, features: FeatureEncoder, out_features: int, *, dropout: float
) -> Callable[[], nn.Module]:
    """A factory of the first body block for ``config.type`` (checked against ``features`` now,
    so a mismatch fails before any training)."""
    if config.type == "cnn":
        channels, height, width = image_shape(config, features)
        return lambda: ConvEncoder(
            channels,
            height,
            width,
            config.conv,
            out_features,
            kernel=config.kernel,
            dropout=dropout,
        )
    if config.type == "gru":
        sequence, static = sequence_layout(config, features)
        return lambda: SequenceEncoder(
            sequence,
            static,
            features.cardinalities,
            out_features,
            hidden=config.hidden,
            layers=config.layers,
            dropout=dropout,
        )
    if config.type == "text":
        block = text_block(config, features, out_features, dropout=dropout)
        if block is not None:
            return block
    n_numeric, cardinalities = len(features.numeric), features.cardinalities
    return lambda: TabularEncoder(n_numeric, cardinalities, [out_features], dropout=dropout)
