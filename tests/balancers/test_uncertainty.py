"""Uncertainty weighting and IMTL-L: learned scales settle where weighted losses are balanced."""

from __future__ import annotations

import pytest
import torch

from polytask.balancers import IMTLLoss, UncertaintyWeighting


def fit_scales(balancer, losses: dict[str, float], steps: int = 400, lr: float = 0.1):
    """Train only the balancer's scales against constant losses; return the last weights."""
    opt = torch.optim.SGD(balancer.parameters(), lr=lr)
    weights = {}
    for _ in range(steps):
        opt.zero_grad()
        weights = balancer.backward({k: torch.tensor(v) for k, v in losses.items()})
        opt.step()
    return weights


@pytest.mark.parametrize("cls", [UncertaintyWeighting, IMTLLoss])
def test_scales_converge_to_inverse_loss(cls):
    weights = fit_scales(cls(["a", "b"]), {"a": 0.5, "b": 4.0})
    assert weights["a"] == pytest.approx(2.0, rel=1e-3)
    assert weights["b"] == pytest.approx(0.25, rel=1e-3)


@pytest.mark.parametrize("cls", [UncertaintyWeighting, IMTLLoss])
def test_scaling_one_loss_divides_its_converged_weight(cls):
    base = fit_scales(cls(["a", "b"]), {"a": 1.5, "b": 0.8})
    scaled = fit_scales(cls(["a", "b"]), {"a": 1.5 * 10.0, "b": 0.8})
    assert scaled["a"] * 10.0 == pytest.approx(base["a"], rel=1e-3)
    assert scaled["b"] == pytest.approx(base["b"], rel=1e-3)


def test_initial_weights_and_values():
    uw, imtl = UncertaintyWeighting(["a", "b"]), IMTLLoss(["a", "b"], init=1.0)
    losses = {"a": torch.tensor(2.0, requires_grad=True), "b": torch.tensor(3.0)}
    assert uw.backward(losses) == {"a": 1.0, "b": 1.0}
    assert losses["a"].grad.item() == pytest.approx(1.0)
    w = imtl.backward({"a": torch.tensor(2.0)})
    assert w == {"a": pytest.approx(torch.e)}
    assert imtl.parameters()[0].grad.item() == pytest.approx(torch.e * 2.0 - 1.0)
