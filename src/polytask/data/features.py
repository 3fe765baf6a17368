"""Input features: which columns, and how they become tensors.

Numeric columns are standardised with training statistics (computed in float64; a value too
large to standardise, or whose standardised value overflows float32, is an error naming its
row). Infinite values are errors. Missing values follow ``missing``: ``"impute"`` replaces them
by the training median and adds a 0/1 indicator column ``missing:<column>`` for each column that
had missing values in the training rows (the set is fixed at fit time: a column complete in
training but missing at predict time is imputed with a :class:`DataWarning`); ``"error"``
rejects them. Categorical columns get a vocabulary learned on training rows; code 0 stands for
unseen categories (with a :class:`DataWarning` per column outside training) and, unless
``"impute"`` saw them in training (then they have their own category ``""``), missing ones.

Text columns (``features.text``) are either embedded by the frozen sentence encoder (cached;
the vectors become numeric columns ``<column>_emb_000`` …, added to ``numeric``) or, when the
encoder is fine-tuned, tokenised once into ``text_ids`` / ``text_mask`` inputs of shape
``(N, n_text_columns, max_length)``. Either way :meth:`FeaturePreprocessor.transform` does it for
new tables too, with the model recorded in the encoder (and so in the run's ``data.json``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polytask.errors import ConfigError, DataError, did_you_mean

MISSING_PREFIX = "missing:"
"""Name prefix of the 0/1 indicator column of a numeric feature's imputed values."""
MISSING_POLICIES = ("impute", "error")
_FLOAT64_MAX = float(np.finfo(np.float64).max)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataWarning(UserWarning):
    """Data that is used, but not as in training: unseen categories, or missing values in a
    column that had none (the CLI prints each as one ``warning:`` line)."""


def row_name(frame: pd.DataFrame, position: int) -> str:
    """Where a user finds row ``position`` of ``frame``: ``row N``, its 1-based data row in the
    table it was read from (index label + 1 of the default integer index, so subsets such as a
    split keep the table's numbering); ``row N of SOURCE`` when ``frame`` joins several tables
    under a ``(source, label)`` index; the label itself for any other index."""
    label = frame.index[position]
    where = ""
    if isinstance(label, tuple) and len(label) == 2:
        where, label = f" of {label[0]}", label[1]
    if isinstance(label, int | np.integer) and not isinstance(label, bool) and label >= 0:
        return f"row {int(label) + 1}{where}"
    return f"row {label!r}{where}"


def overflow_rows(values: np.ndarray) -> np.ndarray:
    """Positions of the values (NaN = absent) too large for a float64 mean and variance over
    this many values: ``|x| > sqrt(max / n) / 2``. When the variance of ``values`` overflows,
    at least one value is above that bound (n·(2·max|x|)² > max)."""
    present = ~np.isnan(values)
    limit = np.sqrt(_FLOAT64_MAX / max(int(present.sum()), 1)) / 2
    return np.flatnonzero(present & (np.abs(np.where(present, values, 0.0)) > limit))


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the non-NaN ``values`` in float64 (may be inf or NaN when
    they overflow; the caller checks)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.nanmean(values)), float(np.nanstd(values))


