"""Random loss weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer
from polytask.balancers.rng import (
    draw_seed,
    generator_state,
    load_generator_state,
    seeded_generator,
)


@register_balancer("rlw")
class RandomLossWeighting(LossWeighting):
    """RLW from "Reasonable effectiveness of random weighting: a litmus test for multi-task
    learning" (Lin, Ye, Xu, Shi, Zhang & Kwok, TMLR 2022).

    Each step draws ``λ̃ ~ N(0, I)`` over the tasks present in the batch and uses
    ``λ = softmax(λ̃)``: the weights sum to 1 as in the paper, or to the number of present tasks
    with ``scale_to_tasks=True`` (the loss scale of equal weighting). Samples come from the
    balancer's own generator, seeded by ``seed`` (or from torch's global RNG when ``None``); its
    state is in :meth:`state_dict`, so a resumed run draws the same weights.
    """

    randomized = True

    def __init__(
        self, task_names: Sequence[str], seed: int | None = None, scale_to_tasks: bool = False
    ) -> None:
        super().__init__(task_names)
        self.seed = draw_seed(seed)
        self.generator = seeded_generator(self.seed)
        self.scale_to_tasks = bool(scale_to_tasks)

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        weights = torch.softmax(torch.randn(len(names), generator=self.generator), dim=0)
        return weights * len(names) if self.scale_to_tasks else weights

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **generator_state(self.generator)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        load_generator_state(self.generator, state)
