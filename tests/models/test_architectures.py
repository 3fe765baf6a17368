"""The MultiTaskModel contract for every registered architecture, and a few training steps with
the registered balancers: pairwise coverage (every balancer, every architecture), not the full
product. The full contract is ``polytask.testing.architectures.check_architecture``."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from polytask.balancers import BALANCERS, build_balancer
from polytask.models import ARCHITECTURES, MultiTaskModel
from polytask.testing.architectures import balancer_cases
from polytask.training import Trainer

from .toy import OUTPUT_SIZES, make, task_losses, toy_data

ARCHS = sorted(ARCHITECTURES)


def _balancer_cases() -> list[tuple[str, dict[str, Any]]]:
    """One name per balancer class (aliases dropped), each gradient mode it has."""
    cases: list[tuple[str, dict[str, Any]]] = []
    for method in balancer_cases(sorted(BALANCERS)):
        mode = getattr(method, "mode", None)
        cases.append((method.name, {"mode": mode} if mode is not None else {}))
    return cases


def _shares_parameters(arch: str) -> bool:
    return bool(list(make(arch).shared_parameters()))


def pairwise_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """A covering design instead of the full product: the balancer cases cycle over the
    architectures (every case once, every architecture about cases/archs times); then every
    architecture that shares parameters and drew no ``params``-mode case gets one, and every
    architecture drew at least two cases."""
    cases = _balancer_cases()
    pairs = [(ARCHS[i % len(ARCHS)], name, options) for i, (name, options) in enumerate(cases)]
    params_cases = [c for c in cases if c[1].get("mode") == "params"]
    for i, arch in enumerate(ARCHS):
        drawn = [p for p in pairs if p[0] == arch]
        if _shares_parameters(arch) and not any(p[2].get("mode") == "params" for p in drawn):
            name, options = params_cases[i % len(params_cases)]
            pairs.append((arch, name, options))
        for name, options in cases[: max(0, 2 - len(drawn))]:
            pairs.append((arch, name, options))
    return pairs


def test_pairwise_cases_cover_every_architecture_and_balancer():
    pairs = pairwise_cases()
    assert {p[0] for p in pairs} == set(ARCHS)
    assert {(p[1], p[2].get("mode")) for p in pairs} == {
        (name, options.get("mode")) for name, options in _balancer_cases()
    }
    for arch in ARCHS:
        drawn = [p for p in pairs if p[0] == arch]
        assert len(drawn) >= 2, arch
        if _shares_parameters(arch):
            assert any(p[2].get("mode") == "params" for p in drawn), arch
    assert len(pairs) < len(ARCHS) * len(_balancer_cases()) / 3


def _ids(ps: list[Any]) -> set[int]:
    return {id(p) for p in ps}


def test_every_architecture_with_a_required_option_has_a_toy_configuration():
    from polytask.models import options_for

    from .toy import OPTIONS

    for arch in ARCHITECTURES:
        required = {k for k, f in options_for(arch).model_fields.items() if f.is_required()}
        assert required <= set(OPTIONS.get(arch, {})), arch


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


@pytest.mark.parametrize(("arch", "balancer", "balancer_options"), pairwise_cases())
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
