"""GradVac: Gradient Vaccine, raising pairwise gradient similarity towards adaptive targets.

Wang, Tsvetkov, Firat & Cao (2021), "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models" (ICLR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.balancers.pcgrad import order_matrix
from polytask.balancers.registry import register_balancer
from polytask.balancers.rng import (
    generator_state,
    load_generator_state,
    random_orders,
    seeded_generator,
)
from polytask.balancers.weighting import Weighting


def gradvac_weights(
    gramian: Tensor, targets: Tensor, orders: Sequence[Sequence[int]], beta: float
) -> tuple[Tensor, Tensor]:
    """Weights of ``Σᵢ gᵢ'`` and the updated EMA targets ``φ̂``.

    For task i and each other j (in ``orders[i]``): with ``φ = cos(gᵢ', gⱼ)``, if ``φ < φ̂ᵢⱼ``
    add ``gⱼ · ‖gᵢ'‖(φ̂√(1−φ²) − φ√(1−φ̂²)) / (‖gⱼ‖√(1−φ̂²))`` to ``gᵢ'``, which sets the
    cosine to ``φ̂``; then ``φ̂ᵢⱼ ← (1−β)φ̂ᵢⱼ + βφ`` (pairs with a zero gradient are skipped).
    All from inner products in ``G``; as in :func:`~polytask.balancers.pcgrad.pcgrad_weights`,
    every task advances through its own order at once (vectorised NumPy float64 per step).
    """
    g = gramian.detach().double().cpu().numpy()
    count = g.shape[0]
    phi_hat = targets.detach().double().cpu().numpy().copy()
    coefficients = np.eye(count)
    index = order_matrix(orders, count)
    rows = np.arange(count)
    for step in range(index.shape[1]):
        live = index[:, step] >= 0
        i, j = rows[live], index[live, step]
        c = coefficients[i]
        norm_j = np.sqrt(np.maximum(g[j, j], 0.0))
        norm_i = np.sqrt(np.maximum(np.einsum("ij,ij->i", c @ g, c), 0.0))
        keep = (norm_i != 0) & (norm_j != 0)
        i, j, c, norm_i, norm_j = i[keep], j[keep], c[keep], norm_i[keep], norm_j[keep]
        phi = np.einsum("ij,ji->i", c, g[:, j]) / (norm_i * norm_j)
        phi = np.minimum(1.0, np.maximum(-1.0, phi))
        target = phi_hat[i, j]
        up = (phi < target) & (target < 1)
        t, p = target[up], phi[up]
        root = np.sqrt(1 - t**2)
        gain = t * np.sqrt(1 - p**2) - p * root
        coefficients[i[up], j[up]] += norm_i[up] * gain / (norm_j[up] * root)
        phi_hat[i, j] = (1 - beta) * target + beta * phi
    return torch.from_numpy(coefficients).sum(dim=0), torch.from_numpy(phi_hat)


@register_balancer("gradvac")
class GradVac(Weighting):
    """PCGrad generalised: instead of only removing conflict, pull each pair's cosine up to an EMA
    of its observed cosines (``beta`` the EMA rate, 0.01 in the paper; targets start at 0).

    State: the T×T targets and the RNG of the random visiting orders. Not invariant to scaling
    one loss; weights invariant to scaling all losses together.
    """

    randomized = True

    def __init__(
        self,
        task_names: Sequence[str],
        beta: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(task_names)
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
        return {**generator_state(self.generator), "targets": self.targets.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_generator_state(self.generator, state)
        self.targets = state["targets"].clone().double()
