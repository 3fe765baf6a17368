"""What is tracked, by name (``polytask.tracking.values``), on hand-made epoch logs and
results: no training, no tracker."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from polytask.config import parse_config
from polytask.evaluation.delta_m import delta_m
from polytask.results import ModelResult, RunResult
from polytask.tracking.values import (
    epoch_images,
    epoch_scalars,
    final_scalars,
    flat_params,
)
from polytask.training.trainer import EpochLog

from ..conftest import config_dict

DIRECTIONS: dict = {"a": {"auc": "higher"}, "b": {"rmse": "lower"}}


def a_log(**changes) -> EpochLog:
    values = {
        "epoch": 3,
        "train_loss": {"a": 0.5, "b": 1.5},
        "val_loss": {"a": 0.6, "b": 1.7},
        "val_metrics": {"a": {"auc": 0.8}, "b": {"rmse": 2.0}},
        "score": 4.25,
        "weights": {"a": 0.9, "b": 1.1},
        "lr": {"shared": 0.01, "a": 0.01, "b": 0.005, "balancer": 0.01},
    }
    return EpochLog(**(values | changes))


def test_an_epoch_gives_its_losses_metrics_weights_learning_rates_and_score():
    assert epoch_scalars(a_log(), None, DIRECTIONS) == {
        "loss/train/a": 0.5,
        "loss/train/b": 1.5,
        "loss/validation/a": 0.6,
        "loss/validation/b": 1.7,
        "validation/a/auc": 0.8,
        "validation/b/rmse": 2.0,
        "weight/a": 0.9,
        "weight/b": 1.1,
        "lr/shared": 0.01,
        "lr/a": 0.01,
        "lr/b": 0.005,
        "lr/balancer": 0.01,
        "selection_score": 4.25,
    }


@pytest.mark.parametrize("average", ["per_task", "per_metric"])
def test_the_epochs_delta_m_is_against_the_baselines(average):
    reference = {"a": {"auc": 0.5}, "b": {"rmse": 4.0}}
    scalars = epoch_scalars(a_log(), reference, DIRECTIONS, average)
    # a: +60 %, b: +50 % (lower is better); both averages agree with one metric per task
    assert scalars["delta_m/validation"] == pytest.approx(55.0)
    expected = delta_m(a_log().val_metrics, reference, DIRECTIONS, average)
    assert scalars["delta_m/validation"] == expected


def test_an_epoch_without_validation_has_no_score_and_no_delta_m():
    log = a_log(val_loss={}, val_metrics={}, score=math.nan)
    scalars = epoch_scalars(log, {"a": {"auc": 0.5}, "b": {"rmse": 4.0}}, DIRECTIONS)
    assert not any(k.startswith(("validation", "selection", "delta_m")) for k in scalars)
    assert "loss/train/a" in scalars


def test_final_values_are_the_selected_models_and_delta_m_with_baselines_only():
    model = ModelResult(
        validation={"a": {"auc": 0.7}}, test={"a": {"auc": 0.65}}, parameters=10,
        seconds=1.0, best_epoch=2,
    )  # fmt: skip
    result = RunResult(Path("run"), [], model, {}, {}, delta_m_test=math.nan)
    assert final_scalars(result) == {
        "final/validation/a/auc": 0.7,
        "final/test/a/auc": 0.65,
        "final/best_epoch": 2.0,
    }
    result.baselines, result.delta_m_test, result.delta_m_validation = {"a": model}, -1.5, 2.5
    scalars = final_scalars(result)
    assert (scalars["final/delta_m/test"], scalars["final/delta_m/validation"]) == (-1.5, 2.5)


def affinity(matrix) -> dict:
    return {"affinity": {"method": "cosine", "tasks": ["a", "b"], "matrix": matrix}}


def test_no_heatmap_without_a_measured_affinity():
    """(The heatmap of a measured one: tests/tracking/test_tracked_run.py.)"""
    assert epoch_images(a_log()) == {}
    assert epoch_images(a_log(observations=affinity([[None, None], [None, None]]))) == {}


def test_the_hyperparameters_are_the_flattened_config():
    raw = config_dict("table.csv", logging={"mlflow": {"experiment": "e"}})
    params = flat_params(parse_config(raw))
    assert params["training.lr"] == 0.01 and params["training.epochs"] == 4
    assert params["tasks.0.name"] == "clicked" and params["tasks.2.type"] == "regression"
    assert params["model.trunk"] == "[16]"  # a list of values: JSON text
    assert params["tasks.0.loss"] == "null"
    assert params["logging.mlflow.experiment"] == "e"
    assert params["logging.tensorboard"] is False
    assert all(isinstance(v, bool | int | float | str) for v in params.values())
