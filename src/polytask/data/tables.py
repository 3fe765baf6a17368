"""Reading tables: CSV (optionally compressed) and Parquet, with clear errors for bad files.

A CSV whose header holds semicolons but no comma (the export format of spreadsheets in many
locales) is read as semicolon-separated; its numbers may then use decimal commas (``1,5``).
Duplicated column names, and Parquet columns of lists or structs, are errors naming them; so is
a first data row with more fields than the header (which pandas would silently read as an
index, shifting every value one column to the left).
"""

from __future__ import annotations

import lzma
import zipfile
from pathlib import Path

import pandas as pd

from polytask.errors import DataError

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file; an absent, unreadable or empty file raises DataError."""
    path = Path(path)
    name = path.name.lower()
    try:
        if path.is_dir():
            raise DataError(f"{path}: is a directory, not a table file (.csv, .tsv or .parquet)")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if name.endswith(_PARQUET_SUFFIXES):
            frame = _read_parquet(path)
        elif name.endswith(_CSV_SUFFIXES):
            frame = _read_csv(path, "\t" if name.endswith(".tsv") else ",")
        else:
            raise DataError(
                f"{path}: unsupported file type; use .csv (optionally .gz/.bz2/.xz/.zip), "
                ".tsv or .parquet"
            )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except (
        pd.errors.ParserError,
        UnicodeDecodeError,
        OSError,
        ValueError,
        EOFError,  # a truncated .gz/.bz2/.xz
        lzma.LZMAError,
        zipfile.BadZipFile,
    ) as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the reader said
        raise DataError(f"{path}: cannot be read as a table ({reason})") from exc
    check_not_empty(frame, str(path))
    return frame


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, skipinitialspace=True)
    names = [v for v in header.iloc[0] if isinstance(v, str)]  # blank ones become "Unnamed: i"
    if sep == "," and len(names) == 1 and ";" in names[0]:
        sep = ";"
        names = [n.strip() for n in names[0].split(";")]
    check_unique_columns(names, str(path))
    try:  # pandas would read a longer first data row's surplus fields as an index, silently
        pd.read_csv(path, sep=sep, header=None, nrows=2, dtype=str, skipinitialspace=True)
    except pd.errors.ParserError as exc:
        reason = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
        raise DataError(
            f"{path}: the first data row has more fields than the header ({reason}); quote "
            f"values that hold '{sep}', or name every column"
        ) from exc
    frame = pd.read_csv(path, sep=sep, skipinitialspace=True)
    if sep == ";":  # spreadsheets that separate with ';' usually write decimal commas
        commas = pd.read_csv(path, sep=sep, skipinitialspace=True, decimal=",")
        frame = frame.assign(
            **{
                c: commas[c]
                for c in frame.columns
                if not pd.api.types.is_numeric_dtype(frame[c])
                and pd.api.types.is_numeric_dtype(commas[c])
            }
        )
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(str(exc)) from exc
    fields = [f for f in schema if not f.name.startswith("__index_level_")]
    check_unique_columns([f.name for f in fields], str(path))
    for field in fields:  # nested values fit no feature or label
        if pa.types.is_nested(field.type):
            kind = "structs" if pa.types.is_struct(field.type) else "lists"
            if pa.types.is_map(field.type):
                kind = "maps"
            raise DataError(
                f"{path}: column '{field.name}' holds {kind} (nested values); every cell must be "
                "a single number or string: flatten the column or drop it"
            )
    return pd.read_parquet(path)


def check_unique_columns(names: list[str], source: str) -> None:
    """Raise naming every column name that occurs more than once."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        shown = ", ".join(f"'{n}'" for n in repeated)
        raise DataError(f"{source}: duplicated column names {shown}; every column needs its own")


def check_not_empty(frame: pd.DataFrame, source: str) -> None:
    """Raise when ``frame`` has no rows or no columns."""
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{source}: the table is empty (no data rows)")
