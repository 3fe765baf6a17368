import pytest

from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.data.splits import random_split
from polytask.errors import ConfigError, DataError

from ..conftest import config_dict


@pytest.mark.parametrize(("validation", "test"), [(0.5, 0.5), (0.6, 0.7)])
def test_split_fractions_leaving_no_training_rows_name_the_key(table, validation, test):
    raw = config_dict(str(table))
    raw["data"]["split"] = {"validation": validation, "test": test}
    with pytest.raises(ConfigError, match=r"data\.split: validation \+ test = .* no rows"):
        prepare_data(parse_config(raw))


def test_tiny_table_with_no_training_row_left(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x1,clicked\n1,yes\n2,no\n")
    raw = config_dict(str(path))
    raw["tasks"] = [{"name": "clicked", "type": "binary"}]
    raw["data"]["split"] = {"validation": 0.45, "test": 0.45}
    with pytest.raises(DataError, match=r"t\.csv: 2 rows leave no training row; lower data\.split"):
        prepare_data(parse_config(raw))


def test_random_split_is_a_partition():
    parts = random_split(10, validation=0.2, test=0.3, seed=0)
    assert sorted(i for p in parts.values() for i in p) == list(range(10))
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [5, 2, 3]


def test_split_column_without_training_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x1,clicked,part\n1,yes,test\n2,no,validation\n")
    raw = config_dict(str(path))
    raw["tasks"] = [{"name": "clicked", "type": "binary"}]
    raw["data"]["split"] = {"column": "part"}
    with pytest.raises(DataError, match=r"t\.csv: split column 'part' marks no row 'train'"):
        prepare_data(parse_config(raw))
