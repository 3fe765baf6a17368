"""``text``: how the ``features.text`` columns are encoded.

Frozen (default): the data step embeds each text once (:mod:`polytask.data.text`) and the cached
embeddings become numeric features, so the block is ``tabular``. With ``fine_tune: true`` the
sentence transformer itself is the input block (:class:`FineTunedText`),
trained with the rest of the body over token ids cut at ``max_length``: the model is loaded by
:mod:`polytask.data.text_model` (the data step tokenizes the texts with its tokenizer), run here,
mean-pooled over the real tokens (as sentence-transformers does for MiniLM) and joined with the
tabular features.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask.builtin_options import TextOptions
from polytask.data import text_model
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.input_blocks.base import BlockFactory, register_input_block
from polytask.models.input_blocks.tabular import tabular_block
from polytask.models.tabular import TabularEncoder


def text_block(
    config: TextOptions, features: FeaturePreprocessor, out_features: int, *, dropout: float
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
    loaded = text_model.load_trainable_encoder(features.text_model)
    n_numeric, cardinalities = len(features.numeric), features.cardinalities

    def block() -> nn.Module:
        return FineTunedText(
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
    options: TextOptions, features: FeaturePreprocessor, out_features: int, dropout: float
) -> BlockFactory:
    block = text_block(options, features, out_features, dropout=dropout)
    if block is not None:
        return block
    return tabular_block(options, features, out_features, dropout)


register_input_block("text", TextOptions, text_input_block)


def mean_pool(tokens: Tensor, mask: Tensor) -> Tensor:
    """Average of the token vectors over the real (unmasked) tokens; zeros for no token."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class FineTunedText(nn.Module):
    """The fine-tuned sentence transformer over each text column, joined with the tabular part.

    Input: ``{"text_ids": long (N, t, L), "text_mask": bool (N, t, L), "numeric": (N, p),
    "categorical": (N, c)}``. Each text is run through ``transformer`` (cut to the longest text
    in the batch) and mean-pooled; the ``t`` pooled vectors and the tabular features (numeric
    columns and categorical embeddings, when there are any) are concatenated and projected to
    ``out_features``.
    """

    def __init__(
        self,
        transformer: nn.Module,
        dim: int,
        n_text: int,
        n_numeric: int,
        cardinalities: Sequence[int],
        out_features: int,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        has_tabular = n_numeric > 0 or len(cardinalities) > 0
        self.tabular = TabularEncoder(n_numeric, cardinalities, []) if has_tabular else None
        width = n_text * dim + (self.tabular.out_features if self.tabular is not None else 0)
        self.project = nn.Sequential(nn.Linear(width, out_features), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = out_features

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        ids, mask = inputs["text_ids"], inputs["text_mask"]
        n, columns, length = ids.shape
        ids, mask = ids.reshape(n * columns, length), mask.reshape(n * columns, length)
        used = torch.nonzero(mask.any(dim=0))
        length = int(used.max()) + 1 if used.numel() else 1
        ids, mask = ids[:, :length], mask[:, :length]
        pooled = mean_pool(self.transformer(ids, mask), mask)
        parts = [pooled.reshape(n, -1)]
        if self.tabular is not None:
            parts.append(self.tabular(inputs))
        return self.project(torch.cat(parts, dim=-1))
