"""Whole runs on degenerate training: a metric that is 0 in the reference epoch, and weights
that diverge (run_experiment and the command line)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from polytask.config import parse_config
from polytask.errors import RunError
from polytask.experiment import run_experiment
from polytask.predict import load_run
from polytask.training.checkpoint import load_weights, save_weights

from ..conftest import config_dict
from ..test_cli import assert_clean_error, run_cli


def strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path} is not strict JSON: {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def rare_positive_config(tmp_path) -> dict:
    """A binary task whose positive class is rare (epoch 1 predicts only negatives: F1 = 0)
    beside a regression task that keeps improving."""
    rng = np.random.default_rng(0)
    n = 400
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "rare": np.where(x1 > 1.3, "yes", "no"),
            "spend": 3.0 * x1 - 2.0 * x2 + 0.1 * rng.normal(size=n),
        }
    )
    frame.to_csv(tmp_path / "rare.csv", index=False)
    return {
        "name": "rare",
        "output_dir": str(tmp_path / "runs"),
        "data": {"source": str(tmp_path / "rare.csv"), "split": {"validation": 0.25, "seed": 1}},
        "tasks": [
            {"name": "rare", "type": "binary", "positive": "yes", "metrics": ["f1"]},
            {"name": "spend", "type": "regression"},
        ],
        "model": {"trunk": [16], "head": [8]},
        "training": {"epochs": 4, "batch_size": 32, "lr": 0.01, "early_stopping": {"patience": 2}},
    }


def test_a_zero_f1_in_the_first_epoch_leaves_selection_and_the_best_epoch_is_chosen(tmp_path):
    config = parse_config(rare_positive_config(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"'rare' f1 \(reference is 0\)"):
        result = run_experiment(config, baselines=False)
    history = result.multitask.history
    assert history[0]["val_metrics"]["rare"]["f1"] == 0.0  # the degenerate reference
    scores = [log["score"] for log in history]
    assert len(history) == 4 and all(math.isfinite(s) for s in scores)
    assert result.multitask.best_epoch == 1 + int(np.argmax(scores))
    assert result.multitask.best_epoch > 1  # spend kept improving after epoch 1
    strict_json(result.run_dir / "metrics.json")


@pytest.mark.filterwarnings("ignore:model selection")
def test_a_finished_run_whose_weights_are_not_finite_is_refused(tmp_path):
    config = rare_positive_config(tmp_path)
    config["training"]["epochs"] = 1
    result = run_experiment(parse_config(config), baselines=False)
    load_run(result.run_dir)  # loads while the weights are finite
    path = result.run_dir / "model.safetensors"
    weights = load_weights(path)
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], math.nan)
    save_weights(weights, path)
    with pytest.raises(RunError, match=rf"model.safetensors: the weights are not finite.*'{name}'"):
        load_run(result.run_dir)


def test_a_run_that_diverges_exits_2_and_is_not_saved_as_a_success(
    monkeypatch, capsys, tmp_path, table
):
    config = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    config["training"] |= {"optimizer": "sgd", "lr": 1e6}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    code, _, err = run_cli(monkeypatch, capsys, "train", path, "--no-baselines")
    assert_clean_error(code, err, "training diverged (multi-task)", "task 'spend'", "epoch 1 step")
    run = tmp_path / "runs" / "synthetic"
    assert not (run / "metrics.json").exists() and not (run / "model.safetensors").exists()
    assert "training diverged" in strict_json(run / "failed.json")["error"]
    code, _, err = run_cli(monkeypatch, capsys, "predict", run, table, "-o", tmp_path / "p.csv")
    assert_clean_error(code, err, "model.safetensors")
    assert not (tmp_path / "p.csv").exists()
    code, _, err = run_cli(monkeypatch, capsys, "train", path)  # a baseline diverges first
    assert_clean_error(code, err, "training diverged (baseline")
    assert (tmp_path / "runs" / "synthetic-2" / "failed.json").is_file()
