"""DWA: the published formula on a hand-made history, and its bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.balancers import DynamicWeightAverage


def losses(**values: float) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}


def test_equal_weights_for_the_first_two_epochs():
    dwa = DynamicWeightAverage(["a", "b", "c"])
    assert dwa.backward(losses(a=1.0, b=5.0, c=9.0)) == {"a": 1.0, "b": 1.0, "c": 1.0}
    dwa.epoch_end({"a": 2.0, "b": 1.0, "c": 4.0})
    assert dwa.backward(losses(a=1.0, b=5.0, c=9.0)) == pytest.approx({"a": 1, "b": 1, "c": 1})


def test_formula_on_a_hand_made_history():
    dwa = DynamicWeightAverage(["a", "b", "c"], temperature=2.0)
    history = [{"a": 2.0, "b": 1.0, "c": 4.0}, {"a": 1.0, "b": 1.5, "c": 4.0}]
    for means in history:
        dwa.epoch_end(means)
    r = [1.0 / 2.0, 1.5 / 1.0, 4.0 / 4.0]
    e = [math.exp(x / 2.0) for x in r]
    expected = {t: 3 * v / sum(e) for t, v in zip("abc", e, strict=True)}
    batch = losses(a=0.3, b=0.7, c=2.0)
    weights = dwa.backward(batch)
    assert weights == pytest.approx(expected, rel=1e-6)
    for t in "abc":  # the gradient of Σ w_i L_i w.r.t. L_i is w_i
        assert batch[t].grad.item() == pytest.approx(expected[t], rel=1e-6)
    # a third epoch: only the last two count
    dwa.epoch_end({"a": 1.0, "b": 3.0, "c": 2.0})
    r = [1.0, 2.0, 0.5]
    e = [math.exp(x / 2.0) for x in r]
    assert dwa.backward(losses(a=1.0, b=1.0, c=1.0)) == pytest.approx(
        {t: 3 * v / sum(e) for t, v in zip("abc", e, strict=True)}, rel=1e-6
    )


def test_temperature_sharpens():
    weights = {}
    for tau in (0.5, 2.0, 50.0):
        dwa = DynamicWeightAverage(["a", "b"], temperature=tau)
        dwa.epoch_end({"a": 1.0, "b": 1.0})
        dwa.epoch_end({"a": 1.0, "b": 0.5})  # a stalls, b improves
        weights[tau] = dwa.backward(losses(a=1.0, b=1.0))
    assert weights[0.5]["a"] > weights[2.0]["a"] > weights[50.0]["a"] > 1.0
    assert weights[50.0]["a"] == pytest.approx(1.0, abs=0.02)


def test_task_missing_from_an_epoch_keeps_its_history():
    dwa = DynamicWeightAverage(["a", "b"])
    dwa.epoch_end({"a": 2.0, "b": 1.0})
    dwa.epoch_end({"a": 1.0})  # no labels for b this epoch
    dwa.epoch_end({"a": 1.0, "b": 2.0})
    assert dwa.history == {"a": [1.0, 1.0], "b": [1.0, 2.0]}
    w = dwa.backward(losses(a=1.0, b=1.0))
    assert w["b"] > 1.0 > w["a"]
    # the weight of a task does not depend on which other tasks are in the batch
    assert dwa.backward(losses(b=1.0)) == {"b": w["b"]}


def test_non_finite_epoch_mean_is_ignored_with_a_warning():
    dwa = DynamicWeightAverage(["a", "b"])
    dwa.epoch_end({"a": 2.0, "b": 1.0})
    with pytest.warns(RuntimeWarning, match="'b'"):
        dwa.epoch_end({"a": 1.0, "b": float("nan")})
    assert dwa.history["b"] == [1.0]
    with pytest.raises(KeyError):
        dwa.epoch_end({"zzz": 1.0})
    with pytest.raises(ValueError):
        DynamicWeightAverage(["a"], temperature=0.0)
