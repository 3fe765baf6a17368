"""The Gramian engine: exact Gramians, the single final backward, reuse, skipping, state."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from polytask.balancers import build_balancer
from polytask.balancers.engine import GramianEngine
from polytask.errors import ConfigError
from tests.balancers.gb_toys import GRAMIAN_METHODS, naive_jacobian, toy_losses, toy_model

TASKS = ("a", "b", "c")


@pytest.mark.parametrize("use_features", [False, True])
def test_params_gramian_equals_naive(use_features: bool) -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    params = list(model.shared_parameters())
    loss_list = list(losses.values())
    jac = naive_jacobian(loss_list, params)
    gram, _ = GramianEngine("params").gramian(loss_list, params, features if use_features else None)
    torch.testing.assert_close(gram, jac @ jac.T, rtol=1e-12, atol=1e-14)


def test_features_gramian_equals_representation_gradients() -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    loss_list = list(losses.values())
    jac = naive_jacobian(loss_list, [features])
    torch.testing.assert_close(
        GramianEngine("features").gramian(loss_list, None, features)[0],
        jac @ jac.T,
        rtol=1e-12,
        atol=1e-14,
    )


def _fresh_grads(model, weights, seed=0):
    """Gradients of Σ wᵢ Lᵢ by plain autograd on a fresh forward."""
    losses, _ = toy_losses(model, seed)
    total = sum(weights[n] * losses[n] for n in weights)
    return torch.autograd.grad(total, list(model.parameters()))


@pytest.mark.parametrize("mode", ["features", "params"])
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_grad_equals_gradient_of_weighted_sum(name: str, mode: str) -> None:
    model = toy_model(TASKS)
    balancer = build_balancer(name, TASKS, mode=mode)
    losses, features = toy_losses(model)
    weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
    assert set(weights) == set(TASKS)
    expected = _fresh_grads(model, weights)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_absent_tasks_get_no_weight(name: str) -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    del losses["b"]
    weights = build_balancer(name, TASKS).backward(losses, features=features)
    assert set(weights) == {"a", "c"}
    assert model.heads["b"][0].weight.grad is None


@pytest.mark.parametrize("name", [*GRAMIAN_METHODS, "graddrop"])
def test_state_dict_round_trip(name: str) -> None:
    model = toy_model(TASKS)
    options = {"seed": 3} if name in ("pcgrad", "gradvac", "graddrop") else {}
    first = build_balancer(name, TASKS, **options)
    for seed in range(2):
        losses, features = toy_losses(model, seed)
        first.backward(losses, features=features, shared_params=model.shared_parameters())
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = build_balancer(name, TASKS, **({"seed": 99} if options else {}))
    second.load_state_dict(torch.load(buffer, weights_only=True))
    results = []
    for balancer in (first, second):
        model.zero_grad()
        losses, features = toy_losses(model, seed=5)
        results.append(balancer.backward(losses, features=features))
    assert results[0] == pytest.approx(results[1], rel=1e-12)


def test_update_every_reuses_weights() -> None:
    model = toy_model(TASKS)
    balancer = build_balancer("mgda", TASKS, update_every=3)
    seen = []
    for seed in range(4):
        model.zero_grad()
        losses, features = toy_losses(model, seed)
        seen.append(balancer.backward(losses, features=features))
        if seed == 2:  # a reused step is still an ordinary backward of Σ wᵢ Lᵢ
            expected = _fresh_grads(model, seen[2], seed)
            for p, g in zip(model.parameters(), expected, strict=True):
                torch.testing.assert_close(p.grad, g)
    assert seen[0] == seen[1] == seen[2]
    assert seen[3] != seen[0]


def test_update_every_recomputes_when_tasks_change() -> None:
    model = toy_model(TASKS)
    balancer = build_balancer("mgda", TASKS, update_every=10)
    losses, features = toy_losses(model)
    balancer.backward(losses, features=features)
    losses, features = toy_losses(model)
    del losses["a"]
    assert set(balancer.backward(losses, features=features)) == {"b", "c"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", [*GRAMIAN_METHODS, "graddrop"])
def test_nonfinite_gradient_skips_step(name: str, bad: float) -> None:
    model = toy_model(TASKS)
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # stale gradients must not survive a skipped step
    balancer = build_balancer(name, TASKS)
    losses, features = toy_losses(model)
    # finite loss, non-finite gradient: the gradient hook poisons task b's head output
    out = model.heads["b"](features)
    out.register_hook(lambda g: g * bad)
    losses["b"] = out.pow(2).mean()
    with pytest.warns(RuntimeWarning, match="'b'"):
        weights = balancer.backward(
            losses, features=features, shared_params=model.shared_parameters()
        )
    assert weights == dict.fromkeys(TASKS, 0.0)
    assert all(p.grad is None for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nonfinite_loss_skips_step() -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    losses["c"] = losses["c"] * float("nan")
    with pytest.warns(RuntimeWarning, match="'c'"):
        build_balancer("upgrad", TASKS).backward(losses, features=features)
    assert all(p.grad is None for p in model.parameters())


def test_finite_step_emits_no_warning() -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_balancer("mgda", TASKS).backward(losses, features=features)


@pytest.mark.parametrize("name", [*GRAMIAN_METHODS, "graddrop"])
def test_unknown_mode_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="mode"):
        build_balancer(name, TASKS, mode="jacobian")


def test_missing_inputs_raise_clear_errors() -> None:
    model = toy_model(TASKS)
    losses, _ = toy_losses(model)
    with pytest.raises(ValueError, match="features"):
        build_balancer("mgda", TASKS).backward(losses)
    with pytest.raises(ValueError, match="shared_params"):
        build_balancer("mgda", TASKS, mode="params").backward(losses)
    with pytest.raises(ConfigError, match="update_every"):
        build_balancer("mgda", TASKS, update_every=0)
