"""GradVac: Gradient Vaccine, raising pairwise gradient similarity towards adaptive targets.

Wang, Tsvetkov, Firat & Cao (2021), "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models" (ICLR).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers.base import register_balancer
from polytask.balancers.gramian import GramianBalancer
from polytask.balancers.pcgrad import RandomState, random_orders, seeded_generator


def gradvac_weights(
    gramian: Tensor, targets: Tensor, orders: Sequence[Sequence[int]], beta: float
) -> tuple[Tensor, Tensor]:
    """Weights of ``Σᵢ gᵢ'`` and the updated EMA targets ``φ̂``.

    For task i and each other j (in ``orders[i]``): with ``φ = cos(gᵢ', gⱼ)``, if ``φ < φ̂ᵢⱼ``
    add ``gⱼ · ‖gᵢ'‖(φ̂√(1−φ²) − φ√(1−φ̂²)) / (‖gⱼ‖√(1−φ̂²))`` to ``gᵢ'``, which sets the
    cosine to ``φ̂``; then ``φ̂ᵢⱼ ← (1−β)φ̂ᵢⱼ + βφ``. All from inner products in ``G``.
    """
    g = gramian.double().cpu()
    count = g.shape[0]
    targets = targets.double().clone()
    coefficients = torch.eye(count, dtype=torch.float64)
    for i, order in enumerate(orders):
        for j in order:
            norm_j = math.sqrt(max(float(g[j, j]), 0.0))
            norm_i = math.sqrt(max(float(coefficients[i] @ g @ coefficients[i]), 0.0))
            if norm_i == 0 or norm_j == 0:
                continue
            phi = float(coefficients[i] @ g[:, j]) / (norm_i * norm_j)
            phi = min(1.0, max(-1.0, phi))
            target = float(targets[i, j])
            if phi < target and target < 1:
                gain = target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)
                coefficients[i, j] += norm_i * gain / (norm_j * math.sqrt(1 - target**2))
            targets[i, j] = (1 - beta) * target + beta * phi
    return coefficients.sum(dim=0), targets


@register_balancer("gradvac")
class GradVac(RandomState, GramianBalancer):
    """PCGrad generalised: instead of only removing conflict, pull each pair's cosine up to an EMA
    of its observed cosines (``beta`` the EMA rate, 0.01 in the paper; targets start at 0).

    State: the T×T targets and the RNG of the random visiting orders. Not invariant to scaling
    one loss; weights invariant to scaling all losses together.

    Modes: ``features`` (default) and ``params``; ``update_every`` (targets update when the
    weights are recomputed).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        beta: float = 0.01,
        mode: str = "features",
        update_every: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(task_names, mode=mode, update_every=update_every)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.generator = seeded_generator(seed)
        count = len(self.task_names)
        self.targets = torch.zeros(count, count, dtype=torch.float64)

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        index = torch.tensor([self.task_names.index(n) for n in names])
        sub = self.targets[index][:, index]
        orders = random_orders(len(names), self.generator)
        weights, updated = gradvac_weights(gramian, sub, orders, self.beta)
        self.targets[index[:, None], index[None, :]] = updated
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.random_state(), "targets": self.targets.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_random_state(state)
        self.targets = state["targets"].clone().double()
