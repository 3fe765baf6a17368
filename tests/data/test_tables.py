"""Reading tables: clear one-line errors (or a documented fallback) for awkward files."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.data.tables import read_table
from polytask.errors import DataError

from ..conftest import config_dict


@pytest.mark.parametrize(
    ("values", "kind"), [([[1, 2], [3]], "lists"), ([{"a": 1}, {"a": 2}], "structs")]
)
def test_parquet_with_nested_column_names_file_and_column(tmp_path, values, kind):
    path = tmp_path / "nested.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "tags": values}).to_parquet(path)
    with pytest.raises(DataError, match=rf"nested\.parquet: column 'tags' holds {kind}"):
        read_table(path)


def test_semicolon_separated_csv_is_read_with_semicolons(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c\n1;x;2.5\n2;y;3.5\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["c"].tolist() == [2.5, 3.5]


def test_semicolon_csv_with_decimal_commas(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c\n1,5;x;2\n2,25;y;3\n")
    frame = read_table(path)
    assert frame["a"].tolist() == [1.5, 2.25]
    assert frame["b"].tolist() == ["x", "y"]


def test_comma_csv_with_semicolons_inside_values_is_untouched(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,note\n1,x;y\n2,z\n")
    assert read_table(path)["note"].tolist() == ["x;y", "z"]


def test_directory_where_a_file_is_expected(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a table file"):
        read_table(tmp_path)


def test_directory_as_data_source_is_not_taken_for_a_dataset_name(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(DataError, match="data: is a directory, not a table file"):
        prepare_data(parse_config(config_dict(str(folder))))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_duplicated_column_names_are_rejected(tmp_path, suffix):
    path = tmp_path / f"dup.{suffix}"
    if suffix == "csv":
        path.write_text("x,y,x,z,y\n1,2,3,4,5\n")
    else:
        columns = [pa.array([i]) for i in range(5)]
        pq.write_table(pa.table(columns, names=["x", "y", "x", "z", "y"]), path)
    with pytest.raises(DataError, match=rf"dup\.{suffix}: duplicated column names 'x', 'y'"):
        read_table(path)


def test_a_real_column_named_like_a_pandas_duplicate_is_fine(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,x.1\n1,2\n")
    assert list(read_table(path).columns) == ["x", "x.1"]


@pytest.mark.parametrize("content", ["", "\n", "a,b\n"])
def test_empty_files(tmp_path, content):
    path = tmp_path / "e.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=r"e\.csv: the (file|table) is empty"):
        read_table(path)
