"""A tiny fake sentence transformer for the text tests: no network, no real model.

Installed through the same seams the code uses to load the real one
(``text_model.load_sentence_encoder`` for frozen embeddings,
``text_model.load_trainable_encoder`` for fine-tuning)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from polytask.data import text_model

DIM = 6
WORDS = ("good", "great", "love", "bad", "hate", "not")


class FrozenFake:
    """Deterministic 6-d 'embeddings' (counts of sentiment words); records what it embedded."""

    calls: ClassVar[list[list[str]]] = []

    def __call__(self, texts, batch_size=64):
        type(self).calls.append(list(texts))
        return np.array([[t.lower().count(w) for w in WORDS] for t in texts], dtype=np.float32)


def tokenize(texts, max_length):
    """Words to ids (a fixed hash into 1..49; 0 is padding), padded and cut to ``max_length``."""
    ids = np.zeros((len(texts), max_length), dtype=np.int64)
    for i, text in enumerate(texts):
        words = text.lower().split()[:max_length]
        ids[i, : len(words)] = [1 + sum(map(ord, w)) % 49 for w in words]
    return ids, ids > 0


class TinyTransformer(nn.Module):
    """An embedding table and one linear layer: (ids, mask) → token vectors."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(50, DIM)
        self.mix = nn.Linear(DIM, DIM)

    def forward(self, ids, mask):
        return self.mix(self.embedding(ids))


def install(monkeypatch) -> None:
    FrozenFake.calls = []
    monkeypatch.setattr(
        text_model, "load_sentence_encoder", lambda model, device="cpu": FrozenFake()
    )

    def trainable(model):
        return text_model.TrainableText(tokenize, TinyTransformer(), DIM)

    monkeypatch.setattr(text_model, "load_trainable_encoder", trainable)


def review_frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """A numeric feature, a review text (a few missing) and labels that depend on the text."""
    rng = np.random.default_rng(seed)
    good = rng.random(n) < 0.5
    phrases = np.where(good, "a good great film i love it", "a bad film i hate it not fun")
    suffix = rng.choice(["", " really", " truly so"], size=n)
    reviews = pd.Series([p + s for p, s in zip(phrases, suffix, strict=True)], dtype=object)
    reviews[rng.choice(n, 3, replace=False)] = np.nan
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "review": reviews,
            "liked": np.where(good, "yes", "no"),
            "score": good * 2.0 + rng.normal(size=n) * 0.1,
        }
    )


def text_config(source: str, output_dir: str, **model) -> dict:
    return {
        "name": "reviews",
        "output_dir": output_dir,
        "data": {"source": source, "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "features": {"text": ["review"]},
        "tasks": [
            {"name": "liked", "type": "binary", "positive": "yes"},
            {"name": "score", "type": "regression"},
        ],
        "model": {"trunk": [8], "head": [4], **model},
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.01, "seed": 0},
    }
