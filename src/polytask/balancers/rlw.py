"""Random loss weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import scaled, stack_losses
from polytask.balancers.base import Balancer, ScaledLosses, register_balancer


@register_balancer("rlw")
class RandomLossWeighting(Balancer):
    """RLW from "Reasonable effectiveness of random weighting: a litmus test for multi-task
    learning" (Lin, Ye, Xu, Shi, Zhang & Kwok, TMLR 2022).

    Each step draws ``λ̃ ~ N(0, I)`` over the tasks present in the batch and uses
    ``λ = softmax(λ̃)``: the weights sum to 1 as in the paper, or to the number of present tasks
    with ``scale_to_tasks=True`` (the loss scale of equal weighting). Samples come from the
    balancer's own generator, seeded by ``seed`` (or from torch's global RNG when ``None``); its
    state is in :meth:`state_dict`, so a resumed run draws the same weights.
    """

    def __init__(
        self, task_names: Sequence[str], seed: int | None = None, scale_to_tasks: bool = False
    ) -> None:
        super().__init__(task_names)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self.seed = int(seed)
        self.scale_to_tasks = bool(scale_to_tasks)
        self.generator = torch.Generator().manual_seed(self.seed)

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        stacked = stack_losses(self, losses)
        if stacked is None:
            return {}
        names, values = stacked
        weights = self._draw(len(names))
        torch.dot(weights.to(device=values.device, dtype=values.dtype), values).backward()
        return dict(zip(names, weights.tolist(), strict=True))

    def _draw(self, count: int) -> Tensor:
        weights = torch.softmax(torch.randn(count, generator=self.generator), dim=0)
        return weights * count if self.scale_to_tasks else weights

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        stacked = stack_losses(self, losses)
        if stacked is None:
            return None
        names, values = stacked
        return scaled(names, values, self._draw(len(names)))

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
