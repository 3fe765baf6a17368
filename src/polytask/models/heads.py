"""Building blocks: multilayer perceptrons used as heads, towers and trunks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None = None,
    *,
    dropout: float = 0.0,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Linear → activation → dropout per hidden width, then an optional linear output layer."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def output_width(in_features: int, hidden: Sequence[int]) -> int:
    """Width of the last hidden layer of :func:`mlp` (``in_features`` when there is none)."""
    return hidden[-1] if hidden else in_features
