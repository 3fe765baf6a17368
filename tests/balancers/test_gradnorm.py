"""GradNorm: gradient norms on the last shared layer are driven to their targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.balancers import GradNorm
from polytask.balancers.gradnorm import last_layer


def test_last_layer_is_the_last_weight_and_what_follows():
    trunk = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5), nn.LayerNorm(5))
    params = list(trunk.parameters())
    assert last_layer(params, None) == params[2:]
    assert last_layer(params, 1) == params[-1:]


def toy(seed: int = 0):
    """Shared linear layer, two linear heads; task b's loss is 20x larger."""
    torch.manual_seed(seed)
    shared = nn.Linear(4, 8)
    heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
    x = torch.randn(64, 4)
    targets = [x @ torch.randn(4, 1), x @ torch.randn(4, 1)]

    def losses():
        z = torch.tanh(shared(x))
        return {
            "a": ((heads[0](z) - targets[0]) ** 2).mean(),
            "b": 20.0 * ((heads[1](z) - targets[1]) ** 2).mean(),
        }

    return shared, heads, losses


def norms(shared, losses) -> list[float]:
    out = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, list(shared.parameters()), retain_graph=True)
        out.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)).item())
    return out


def test_update_equalises_gradient_norms():
    shared, heads, losses = toy()
    # α = 0: the target is the mean norm, whatever the training rates
    balancer = GradNorm(["a", "b"], alpha=0.0, lr=0.02)
    n0 = norms(shared, losses())
    initial_gap = max(n0) / min(n0)
    assert initial_gap > 5
    for _ in range(200):
        current = losses()
        balancer.backward(current, shared_params=shared.parameters())
        for p in [*shared.parameters(), *heads.parameters()]:
            p.grad = None  # the weights alone must do the balancing
    n = norms(shared, losses())
    w = balancer.weights.tolist()
    weighted = [w[0] * n[0], w[1] * n[1]]
    assert max(weighted) / min(weighted) < 1.1
    assert sum(w) == pytest.approx(2.0)


def test_weights_sum_to_the_number_of_tasks_and_first_step_is_equal():
    shared, _, losses = toy()
    balancer = GradNorm(["a", "b"])
    first = balancer.backward(losses(), shared_params=shared.parameters())
    assert first == {"a": 1.0, "b": 1.0}
    for _ in range(5):
        balancer.backward(losses(), shared_params=shared.parameters())
        assert balancer.weights.sum().item() == pytest.approx(2.0)
    # the small-gradient task gains weight
    assert balancer.weights[0] > balancer.weights[1]


def test_relative_inverse_training_rate_raises_the_slow_task():
    """With equal gradient norms, the task whose loss fell less (relative to L(0)) gains."""
    balancer = GradNorm(["a", "b"], alpha=1.5, lr=0.05)
    w = torch.ones(1, requires_grad=True)
    for k in range(30):
        la = (w * 1.0).sum() * (0.9**k)  # falls fast
        lb = (w * 1.0).sum() * (0.99**k)  # falls slowly; both have the same gradient on w
        balancer.backward({"a": la, "b": lb}, shared_params=[w])
        w.grad = None
    assert balancer.weights[1] > 1.0 > balancer.weights[0]


def test_needs_shared_params():
    with pytest.raises(ValueError, match="shared_params"):
        GradNorm(["a"]).backward({"a": torch.tensor(1.0, requires_grad=True)})
