"""The fine-tuned sentence transformer as the first block of the body (:class:`FineTunedText`).

The model itself is loaded by :mod:`polytask.data.text_model` (a data-level module, so that the
data step, which tokenizes the texts, never imports the models): :func:`load_trainable_encoder`
gives its tokenizer (used once, when the data are prepared) and its transformer, which
:class:`FineTunedText` runs, mean-pools over the real tokens (as sentence-transformers does for
MiniLM) and joins with the tabular features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask.data.text_model import load_trainable_encoder
from polytask.models.tabular import TabularEncoder

# load_trainable_encoder is re-exported for the callers that still reach it through this module
# (data/features.py, models/encoders/__init__.py); they should import polytask.data.text_model.
__all__ = ["FineTunedText", "load_trainable_encoder", "mean_pool"]


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
