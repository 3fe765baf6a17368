"""Tracking across processes (slow: each process imports torch and MLflow, and MLflow's
default SQLite store takes seconds to create): two runs writing to one ``mlflow.db`` at the
same time, and a ``torchrun`` job, which rank 0 alone tracks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..test_concurrency import two_at_once
from .test_tracked_run import tracked_config

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
ENV.pop("MLFLOW_ALLOW_FILE_STORE", None)


def train_in_child(config_path: str, barrier, results) -> None:
    """One run, started with the other (the default store is created by both at once)."""
    from polytask.config import load_config
    from polytask.experiment import run_experiment

    config = load_config(config_path)
    barrier.wait()
    try:
        results.put(("ok", str(run_experiment(config, baselines=False).run_dir)))
    except Exception as exc:  # reported to the test, which fails with it
        results.put(("error", repr(exc)))


def assert_tracked_as_in_metrics_json(client, runs: list, folders: list[Path]) -> None:
    """Each MLflow run holds its run folder's per-epoch training losses, exactly."""
    by_folder = {run.data.tags["polytask.run_dir"]: run for run in runs}
    assert sorted(by_folder) == sorted(str(f.resolve()) for f in folders)
    for folder in folders:
        run = by_folder[str(folder.resolve())]
        assert run.info.status == "FINISHED"
        history = json.loads((folder / "metrics.json").read_text())["multitask"]["history"]
        for task in history[0]["train_loss"]:
            expected = [(log["epoch"], log["train_loss"][task]) for log in history]
            logged = client.get_metric_history(run.info.run_id, f"loss/train/{task}")
            assert sorted((m.step, m.value) for m in logged) == expected


@pytest.mark.slow
def test_two_runs_share_the_default_mlflow_store_at_the_same_time(tmp_path):
    raw = tracked_config(tmp_path, mlflow=True)  # sqlite:///<output_dir>/mlflow.db
    raw["evaluation"] = {}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    outcomes = two_at_once(train_in_child, config)

    database = tmp_path / "runs" / "mlflow.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "synthetic"]
    assert experiment.artifact_location == (tmp_path / "runs" / "mlflow-artifacts").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert_tracked_as_in_metrics_json(client, runs, [Path(o[1]) for o in outcomes])


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_tracks(tmp_path):
    raw = tracked_config(tmp_path, tensorboard=True, mlflow=True)
    raw["evaluation"] = {}
    raw["model"]["dropout"] = 0.0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "polytask", "train", "--no-baselines", str(config)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "synthetic"
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len(list((run / "tensorboard" / "hparams").glob("events.out.tfevents.*"))) == 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert_tracked_as_in_metrics_json(client, runs, [run])
