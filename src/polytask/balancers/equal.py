"""Equal and fixed weighting: the baseline every other method is measured against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from polytask.balancers._common import scaled
from polytask.balancers.base import Balancer, ScaledLosses, register_balancer


@register_balancer("equal", "ew")
class EqualWeights(Balancer):
    """Σᵢ Lᵢ: every task present in the batch gets weight 1 (the usual 'EW' baseline)."""

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        names = self.present(losses)
        if names:
            torch.stack([losses[n] for n in names]).sum().backward()
        return dict.fromkeys(names, 1.0)

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        names = self.present(losses)
        if not names:
            return None
        return scaled(names, torch.stack([losses[n] for n in names]), torch.ones(len(names)))


@register_balancer("fixed")
class FixedWeights(Balancer):
    """Σᵢ wᵢ·Lᵢ with constant weights given per task name (missing names weigh 1)."""

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None):
        super().__init__(task_names)
        weights = dict(weights or {})
        unknown = [k for k in weights if k not in self.task_names]
        if unknown:
            raise ValueError(f"weights name unknown task {unknown[0]!r}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.task_names}

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        names = self.present(losses)
        if names:
            sum(self.weights[n] * losses[n] for n in names).backward()
        return {n: self.weights[n] for n in names}

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        names = self.present(losses)
        if not names:
            return None
        factors = torch.tensor([self.weights[n] for n in names])
        return scaled(names, torch.stack([losses[n] for n in names]), factors)
