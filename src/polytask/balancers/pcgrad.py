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

from polytask.balancers.base import register_balancer
from polytask.balancers.gramian import GramianBalancer


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by ``seed``, or from torch's global RNG when ``None``."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator().manual_seed(int(seed))


def random_orders(count: int, generator: torch.Generator) -> list[list[int]]:
    """For each task i, the other tasks in a uniformly random order."""
    orders = []
    for i in range(count):
        others = [j for j in range(count) if j != i]
        perm = torch.randperm(len(others), generator=generator).tolist()
        orders.append([others[k] for k in perm])
    return orders


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


class RandomState:
    """Mixin: a private generator whose state is saved with the balancer."""

    generator: torch.Generator

    def random_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_random_state(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@register_balancer("pcgrad")
class PCGrad(RandomState, GramianBalancer):
    """Sum of the task gradients after projecting each away from those it conflicts with
    (negative inner product), the others visited in random order.

    Runs on the Gramian alone (the projections are linear combinations of the gradients), so it
    costs a Gramian plus one backward instead of T full gradients. Not invariant to scaling one
    loss; weights invariant to scaling all losses together. ``seed`` fixes the random orders.

    Modes: ``features`` (default; projections of representation gradients, as MGDA-UB does) and
    ``params`` (the paper's projections of shared-parameter gradients); ``update_every``;
    ``reuse_jacobian`` (see :class:`~polytask.balancers.gramian.GramianBalancer`).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        seed: int | None = None,
        **engine: Any,
    ) -> None:
        super().__init__(task_names, **engine)
        self.generator = seeded_generator(seed)

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return pcgrad_weights(gramian, random_orders(gramian.shape[0], self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.random_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_random_state(state)
