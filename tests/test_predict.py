"""polytask.predict: a loaded run predicts and evaluates with the run alone (no trainer)."""

import pandas as pd
import pytest

from polytask.config import parse_config
from polytask.experiment import run_experiment
from polytask.inference import evaluate
from polytask.predict import load_run
from polytask.training import trainer

from .conftest import config_dict


def test_a_loaded_run_needs_no_trainer(monkeypatch, table, tmp_path):
    quick = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path), training=quick))
    run_dir = run_experiment(config, baselines=False).run_dir

    def no_trainer(*args, **kwargs):
        raise AssertionError("inference built a Trainer")

    monkeypatch.setattr(trainer.Trainer, "__init__", no_trainer)
    run = load_run(run_dir)
    frame = pd.read_csv(table)
    predictions = run.predict(frame, "table")
    assert len(predictions) == len(frame) and "clicked_proba" in predictions.columns
    metrics = run.evaluate(frame, "table")
    assert metrics == evaluate(run.model, run.tasks, run.encode(frame, "table")).metrics
    assert metrics["spend"]["rmse"] == pytest.approx(
        ((predictions["spend"] - frame["spend"]) ** 2).mean() ** 0.5, rel=1e-4
    )
