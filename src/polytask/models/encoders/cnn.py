"""A small CNN over numeric pixel columns reshaped to ``(channels, height, width)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn


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
