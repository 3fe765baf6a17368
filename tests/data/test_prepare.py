import pytest

from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.data.builtin import BUILTIN_DATASETS, get_builtin
from polytask.errors import DataError

from ..conftest import config_dict, synthetic_frame


def test_label_counts_respect_missing_labels(table):
    data = prepare_data(parse_config(config_dict(str(table))))
    counts = data.label_counts()
    total = {k: sum(counts[s][k] for s in counts) for k in counts["train"]}
    frame = synthetic_frame()
    assert total["clicked"] == frame["clicked"].notna().sum()
    assert total["spend"] == frame["spend"].notna().sum()
    assert total["segment"] == len(frame)


def test_split_is_reproducible(table):
    config = parse_config(config_dict(str(table)))
    first, second = prepare_data(config), prepare_data(config)
    assert first.test.inputs["numeric"].equal(second.test.inputs["numeric"])


def test_missing_target_column(tmp_path, table):
    raw = config_dict(str(table))
    raw["tasks"][2]["target"] = "spent"
    with pytest.raises(DataError, match="needs column 'spent'.*did you mean 'spend'"):
        prepare_data(parse_config(raw))


def test_empty_table(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("x1,clicked\n")
    with pytest.raises(DataError, match="empty.csv: the table is empty"):
        prepare_data(parse_config(config_dict(str(path))))


def test_task_with_no_labels_at_all(tmp_path):
    frame = synthetic_frame()
    frame["spend"] = float("nan")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="task 'spend' has no labels at all"):
        prepare_data(parse_config(config_dict(str(path))))


def test_per_task_tables_are_mixed_by_the_sampler(tmp_path):
    frame = synthetic_frame(300)
    paths = {}
    for name, rows in (("clicked", slice(0, 200)), ("spend", slice(200, 300))):
        paths[name] = tmp_path / f"{name}.csv"
        frame.iloc[rows].drop(columns=["segment"]).to_csv(paths[name], index=False)
    raw = config_dict(None)
    raw["data"] = {"sampler": "temperature", "temperature": 2.0}
    raw["tasks"] = [
        {"name": "clicked", "type": "binary", "data": str(paths["clicked"])},
        {"name": "spend", "type": "regression", "data": str(paths["spend"])},
    ]
    raw["features"] = {"numeric": ["x1", "x2"], "categorical": ["colour"]}
    data = prepare_data(parse_config(raw))
    assert set(data.train) == {"clicked", "spend"}
    assert data.train["clicked"].label_counts()["spend"] == 0  # only its own labels
    source = data.train_source(16, "temperature", 2.0)
    assert source.probabilities["clicked"] == pytest.approx(
        120**0.5 / (120**0.5 + 60**0.5), rel=0.05
    )


def test_per_task_table_missing_a_feature(tmp_path, table):
    other = tmp_path / "other.csv"
    synthetic_frame().drop(columns=["x2"]).to_csv(other, index=False)
    raw = config_dict(str(table))
    raw["tasks"][2]["data"] = str(other)
    with pytest.raises(DataError, match="other.csv: feature column 'x2' is missing"):
        prepare_data(parse_config(raw))


@pytest.mark.parametrize("name", sorted(n for n, d in BUILTIN_DATASETS.items() if d.fetch is None))
def test_builtin_datasets_load_offline(name):
    dataset = get_builtin(name)
    frame = dataset.load()
    assert len(frame) > 300
    data = prepare_data(parse_config(dataset.config()))
    assert {t.name for t in data.tasks} == {t["name"] for t in dataset.tasks}


def test_adult_drops_the_leaking_relationship_column():
    data = prepare_data(parse_config(get_builtin("adult").config()))
    assert "relationship" not in data.preprocessor.categorical
    assert len(data.test) == 16281  # the original test file


def test_unknown_builtin_name_suggests():
    with pytest.raises(DataError, match="did you mean 'adult'"):
        prepare_data(parse_config(config_dict("adlt")))


def test_numeric_nan_feature_is_reported(tmp_path):
    frame = synthetic_frame()
    frame.loc[5, "x2"] = float("nan")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    raw = config_dict(str(path))
    raw["features"] = {"missing": "error"}  # the default imputes (tests/data/test_missing.py)
    with pytest.raises(DataError, match=r"t\.csv: numeric feature 'x2' row 6 holds a missing"):
        prepare_data(parse_config(raw))


def test_overflowing_feature_in_a_per_task_table_names_that_table_and_row(tmp_path):
    frame = synthetic_frame(300)
    frame.loc[250, "x1"] = 1e308
    paths = {}
    for name, rows in (("clicked", slice(0, 200)), ("spend", slice(200, 300))):
        paths[name] = tmp_path / f"{name}.csv"
        frame.iloc[rows].to_csv(paths[name], index=False)
    raw = config_dict(None)
    raw["data"] = {"split": {"validation": 0.0, "test": 0.0}}
    raw["tasks"] = [
        {"name": "clicked", "type": "binary", "data": str(paths["clicked"])},
        {"name": "spend", "type": "regression", "data": str(paths["spend"])},
    ]
    raw["features"] = {"numeric": ["x1", "x2"], "categorical": ["colour"]}
    with pytest.raises(
        DataError, match=r"numeric feature 'x1' row 51 of .*spend\.csv holds 1e\+308"
    ):
        prepare_data(parse_config(raw))


def test_overflowing_feature_names_its_row_in_the_table(tmp_path):
    frame = synthetic_frame()
    frame.loc[100, "x2"] = -1e308
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    raw = config_dict(str(path))
    raw["data"]["split"] = {"validation": 0.0, "test": 0.0}
    with pytest.raises(DataError, match=r"t\.csv \(training rows\): numeric feature 'x2' row 101"):
        prepare_data(parse_config(raw))


@pytest.mark.parametrize("split", [{"validation": 0.0, "test": 0.0}, {"seed": 4}])
def test_overflowing_regression_target_names_task_column_and_row(tmp_path, split):
    frame = synthetic_frame()
    frame.loc[30, "spend"] = 1e308
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    raw = config_dict(str(path))
    raw["data"]["split"] = split  # in the training rows, or wherever the seed puts it
    with pytest.raises(DataError, match=r"t\.csv \(\w+ rows\): task 'spend' column 'spend' row 31"):
        prepare_data(parse_config(raw))


def test_a_builtin_config_is_a_copy():
    """Editing the mapping ``config()`` returns leaves the built-in dataset as it was."""
    dataset = get_builtin("penguins")
    config = dataset.config()
    config["tasks"][0]["name"] = "edited"
    config["features"]["drop"].append("edited")
    assert dataset.config()["tasks"][0]["name"] != "edited"
    assert "edited" not in dataset.config()["features"]["drop"]
