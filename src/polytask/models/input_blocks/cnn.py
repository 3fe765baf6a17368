"""``cnn``: a small CNN over numeric pixel columns reshaped to ``(channels, height, width)``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from polytask.builtin_options import CNNOptions
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.input_blocks.base import BlockFactory, register_input_block


class ConvEncoder(nn.Module):
    """Conv(3×3) → ReLU → MaxPool(2) per entry of ``conv``, then a linear layer.

    Input: ``{"numeric": (N, C·H·W), ...}`` with pixels in row-major ``(C, H, W)`` order
    (categorical inputs are not used). Output: ``(N, out_features)``.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        conv: Sequence[int],
        out_features: int,
        *,
        kernel: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.shape = (channels, height, width)
        layers: list[nn.Module] = []
        in_channels, h, w = channels, height, width
        for out_channels in conv:
            layers += [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.ReLU()]
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * h * w, out_features),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_features = out_features

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        pixels = inputs["numeric"]
        images = pixels.reshape(pixels.shape[0], *self.shape)
        return self.project(self.features(images))


def image_shape(config: CNNOptions, features: FeaturePreprocessor) -> tuple[int, int, int]:
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


def cnn_block(
    options: CNNOptions, features: FeaturePreprocessor, out_features: int, dropout: float
) -> BlockFactory:
    channels, height, width = image_shape(options, features)
    return lambda: ConvEncoder(
        channels,
        height,
        width,
        options.conv,
        out_features,
        kernel=options.kernel,
        dropout=dropout,
    )


register_input_block("cnn", CNNOptions, cnn_block)
