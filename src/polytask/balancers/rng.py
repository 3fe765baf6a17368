"""Seeded random generators of the randomised methods (RLW, PCGrad, GradVac, GradDrop), saved
and restored with their balancer's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def draw_seed(seed: int | None) -> int:
    """``seed``, or one drawn from torch's global RNG when ``None``."""
    return int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by ``seed`` (see :func:`draw_seed`)."""
    return torch.Generator().manual_seed(draw_seed(seed))


def random_orders(count: int, generator: torch.Generator) -> list[list[int]]:
    """For each task i, the other tasks in a uniformly random order."""
    orders = []
    for i in range(count):
        others = [j for j in range(count) if j != i]
        perm = torch.randperm(len(others), generator=generator).tolist()
        orders.append([others[k] for k in perm])
    return orders


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    return {"generator": generator.get_state()}


def load_generator_state(generator: torch.Generator, state: Mapping[str, Any]) -> None:
    generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
