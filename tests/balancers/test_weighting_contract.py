"""Contract checks every loss-weighting balancer must pass: gradients, task order, missing tasks,
non-finite losses, checkpoints."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from lw_toys import METHODS, TASKS, make, roundtrip, step, toy_losses, toy_model

from polytask.balancers import BALANCERS

ALL = list(METHODS)
#: Methods whose returned weights are the factors on the task losses in the model gradient.
LOSS_FACTOR = ["uw", "imtl_l", "dwa", "rlw", "gls", "famo", "gradnorm"]


def warm_up(balancer, model, steps: int = 4) -> None:
    for k in range(steps):
        step(balancer, model, k)
        if k == 1:
            balancer.epoch_end({"a": 1.0, "b": 2.0, "c": 3.0})
        if k == 2:
            balancer.epoch_end({"a": 0.5, "b": 1.9, "c": 3.3})


def test_registered_names():
    for name in ["uncertainty", "uw", "imtl_l", "dwa", "rlw", "gls", "famo", "db_mtl", "gradnorm"]:
        assert name in BALANCERS


@pytest.mark.parametrize("method", LOSS_FACTOR)
def test_grad_is_weighted_sum_of_loss_gradients(method):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model)
    losses, rep = toy_losses(model, 7)
    reference = copy.deepcopy(model)
    ref_losses, _ = toy_losses(reference, 7)
    model.zero_grad(set_to_none=True)
    weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=rep)
    assert set(weights) == set(TASKS)
    total = sum(weights[t] * ref_losses[t] for t in TASKS)
    expected = torch.autograd.grad(total, list(reference.parameters()))
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["uw", "imtl_l"])
def test_scale_parameters_get_the_regulariser_gradient(method):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model)
    losses, _ = toy_losses(model, 5)
    for p in balancer.parameters():
        p.grad = None
    s = torch.stack([p.detach() for p in balancer.parameters()])
    values = torch.stack([losses[t].detach() for t in TASKS])
    balancer.backward(losses)
    grads = torch.stack([p.grad for p in balancer.parameters()])
    # d/ds [e^{-s}L + s] = 1 - e^{-s}L ;  d/ds [e^{s}L - s] = e^{s}L - 1
    sign = -1.0 if method == "uw" else 1.0
    expected = sign * (torch.exp(sign * s.double()) * values) - sign
    torch.testing.assert_close(grads.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [m for m in ALL if m != "rlw"])
def test_weights_follow_tasks_not_their_order(method):
    order, permuted = TASKS, ("c", "a", "b")
    first, second = make(method, order), make(method, permuted)
    m1, m2 = toy_model(order), toy_model(permuted)
    for k in range(6):
        w1, w2 = step(first, m1, k), step(second, m2, k)
        assert list(w2) == list(permuted)  # returned in the balancer's own order
        for t in TASKS:
            assert math.isclose(w1[t], w2[t], rel_tol=1e-6, abs_tol=1e-9), (k, t, w1, w2)
        if k == 2:
            first.epoch_end({"a": 1.0, "b": 2.0, "c": 4.0})
            second.epoch_end({"c": 4.0, "b": 2.0, "a": 1.0})
        if k == 3:
            first.epoch_end({"a": 0.5, "b": 2.0, "c": 3.0})
            second.epoch_end({"b": 2.0, "c": 3.0, "a": 0.5})


def _task_state(balancer, task: str) -> dict:
    """The entries of the balancer's state that belong to ``task``."""
    state = balancer.state_dict()
    names = state.get("task_names", list(TASKS))
    i = names.index(task)
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == len(names):
            out[key] = value[i].clone()
        elif isinstance(value, dict) and task in value:
            out[key] = copy.deepcopy(value[task])
    return out


@pytest.mark.parametrize("method", ALL)
def test_missing_task_gets_no_weight_and_keeps_its_state(method):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model)
    before = _task_state(balancer, "c")
    weights = step(balancer, model, 10, tasks=("a", "b"))
    assert set(weights) == {"a", "b"}
    assert all(math.isfinite(w) for w in weights.values())
    for p in model.heads["c"].parameters():
        assert p.grad is None
    if method in ("uw", "imtl_l"):
        assert balancer.parameters()[2].grad is None
    after = _task_state(balancer, "c")
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], torch.Tensor):
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
        else:
            assert after[key] == before[key]
    # and it comes back without trouble
    weights = step(balancer, model, 11)
    assert set(weights) == set(TASKS) and all(math.isfinite(w) for w in weights.values())


@pytest.mark.parametrize("method", ALL)
def test_no_task_present_is_a_no_op(method):
    balancer = make(method)
    model = toy_model()
    assert balancer.backward({}, shared_params=model.shared_parameters(), features=None) == {}


@pytest.mark.parametrize("method", ALL)
def test_unknown_task_raises(method):
    balancer, model = make(method), toy_model()
    losses, rep = toy_losses(model)
    losses["zzz"] = losses["a"]
    with pytest.raises(KeyError, match="zzz"):
        balancer.backward(losses, shared_params=model.shared_parameters(), features=rep)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", ALL)
def test_non_finite_loss_skips_the_step(method, bad):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model)
    state = roundtrip(balancer.state_dict())
    for p in [*model.parameters(), *balancer.parameters()]:
        p.grad = None
    losses, rep = toy_losses(model, 9)
    losses["b"] = losses["b"] * bad
    with pytest.warns(RuntimeWarning, match=r"'b'") as record:
        weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=rep)
    assert "'a'" not in str(record[0].message)
    assert weights == dict.fromkeys(TASKS, 0.0)  # nothing applied to any task
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in balancer.parameters())
    _assert_same_state(balancer.state_dict(), state)
    step(balancer, model, 12)  # training goes on with finite values
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in balancer.parameters())


def _assert_same_state(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("method", ALL)
def test_state_dict_round_trip_resumes_identically(method):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model, steps=5)
    resumed = make(method)
    if method == "rlw":
        resumed = type(balancer)(TASKS, seed=99)  # the seed comes from the state
    resumed.load_state_dict(roundtrip(balancer.state_dict()))
    _assert_same_state(resumed.state_dict(), balancer.state_dict())
    twin = copy.deepcopy(model)
    for k in range(5, 8):
        w1, w2 = step(balancer, model, k), step(resumed, twin, k)
        assert w1 == pytest.approx(w2, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("method", ["uw", "imtl_l", "famo", "gradnorm", "db_mtl"])
def test_state_loads_into_a_balancer_with_another_task_order(method):
    balancer, model = make(method), toy_model()
    warm_up(balancer, model)
    permuted = make(method, ("b", "c", "a"))
    permuted.load_state_dict(roundtrip(balancer.state_dict()))
    w1 = step(balancer, copy.deepcopy(model), 6)
    m2 = toy_model(("b", "c", "a"))
    m2.load_state_dict(model.state_dict())
    w2 = step(permuted, m2, 6)
    for t in TASKS:
        assert w1[t] == pytest.approx(w2[t], rel=1e-6)
