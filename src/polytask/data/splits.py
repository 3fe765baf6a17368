"""Reproducible train/validation/test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import DataError

SPLITS = ("train", "validation", "test")


def random_split(
    n_rows: int, *, validation: float, test: float, seed: int
) -> dict[str, np.ndarray]:
    """Shuffle ``range(n_rows)`` with ``seed`` and cut it into the three splits (sorted indices)."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DataError("split fractions must lie in [0, 1) and leave rows for training")
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = round(test * n_rows)
    n_val = round(validation * n_rows)
    parts = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    return {name: np.sort(index) for name, index in parts.items()}


def column_split(
    frame: pd.DataFrame, column: str, *, validation: float, seed: int, source: str
) -> dict[str, np.ndarray]:
    """Use a column with values train/validation/test; carve validation from train if absent."""
    if column not in frame.columns:
        raise DataError(f"{source}: split column '{column}' is missing")
    values = frame[column].astype(str).str.strip().str.lower().to_numpy()
    unknown = sorted(set(values) - set(SPLITS))
    if unknown:
        row = int(np.flatnonzero(values == unknown[0])[0])
        raise DataError(
            f"{source}: split column '{column}' row {row + 1} holds {unknown[0]!r}; "
            f"expected one of {list(SPLITS)}"
        )
    parts = {name: np.flatnonzero(values == name) for name in SPLITS}
    if parts["validation"].size == 0:
        train = parts["train"]
        carved = random_split(len(train), validation=validation, test=0.0, seed=seed)
        parts["validation"] = train[carved["validation"]]
        parts["train"] = train[carved["train"]]
    return parts
