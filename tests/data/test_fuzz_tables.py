"""Property tests of the table reader and of data preparation on small generated tables.

Every generated file (CSV, TSV, semicolon CSV, gzip CSV, Parquet; random column names with
duplicates, blanks and unicode; cells that are NaN, infinite, 1e308, empty, of mixed types;
empty and header-only files, a folder, byte garbage) either reads into a non-empty frame or
raises a :class:`~polytask.errors.PolytaskError` whose message is one line; so does
:func:`~polytask.data.prepare.prepare_data` of a small config over such a table. No model is
trained. Deterministic (``derandomize``) and without an example database.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import polytask.tasks  # noqa: F401  (registers the task types)
from polytask.config import parse_config
from polytask.data.prepare import prepare_data
from polytask.data.tables import read_table
from polytask.errors import ConfigError, DataError, PolytaskError
from polytask.options import TASK_OPTIONS

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)  # no lone surrogates
COLUMN_NAMES = st.one_of(
    st.sampled_from(["x", "y", "z", "label", "", " ", "x ", "a;b", "a,b", "Unnamed: 0", "é", "ü"]),
    TEXT,
)
ODD_CELLS = [None, "", " ", "nan", "NaN", "inf", "-inf", "1e308", "1,5", "yes", "no", "a;b"]
CELLS = st.one_of(
    st.sampled_from([0.0, 1.0, -2.5, 1e308, -1e308, math.nan, math.inf, -math.inf, *ODD_CELLS]),
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    TEXT,
)
FORMATS = ["csv", "tsv", "semicolon", "csv.gz", "parquet"]


@st.composite
def tables(draw: Any) -> dict:
    """A table as names and rows (now and then a ragged row)."""
    names = draw(st.lists(COLUMN_NAMES, max_size=4))
    n_rows = draw(st.integers(0, 5))
    rows = [draw(st.lists(CELLS, min_size=len(names), max_size=len(names))) for _ in range(n_rows)]
    if rows and draw(st.booleans()) and draw(st.booleans()):  # now and then a ragged row
        rows[draw(st.integers(0, n_rows - 1))].append(draw(CELLS))
    return {"names": names, "rows": rows, "format": draw(st.sampled_from(FORMATS))}


def text_table(names: list, rows: list[list], sep: str, quoted: bool) -> str:
    lines = [names, *rows]
    if quoted:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=sep, lineterminator="\n").writerows(
            ["" if v is None else v for v in line] for line in lines
        )
        return buffer.getvalue()
    return "".join(sep.join("" if v is None else str(v) for v in line) + "\n" for line in lines)


def parquet_column(values: list) -> pa.Array:
    """A typed column where the values share a type, else their strings."""
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def write_table(folder: Path, table: dict, quoted: bool = True) -> Path:
    names, rows, kind = table["names"], table["rows"], table["format"]
    path = folder / f"table.{'csv' if kind == 'semicolon' else kind}"
    if kind == "parquet":
        width = len(names)
        columns = [
            parquet_column([r[j] if j < len(r) else None for r in rows]) for j in range(width)
        ]
        pq.write_table(pa.Table.from_arrays(columns, names=[str(n) for n in names]), path)
        return path
    sep = {"tsv": "\t", "semicolon": ";"}.get(kind, ",")
    data = text_table(names, rows, sep, quoted).encode("utf-8", errors="surrogatepass")
    path.write_bytes(gzip.compress(data, mtime=0) if kind == "csv.gz" else data)
    return path


def assert_one_line(error: PolytaskError) -> None:
    message = str(error)
    assert message.strip(), repr(message)
    assert len(message.splitlines()) == 1, repr(message)


def read_or_fail(path: Path) -> None:
    try:
        frame = read_table(path)
    except PolytaskError as error:
        assert_one_line(error)
    else:
        assert frame.shape[0] > 0 and frame.shape[1] > 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-tables")


def fresh(folder: Path) -> Path:
    """An empty subfolder (the same one each time: examples run one after another)."""
    sub = folder / "case"
    if sub.exists():
        for path in sub.iterdir():
            path.unlink() if path.is_file() else path.rmdir()
    sub.mkdir(exist_ok=True)
    return sub


@settings(FUZZ, max_examples=150)
@given(tables(), st.booleans())
def test_generated_tables_read_or_fail_in_one_line(folder, table, quoted):
    read_or_fail(write_table(fresh(folder), table, quoted))


SUFFIXES = [
    "csv",
    "tsv",
    "csv.gz",
    "csv.bz2",
    "csv.xz",
    "csv.zip",
    "parquet",
    "pq",
    "txt",
    "xlsx",
    "",
]


@settings(FUZZ, max_examples=50)
@given(st.binary(max_size=48), st.sampled_from(SUFFIXES))
@example(data=b"", suffix="csv")
@example(data=b"", suffix="parquet")
@example(data=b"a,b\n", suffix="csv")
@example(data=b"\xff\xfe\x00a", suffix="csv")
@example(data=b"PAR1\x00\x00PAR1", suffix="parquet")
@example(data=b"", suffix="csv.zip")  # before: zipfile.BadZipFile
@example(data=b"garbage", suffix="csv.xz")  # lzma.LZMAError
@example(data=b"\x1f\x8b\x08\x00", suffix="csv.gz")  # EOFError (truncated)
def test_byte_garbage_reads_or_fails_in_one_line(folder, data, suffix):
    path = fresh(folder) / f"garbage.{suffix}".rstrip(".")
    path.write_bytes(data)
    read_or_fail(path)


@settings(FUZZ, max_examples=20)
@given(st.sampled_from(SUFFIXES), st.sampled_from(["folder", "absent", "long", "nul"]))
def test_folders_and_absent_files_fail_in_one_line(folder, suffix, what):
    sub = fresh(folder)
    name = {"long": "x" * 300, "nul": "a\x00b"}.get(what, "t")
    path = sub / f"{name}.{suffix}".rstrip(".")
    if what == "folder":
        path.mkdir()
    with pytest.raises(PolytaskError) as caught:
        read_table(path)
    assert_one_line(caught.value)


BASE_NAMES = ["x", "colour", "clicked", "spend"]
BASE_ROWS = [
    [float(i % 5) - 2.0, ["red", "green", "blue"][i % 3], ["yes", "no"][i % 2], 3.0 * i - 7.5]
    for i in range(12)
]
BASE_TASKS = [
    {"name": "clicked", "type": "binary", "positive": "yes"},
    {"name": "spend", "type": "regression"},
]
ODD_VALUES = st.sampled_from(
    [None, "", math.nan, math.inf, -math.inf, 1e308, -1e308, "1,5", "x;y", "yes", "a", True, 7]
)


@st.composite
def prepare_cases(draw: Any) -> tuple[dict, dict]:
    """A small valid table and config after zero to three mutations: odd cells, renamed,
    duplicated or dropped columns, other task types or targets, split fractions, declared
    features, missing-value policy, file format."""
    names, rows = list(BASE_NAMES), [list(r) for r in BASE_ROWS]
    tasks = [dict(t) for t in BASE_TASKS]
    split: dict[str, Any] = {"validation": 0.25, "test": 0.25, "seed": 0}
    features: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["cell", "column", "name", "drop", "task", "split", "features"]))
        j = draw(st.integers(0, len(names) - 1))
        if how == "cell":
            rows[draw(st.integers(0, len(rows) - 1))][j] = draw(ODD_VALUES)
        elif how == "column":
            value = draw(ODD_VALUES)
            for row in rows:
                row[j] = value
        elif how == "name":
            names[j] = draw(st.one_of(st.sampled_from(names), COLUMN_NAMES))
        elif how == "drop" and len(names) > 1:
            del names[j]
            for row in rows:
                del row[j]
        elif how == "task":
            task = tasks[draw(st.integers(0, 1))]
            task["type"] = draw(st.sampled_from(TASK_OPTIONS.names()))
            task.pop("positive", None)
            task["target"] = draw(st.sampled_from([*names, "absent"]))
        elif how == "split":
            key = draw(st.sampled_from(["validation", "test"]))
            split[key] = draw(st.sampled_from([0.0, 0.05, 0.5, 0.8, 0.99]))
        elif how == "features":
            declared = draw(st.lists(st.sampled_from([*names, "absent"]), max_size=3, unique=True))
            cut = draw(st.integers(0, len(declared)))
            features["numeric"], features["categorical"] = declared[:cut], declared[cut:]
            features["missing"] = draw(st.sampled_from(["impute", "error"]))
    table = {"names": names, "rows": rows, "format": draw(st.sampled_from(FORMATS))}
    raw = {"name": "fuzz", "data": {"split": split}, "features": features, "tasks": tasks}
    return table, raw


def prepare_or_fail(raw: dict) -> None:
    try:
        prepared = prepare_data(parse_config(raw))
    except PolytaskError as error:
        assert_one_line(error)
    else:
        for data in [*prepared.train.values(), prepared.validation, prepared.test]:
            for values in data.inputs.values():
                assert values.isfinite().all() if values.is_floating_point() else True


@settings(FUZZ, max_examples=100)
@given(prepare_cases())
def test_prepare_data_succeeds_or_fails_in_one_line(folder, case):
    table, raw = case
    path = write_table(fresh(folder), table)
    raw["data"]["source"] = str(path)
    try:
        parse_config(raw)
    except ConfigError:  # e.g. two tasks on one target column; the config tests cover these
        assume(False)
    prepare_or_fail(raw)


# --- Regression corpus: the concrete cases of issue 8 and the bugs found by the tests above --


def config(source: Path | str, target: str = "y", **data: Any) -> dict:
    return {
        "name": "corpus",
        "data": {"source": str(source), **data},
        "tasks": [{"name": target, "type": "regression"}],
    }


def test_corpus_semicolon_csv_is_read(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("x;y\n1,5;2\n2;3\n3;4\n")
    frame = read_table(path)
    assert list(frame.columns) == ["x", "y"] and frame["x"].tolist() == [1.5, 2.0, 3.0]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet"])
def test_corpus_duplicated_columns_are_named(tmp_path, suffix):
    table = {"names": ["y", "x", "x"], "rows": [[1, 2, 3]], "format": suffix}
    with pytest.raises(DataError, match="duplicated column names 'x'") as caught:
        read_table(write_table(tmp_path, table))
    assert_one_line(caught.value)


NESTED = {
    "list": pa.array([[1, 2], [3]]),
    "struct": pa.array([{"a": 1}, {"a": 2}]),
    "map": pa.array([[("k", 1)], [("k", 2)]], type=pa.map_(pa.string(), pa.int64())),
}


@pytest.mark.parametrize("column", NESTED.values(), ids=NESTED)
def test_corpus_nested_parquet_column_is_named(tmp_path, column):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"y": [1.0, 2.0], "nested": column}), path)
    with pytest.raises(DataError, match="column 'nested' holds") as caught:
        read_table(path)
    assert_one_line(caught.value)


def test_corpus_directory_as_data_source(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataError, match="is a directory, not a table file") as caught:
        prepare_data(parse_config(config(tmp_path / "data.csv")))
    assert_one_line(caught.value)


def test_corpus_overlong_names_are_data_errors(tmp_path):
    """Before: OSError 'File name too long' from ``Path.is_dir``, for a table and for a source
    without a suffix."""
    for source in (tmp_path / ("x" * 300 + ".csv"), tmp_path / ("x" * 300)):
        with pytest.raises(DataError) as caught:
            prepare_data(parse_config(config(source)))
        assert_one_line(caught.value)


@pytest.mark.parametrize(("column", "what"), [("x", "numeric feature 'x'"), ("y", "column 'y'")])
def test_corpus_1e308_feature_or_target_names_column_and_row(tmp_path, column, what):
    path = tmp_path / "big.csv"
    rows = [[float(i), float(i)] for i in range(1, 10)]
    rows[4][["x", "y"].index(column)] = 1e308
    path.write_text(text_table(["x", "y"], rows, ",", quoted=False))
    with pytest.raises(DataError, match=rf"{what} row \d+ holds 1e\+308") as caught:
        prepare_data(parse_config(config(path)))
    assert_one_line(caught.value)


def test_corpus_split_fractions_above_one_name_the_key(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,2\n2,3\n3,4\n")
    with pytest.raises(ConfigError, match="data.split") as caught:
        prepare_data(parse_config(config(path, split={"validation": 0.6, "test": 0.5})))
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("content", "fields"),
    [("x,y\n1,2,3\n4,5,6\n", 3), ("x,y\n0,a,b\n1,c,d\n", 3), ("x;y\n1;2;3\n", 3)],
)
def test_corpus_first_row_longer_than_the_header(tmp_path, content, fields):
    """Before: pandas silently made the first field an index, shifting every value one column
    to the left (x read 2 and 5, y 3 and 6)."""
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(
        DataError, match=f"first data row has more fields than the header.*saw {fields}"
    ) as caught:
        read_table(path)
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    "content", ["", "x,y\n", "x;y\n", "\n\n"], ids=["empty", "header", "semicolon-header", "blank"]
)
def test_corpus_empty_and_header_only_files(tmp_path, content):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="empty") as caught:
        read_table(path)
    assert_one_line(caught.value)


def test_corpus_column_name_with_a_newline_is_one_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"a\nb",x\n' + "".join(f"{i},{i}\n" for i in range(10)))
    with pytest.raises(DataError, match=r"task 'y' needs column 'y'") as caught:
        prepare_data(parse_config(config(path)))
    assert_one_line(caught.value)


def test_corpus_unknown_builtin_name_suggests_the_closest():
    with pytest.raises(DataError, match="did you mean 'adult'") as caught:
        prepare_data(parse_config(config("adulto")))
    assert_one_line(caught.value)


def test_corpus_unknown_source_path_says_no_file_and_suggests_a_builtin(tmp_path):
    with pytest.raises(DataError, match="no such file.*did you mean 'adult'") as caught:
        prepare_data(parse_config(config(tmp_path / "adulto")))
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"validation": 0.0}, "12 rows leave no validation row with data.split.validation = 0"),
        ({"test": 0.02}, "12 rows leave no test row with data.split.test = 0.02"),
    ],
)
def test_corpus_empty_validation_or_test_split_names_the_key(tmp_path, split, message):
    """Before: 't.csv (validation rows): the table is empty (no data rows)'."""
    table = {"names": BASE_NAMES, "rows": BASE_ROWS, "format": "csv"}
    raw = {"data": {"source": str(write_table(tmp_path, table)), "split": split}}
    with pytest.raises(DataError, match=message) as caught:
        prepare_data(parse_config({**raw, "tasks": BASE_TASKS}))
    assert_one_line(caught.value)


def test_corpus_column_declared_numeric_and_categorical(tmp_path):
    """Before: TypeError from pandas (the column selected twice)."""
    table = {"names": BASE_NAMES, "rows": BASE_ROWS, "format": "csv"}
    raw = {
        "data": {"source": str(write_table(tmp_path, table))},
        "features": {"numeric": ["x"], "categorical": ["x", "colour"]},
        "tasks": BASE_TASKS,
    }
    with pytest.raises(ConfigError, match="features: column 'x' is declared twice") as caught:
        parse_config(raw)
    assert_one_line(caught.value)
