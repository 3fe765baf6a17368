"""Input features: which columns, and how they become tensors.

Numeric columns are standardised with training statistics; NaN or infinite values are errors
(impute them before training, or declare the column categorical). Categorical columns get a
vocabulary learned on training rows; code 0 stands for missing or unseen categories.

Text columns (``features.text``) are either embedded by the frozen sentence encoder (cached;
the vectors become numeric columns ``<column>_emb_000`` …, added to ``numeric``) or, when the
encoder is fine-tuned, tokenised once into ``text_ids`` / ``text_mask`` inputs of shape
``(N, n_text_columns, max_length)``. Either way :meth:`FeatureEncoder.transform` does it for
new tables too, with the model recorded in the encoder (and so in the run's ``data.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polytask.errors import DataError, did_you_mean


def infer_features(frame: pd.DataFrame, exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split the columns not in ``exclude`` into numeric and categorical ones by dtype."""
    excluded = set(exclude)
    columns = [c for c in frame.columns if c not in excluded]
    numeric = [c for c in frame[columns].select_dtypes(include="number").columns]
    categorical = [c for c in columns if c not in set(numeric)]
    return numeric, categorical


@dataclass
class FeatureEncoder:
    """Turns a table into ``{"numeric": float (N, p), "categorical": long (N, c)}`` tensors
    (plus ``"text_ids"``: long and ``"text_mask"``: bool ``(N, t, max_length)`` when text
    columns are fine-tuned)."""

    numeric: list[str]
    categorical: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    text_model: str = ""
    fine_tune: bool = False
    max_length: int = 128
    text_dim: int = 0
    _tokenize: Callable[..., tuple[Any, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def embedding_columns(self, column: str) -> list[str]:
        """The numeric columns holding ``column``'s frozen embedding (known once embedded)."""
        return [f"{column}_emb_{i:03d}" for i in range(self.text_dim)]

    def add_text_embeddings(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        """``frame`` with the frozen embeddings of every text column appended (unchanged when
        there are none to add, or they are already there)."""
        if not self.text or self.fine_tune:
            return frame
        names = [n for c in self.text for n in self.embedding_columns(c)]
        if self.text_dim and all(n in frame.columns for n in names):
            return frame
        from polytask.data.text import embed_unique, text_values

        parts = [frame.drop(columns=[n for n in names if n in frame.columns])]
        for column in self.text:
            values = embed_unique(text_values(frame, column, source), self.text_model)
            if self.text_dim and values.shape[1] != self.text_dim:
                raise DataError(
                    f"{source}: text encoder {self.text_model} returned {values.shape[1]} "
                    f"numbers per text, but this model was trained on {self.text_dim}"
                )
            self.text_dim = values.shape[1]
            embedded = pd.DataFrame(
                values, columns=self.embedding_columns(column), index=frame.index
            )
            parts.append(embedded)
        return pd.concat(parts, axis=1)

    def tokenize(self, frame: pd.DataFrame, source: str) -> dict[str, Tensor]:
        """``text_ids`` and ``text_mask`` of shape ``(N, len(text), max_length)``, made with the
        fine-tuned model's own tokenizer."""
        from polytask.data.text import text_values
        from polytask.models.encoders import text as text_encoder

        if self._tokenize is None:
            self._tokenize = text_encoder.load_trainable_encoder(self.text_model).tokenize
        ids, masks = [], []
        for column in self.text:
            column_ids, mask = self._tokenize(text_values(frame, column, source), self.max_length)
            ids.append(torch.as_tensor(np.asarray(column_ids), dtype=torch.long))
            masks.append(torch.as_tensor(np.asarray(mask), dtype=torch.bool))
        return {"text_ids": torch.stack(ids, dim=1), "text_mask": torch.stack(masks, dim=1)}

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes (vocabulary plus the missing/unseen code 0)."""
        return [len(self.vocabularies[c]) + 1 for c in self.categorical]

    def check_columns(self, frame: pd.DataFrame, source: str) -> None:
        """Raise a DataError naming the first feature column ``frame`` lacks."""
        for column in [*self.numeric, *self.categorical]:
            if column not in frame.columns:
                raise DataError(
                    f"{source}: feature column '{column}' is missing"
                    f"{did_you_mean(column, map(str, frame.columns))}"
                )

    def validate(self, frame: pd.DataFrame, source: str) -> None:
        """Check columns and numeric values of a whole table, so errors name its own rows."""
        self.check_columns(frame, source)
        self._numeric_values(frame, source)
        if self.text:
            from polytask.data.text import text_values

            for column in self.text:
                text_values(frame, column, source)

    def fit(self, frame: pd.DataFrame, source: str = "data") -> FeatureEncoder:
        """Learn standardisation statistics and vocabularies from training rows."""
        self.check_columns(frame, source)
        values = self._numeric_values(frame, source)
        std = values.std(axis=0) if len(values) else np.ones(len(self.numeric))
        self.mean = values.mean(axis=0).tolist() if len(values) else [0.0] * len(self.numeric)
        self.std = np.where(std > 0, std, 1.0).tolist()
        self.vocabularies = {
            c: sorted(set(_category_strings(frame[c])) - {""}) for c in self.categorical
        }
        return self

    def transform(self, frame: pd.DataFrame, source: str = "data") -> dict[str, Tensor]:
        """Encode ``frame``; unseen categories map to code 0; text is embedded or tokenised."""
        frame = self.add_text_embeddings(frame, source)
        self.check_columns(frame, source)
        numeric = (self._numeric_values(frame, source) - np.asarray(self.mean)) / np.asarray(
            self.std
        )
        codes = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            index = {v: i + 1 for i, v in enumerate(self.vocabularies[column])}
            strings = _category_strings(frame[column])
            codes[:, j] = [index.get(s, 0) for s in strings]
        inputs = {
            "numeric": torch.as_tensor(numeric.reshape(len(frame), -1), dtype=torch.float32),
            "categorical": torch.from_numpy(codes),
        }
        if self.text and self.fine_tune:
            inputs.update(self.tokenize(frame, source))
        return inputs

    def _numeric_values(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        out = np.empty((len(frame), len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            raw = frame[column]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                row = int(bad[0])
                what = "an infinite value" if np.isinf(values[row]) else f"{raw.iloc[row]!r}"
                raise DataError(
                    f"{source}: numeric feature '{column}' row {row + 1} holds {what} "
                    f"({bad.size} bad row(s)); numeric features must be finite numbers: impute "
                    "them or declare the column categorical"
                )
            out[:, j] = values
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved in every run directory)."""
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "mean": self.mean,
            "std": self.std,
            "vocabularies": self.vocabularies,
            "text": self.text,
            "text_model": self.text_model,
            "fine_tune": self.fine_tune,
            "max_length": self.max_length,
            "text_dim": self.text_dim,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of :meth:`to_dict`."""
        text = ("text", "text_model", "fine_tune", "max_length", "text_dim")
        return cls(
            **{k: data[k] for k in ("numeric", "categorical", "mean", "std", "vocabularies")},
            **{k: data[k] for k in text if k in data},
        )


FeaturePreprocessor = FeatureEncoder
"""The feature preprocessing (scaling, vocabularies, text tokens or embeddings) by the name that
says what it is; ``FeatureEncoder`` is kept for existing code and saved runs."""


def _category_strings(series: pd.Series) -> list[str]:
    """Category values as stripped strings, with missing values as ''."""
    return ["" if pd.isna(v) else str(v).strip() for v in series.to_numpy(dtype=object)]


def select_columns(frame: pd.DataFrame, names: Sequence[str], source: str) -> None:
    """Raise when a declared column is absent (used for declared features and drops)."""
    for name in names:
        if name not in frame.columns:
            raise DataError(
                f"{source}: column '{name}' is missing{did_you_mean(name, map(str, frame.columns))}"
            )
