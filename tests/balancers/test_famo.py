"""FAMO: the logit update, its direction, and the lagged use of the next call's losses."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.balancers import FAMO


def call(famo: FAMO, **values: float) -> dict[str, float]:
    x = torch.tensor(1.0, requires_grad=True)
    return famo.backward({k: x * v for k, v in values.items()})


def test_first_call_uses_uniform_z():
    famo = FAMO(["a", "b"])
    w = call(famo, a=1.0, b=3.0)
    # z = (1/2, 1/2): w_i ∝ z_i / L_i, normalised to sum 1
    assert w == pytest.approx({"a": 0.75, "b": 0.25})
    torch.testing.assert_close(famo.z, torch.tensor([0.5, 0.5]))


def test_sgd_update_matches_the_formula():
    famo = FAMO(["a", "b", "c"], lr=0.1, weight_decay=0.01, update="sgd")
    first, second = {"a": 2.0, "b": 1.0, "c": 4.0}, {"a": 1.0, "b": 0.9, "c": 4.0}
    call(famo, **first)
    w = call(famo, **second)
    delta = torch.tensor([math.log(first[k] / second[k]) for k in "abc"], dtype=torch.float64)
    z = torch.full((3,), 1 / 3, dtype=torch.float64)
    grad = z * (delta - (z * delta).sum())  # softmax Jacobian (symmetric) times Δ; ξ = 0
    xi = -0.1 * grad
    torch.testing.assert_close(famo.logits.double(), xi, rtol=1e-5, atol=1e-7)
    z_new = torch.softmax(xi, 0)
    scaled = z_new / torch.tensor([second[k] for k in "abc"], dtype=torch.float64)
    expected = (scaled / scaled.sum()).tolist()
    assert [w[k] for k in "abc"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("update", ["adam", "sgd"])
def test_weight_moves_toward_the_slowest_decreasing_task(update):
    famo = FAMO(["fast", "slow"], update=update, lr=0.025 if update == "adam" else 1.0)
    fast, slow = 1.0, 1.0
    for _ in range(60):
        call(famo, fast=fast, slow=slow)
        fast, slow = fast * 0.9, slow * 0.99
    z = dict(zip(famo.task_names, famo.z.tolist(), strict=True))
    assert z["slow"] > 0.6 > 0.4 > z["fast"]


def test_logit_update_skips_tasks_missing_on_either_side():
    famo = FAMO(["a", "b", "c"], update="sgd", lr=1.0, weight_decay=0.0)
    call(famo, a=1.0, b=1.0)  # c missing
    call(famo, a=0.5, b=1.0, c=1.0)  # c back, but without a previous value
    logits = famo.logits.clone()
    assert logits[2].item() == 0.0 and logits[0].item() < 0.0 < logits[1].item()
    call(famo, a=0.5, c=0.5)  # b missing now: only a and c are compared
    assert famo.logits[1].item() == logits[1].item()
    assert famo.logits[2].item() < logits[2].item()  # c improved, a did not


def test_scaling_a_loss_leaves_the_gradient_direction():
    """FAMO weights are ∝ z_i/L_i: multiplying one loss by c divides its weight by about c."""
    base, scaled = FAMO(["a", "b"]), FAMO(["a", "b"])
    for k in range(5):
        wb = call(base, a=1.0 / (k + 1), b=2.0)
        ws = call(scaled, a=10.0 / (k + 1), b=2.0)
    ratio_base = wb["a"] / wb["b"]
    ratio_scaled = ws["a"] / ws["b"]
    assert ratio_scaled * 10 == pytest.approx(ratio_base, rel=1e-4)
