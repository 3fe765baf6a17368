"""Input features: which columns, and how they become tensors.

Numeric columns are standardised with training statistics; NaN or infinite values are errors
(impute them before training, or declare the column categorical). Categorical columns get a
vocabulary learned on training rows; code 0 stands for missing or unseen categories.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    """Turns a table into ``{"numeric": float (N, p), "categorical": long (N, c)}`` tensors."""

    numeric: list[str]
    categorical: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

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
        """Encode ``frame``; unseen categories map to code 0."""
        self.check_columns(frame, source)
        numeric = (self._numeric_values(frame, source) - np.asarray(self.mean)) / np.asarray(
            self.std
        )
        codes = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            index = {v: i + 1 for i, v in enumerate(self.vocabularies[column])}
            strings = _category_strings(frame[column])
            codes[:, j] = [index.get(s, 0) for s in strings]
        return {
            "numeric": torch.as_tensor(numeric.reshape(len(frame), -1), dtype=torch.float32),
            "categorical": torch.from_numpy(codes),
        }

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{k: data[k] for k in ("numeric", "categorical", "mean", "std", "vocabularies")}
        )


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
