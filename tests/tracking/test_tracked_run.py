"""One small run tracked by TensorBoard and MLflow at once (stopped as it tracks epoch 2, then
resumed),
read back with their own readers (TensorBoard's ``EventAccumulator``, MLflow's
``MlflowClient``): every tracked value equals ``metrics.json``. Then the MLflow stores that
cannot be used (in this module: MLflow is imported by one process).

The run uses MLflow's file store (fast to create); the default SQLite store, shared by two
runs at once, is in tests/tracking/test_processes.py (slow: its schema migrations take
seconds)."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from polytask.config import parse_config
from polytask.experiment import run_experiment
from polytask.tracking.build import Tracking

from ..conftest import config_dict, synthetic_frame
from ..test_cli import assert_clean_error, run_cli

EPOCHS = 2


def tracked_config(folder: Path, **logging) -> dict:
    """Two tasks, two epochs; a balancer whose weights move, a task with its own learning
    rate, task affinity measured, baselines (so Δm is defined)."""
    table = folder / "table.csv"
    if not table.exists():
        synthetic_frame(120).to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(folder / "runs"))
    raw["tasks"] = raw["tasks"][:2]
    raw["tasks"][1]["lr_multiplier"] = 0.5
    raw["training"]["epochs"] = EPOCHS
    raw["balancer"] = {"name": "uncertainty"}
    raw["evaluation"] = {"affinity": {"method": "cosine"}}
    raw["logging"] = logging
    return raw


def killed_while_tracking(killed: int):
    """``Tracking.log_epoch`` that stops the process (a ^C) before it logs epoch ``killed``
    (the first time): the epoch is trained and validated but neither tracked nor checkpointed,
    so the resumed run trains and tracks it again (a run that checkpointed it first would never
    track it)."""
    log_epoch = Tracking.log_epoch
    done = []

    def log(self, epoch, scalars, images):
        if epoch == killed and not done:
            done.append(epoch)
            raise KeyboardInterrupt
        return log_epoch(self, epoch, scalars, images)

    return log


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, str]:
    """The run folder, its metrics.json and the MLflow tracking URI of a run stopped as it
    tracked epoch 2, then resumed: the values read back come from both processes (two event
    files, one MLflow run continued)."""
    folder = tmp_path_factory.mktemp("tracked")
    uri = (folder / "mlruns").as_uri()
    config = parse_config(tracked_config(folder, tensorboard=True, mlflow={"tracking_uri": uri}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it otherwise
        with patch.context() as kill:
            kill.setattr(Tracking, "log_epoch", killed_while_tracking(2))
            with pytest.raises(KeyboardInterrupt):
                run_experiment(config)
        _, _, interrupted = mlflow_run(uri)
        assert interrupted.info.status == "FAILED"
        assert len(list((folder / "runs" / "synthetic" / "tensorboard").glob("events.*"))) == 1
        result = run_experiment(config, resume=True)
        yield result.run_dir, json.loads((result.run_dir / "metrics.json").read_text()), uri


def test_the_resumed_run_continued_its_mlflow_run_and_its_event_files(run):
    run_dir, _, uri = run
    _, _, found = mlflow_run(uri)  # one run (mlflow_run unpacks a single one)
    assert found.info.status == "FINISHED"
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 2


def per_epoch(metrics: dict) -> dict[str, list[tuple[int, float]]]:
    """What every epoch tag must hold, from metrics.json: (epoch, value) pairs."""
    expected: dict[str, list[tuple[int, float]]] = {}

    def add(tag: str, epoch: int, value: float | None) -> None:
        assert value is not None and math.isfinite(value), (tag, value)  # never vacuous
        expected.setdefault(tag, []).append((epoch, value))

    for log in metrics["multitask"]["history"]:
        epoch = log["epoch"]
        for task, value in log["train_loss"].items():
            add(f"loss/train/{task}", epoch, value)
        for task, value in log["val_loss"].items():
            add(f"loss/validation/{task}", epoch, value)
        for task, values in log["val_metrics"].items():
            for metric, value in values.items():
                add(f"validation/{task}/{metric}", epoch, value)
        for task, value in log["weights"].items():
            add(f"weight/{task}", epoch, value)
        for group, value in log["lr"].items():
            add(f"lr/{group}", epoch, value)
        add("selection_score", epoch, log["score"])
        add("delta_m/validation", epoch, log["score"])  # the score is Δm with baselines
    return expected


def final(metrics: dict) -> dict[str, float]:
    """The final values, from metrics.json."""
    values = {
        f"final/{split}/{task}/{metric}": value
        for split in ("validation", "test")
        for task, scores in metrics["multitask"][split].items()
        for metric, value in scores.items()
    }
    values["final/delta_m/validation"] = metrics["delta_m_validation"]
    values["final/delta_m/test"] = metrics["delta_m_test"]
    values["final/best_epoch"] = metrics["multitask"]["best_epoch"]
    assert all(math.isfinite(v) for v in values.values())
    return values


def test_the_run_varies_what_it_tracks(run):
    """The claims below are not vacuous: weights and learning rates differ across tasks."""
    _, metrics, _ = run
    history = metrics["multitask"]["history"]
    assert len(history) == EPOCHS
    assert len({round(w, 6) for log in history for w in log["weights"].values()}) > 1
    assert len(set(history[0]["lr"].values())) > 1
    last = history[-1]["val_metrics"]
    directions = {t["name"]: t for t in metrics["tasks"]}
    assert set(last) == set(directions)


# -- TensorBoard ------------------------------------------------------------------------------


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    return accumulator.Reload()


def as_float32(value: float) -> float:
    return float(np.float32(value))


def test_tensorboard_holds_every_epoch_value_of_metrics_json(run):
    run_dir, metrics, _ = run
    board = events(run_dir / "tensorboard")
    expected = per_epoch(metrics)
    assert set(board.Tags()["scalars"]) == set(expected)
    for tag, pairs in expected.items():
        read = [(e.step, e.value) for e in board.Scalars(tag)]
        # event files hold float32: the value rounded to float32, nothing else
        assert read == [(step, as_float32(v)) for step, v in pairs], tag


def test_tensorboard_holds_the_hyperparameters_with_the_final_values(run):
    run_dir, metrics, _ = run
    board = events(run_dir / "tensorboard" / "hparams")
    expected = final(metrics)
    assert set(board.Tags()["scalars"]) == set(expected)
    for tag, value in expected.items():
        assert [e.value for e in board.Scalars(tag)] == [as_float32(value)], tag
    content = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    config = json.loads((run_dir / "config.json").read_text())
    assert hparams["training.lr"].number_value == config["training"]["lr"]
    assert hparams["balancer.name"].string_value == "uncertainty"
    assert hparams["tasks.1.lr_multiplier"].number_value == 0.5
    assert hparams["model.trunk"].string_value == "[16]"


def test_tensorboard_shows_the_affinity_heatmap_of_every_epoch(run):
    run_dir, _, _ = run
    board = events(run_dir / "tensorboard")
    assert board.Tags()["images"] == ["affinity"]
    images = board.Images("affinity")
    assert [i.step for i in images] == list(range(1, EPOCHS + 1))
    assert all(i.width > 100 and i.height > 100 for i in images)
    assert images[0].encoded_image_string != images[1].encoded_image_string  # each its own


# -- MLflow -----------------------------------------------------------------------------------


def mlflow_run(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("synthetic")  # the config's name
    (found,) = client.search_runs([experiment.experiment_id])
    return client, experiment, found


def test_mlflow_holds_every_epoch_value_and_the_final_values_of_metrics_json(run):
    run_dir, metrics, uri = run
    client, _, found = mlflow_run(uri)
    assert found.info.status == "FINISHED"
    assert found.info.run_name == run_dir.name
    assert found.data.tags["polytask.run_dir"] == str(run_dir.resolve())
    expected = per_epoch(metrics)
    finals = final(metrics)
    assert set(found.data.metrics) == set(expected) | set(finals)
    for tag, pairs in expected.items():
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(found.info.run_id, tag)
        )
        assert history == pairs, tag  # float64: exactly
    for tag, value in finals.items():
        assert found.data.metrics[tag] == value, tag


def test_mlflow_holds_the_flattened_config_as_parameters(run):
    run_dir, _, uri = run
    _, _, found = mlflow_run(uri)
    params = found.data.params
    config = json.loads((run_dir / "config.json").read_text())
    assert params["training.lr"] == str(config["training"]["lr"])
    assert params["balancer.name"] == "uncertainty"
    assert params["tasks.0.name"] == "clicked" and params["tasks.1.lr_multiplier"] == "0.5"
    assert params["evaluation.affinity.method"] == "cosine"


def test_mlflow_keeps_the_run_folders_files_as_artifacts(run, tmp_path):
    run_dir, _, uri = run
    client, experiment, found = mlflow_run(uri)
    assert experiment.artifact_location == (run_dir.parent / "mlflow-artifacts").as_uri()
    listed = {f.path for f in client.list_artifacts(found.info.run_id)}
    on_disk = {p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert on_disk >= {"model.safetensors", "metrics.json", "config.json", "loss_curves.png"}
    assert listed == on_disk | {"images"}  # and the affinity images
    copy = client.download_artifacts(found.info.run_id, "metrics.json", str(tmp_path))
    assert Path(copy).read_bytes() == (run_dir / "metrics.json").read_bytes()
    images = [f.path for f in client.list_artifacts(found.info.run_id, "images")]
    for step in range(1, EPOCHS + 1):
        assert any(p.startswith(f"images/affinity+step+{step}+") for p in images), images


# -- MLflow stores that cannot be used: one line, exit 2, before any folder -------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli_with(tmp_path: Path, **logging) -> Path:
    raw = tracked_config(tmp_path, **logging)
    raw["training"]["epochs"] = 1
    kept = tmp_path / "runs" / "synthetic"  # a run written before: nothing of it is lost
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def assert_nothing_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["synthetic"]
    assert sorted(p.name for p in (runs / "synthetic").iterdir()) == ["metrics.json"]
    assert (runs / "synthetic" / "metrics.json").read_text() == "{}"


def test_an_mlflow_server_that_cannot_be_reached_is_one_line_at_once(monkeypatch, capsys, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    config = cli_with(tmp_path, mlflow={"tracking_uri": uri})
    started = time.perf_counter()
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert time.perf_counter() - started < 20  # MLflow's own retries take minutes
    assert_clean_error(code, err, "logging.mlflow.tracking_uri", uri, "Connection refused")
    assert_nothing_written(tmp_path)


def test_the_mlflow_file_store_without_its_switch_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    config = cli_with(tmp_path, mlflow={"tracking_uri": (tmp_path / "mlruns").as_uri()})
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert_clean_error(code, err, "logging.mlflow.tracking_uri", "MLflow store", "sqlite:///")
    assert_nothing_written(tmp_path)


def test_a_database_store_without_sqlalchemy_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "sqlalchemy", None)
    config = cli_with(tmp_path, mlflow=True)  # the default: SQLite in the output folder
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert_clean_error(code, err, "logging.mlflow", "pip install 'polytask[mlflow]'")
    assert_nothing_written(tmp_path)


def test_a_deleted_experiment_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("gone"))
    config = cli_with(tmp_path, mlflow={"tracking_uri": uri, "experiment": "gone"})
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert_clean_error(code, err, "logging.mlflow.experiment", "'gone' is a deleted experiment")
    assert_nothing_written(tmp_path)
