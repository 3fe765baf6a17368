"""polytask.export: every architecture exported to ONNX reproduces torch on a built-in dataset;
preprocess.json serves raw rows without polytask; what cannot be exported is refused with one
line and no file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from polytask.config import parse_config
from polytask.data.builtin import get_builtin
from polytask.errors import RunError
from polytask.experiment import run_experiment
from polytask.export import METADATA_KEY, PREPROCESS, export_run
from polytask.inference import predict_outputs
from polytask.models.registry import ARCHITECTURES
from polytask.predict import load_run

from .conftest import config_dict, synthetic_frame
from .fake_text import text_config
from .test_cli import assert_clean_error, run_cli

QUICK = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
OPTIONS = {"tied": {"tied": [0]}, "groups": {"groups": [["species", "sex"], ["body_mass"]]}}


def train(output: Path, config: dict, **model) -> Path:
    """A one-epoch run of ``config`` with a tiny network, without baselines."""
    config = {
        **config,
        "output_dir": str(output),
        "model": {"trunk": [8], "head": [4], **model},
        "training": QUICK,
    }
    return run_experiment(parse_config(config), baselines=False).run_dir


def onnx_outputs(model: Path, feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """onnxruntime's outputs by name, run ``batch`` rows at a time."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts = [
        session.run(names, {k: v[i : i + batch] for k, v in feeds.items()})
        for i in range(0, n, batch)
    ]
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}


def assert_matches_torch(run_dir: Path, model: Path, frame: pd.DataFrame) -> None:
    """onnxruntime equals torch within 1e-5 on every row of ``frame``, in batches of 1, 7 and
    all rows (the export traced 3: the batch dimension is dynamic)."""
    run = load_run(run_dir)
    data = run.encode(frame, "table")
    expected = predict_outputs(run.model, run.tasks, data)
    feeds = {k: v.numpy() for k, v in data.inputs.items() if v.shape[1]}
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feeds)
    assert [o.name for o in session.get_outputs()] == [t.name for t in run.tasks]
    assert all(o.shape[0] == "batch" for o in session.get_outputs())
    for batch in (1, 7, len(frame)):
        found = onnx_outputs(model, feeds, batch)
        for task in run.tasks:
            np.testing.assert_allclose(
                found[task.name], expected[task.name].numpy(), rtol=1e-5, atol=1e-5
            )


# -- every architecture, on the shipped penguins table ------------------------------------------


@pytest.fixture(scope="module")
def penguins(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("penguins")
    return folder, get_builtin("penguins").load()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_exports_and_matches_torch(penguins, arch):
    folder, frame = penguins
    config = {**get_builtin("penguins").config(), "name": arch}
    run_dir = train(folder, config, arch=arch, **OPTIONS.get(arch, {}))
    exported = export_run(run_dir)
    assert exported.model == run_dir / "model.onnx" and exported.preprocess.is_file()
    assert_matches_torch(run_dir, exported.model, frame)


@pytest.mark.filterwarnings("ignore:.*not seen in training")  # later months: a chronological split
def test_the_gru_input_block_exports(tmp_path):
    """Bikeshare (shipped): a GRU over 24 lag columns plus categorical calendar columns."""
    frame = get_builtin("bikeshare").load().iloc[::12].reset_index(drop=True)
    table = tmp_path / "bikes.csv"
    frame.to_csv(table, index=False)
    config = get_builtin("bikeshare").config()
    config["data"] = {**config["data"], "source": str(table)}
    encoder = {**config["model"]["encoder"], "hidden": 4}
    run_dir = train(tmp_path / "runs", config, encoder=encoder)
    exported = export_run(run_dir, tmp_path / "bikes" / "gru.onnx")
    assert exported.preprocess == tmp_path / "bikes" / PREPROCESS
    assert_matches_torch(run_dir, exported.model, frame)


def test_the_cnn_input_block_exports_without_a_categorical_input(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 16)), columns=[f"p{i:02d}" for i in range(16)])
    frame["bright"] = np.where(frame.sum(axis=1) > 0, "yes", "no")
    table = tmp_path / "pixels.csv"
    frame.to_csv(table, index=False)
    config = {
        "name": "pixels",
        "data": {"source": str(table), "split": {"validation": 0.2, "test": 0.2}},
        "tasks": [{"name": "bright", "type": "binary"}],
    }
    run_dir = train(tmp_path, config, encoder={"type": "cnn", "conv": [2]})
    exported = export_run(run_dir)
    spec = json.loads(exported.preprocess.read_text())
    assert list(spec["inputs"]) == ["numeric"]
    assert_matches_torch(run_dir, exported.model, frame)


