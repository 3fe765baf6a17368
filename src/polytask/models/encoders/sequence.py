"""A GRU over lag columns (a window of past values), joined with the remaining features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

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
