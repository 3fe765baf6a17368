"""``check_balancer`` passes every registered method (and compositions, and the README's own
balancers), and fails, naming the property, for balancers that break the contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from polytask.balancers import BALANCERS, GramianBalancer, UncertaintyWeighting, build_balancer
from polytask.balancers.base import Step, graph_leaves
from polytask.balancers.equal import EqualWeights
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.nash_mtl import NashMTL
from polytask.balancers.registry import PRESETS
from polytask.testing.balancers import check_balancer

README = Path(__file__).resolve().parents[2] / "README.md"


def _one_name_per_method() -> list[str]:
    """Registered names, aliases of the same method (class and preset options) dropped."""
    names: dict[tuple, str] = {}
    for name, method in BALANCERS.items():
        names.setdefault((method, tuple(sorted(PRESETS.get(name, {}).items()))), name)
    return sorted(names.values())


@pytest.mark.parametrize("name", _one_name_per_method())
def test_every_registered_balancer_meets_the_contract(name: str) -> None:
    check_balancer(name)


@pytest.mark.parametrize("name", _one_name_per_method())
def test_every_registered_balancer_meets_the_contract_under_cpu_bf16_autocast(name: str) -> None:
    check_balancer(name, precision="bf16")


def test_aliases_are_covered_by_their_method() -> None:
    covered = set(_one_name_per_method())
    for name, method in BALANCERS.items():
        preset = PRESETS.get(name, {})
        assert any(BALANCERS[c] is method and PRESETS.get(c, {}) == preset for c in covered)


@pytest.mark.parametrize(
    "options",
    [
        {"name": "pcgrad", "losses_from": "uw", "update_every": 2, "seed": 0},
        {"name": "cagrad", "losses_from": "dwa", "reuse_jacobian": False},
        {"name": "nash_mtl", "update_every": 3},
    ],
)
def test_compositions_meet_the_contract(options: dict) -> None:
    options = dict(options)
    name = options.pop("name")

    def factory(task_names, **mode):
        return build_balancer(name, task_names, **options, **mode)

    check_balancer(factory, modes=("features", "params"))


# -- balancers that break the contract --------------------------------------------------------
class IgnoresItsWeights(EqualWeights):
    """Returns weights 1, 2, 3 but backpropagates the plain sum."""

    def step(self, step):
        super().step(step)
        return torch.arange(1.0, len(step.names) + 1)


class ForgetsItsState(UncertaintyWeighting):
    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class WeighsByPosition(LossWeighting):
    def factors(self, names, values):
        return torch.arange(1.0, len(names) + 1)


class SkipsTheGuard(EqualWeights):
    def backward(self, losses, *, shared_params=None, features=None):
        names = self.present(losses)
        if not names:
            return {}
        values = [losses[n] for n in names]
        weights = self.step(Step(names, values, torch.stack(values), None, features))
        return dict(zip(names, weights.tolist(), strict=True))


class WeighsAbsentTasks(EqualWeights):
    def backward(self, losses, *, shared_params=None, features=None):
        weights = super().backward(losses, shared_params=shared_params, features=features)
        return dict.fromkeys(self.task_names, 1.0) if weights else weights


class ScalesItsOwnGradientWrongly(UncertaintyWeighting):
    """Forgets to scale the gradient of its own objective (of detached losses)."""

    def step(self, step):
        return super().step(step._replace(scale=1.0))


class _ScaledGramian(GramianBalancer):
    def step(self, step):
        return super().step(step._replace(scale=1.0))


def ReadsTheScaledGramian(task_names, **options):
    """Nash-MTL on the Gramian of the scaled gradients, ``s²`` times the true one."""
    return _ScaledGramian(NashMTL(task_names), **options)


class HidesAnOverflow(EqualWeights):
    """Writes gradients with the non-finite entries zeroed: the scaler cannot see an overflow."""

    def step(self, step):
        weights = super().step(step)
        for p in graph_leaves(step.losses):
            if p.grad is not None:
                p.grad = p.grad.nan_to_num(0.0, 0.0, 0.0)
        return weights


class TakesNoScale(EqualWeights):
    def backward(self, losses, *, shared_params=None, features=None):
        return super().backward(losses, shared_params=shared_params, features=features)


@pytest.mark.parametrize(
    ("broken", "prop"),
    [
        (TakesNoScale, "loss scale"),
        (ScalesItsOwnGradientWrongly, "loss scale"),
        (ReadsTheScaledGramian, "loss scale"),
        (HidesAnOverflow, "loss scale"),
        (IgnoresItsWeights, "gradient"),
        (ForgetsItsState, "state_dict"),
        (WeighsByPosition, "task order"),
        (SkipsTheGuard, "non-finite loss"),
        (WeighsAbsentTasks, "weights"),
    ],
)
def test_a_broken_balancer_fails_naming_the_property(broken, prop: str) -> None:
    with pytest.raises(AssertionError, match=rf"check_balancer\({broken.__name__}\): {prop}:"):
        check_balancer(broken)


# -- the README's "Write your own balancer" ---------------------------------------------------
def test_readme_example_registers_balancers_that_pass_the_check() -> None:
    section = README.read_text().split("## Write your own balancer", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.S)
    saved = dict(BALANCERS)
    for name in ("inverse_loss", "unit_mean"):  # README snippets also run in test_docs
        BALANCERS.pop(name, None)
    try:
        namespace: dict = {}
        exec(compile(snippet, "README.md", "exec"), namespace)  # runs check_balancer itself
        assert {"inverse_loss", "unit_mean"} <= set(BALANCERS)
        assert namespace["balancer"].loss_source.name == "inverse_loss"
        check_balancer("unit_mean", modes=("params",))
    finally:
        BALANCERS.clear()
        BALANCERS.update(saved)
