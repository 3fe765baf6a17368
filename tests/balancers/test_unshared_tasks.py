"""A task that does not reach the shared parameters (alone in its group) gets weight 1 and the
rule weighs the others among themselves: left in, its zero gradient would be MGDA's min-norm
point and silently stop every other task (issue 7 review, found on ``groups``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.balancers import build_balancer
from tests.balancers.gb_toys import GRAMIAN_METHODS, toy_losses, toy_model

TASKS = ("a", "b", "alone")


def losses_with_an_unshared_task(seed: int = 0):
    """Tasks a and b read the shared trunk; 'alone' has its own network on the raw input."""
    model = toy_model(["a", "b"], seed)
    losses, features = toy_losses(model, seed)
    torch.manual_seed(seed)
    own = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    losses["alone"] = ((own(x) - 1.0) ** 2).mean()
    return model, own, losses, features


@pytest.mark.parametrize("mode", ["features", "params"])
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_an_unshared_task_gets_weight_one_and_the_others_their_own_rule(name, mode):
    model, own, losses, features = losses_with_an_unshared_task()
    shared = list(model.shared_parameters())
    alone = build_balancer(
        name, TASKS, mode=mode, **({"seed": 0} if name in ("pcgrad", "gradvac") else {})
    )
    weights = alone.backward(losses, shared_params=shared, features=features)
    assert weights["alone"] == 1.0
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in own.parameters())

    model2, _, losses2, features2 = losses_with_an_unshared_task()
    pair = build_balancer(
        name, ("a", "b"), mode=mode, **({"seed": 0} if name in ("pcgrad", "gradvac") else {})
    )
    expected = pair.backward(
        {k: losses2[k] for k in ("a", "b")},
        shared_params=list(model2.shared_parameters()),
        features=features2,
    )
    assert [weights["a"], weights["b"]] == pytest.approx([expected["a"], expected["b"]], rel=1e-9)
    assert weights["a"] != 0 or weights["b"] != 0
