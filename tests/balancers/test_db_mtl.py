"""DB-MTL: log-loss gradients balanced to the largest norm, with their running average."""

from __future__ import annotations

import copy

import pytest
import torch
from lw_toys import TASKS, toy_losses, toy_model

from polytask.balancers import DualBalancing


def per_task_log_grads(model, step: int, inputs_of) -> tuple[torch.Tensor, dict]:
    losses, rep = toy_losses(model, step)
    inputs = inputs_of(model, rep)
    rows = []
    for t in TASKS:
        g = torch.autograd.grad(torch.log(losses[t] + 1e-8), inputs, retain_graph=True)
        rows.append(torch.cat([x.reshape(-1) for x in g]))
    return torch.stack(rows), losses


def shared(model, rep):
    return list(model.shared_parameters())


def run(balancer, model, step: int, scale: float = 1.0) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    losses, rep = toy_losses(model, step)
    losses["b"] = losses["b"] * scale
    return balancer.backward(losses, shared_params=model.shared_parameters(), features=rep)


def test_first_steps_match_the_algorithm():
    beta, sigma = 0.9, 0.5
    balancer, model = DualBalancing(TASKS, beta=beta, beta_sigma=sigma), toy_model()
    average = None
    for k in range(3):
        grads, _ = per_task_log_grads(model, k, shared)
        if average is None:
            average = grads
        else:
            b = beta / (k + 1) ** sigma
            average = b * average + (1 - b) * grads
        norms = average.norm(dim=1)
        alpha = norms.max() / norms
        weights = run(balancer, model, k)
        assert [weights[t] for t in TASKS] == pytest.approx(alpha.tolist(), rel=1e-6)
        got = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
        torch.testing.assert_close(got, alpha @ average, rtol=1e-6, atol=1e-10)
        # heads get the gradient of their own log-loss
        losses, _ = toy_losses(model, k)
        for t in TASKS:
            head = list(model.heads[t].parameters())
            expected = torch.autograd.grad(torch.log(losses[t] + 1e-8), head)
            for p, g in zip(head, expected, strict=True):
                torch.testing.assert_close(p.grad, g)
        with torch.no_grad():  # move the model so the next step differs
            for p in model.parameters():
                p.sub_(0.05 * p.grad)


def test_features_mode_backpropagates_the_balanced_representation_gradient():
    balancer, model = DualBalancing(TASKS, mode="features"), toy_model()
    reference = copy.deepcopy(model)
    weights = run(balancer, model, 0)
    losses, rep = toy_losses(reference, 0)
    grads = []
    for t in TASKS:
        grads.append(torch.autograd.grad(torch.log(losses[t] + 1e-8), rep, retain_graph=True)[0])
    norms = torch.stack([g.norm() for g in grads])
    alpha = norms.max() / norms
    assert [weights[t] for t in TASKS] == pytest.approx(alpha.tolist(), rel=1e-6)
    combined = sum(a * g for a, g in zip(alpha, grads, strict=True))
    expected = torch.autograd.grad(rep, list(reference.trunk.parameters()), combined)
    for p, g in zip(model.trunk.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("mode", ["params", "features"])
def test_scaling_a_loss_changes_nothing(mode):
    base, scaled = DualBalancing(TASKS, mode=mode), DualBalancing(TASKS, mode=mode)
    m1, m2 = toy_model(), toy_model()
    for k in range(3):
        w1, w2 = run(base, m1, k), run(scaled, m2, k, scale=1000.0)
        assert w1 == pytest.approx(w2, rel=1e-6)
        for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-9)


def test_all_tasks_at_the_largest_norm():
    balancer, model = DualBalancing(TASKS), toy_model()
    weights = run(balancer, model, 0)
    grads, _ = per_task_log_grads(model, 0, shared)
    scaled = torch.stack([weights[t] * grads[i].norm() for i, t in enumerate(TASKS)])
    torch.testing.assert_close(scaled, torch.full_like(scaled, scaled.max().item()))
    assert min(weights.values()) == pytest.approx(1.0)


def test_needs_its_inputs():
    model = toy_model()
    losses, _ = toy_losses(model)
    with pytest.raises(ValueError, match="representation"):
        DualBalancing(TASKS, mode="features").backward(losses)
    with pytest.raises(ValueError, match="shared_params"):
        DualBalancing(TASKS).backward(losses)
