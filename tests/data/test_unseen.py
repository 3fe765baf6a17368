"""Unseen categories at predict/evaluate time: one warning per column with its count."""

import warnings

import pandas as pd
import pytest

from polytask.config import parse_config
from polytask.data import encode_frame, prepare_data
from polytask.data.features import DataWarning, FeaturePreprocessor

from ..conftest import config_dict, synthetic_frame


def test_unseen_categories_warn_once_per_column_with_their_count():
    encoder = FeaturePreprocessor([], ["colour", "size"]).fit(
        pd.DataFrame({"colour": ["red", "blue"], "size": ["s", "m"]})
    )
    new = pd.DataFrame({"colour": ["red", "pink", "teal", "pink"], "size": ["s", "m", "xl", "s"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoded = encoder.transform(new, "data.csv")
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert messages == [
        "data.csv: column 'colour': 3 rows have categories not seen in training "
        "(mapped to unknown)",
        "data.csv: column 'size': 1 row has a category not seen in training (mapped to unknown)",
    ]
    assert encoded["categorical"][:, 0].tolist() == [2, 0, 0, 0]


def test_no_warning_when_every_category_is_known_or_when_asked_not_to():
    encoder = FeaturePreprocessor([], ["colour"]).fit(pd.DataFrame({"colour": ["red", "blue"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.transform(pd.DataFrame({"colour": ["red"]}))
        encoder.transform(pd.DataFrame({"colour": ["green"]}), warn=False)


def test_encode_frame_warns_but_training_splits_do_not(tmp_path):
    frame = synthetic_frame()
    frame["split"] = ["train", "train", "validation", "test"] * (len(frame) // 4)
    frame.loc[frame["split"] != "train", "colour"] = "purple"  # never in a training row
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    raw = config_dict(str(path))
    raw["data"]["split"] = {"column": "split"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = prepare_data(parse_config(raw))
    assert "purple" not in data.preprocessor.vocabularies["colour"]
    new = pd.DataFrame({"x1": [0.0, 1.0], "x2": [1.0, 0.0], "colour": ["purple", "red"]})
    with pytest.warns(DataWarning, match="new.csv: column 'colour': 1 row has a category"):
        encode_frame(new, data.tasks, data.preprocessor, "new.csv")
