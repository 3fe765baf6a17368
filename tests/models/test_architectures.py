"""The MultiTaskModel contract for every registered architecture, and a few training steps with
every registered balancer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from polytask.balancers import BALANCERS, build_balancer
from polytask.balancers.registry import options_of
from polytask.models import ARCHITECTURES, MultiTaskModel
from polytask.training import Trainer

from .toy import OUTPUT_SIZES, make, task_losses, toy_data

ARCHS = sorted(ARCHITECTURES)


def _balancer_cases() -> list[tuple[str, dict[str, Any]]]:
    """One name per balancer class (aliases dropped), each ``mode`` it accepts."""
    cases: list[tuple[str, dict[str, Any]]] = []
    seen: set[type] = set()
    for name, cls in BALANCERS.items():
        if cls in seen:
            continue
        seen.add(cls)
        if "mode" not in options_of(cls):
            cases.append((name, {}))
        else:
            cases += [(name, {"mode": m}) for m in ("params", "features")]
    return cases


def _ids(ps: list[Any]) -> set[int]:
    return {id(p) for p in ps}


def test_every_architecture_has_a_toy_configuration():
    from .toy import OPTIONS

    assert set(OPTIONS) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_and_representation(arch):
    model = make(arch)
    x, _ = toy_data(n=5)
    outputs, z = model.forward_with_representation(x)
    assert list(outputs) == list(OUTPUT_SIZES)
    for name, size in OUTPUT_SIZES.items():
        assert outputs[name].shape == (5, size)
    assert isinstance(z, torch.Tensor) and z.shape[0] == 5
    assert all(torch.equal(outputs[k], v) for k, v in model(x).items())


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_and_task_parameters_partition_parameters(arch):
    model = make(arch)
    everything = list(model.parameters())
    parts = [list(model.shared_parameters())] + [
        list(model.task_parameters(t)) for t in model.task_names
    ]
    flat = [p for part in parts for p in part]
    assert len(flat) == len(_ids(flat)), "a parameter is listed twice"
    assert _ids(flat) == _ids(everything)
    assert len(everything) == len(_ids(everything))


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_ignore_other_tasks_parameters(arch):
    model = make(arch)
    x, _ = toy_data(n=7)
    with torch.no_grad():
        before = model(x)
        for task in model.task_names:
            saved = [(p, p.clone()) for p in model.task_parameters(task)]
            for p, _ in saved:
                p.add_(torch.randn_like(p))
            after = model(x)
            assert not torch.allclose(after[task], before[task]), "perturbation had no effect"
            for other in model.task_names:
                if other != task:
                    torch.testing.assert_close(after[other], before[other])
            for p, value in saved:
                p.copy_(value)


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_depend_on_input_through_representation(arch):
    """Every task's output has a non-zero gradient w.r.t. the representation."""
    model = make(arch)
    x, _ = toy_data(n=6)
    outputs, z = model.forward_with_representation(x)
    for name in model.task_names:
        (grad,) = torch.autograd.grad(outputs[name].sum(), z, retain_graph=True)
        assert grad.abs().sum() > 0


@pytest.mark.parametrize(("balancer", "balancer_options"), _balancer_cases())
@pytest.mark.parametrize("arch", ARCHS)
def test_trains_with_balancer(arch, balancer, balancer_options):
    model = make(arch)
    x, targets = toy_data()
    method = build_balancer(balancer, list(OUTPUT_SIZES), **balancer_options)
    shared = list(model.shared_parameters())
    if method.needs_shared_params and not shared:  # soft sharing with a params-mode method
        with pytest.raises(ValueError, match="shares none"):
            Trainer(model, [], balancer=method)
        return
    optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=2e-2)

    def total_loss() -> float:
        with torch.no_grad():
            return float(sum(task_losses(model(x), targets).values()))

    start = total_loss()
    for _ in range(30):
        optimizer.zero_grad()
        outputs, z = model.forward_with_representation(x)
        method.backward(task_losses(outputs, targets), shared_params=shared, features=z)
        penalty = model.regularization()
        if penalty is not None:
            penalty.backward()
        optimizer.step()
    end = total_loss()
    assert end < 0.9 * start, f"{arch} + {balancer}: loss {start:.3f} -> {end:.3f}"


def test_model_is_a_multitask_model():
    assert all(isinstance(make(arch), MultiTaskModel) for arch in ARCHS)
