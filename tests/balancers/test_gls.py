"""GLS: gradient of the geometric mean, implied weights, behaviour under loss scaling."""

from __future__ import annotations

import pytest
import torch

from polytask.balancers import GeometricLossStrategy

EPS = 1e-8


def test_gradient_and_implied_weights():
    gls = GeometricLossStrategy(["a", "b", "c"])
    values = {"a": 0.5, "b": 2.0, "c": 8.0}
    losses = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()
    }
    w = gls.backward(losses)
    geometric = (0.5 * 2.0 * 8.0) ** (1 / 3)
    for k, v in values.items():
        assert w[k] == pytest.approx(geometric / (3 * v), rel=1e-6)
        assert losses[k].grad.item() == pytest.approx(w[k], rel=1e-6)
    products = [w[k] * values[k] for k in values]  # w_i L_i equal across tasks
    assert max(products) == pytest.approx(min(products), rel=1e-6)


def test_scaling_one_loss():
    gls = GeometricLossStrategy(["a", "b"])
    x = torch.tensor(1.0, requires_grad=True)
    base = gls.backward({"a": x * 1.5, "b": x * 0.4})
    scaled = gls.backward({"a": x * 1.5 * 100, "b": x * 0.4})
    # T = 2: w_a scales by c^(1/2 - 1), w_b by c^(1/2)
    assert scaled["a"] == pytest.approx(base["a"] * 100 ** (-0.5), rel=1e-5)
    assert scaled["b"] == pytest.approx(base["b"] * 100**0.5, rel=1e-5)


def test_zero_loss_stays_finite_and_negative_loss_skips():
    gls = GeometricLossStrategy(["a", "b"])
    x = torch.tensor(1.0, requires_grad=True)
    w = gls.backward({"a": x * 0.0, "b": x * 2.0})
    assert all(torch.isfinite(torch.tensor(list(w.values()))))
    with pytest.warns(RuntimeWarning, match="'b'"):
        assert gls.backward({"a": x * 1.0, "b": x * -1.0}) == {"a": 0.0, "b": 0.0}
