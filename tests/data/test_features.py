import numpy as np
import pandas as pd
import pytest

from polytask.data.features import FeatureEncoder, infer_features
from polytask.errors import DataError


def test_inference_splits_by_dtype_and_excludes_targets():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0, 1]})
    assert infer_features(frame, exclude=["y"]) == (["a"], ["b"])


def test_standardises_and_maps_unseen_categories_to_zero():
    train = pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"]})
    encoder = FeatureEncoder(["a"], ["b"]).fit(train)
    encoded = encoder.transform(pd.DataFrame({"a": [2.0], "b": ["never-seen"]}))
    assert encoded["numeric"].tolist() == [[0.0]]
    assert encoded["categorical"].tolist() == [[0]]
    assert encoder.cardinalities == [3]


@pytest.mark.parametrize("bad", [np.nan, np.inf, "n/a"])
def test_non_finite_numeric_feature_names_column_and_row(bad):
    frame = pd.DataFrame({"a": [1.0, 2.0, bad], "b": ["x", "y", "x"]}, dtype=object)
    with pytest.raises(DataError, match=r"f\.csv: numeric feature 'a' row 3"):
        FeatureEncoder(["a"], ["b"]).fit(frame, "f.csv")


def test_missing_feature_column_suggests_a_name():
    encoder = FeatureEncoder(["age"], [])
    with pytest.raises(DataError, match="'age' is missing.*did you mean 'Age'"):
        encoder.fit(pd.DataFrame({"Age": [1.0]}), "p.csv")


def test_round_trip():
    encoder = FeatureEncoder(["a"], ["b"]).fit(pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"]}))
    assert FeatureEncoder.from_dict(encoder.to_dict()) == encoder