def infer_features(frame: pd.DataFrame, exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split the columns not in ``exclude`` into numeric and categorical ones by dtype."""
    excluded = set(exclude)
    columns = [c for c in frame.columns if c not in excluded]
    numeric = [c for c in frame[columns].select_dtypes(include="number").columns]
    categorical = [c for c in columns if c not in set(numeric)]
    return numeric, categorical


@dataclass
class FeaturePreprocessor:
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
    missing: str = "error"
    median: list[float] = field(default_factory=list)
    indicators: list[str] = field(default_factory=list)
    _tokenize: Callable[..., tuple[Any, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(
                f"features.missing: {self.missing!r} is not one of {list(MISSING_POLICIES)}"
            )

    def indicator_columns(self) -> dict[str, str]:
        """``{indicator name: numeric column}`` of the columns imputed with an indicator."""
        return {f"{MISSING_PREFIX}{c}": c for c in self.indicators}

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
        from polytask.data import text_model
        from polytask.data.text import text_values

        if self._tokenize is None:
            self._tokenize = text_model.load_trainable_encoder(self.text_model).tokenize
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
        derived = self.indicator_columns()
        for column in [*self.numeric, *self.categorical]:
            if column not in frame.columns and column not in derived:
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

    def numeric_values(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """The numeric feature columns of ``frame`` as float64 ``(N, p)``, NaN where missing;
        a non-numeric or infinite entry (or a missing one, unless imputed) raises naming its
        row."""
        return self._numeric_values(frame, source)

    def fit(self, frame: pd.DataFrame, source: str = "data") -> FeaturePreprocessor:
        """Learn standardisation statistics, medians and vocabularies from training rows."""
        derived = self.indicator_columns()
        self.numeric = [c for c in self.numeric if c not in derived]  # from an earlier fit
        self.indicators = []
        self.check_columns(frame, source)
        values = self._numeric_values(frame, source)
        mean, std, median = [], [], []
        for j, column in enumerate(self.numeric):
            present = values[~np.isnan(values[:, j]), j]
            if len(values) == 0:  # no training rows: the identity
                present = np.zeros(1)
            if present.size == 0:
                _raise_no_value(column, source)
            m, s = mean_std(present)
            if not (np.isfinite(m) and np.isfinite(s)):
                self._raise_overflow(frame, values[:, j], column, source)
            mean.append(m)
            std.append(s)
            median.append(float(np.median(present)))
        missing = [bool(np.isnan(values[:, j]).any()) for j in range(len(self.numeric))]
        categories = {c: frame[c] for c in self.categorical}
        return self._set_fitted(mean, std, median, missing, categories, source)

    def fit_summary(self, summary: FeatureSummary, source: str = "data") -> FeaturePreprocessor:
        """Learn what :meth:`fit` learns from a :class:`FeatureSummary` of the training rows,
        gathered chunk by chunk (streamed data); medians come from the summary's sample."""
        derived = self.indicator_columns()
        self.numeric = [c for c in self.numeric if c not in derived]  # from an earlier fit
        self.indicators = []
        mean, std = summary.mean.tolist(), np.sqrt(summary.m2 / summary.count).tolist()
        median = []
        for j, column in enumerate(self.numeric):
            if summary.count[j] == 0:
                _raise_no_value(column, source)
            if not (np.isfinite(mean[j]) and np.isfinite(std[j])):
                raise DataError(
                    f"{source}: numeric feature '{column}' holds values too large to standardise "
                    "(the column's variance overflows); rescale the column (e.g. log) or drop "
                    "those rows"
                )
            median.append(float(np.median(summary.samples[j])))
        return self._set_fitted(
            mean, std, median, summary.missing.tolist(), summary.categories, source
        )

    def _set_fitted(
        self,
        mean: list[float],
        std: list[float],
        median: list[float],
        missing: list[bool],
        categories: Mapping[str, pd.Series],
        source: str,
    ) -> FeaturePreprocessor:
        """Record the statistics of the numeric columns (a zero ``std`` becomes 1), an
        indicator for each column with ``missing`` values, and the vocabulary of the values in
        ``categories`` (each categorical column's training values, or their distinct ones)."""
        std = [s if s > 0 else 1.0 for s in std]
        self.indicators = [c for c, absent in zip(self.numeric, missing, strict=True) if absent]
        names = list(self.indicator_columns())
        clash = [n for n in names if n in {*self.numeric, *self.categorical, *self.text}]
        if clash:
            raise DataError(
                f"{source}: the indicator column '{clash[0]}' of missing values clashes with a "
                "feature of that name; rename that column"
            )
        self.numeric = [*self.numeric, *names]
        self.mean, self.std = [*mean, *[0.0] * len(names)], [*std, *[1.0] * len(names)]
        self.median = [*median, *[0.0] * len(names)]
        impute = self.missing == "impute"  # a missing category ("") of its own when seen
        self.vocabularies = {
            c: sorted(_distinct_strings(categories[c]) - (set() if impute else {""}))
            for c in self.categorical
        }
        return self

    @staticmethod
    def _raise_overflow(frame: pd.DataFrame, values: np.ndarray, column: str, source: str) -> None:
        rows = overflow_rows(values)
        if rows.size == 0:  # cannot happen (see overflow_rows); name the largest value anyway
            rows = np.asarray([int(np.nanargmax(np.abs(values)))])
        raise DataError(
            f"{source}: numeric feature '{column}' {row_name(frame, int(rows[0]))} holds "
            f"{values[rows[0]]:g}, too large to standardise (the column's variance overflows; "
            f"{rows.size} such row(s)); rescale the column (e.g. log) or drop the row"
        )

    def transform(
        self, frame: pd.DataFrame, source: str = "data", *, warn: bool = True
    ) -> dict[str, Tensor]:
        """Encode ``frame``: missing numeric values imputed (``missing="impute"``), unseen
        categories to code 0, text embedded or tokenised. ``warn``: a :class:`DataWarning` per
        column with categories (or missing values) never seen in training."""
        frame = self.add_text_embeddings(frame, source)
        self.check_columns(frame, source)
        values = self._numeric_values(frame, source)
        indicated = set(self.indicators)
        for j, column in enumerate(self.numeric):
            absent = np.isnan(values[:, j])
            if absent.any():  # only with missing="impute"
                values[absent, j] = self.median[j]
                if warn and column not in indicated:
                    how = f"(imputed with the training median {self.median[j]:g})"
                    _warn(source, column, int(absent.sum()), *_UNSEEN_MISSING, how)
        numeric = self._standardise(values, frame, source)
        codes = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            index = {v: i + 1 for i, v in enumerate(self.vocabularies[column])}
            found, strings = _category_codes(frame[column])
            known = np.asarray([index.get(s, 0) for s in strings], dtype=np.int64)
            codes[:, j] = known[found]
            if warn:
                rows = np.bincount(found, minlength=len(strings))
                unseen = sum(
                    int(n) for s, n in zip(strings, rows, strict=True) if s and s not in index
                )
                _warn(source, column, unseen, *_UNSEEN_CATEGORY, "(mapped to unknown)")
                if self.missing == "impute" and "" not in index:
                    absent = sum(int(n) for s, n in zip(strings, rows, strict=True) if not s)
                    _warn(source, column, absent, *_UNSEEN_MISSING, "(mapped to unknown)")
        inputs = {
            "numeric": torch.as_tensor(numeric.reshape(len(frame), -1), dtype=torch.float32),
            "categorical": torch.from_numpy(codes),
        }
        if self.text and self.fine_tune:
            inputs.update(self.tokenize(frame, source))
        return inputs

    def _standardise(self, values: np.ndarray, frame: pd.DataFrame, source: str) -> np.ndarray:
        """``(values - mean) / std``, checked to fit in float32 (the model's precision)."""
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (values - mean) / std
        bad = np.argwhere(~np.isfinite(scaled) | (np.abs(scaled) > _FLOAT32_MAX))
        if bad.size:
            row, j = (int(v) for v in bad[0])
            raise DataError(
                f"{source}: numeric feature '{self.numeric[j]}' {row_name(frame, row)} holds "
                f"{values[row, j]:g}, too large to standardise with the training mean "
                f"{mean[j]:g} and std {std[j]:g} (beyond float32); rescale the column or drop "
                "the row"
            )
        return scaled

    def _numeric_values(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """The numeric features as float64, NaN where missing (only with ``missing="impute"``;
        indicator columns are 1 there); non-numeric or infinite entries raise naming the row."""
        impute = self.missing == "impute"
        derived = self.indicator_columns()
        out = np.empty((len(frame), len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            if column in derived:
                continue
            raw = frame[column]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
            if impute:
                bad &= ~raw.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                value = raw.iloc[row]
                value = value.item() if isinstance(value, np.generic) else value
                what = (
                    "an infinite value"
                    if np.isinf(values[row])
                    else "a missing value"
                    if pd.isna(value)
                    else repr(value)
                )
                hint = (
                    "numeric features must be numbers or missing"
                    if impute
                    else "numeric features must be finite numbers: impute them (features.missing:"
                    " impute) or declare the column categorical"
                )
                raise DataError(
                    f"{source}: numeric feature '{column}' {row_name(frame, row)} holds {what} "
                    f"({int(bad.sum())} bad row(s)); {hint}"
                )
            out[:, j] = values
        position = {c: j for j, c in enumerate(self.numeric)}
        for name, column in derived.items():
            out[:, position[name]] = np.isnan(out[:, position[column]])
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
            "missing": self.missing,
            "median": self.median,
            "indicators": self.indicators,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeaturePreprocessor:
        """Inverse of :meth:`to_dict`."""
        optional = ("text", "text_model", "fine_tune", "max_length", "text_dim")
        optional += ("missing", "median", "indicators")  # runs before features.missing: error
        return cls(
            **{k: data[k] for k in ("numeric", "categorical", "mean", "std", "vocabularies")},
            **{k: data[k] for k in optional if k in data},
        )


FeatureEncoder = FeaturePreprocessor  # the earlier name, kept for existing code


_UNSEEN_CATEGORY = ("row has a category", "rows have categories", "not seen in training")
_UNSEEN_MISSING = ("row is", "rows are", "missing, which no training row was")


def _warn(source: str, column: str, count: int, one: str, many: str, what: str, how: str) -> None:
    """One :class:`DataWarning` line, ``source: column 'c': 3 rows <what> <how>`` (none for
    no rows)."""
    if count:
        rows = f"1 {one}" if count == 1 else f"{count} {many}"
        message = f"{source}: column '{column}': {rows} {what} {how}"
        warnings.warn(message, DataWarning, stacklevel=4)


def _category_strings(series: pd.Series) -> list[str]:
    """Category values as stripped strings, with missing values as ''."""
    return ["" if pd.isna(v) else str(v).strip() for v in series.to_numpy(dtype=object)]


def _category_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """``(codes, strings)`` with ``strings[codes[i]]`` the category string of row ``i`` (as
    :func:`_category_strings` makes it): each distinct value is turned into a string once.
    Values of mixed kinds, or floats, are turned one by one (``1 == 1.0 == True`` and
    ``0.0 == -0.0`` in Python, though their strings differ)."""
    if isinstance(series.dtype, pd.StringDtype):  # factorised by Arrow: no object per row
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = pa.array(series.array)
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        encoded = pc.dictionary_encode(arrow)
        strings = [*_category_strings(encoded.dictionary.to_pandas()), ""]
        codes = pc.fill_null(encoded.indices, len(strings) - 1).to_numpy(zero_copy_only=False)
        return codes.astype(np.int64), strings
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) not in _DISTINCT_AS_STRINGS:
        strings = _category_strings(series)
        codes, uniques = pd.factorize(np.asarray(strings, dtype=object))
        return codes, [str(u) for u in uniques]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    strings = [*_category_strings(pd.Series(uniques, dtype=object)), ""]  # code -1: missing
    return np.where(codes < 0, len(strings) - 1, codes), strings


def _distinct_strings(series: pd.Series) -> set[str]:
    """The category strings that occur in ``series``."""
    codes, strings = _category_codes(series)
    return {strings[i] for i in np.unique(codes)}


_DISTINCT_AS_STRINGS = ("string", "integer", "boolean", "empty")
"""Kinds of values (``pandas.api.types.infer_dtype``) that are equal exactly when their strings
are: their distinct values can be turned into strings after factorising."""


def _raise_no_value(column: str, source: str) -> None:
    raise DataError(
        f"{source}: numeric feature '{column}' has no value in the training rows; "
        "drop it (features.drop)"
    )


@dataclass
class FeatureSummary:
    """What :meth:`FeaturePreprocessor.fit_summary` needs of the training rows, per numeric
    column: the count of present values, their mean and sum of squared deviations ``m2``
    (float64), whether any value is missing, and a sample of its present values for the
    median; per categorical column, its distinct training values."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    missing: np.ndarray
    samples: list[np.ndarray]
    categories: dict[str, pd.Series]


def select_columns(frame: pd.DataFrame, names: Sequence[str], source: str) -> None:
    """Raise when a declared column is absent (used for declared features and drops)."""
    for name in names:
        if name not in frame.columns:
            raise DataError(
                f"{source}: column '{name}' is missing{did_you_mean(name, map(str, frame.columns))}"
            )
