"""``gru``: a GRU over lag columns (a window of past values), joined with the other features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask.builtin_options import GRUOptions
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.input_blocks.base import BlockFactory, register_input_block
from polytask.models.tabular import TabularEncoder


class SequenceEncoder(nn.Module):
    """GRU over ``steps`` time steps of ``channels`` numeric columns, plus the static features.

    ``sequence_index[c][t]`` is the position (in the numeric inputs) of channel ``c`` at step
    ``t``, oldest first. The GRU's last hidden state is concatenated with the other numeric
    columns and the categorical embeddings, then projected to ``out_features``.
    """

    def __init__(
        self,
        sequence_index: Sequence[Sequence[int]],
        static_numeric: Sequence[int],
        cardinalities: Sequence[int],
        out_features: int,
        *,
        hidden: int = 64,
        layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        index = torch.tensor([list(channel) for channel in sequence_index], dtype=torch.long)
        self.register_buffer("sequence_index", index.T.contiguous(), persistent=False)
        self.register_buffer(
            "static_index", torch.tensor(list(static_numeric), dtype=torch.long), persistent=False
        )
        self.gru = nn.GRU(
            len(sequence_index),
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        has_static = bool(static_numeric) or bool(cardinalities)
        self.static = TabularEncoder(len(static_numeric), cardinalities, []) if has_static else None
        width = hidden + (self.static.out_features if self.static is not None else 0)
        self.project = nn.Sequential(nn.Linear(width, out_features), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = out_features

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        numeric = inputs["numeric"]
        steps = numeric[:, self.sequence_index]  # (N, steps, channels)
        _, state = self.gru(steps)
        parts = [state[-1]]
        if self.static is not None:
            static = {
                "numeric": numeric[:, self.static_index],
                "categorical": inputs["categorical"],
            }
            parts.append(self.static(static))
        return self.project(torch.cat(parts, dim=-1))


def sequence_layout(
    config: GRUOptions, features: FeaturePreprocessor
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


def gru_block(
    options: GRUOptions, features: FeaturePreprocessor, out_features: int, dropout: float
) -> BlockFactory:
    sequence, static = sequence_layout(options, features)
    return lambda: SequenceEncoder(
        sequence,
        static,
        features.cardinalities,
        out_features,
        hidden=options.hidden,
        layers=options.layers,
        dropout=dropout,
    )


register_input_block("gru", GRUOptions, gru_block)
