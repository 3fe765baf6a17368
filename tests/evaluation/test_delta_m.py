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


def test_identical_scores_give_zero():
    assert delta_m(BASE, BASE, DIRECTIONS) == 0.0


def test_a_zero_reference_leaves_delta_m_with_a_warning_naming_it():
    base = {"a": {"auc": 0.80, "acc": 0.0}, "b": {"mae": 2.0}}  # e.g. F1 = 0: all negatives
    scores = {"a": {"auc": 0.88, "acc": 0.45}, "b": {"mae": 1.5}}
    with pytest.warns(RuntimeWarning, match=r"'a' acc \(reference is 0\)"):
        value = delta_m(scores, base, DIRECTIONS)
    assert value == pytest.approx((10.0 + 25.0) / 2)  # acc left out, task a kept with auc
    assert math.isnan(relative_changes(scores, base, DIRECTIONS)["a"]["acc"])


def test_an_undefined_value_leaves_delta_m_and_a_task_with_nothing_left_leaves():
    broken = {"a": {"auc": math.nan, "acc": None}, "b": {"mae": 1.5}}  # None: JSON null
    with pytest.warns(RuntimeWarning, match=r"'a' auc \(value is nan\).*'a' acc"):
        value = delta_m(broken, BASE, DIRECTIONS)
    assert value == pytest.approx(25.0)  # task a has no metric left: only b counts
    with pytest.warns(RuntimeWarning):
        assert delta_m(broken, BASE, DIRECTIONS, "per_metric") == pytest.approx(25.0)


def test_nothing_defined_gives_nan_with_a_warning():
    base = {"a": {"auc": 0.0, "acc": 0.0}, "b": {"mae": math.inf}}
    with pytest.warns(RuntimeWarning, match="Δm is undefined"):
        assert math.isnan(delta_m(BASE, base, DIRECTIONS))
