"""``reuse_jacobian``: params mode writes ``Σᵢ wᵢ ∇Lᵢ`` from the per-task gradients it already
holds, with no second trunk backward, and the result equals autograd's (float64, tight)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from polytask.balancers import build_balancer
from polytask.balancers._qp import single_blas_thread
from polytask.balancers.cagrad import cagrad_weights
from polytask.balancers.graddrop import GradDrop
from tests.balancers.gb_toys import GRAMIAN_METHODS, toy_losses, toy_model

TASKS = ("a", "b", "c")


def _expected(model, weights, seed=0, before=None):
    """Autograd's gradient of Σ wᵢ Lᵢ on a fresh forward, plus the gradients held before."""
    losses, _ = toy_losses(model, seed)
    total = sum(weights[n] * losses[n] for n in weights)
    grads = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    if before is None:
        return list(grads)
    return [g + b for g, b in zip(grads, before, strict=True)]


def _prefill(model, seed=7):
    gen = torch.Generator().manual_seed(seed)
    before = []
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        before.append(p.grad.clone())
    return before


@pytest.mark.parametrize("use_features", [True, False])
@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_params_mode_grad_is_the_gradient_of_the_weighted_sum(
    name: str, reuse: bool, use_features: bool
) -> None:
    """Every parameter, trunk and heads (hidden layers on both sides), with gradients already
    present (they accumulate, as autograd's do)."""
    model = toy_model(TASKS)
    before = _prefill(model)
    balancer = build_balancer(name, TASKS, mode="params", reuse_jacobian=reuse)
    losses, features = toy_losses(model)
    weights = balancer.backward(
        losses,
        shared_params=model.shared_parameters(),
        features=features if use_features else None,
    )
    for p, g in zip(model.parameters(), _expected(model, weights, before=before), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_reuse_on_and_off_agree(name: str) -> None:
    results = []
    for reuse in (True, False):
        model = toy_model(TASKS)
        options = {"seed": 0} if name in ("pcgrad", "gradvac") else {}
        balancer = build_balancer(name, TASKS, mode="params", reuse_jacobian=reuse, **options)
        losses, features = toy_losses(model)
        balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
        results.append([p.grad for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _count_trunk_backwards(model) -> list[int]:
    """Counter of backward passes through the trunk's first layer output."""
    calls = [0]

    def forward_hook(module, inputs, output):
        output.register_hook(lambda g: calls.__setitem__(0, calls[0] + 1))

    model.trunk[0].register_forward_hook(forward_hook)
    return calls


@pytest.mark.parametrize("reuse", [True, False])
def test_no_second_trunk_backward(reuse: bool) -> None:
    model = toy_model(TASKS)
    calls = _count_trunk_backwards(model)
    balancer = build_balancer("mgda", TASKS, mode="params", reuse_jacobian=reuse)
    losses, features = toy_losses(model)
    balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
    assert calls[0] == len(TASKS) + (0 if reuse else 1)  # T pullback rows (+ the final one)


def test_missing_tasks_leave_their_heads_untouched() -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    del losses["b"]
    weights = build_balancer("upgrad", TASKS, mode="params").backward(
        losses, shared_params=model.shared_parameters(), features=features
    )
    assert all(p.grad is None for p in model.heads["b"].parameters())
    expected = _expected(model, weights)
    for p, g in zip(model.parameters(), expected, strict=True):
        if g is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


def test_trunk_parameters_outside_shared_params_still_get_their_gradient() -> None:
    """Only part of the trunk passed as shared: the rest is outside the Gramian but its
    gradient is still exact (its blocks come from the same pullback)."""
    model = toy_model(TASKS)
    balancer = build_balancer("mgda", TASKS, mode="params")
    losses, features = toy_losses(model)
    calls = _count_trunk_backwards(model)
    losses, features = toy_losses(model)
    weights = balancer.backward(
        losses, shared_params=list(model.trunk[2].parameters()), features=features
    )
    assert calls[0] == len(TASKS)
    for p, g in zip(model.parameters(), _expected(model, weights), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


def test_a_head_reaching_around_the_representation_falls_back_to_one_backward() -> None:
    """Outside the model contract (a head also reads a trunk parameter directly), the engine
    runs the ordinary backward instead of holding gradients, so .grad stays exact."""
    model = toy_model(TASKS)
    trunk_weight = model.trunk[0].weight
    losses, features = toy_losses(model)
    losses["a"] = losses["a"] + trunk_weight.pow(2).sum()
    calls = _count_trunk_backwards(model)
    losses, features = toy_losses(model)
    losses["a"] = losses["a"] + trunk_weight.pow(2).sum()
    balancer = build_balancer("mgda", TASKS, mode="params")
    weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
    assert calls[0] == len(TASKS) + 1
    fresh, _ = toy_losses(model)
    fresh["a"] = fresh["a"] + trunk_weight.pow(2).sum()
    total = sum(weights[n] * fresh[n] for n in weights)
    expected = torch.autograd.grad(total, list(model.parameters()))
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_features", [True, False])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_params_reuse_on_and_off_agree(leak: float, use_features: bool) -> None:
    results = []
    for reuse in (True, False):
        model = toy_model(TASKS)
        before = _prefill(model)
        balancer = GradDrop(TASKS, mode="params", leak=leak, seed=5, reuse_jacobian=reuse)
        losses, features = toy_losses(model)
        balancer.backward(
            losses,
            shared_params=model.shared_parameters(),
            features=features if use_features else None,
        )
        results.append([p.grad - b for p, b in zip(model.parameters(), before, strict=True)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_graddrop_params_full_leak_is_autograd_sum_with_reuse() -> None:
    model = toy_model(TASKS)
    calls = _count_trunk_backwards(model)
    losses, features = toy_losses(model)
    GradDrop(TASKS, mode="params", leak=1.0).backward(
        losses, shared_params=model.shared_parameters(), features=features
    )
    assert calls[0] == len(TASKS)
    expected = _expected(model, dict.fromkeys(TASKS, 1.0))
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_single_blas_thread_limits_and_restores() -> None:
    outside = _blas_threads()
    with single_blas_thread():
        assert all(n == 1 for n in _blas_threads())
        g = torch.tensor([[2.0, -1.0, 0.2], [-1.0, 3.0, 0.1], [0.2, 0.1, 1.0]], dtype=torch.float64)
        weights = cagrad_weights(g, 0.5)  # nested use is fine
    assert _blas_threads() == outside
    torch.testing.assert_close(weights, cagrad_weights(g, 0.5))
