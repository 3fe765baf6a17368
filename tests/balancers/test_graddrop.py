"""GradDrop: masks from sign purity, heads keep their own gradients, both modes."""

from __future__ import annotations

import pytest
import torch

from polytask.balancers.graddrop import GradDrop, dropped, masked_sum, sign_masks
from tests.balancers.gb_toys import naive_jacobian, toy_losses, toy_model

TASKS = ("a", "b", "c")


def test_masks_keep_agreeing_signs_and_pick_one_sign_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    signals = torch.tensor([[1.0, -1.0, 2.0], [3.0, -2.0, -2.0]])
    masks = sign_masks(signals, gen)
    assert masks[:, :2].all()  # pure signs: always kept
    assert masks[:, 2].sum() == 1  # purity ½: exactly one sign survives


def test_purity_sets_keep_probability() -> None:
    gen = torch.Generator().manual_seed(0)
    signals = torch.tensor([[3.0], [-1.0]]).expand(2, 20_000)  # P = ½(1 + 2/4) = 0.75
    masks = sign_masks(signals, gen)
    assert abs(masks[0].float().mean().item() - 0.75) < 0.02
    assert (masks[0] ^ masks[1]).all()


def _grads(model):
    return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]


@pytest.mark.parametrize("mode", ["features", "params"])
def test_full_leak_is_the_plain_sum(mode: str) -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    expected = torch.autograd.grad(sum(losses.values()), list(model.parameters()))
    losses, features = toy_losses(model)
    GradDrop(TASKS, mode=mode, leak=1.0, seed=0).backward(
        losses, shared_params=model.shared_parameters(), features=features
    )
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("mode", ["features", "params"])
def test_heads_get_their_own_gradient_and_trunk_the_masked_sum(mode: str) -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    heads = [p for t in TASKS for p in model.task_parameters(t)]
    head_expected = torch.autograd.grad(sum(losses.values()), heads, retain_graph=True)
    shared = list(model.shared_parameters())
    if mode == "params":
        jac = naive_jacobian(list(losses.values()), shared)
    else:
        jac = naive_jacobian(list(losses.values()), [features])
    balancer = GradDrop(TASKS, mode=mode, seed=1)
    state = balancer.state_dict()
    balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
    for p, g in zip(heads, head_expected, strict=True):
        torch.testing.assert_close(p.grad, g)
    if mode == "params":
        # replay the masks: shared .grad is Σᵢ Mᵢ ⊙ gᵢ coordinate-wise, blocks in order
        replay = GradDrop(TASKS, mode=mode)
        replay.load_state_dict(state)
        expected, offset = [], 0
        for p in shared:
            block = jac[:, offset : offset + p.numel()].reshape(len(TASKS), *p.shape)
            offset += p.numel()
            expected.append((sign_masks(block, replay.generator) * block).sum(0))
        for p, g in zip(shared, expected, strict=True):
            torch.testing.assert_close(p.grad, g)


def test_features_mode_backpropagates_masked_representation_gradient() -> None:
    model = toy_model(TASKS)
    losses, features = toy_losses(model)
    grads = naive_jacobian(list(losses.values()), [features]).reshape(len(TASKS), *features.shape)
    balancer = GradDrop(TASKS, seed=2)
    replay = GradDrop(TASKS)
    replay.load_state_dict(balancer.state_dict())
    signals = (features.detach().sign() * grads).sum(1)
    masks = sign_masks(signals, replay.generator)
    combined = (masks.unsqueeze(1) * grads).sum(0)
    shared = list(model.shared_parameters())
    expected = torch.autograd.grad(features, shared, combined, retain_graph=True)
    balancer.backward(losses, features=features)
    for p, g in zip(shared, expected, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("leak", [0.0, 0.25, 1.0])
def test_masked_sum_equals_masks_then_sum(leak: float) -> None:
    gen = torch.Generator().manual_seed(3)
    block = torch.randn(6, 5, 7, generator=gen, dtype=torch.float64)
    block[:, 0, 0] = 0.0  # a coordinate no task touches
    block[:, 1, 1] = block[:, 1, 1].abs()  # a pure coordinate
    expected = dropped(block, sign_masks(block, torch.Generator().manual_seed(9)), leak)
    got = masked_sum(block, torch.Generator().manual_seed(9), leak)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
