"""PCGrad: project each task gradient onto the normal plane of the ones it conflicts with.

Yu, Kumar, Gupta, Levine, Hausman & Finn (2020), "Gradient Surgery for Multi-Task Learning"
(NeurIPS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.balancers.registry import register_balancer
from polytask.balancers.rng import (
    generator_state,
    load_generator_state,
    random_orders,
    seeded_generator,
)
from polytask.balancers.weighting import Weighting


def order_matrix(orders: Sequence[Sequence[int]], count: int) -> np.ndarray:
    """``orders`` as a ``count × K`` index matrix (row i: task i's visiting order), ``-1``-padded
    where an order is shorter than the longest."""
    width = max((len(order) for order in orders), default=0)
    index = np.full((count, width), -1, dtype=np.int64)
    for i, order in enumerate(orders):
        index[i, : len(order)] = order
    return index


def pcgrad_weights(gramian: Tensor, orders: Sequence[Sequence[int]]) -> Tensor:
    """Weights ``w`` with ``Σᵢ PCGrad(gᵢ) = Σₖ wₖ gₖ``.

    Each projected gradient stays a combination ``Σₖ C[i,k] gₖ`` of the originals, and every
    quantity the projection needs is an inner product read from ``G``:
    ``gᵢᴾᶜ·gⱼ = (C[i] G)ⱼ``; if negative, ``C[i] -= (gᵢᴾᶜ·gⱼ / ‖gⱼ‖²) eⱼ``.

    Row i of ``C`` changes only through task i's own projections, so all tasks advance together:
    step k projects every task against the k-th task of its own order, a handful of vectorised
    NumPy float64 operations on T×T arrays per step (T − 1 steps) instead of T(T − 1) small
    torch operations.
    """
    g = gramian.detach().double().cpu().numpy()
    count = g.shape[0]
    coefficients = np.eye(count)
    index = order_matrix(orders, count)
    rows = np.arange(count)
    for step in range(index.shape[1]):
        live = index[:, step] >= 0
        i, j = rows[live], index[live, step]
        dot = np.einsum("ij,ji->i", coefficients[i], g[:, j])
        norm2 = g[j, j]
        hit = (dot < 0) & (norm2 > 0)
        coefficients[i[hit], j[hit]] -= dot[hit] / norm2[hit]
    return torch.from_numpy(coefficients).sum(dim=0)


@register_balancer("pcgrad")
class PCGrad(Weighting):
    """Sum of the task gradients after projecting each away from those it conflicts with
    (negative inner product), the others visited in random order.

    Runs on the Gramian alone (the projections are linear combinations of the gradients), so it
    costs a Gramian plus one backward instead of T full gradients. Not invariant to scaling one
    loss; weights invariant to scaling all losses together. ``seed`` fixes the random orders.
    """

    randomized = True

    def __init__(
        self,
        task_names: Sequence[str],
        seed: int | None = None,
    ) -> None:
        super().__init__(task_names)
        self.generator = seeded_generator(seed)

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return pcgrad_weights(gramian, random_orders(gramian.shape[0], self.generator))

    def state_dict(self) -> dict[str, Any]:
        return generator_state(self.generator)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_generator_state(self.generator, state)
