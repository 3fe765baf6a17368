import math

import pytest

from polytask.evaluation import delta_m, relative_changes

DIRECTIONS = {"a": {"auc": "higher", "acc": "higher"}, "b": {"mae": "lower"}}
BASE = {"a": {"auc": 0.80, "acc": 0.50}, "b": {"mae": 2.0}}


def test_sign_corrected_relative_changes():
    scores = {"a": {"auc": 0.88, "acc": 0.45}, "b": {"mae": 1.5}}
    changes = relative_changes(scores, BASE, DIRECTIONS)
    assert changes["a"]["auc"] == pytest.approx(10.0)
    assert changes["a"]["acc"] == pytest.approx(-10.0)
    assert changes["b"]["mae"] == pytest.approx(25.0)  # lower MAE is a gain


def test_per_task_averages_within_a_task_first():
    scores = {"a": {"auc": 0.88, "acc": 0.45}, "b": {"mae": 1.5}}
    assert delta_m(scores, BASE, DIRECTIONS) == pytest.approx((0.0 + 25.0) / 2)
    assert delta_m(scores, BASE, DIRECTIONS, "per_metric") == pytest.approx(25.0 / 3)


def test_identical_scores_give_zero_and_undefined_metrics_give_nan():
    assert delta_m(BASE, BASE, DIRECTIONS) == 0.0
    broken = {"a": {"auc": math.nan, "acc": 0.5}, "b": {"mae": 2.0}}
    assert math.isnan(delta_m(broken, BASE, DIRECTIONS))
