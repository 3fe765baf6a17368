"""Equal and fixed weighting: the baseline every other method is measured against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from polytask.balancers.base import Step
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer


@register_balancer("equal", "ew")
class EqualWeights(LossWeighting):
    """Σᵢ Lᵢ: every task present in the batch gets weight 1 (the usual 'EW' baseline)."""

    needs_global_losses: ClassVar[bool] = False  # constant weights, no state

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        return torch.ones(len(names))

    def step(self, step: Step) -> Tensor:  # the trainer's default: no product with ones
        step.values.sum().backward()
        return torch.ones(len(step.names))


@register_balancer("fixed")
class FixedWeights(LossWeighting):
    """Σᵢ wᵢ·Lᵢ with constant weights given per task name (missing names weigh 1)."""

    needs_global_losses: ClassVar[bool] = False  # constant weights, no state

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None):
        super().__init__(task_names)
        weights = dict(weights or {})
        unknown = [k for k in weights if k not in self.task_names]
        if unknown:
            raise ValueError(f"weights name unknown task {unknown[0]!r}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.task_names}

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        return torch.tensor([self.weights[n] for n in names], dtype=torch.float64)
