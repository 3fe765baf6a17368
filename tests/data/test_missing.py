"""features.missing: impute (training median + indicator, a category for missing) or error."""

import warnings

import numpy as np
import pandas as pd
import pytest

from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.data.features import DataWarning, FeaturePreprocessor
from polytask.errors import DataError

from ..conftest import config_dict, synthetic_frame


def _train():
    return pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 10.0, 2.0],
            "b": [5.0, 6.0, 7.0, 8.0, 9.0],
            "c": ["x", None, "y", "x", "y"],
        }
    )


def test_impute_uses_the_training_median_and_adds_an_indicator():
    encoder = FeaturePreprocessor(["a", "b"], ["c"], missing="impute").fit(_train(), "t.csv")
    assert encoder.numeric == ["a", "b", "missing:a"]  # b had no missing value in training
    assert encoder.median[:2] == [2.5, 7.0]
    new = pd.DataFrame({"a": [np.nan, 4.0], "b": [6.0, 7.0], "c": [None, "x"]})
    encoded = encoder.transform(new, "new.csv")
    numeric = encoded["numeric"].numpy()
    a_mean, a_std = encoder.mean[0], encoder.std[0]
    assert numeric[0, 0] == pytest.approx((2.5 - a_mean) / a_std, rel=1e-6)
    assert numeric[:, 2].tolist() == [1.0, 0.0]  # the indicator is a plain 0/1 column
    missing_code = encoder.vocabularies["c"].index("") + 1
    assert encoded["categorical"][:, 0].tolist() == [missing_code, 2]  # 'x' is code 2
    assert missing_code != 0  # not the unknown code


def test_statistics_ignore_missing_values():
    encoder = FeaturePreprocessor(["a"], [], missing="impute").fit(_train())
    assert encoder.mean[0] == pytest.approx(4.0)  # mean of 1, 3, 10, 2


def test_missing_value_in_a_column_complete_in_training_is_imputed_with_a_warning():
    encoder = FeaturePreprocessor(["a", "b"], ["c"], missing="impute").fit(_train())
    new = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan], "c": ["x", "x"]})
    with pytest.warns(DataWarning, match=r"new\.csv: column 'b': 2 rows are missing"):
        encoded = encoder.transform(new, "new.csv")
    b = encoded["numeric"][:, 1].tolist()
    assert b == pytest.approx([(7.0 - encoder.mean[1]) / encoder.std[1]] * 2)
    assert encoded["numeric"].shape == (2, 3)  # the indicator set is fixed at fit time


def test_infinity_is_not_missing():
    frame = _train()
    frame.loc[3, "a"] = np.inf
    with pytest.raises(DataError, match="numeric feature 'a' row 4 holds an infinite value"):
        FeaturePreprocessor(["a"], [], missing="impute").fit(frame, "t.csv")


def test_a_column_without_any_training_value_is_an_error():
    frame = pd.DataFrame({"a": [np.nan, np.nan], "b": [1.0, 2.0]})
    with pytest.raises(DataError, match="numeric feature 'a' has no value in the training rows"):
        FeaturePreprocessor(["a", "b"], [], missing="impute").fit(frame, "t.csv")


def test_indicator_name_clash_is_an_error():
    frame = pd.DataFrame({"a": [1.0, np.nan], "missing:a": [0.0, 1.0]})
    with pytest.raises(DataError, match="'missing:a'.*clashes"):
        FeaturePreprocessor(["a", "missing:a"], [], missing="impute").fit(frame, "t.csv")


def test_refit_does_not_stack_indicators():
    encoder = FeaturePreprocessor(["a", "b"], [], missing="impute").fit(_train())
    encoder.fit(_train())
    assert encoder.numeric == ["a", "b", "missing:a"]


def test_round_trip_keeps_the_imputation():
    encoder = FeaturePreprocessor(["a", "b"], ["c"], missing="impute").fit(_train())
    again = FeaturePreprocessor.from_dict(encoder.to_dict())
    assert again == encoder
    new = pd.DataFrame({"a": [np.nan], "b": [6.0], "c": [None]})
    assert again.transform(new)["numeric"].equal(encoder.transform(new)["numeric"])


def test_old_data_json_without_the_missing_keys_still_loads():
    saved = FeaturePreprocessor(["b"], []).fit(_train()).to_dict()
    for key in ("missing", "median", "indicators"):
        saved.pop(key)
    encoder = FeaturePreprocessor.from_dict(saved)
    assert encoder.missing == "error"


def test_error_mode_keeps_the_one_line_error():
    with pytest.raises(DataError, match=r"t\.csv: numeric feature 'a' row 2 holds a missing value"):
        FeaturePreprocessor(["a"], [], missing="error").fit(_train(), "t.csv")


def _table_with_holes(tmp_path):
    frame = synthetic_frame()
    frame.loc[[3, 50, 90], "x2"] = np.nan
    frame.loc[[7, 60], "colour"] = np.nan
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def test_training_imputes_by_default(tmp_path):
    data = prepare_data(parse_config(config_dict(str(_table_with_holes(tmp_path)))))
    assert data.preprocessor.missing == "impute"
    assert data.preprocessor.numeric == ["x1", "x2", "missing:x2"]
    assert "" in data.preprocessor.vocabularies["colour"]
    for split in (data.validation, data.test, *data.train.values()):
        assert np.isfinite(split.inputs["numeric"].numpy()).all()


def test_missing_error_in_the_config_rejects_holes(tmp_path):
    raw = config_dict(str(_table_with_holes(tmp_path)))
    raw["features"] = {"missing": "error"}
    with pytest.raises(
        DataError, match=r"t\.csv: numeric feature 'x2' row 4 holds a missing value"
    ):
        prepare_data(parse_config(raw))


def test_complete_tables_are_encoded_as_before(table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = prepare_data(parse_config(config_dict(str(table))))
    assert data.preprocessor.numeric == ["x1", "x2"]
    assert "" not in data.preprocessor.vocabularies["colour"]
