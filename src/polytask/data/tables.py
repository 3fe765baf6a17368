"""Reading tables: CSV (optionally compressed) and Parquet, with clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polytask.errors import DataError

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file; an absent, unreadable or empty file raises DataError."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if name.endswith(_PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        elif name.endswith(_CSV_SUFFIXES):
            sep = "\t" if name.endswith(".tsv") else ","
            frame = pd.read_csv(path, sep=sep, skipinitialspace=True)
        else:
            raise DataError(
                f"{path}: unsupported file type; use .csv (optionally .gz/.bz2/.xz/.zip), "
                ".tsv or .parquet"
            )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a table ({exc})") from exc
    check_not_empty(frame, str(path))
    return frame


def check_not_empty(frame: pd.DataFrame, source: str) -> None:
    """Raise when ``frame`` has no rows or no columns."""
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{source}: the table is empty (no data rows)")
