import numpy as np
import pandas as pd
import pytest
import torch

from polytask.data.features import (
    DataWarning,
    FeaturePreprocessor,
    _category_codes,
    _category_strings,
    infer_features,
)
from polytask.errors import DataError


def test_inference_splits_by_dtype_and_excludes_targets():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0, 1]})
    assert infer_features(frame, exclude=["y"]) == (["a"], ["b"])


def test_standardises_and_maps_unseen_categories_to_zero():
    train = pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"]})
    encoder = FeaturePreprocessor(["a"], ["b"]).fit(train)
    with pytest.warns(DataWarning, match="column 'b': 1 row has a category not seen"):
        encoded = encoder.transform(pd.DataFrame({"a": [2.0], "b": ["never-seen"]}))
    assert encoded["numeric"].tolist() == [[0.0]]
    assert encoded["categorical"].tolist() == [[0]]
    assert encoder.cardinalities == [3]


@pytest.mark.parametrize("bad", [np.nan, np.inf, "n/a"])
def test_non_finite_numeric_feature_names_column_and_row(bad):
    frame = pd.DataFrame({"a": [1.0, 2.0, bad], "b": ["x", "y", "x"]}, dtype=object)
    with pytest.raises(DataError, match=r"f\.csv: numeric feature 'a' row 3"):
        FeaturePreprocessor(["a"], ["b"]).fit(frame, "f.csv")


def test_missing_feature_column_suggests_a_name():
    encoder = FeaturePreprocessor(["age"], [])
    with pytest.raises(DataError, match="'age' is missing.*did you mean 'Age'"):
        encoder.fit(pd.DataFrame({"Age": [1.0]}), "p.csv")


def test_round_trip():
    frame = pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"]})
    encoder = FeaturePreprocessor(["a"], ["b"]).fit(frame)
    assert FeaturePreprocessor.from_dict(encoder.to_dict()) == encoder


@pytest.mark.parametrize("huge", [1e308, -1e308, 1e200])
def test_feature_whose_standardisation_overflows_names_column_and_row(huge):
    frame = pd.DataFrame({"a": [1.0, 2.0, huge, 3.0]})
    with pytest.raises(DataError, match=r"f\.csv: numeric feature 'a' row 3 holds .*too large"):
        FeaturePreprocessor(["a"], []).fit(frame, "f.csv")


def test_overflow_rows_are_named_by_their_row_in_the_table():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 1e308, 4.0]}).iloc[[0, 3, 4]]
    with pytest.raises(DataError, match="row 4 holds"):
        FeaturePreprocessor(["a"], []).fit(frame, "f.csv")


def test_scaled_value_beyond_float32_names_column_and_row():
    encoder = FeaturePreprocessor(["a"], []).fit(pd.DataFrame({"a": [0.0, 1.0, 2.0]}))
    new = pd.DataFrame({"a": [1.0, 1e39]})  # finite in float64, inf as float32
    with pytest.raises(DataError, match=r"new\.csv: numeric feature 'a' row 2 holds 1e\+39"):
        encoder.transform(new, "new.csv")


def test_large_but_representable_values_still_standardise():
    frame = pd.DataFrame({"a": [1e30, 2e30, 3e30]})
    encoded = FeaturePreprocessor(["a"], []).fit(frame).transform(frame)["numeric"]
    assert torch.isfinite(encoded).all()
    assert encoded[:, 0].tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)


@pytest.mark.parametrize(
    "series",
    [
        pd.concat(  # Arrow-backed strings in two chunks
            [pd.Series(["a", None, " b"], dtype="str"), pd.Series(["b", "a ", ""], dtype="str")],
            ignore_index=True,
        ),
        pd.Series(["x", None, "y", "x"], dtype="string"),
        pd.Series([1, 2, 1, None], dtype="Int64"),
        pd.Series([1, 1.0, True, "1", None], dtype=object),  # equal in Python, not as strings
        pd.Series([0.0, -0.0, 2.5, np.nan]),
        pd.Series([], dtype="str"),
    ],
)
def test_categories_are_turned_into_strings_per_distinct_value_as_per_row(series):
    codes, strings = _category_codes(series)
    assert [strings[c] for c in codes] == _category_strings(series)
