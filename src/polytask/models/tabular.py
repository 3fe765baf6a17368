"""Tabular encoder: standardised numeric columns plus one embedding per categorical column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask.models.heads import mlp, output_width


def embedding_dim(cardinality: int) -> int:
    """A common rule of thumb: grows like the fourth root of the vocabulary, capped at 32."""
    return int(min(32, max(2, round(1.6 * cardinality**0.56))))


class TabularEncoder(nn.Module):
    """Concatenates numeric inputs with categorical embeddings, then applies an MLP.

    Input: ``{"numeric": float (N, p), "categorical": long (N, c)}``; category 0 stands for
    missing or unseen values. Output: ``(N, out_features)``.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        hidden: Sequence[int],
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, embedding_dim(size)) for size in cardinalities
        )
        in_features = n_numeric + sum(e.embedding_dim for e in self.embeddings)
        if in_features == 0:
            raise ValueError("the tabular encoder needs at least one feature")
        self.mlp = mlp(in_features, hidden, dropout=dropout)
        self.out_features = output_width(in_features, hidden)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        parts = [inputs["numeric"]] if inputs["numeric"].shape[-1] else []
        categorical = inputs["categorical"]
        parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=-1))
