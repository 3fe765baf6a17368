"""PCGrad: project each task gradient onto the normal plane of the ones it conflicts with.

Yu, Kumar, Gupta, Levine, Hausman & Finn (2020), "Gradient Surgery for Multi-Task Learning"
(NeurIPS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def pcgrad_weights(gramian: Tensor, orders: Sequence[Sequence[int]]) -> Tensor:
    """Weights ``w`` with ``Σᵢ PCGrad(gᵢ) = Σₖ wₖ gₖ``.

    Each projected gradient stays a combination ``Σₖ C[i,k] gₖ`` of the originals, and every
    quantity the projection needs is an inner product read from ``G``:
    ``gᵢᴾᶜ·gⱼ = (C[i] G)ⱼ``; if negative, ``C[i] -= (gᵢᴾᶜ·gⱼ / ‖gⱼ‖²) eⱼ``.
    """
    g = gramian.double().cpu()
    count = g.shape[0]
    coefficients = torch.eye(count, dtype=torch.float64)
    for i, order in enumerate(orders):
        for j in order:
            dot = float(coefficients[i] @ g[:, j])
            if dot < 0 and g[j, j] > 0:
                coefficients[i, j] -= dot / g[j, j]
    return coefficients.sum(dim=0)


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
    ``params`` (the paper's projections of shared-parameter gradients); ``update_every``.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        mode: str = "features",
        update_every: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(task_names, mode=mode, update_every=update_every)
        self.generator = seeded_generator(seed)

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return pcgrad_weights(gramian, random_orders(gramian.shape[0], self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.random_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_random_state(state)