def test_categorical_features_alone_export_without_a_numeric_input(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.choice(list("xyz"), 60), "b": rng.choice(list("pq"), 60)})
    frame["y"] = np.where(frame["a"] == "x", "yes", "no")
    table = tmp_path / "letters.csv"
    frame.to_csv(table, index=False)
    config = {
        "name": "letters",
        "data": {"source": str(table), "split": {"validation": 0.2, "test": 0.2}},
        "tasks": [{"name": "y", "type": "binary"}],
    }
    run_dir = train(tmp_path, config, arch="mmoe")
    exported = export_run(run_dir)
    assert list(json.loads(exported.preprocess.read_text())["inputs"]) == ["categorical"]
    assert_matches_torch(run_dir, exported.model, frame)


# -- raw rows → preprocess.json → onnxruntime → the predictions of polytask predict -------------


def serve(spec: dict, model: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    """A consumer without polytask: preprocess.json's steps in numpy, onnxruntime, then each
    output decoded as preprocess.json says, into polytask predict's columns."""

    def absent(value) -> bool:
        return value is None or value == "" or (isinstance(value, float) and np.isnan(value))

    feeds = {}
    if "numeric" in spec["inputs"]:
        columns = spec["inputs"]["numeric"]["columns"]
        values = np.zeros((len(rows), len(columns)))
        for j, c in enumerate(columns):
            if "indicator_of" in c:
                values[:, j] = [absent(row[c["indicator_of"]]) for row in rows]
                continue
            raw = [c["fill"] if absent(row[c["name"]]) else float(row[c["name"]]) for row in rows]
            values[:, j] = (np.asarray(raw) - c["mean"]) / c["std"]
        feeds["numeric"] = values.astype(np.float32)
    if "categorical" in spec["inputs"]:
        columns = spec["inputs"]["categorical"]["columns"]
        codes = np.zeros((len(rows), len(columns)), dtype=np.int64)
        for j, c in enumerate(columns):
            index = {v: i + 1 for i, v in enumerate(c["vocabulary"])}
            for i, row in enumerate(rows):
                text = "" if absent(row[c["name"]]) else str(row[c["name"]]).strip()
                codes[i, j] = index.get(text, c["unknown_index"])
        feeds["categorical"] = codes
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o["name"] for o in spec["outputs"]]
    outputs = dict(zip(names, session.run(names, feeds), strict=True))
    decoded: dict[str, np.ndarray] = {}
    for o in spec["outputs"]:
        out, name = outputs[o["name"]].astype(np.float64), o["name"]
        if o["type"] == "binary":
            p = 1 / (1 + np.exp(-out[:, 0]))
            decoded[name] = np.where(p >= 0.5, o["positive"], o["negative"])
            decoded[f"{name}_proba"] = p
        elif o["type"] == "multiclass":
            p = np.exp(out - out.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            decoded[name] = np.asarray(o["classes"])[p.argmax(axis=1)]
            decoded[f"{name}_proba"] = p.max(axis=1)
            decoded.update({f"{name}.proba.{c}": p[:, j] for j, c in enumerate(o["classes"])})
        elif o["type"] == "multilabel":
            p = 1 / (1 + np.exp(-out))
            for j, label in enumerate(o["labels"]):
                decoded[f"{name}.{label}"] = (p[:, j] >= 0.5).astype(np.int64)
                decoded[f"{name}.{label}_proba"] = p[:, j]
        else:
            values = out * np.asarray(o["std"]) + np.asarray(o["mean"])
            if len(o["columns"]) == 1:
                decoded[name] = values[:, 0]
            else:
                decoded.update({f"{name}.{c}": values[:, j] for j, c in enumerate(o["columns"])})
    return decoded


def test_raw_rows_served_from_preprocess_json_equal_polytask_predict(tmp_path):
    """Binary, multiclass, multilabel and regression (one and two columns) tasks; missing
    numeric values imputed with an indicator; new rows with a missing value, an unseen and a
    missing category."""
    frame = synthetic_frame()
    frame.loc[::9, "x2"] = np.nan
    frame["tag_a"] = (frame["x1"] > 0).astype(int)
    frame["tag_b"] = np.where(frame["colour"] == "red", "true", "false")
    frame["km"], frame["hours"] = 100 + 20 * frame["x1"], 5 - frame["x2"].fillna(0)
    table = tmp_path / "table.csv"
    frame.to_csv(table, index=False)
    tasks = [
        *config_dict("")["tasks"],
        {"name": "tags", "type": "multilabel", "target": ["tag_a", "tag_b"]},
        {"name": "trip", "type": "regression", "target": ["km", "hours"]},
    ]
    config = {**config_dict(str(table)), "tasks": tasks, "features": {"missing": "impute"}}
    run_dir = train(tmp_path / "runs", config)
    exported = export_run(run_dir, tmp_path / "served" / "model.onnx")
    spec = json.loads(exported.preprocess.read_text())
    assert spec["inputs"]["numeric"]["columns"][-1] == {"name": "missing:x2", "indicator_of": "x2"}

    new = synthetic_frame(n=50, seed=7).drop(columns=["clicked", "segment", "spend"])
    new.loc[[0, 5], "x2"] = np.nan
    new.loc[1, "x1"] = np.nan  # no missing x1 in training: imputed without an indicator
    new.loc[2, "colour"] = "purple"
    new.loc[3, "colour"] = np.nan
    with pytest.warns(UserWarning):
        expected = load_run(run_dir).predict(new)
    rows = new.to_dict(orient="records")
    found = serve(spec, exported.model, rows)
    assert set(found) == set(expected.columns)
    assert {"clicked_proba", "segment.proba.mid", "tags.tag_b", "trip.hours", "spend"} <= set(found)
    for column, values in found.items():
        if values.dtype.kind in "fc":
            np.testing.assert_allclose(
                values, expected[column].to_numpy(float), rtol=1e-5, atol=1e-6
            )
        else:
            assert values.tolist() == expected[column].tolist(), column


def test_preprocess_json_is_also_in_the_model_metadata(penguins):
    folder, _ = penguins
    run_dir = train(folder, {**get_builtin("penguins").config(), "name": "metadata"})
    exported = export_run(run_dir)
    metadata = {p.key: p.value for p in onnx.load(str(exported.model)).metadata_props}
    assert json.loads(metadata[METADATA_KEY]) == json.loads(exported.preprocess.read_text())
    spec = json.loads(exported.preprocess.read_text())
    assert [o["name"] for o in spec["outputs"]] == ["species", "sex", "body_mass"]
    sex = spec["outputs"][1]
    assert (sex["positive"], sex["negative"], sex["shape"]) == ("female", "male", ["batch", 1])


# -- the command line and bad input ---------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    table = folder / "table.csv"
    synthetic_frame().to_csv(table, index=False)
    return train(folder / "runs", config_dict(str(table)))


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_cli_exports_beside_the_run_or_to_output(monkeypatch, capsys, run_copy, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "export", run_copy, "--format", "onnx")
    assert code == 0, err
    assert (run_copy / "model.onnx").is_file() and (run_copy / PREPROCESS).is_file()
    assert "model.onnx" in out
    target = tmp_path / "elsewhere" / "clicks.onnx"
    code, _, err = run_cli(monkeypatch, capsys, "export", run_copy, "-o", target)
    assert code == 0, err
    assert target.is_file() and (target.parent / PREPROCESS).is_file()


def test_an_unfinished_run_is_refused(monkeypatch, capsys, run_copy):
    (run_copy / "metrics.json").unlink()
    code, _, err = run_cli(monkeypatch, capsys, "export", run_copy)
    assert_clean_error(code, err, "'metrics.json' is missing; the run did not finish")
    assert not (run_copy / "model.onnx").exists()


def test_an_unknown_format_is_refused(monkeypatch, capsys, run_copy):
    code, _, err = run_cli(monkeypatch, capsys, "export", run_copy, "--format", "tflite")
    assert_clean_error(code, err, "--format: 'tflite' is not one of ['onnx']")
    assert not (run_copy / "model.onnx").exists()


def test_a_folder_as_output_is_refused(monkeypatch, capsys, run_copy, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "export", run_copy, "-o", tmp_path)
    assert_clean_error(code, err, f"--output {tmp_path}: is a folder")


def test_the_missing_extra_is_named(monkeypatch, capsys, run_copy):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = run_cli(monkeypatch, capsys, "export", run_copy)
    assert_clean_error(code, err, "pip install 'polytask[onnx]'")


def test_a_fine_tuned_text_block_is_refused(
    monkeypatch, capsys, fake_text_encoder, reviews, tmp_path
):
    encoder = {"type": "text", "fine_tune": True, "max_length": 8}
    run_dir = train(tmp_path / "runs", text_config(str(reviews), ""), encoder=encoder)
    code, _, err = run_cli(monkeypatch, capsys, "export", run_dir)
    assert_clean_error(code, err, "model.encoder.type: the input block 'text' cannot be exported")
    assert not [p for p in run_dir.iterdir() if "onnx" in p.name or p.name == PREPROCESS]


def test_frozen_text_features_are_refused(
    monkeypatch, capsys, fake_text_encoder, reviews, tmp_path
):
    run_dir = train(tmp_path / "runs", text_config(str(reviews), ""))
    code, _, err = run_cli(monkeypatch, capsys, "export", run_dir)
    assert_clean_error(code, err, "features.text: the text columns ['review']")
    assert not (run_dir / "model.onnx").exists()


def test_an_exporter_failure_names_the_architecture_and_leaves_nothing(monkeypatch, run_copy):
    before = sorted(p.name for p in run_copy.iterdir())

    def refuse(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::mystery", 17, 17)

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(
        RunError,
        match="ONNX export of the architecture 'hard' with input block "
        "'tabular' failed: UnsupportedOperatorError",
    ):
        export_run(run_copy)
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_a_graph_that_does_not_reproduce_torch_is_not_written(monkeypatch, run_copy):
    """The exporter writes a model whose weights differ from torch's: the check catches it, and
    an earlier export at the same path is kept."""
    earlier = b"an earlier export"
    (run_copy / "model.onnx").write_bytes(earlier)
    export = torch.onnx.export

    def perturbed(graph, *args, **kwargs):
        weight = next(graph.model.heads["spend"].parameters())
        with torch.no_grad():
            weight += 1.0
            try:
                return export(graph, *args, **kwargs)
            finally:
                weight -= 1.0

    monkeypatch.setattr(torch.onnx, "export", perturbed)
    with pytest.raises(RunError, match="does not reproduce task 'spend'"):
        export_run(run_copy)
    assert (run_copy / "model.onnx").read_bytes() == earlier
    assert not (run_copy / PREPROCESS).exists()
    assert not [p for p in run_copy.iterdir() if p.name.endswith(".tmp")]
