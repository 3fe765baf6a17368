"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import check_positive
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer


@register_balancer("dwa")
class DynamicWeightAverage(LossWeighting):
    """DWA from "End-to-end multi-task learning with attention" (Liu, Johns & Davison 2019).

    ``w_i = T·softmax(r/τ)_i`` with ``r_i = L_i(t-1)/L_i(t-2)`` the ratio of task ``i``'s mean
    training loss over the last two epochs (reported through :meth:`epoch_end`); ``T`` is the
    number of tasks, ``τ`` the temperature (2 in the paper). Tasks with fewer than two recorded
    epochs use ``r_i = 1``, so the first two epochs have equal weights as in the paper.

    Weights are fixed for a whole epoch. A task's weight does not depend on which other tasks are
    in the batch (absent tasks just contribute nothing); a task missing from an epoch's means keeps
    its history unchanged.
    """

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        check_positive(temperature=temperature)
        self.temperature = float(temperature)
        self.history: dict[str, list[float]] = {n: [] for n in self.task_names}
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the epoch's weights from the loss history."""
        ratios = torch.tensor(
            [h[-1] / h[-2] if len(h) >= 2 else 1.0 for h in self.history.values()],
            dtype=torch.float64,
        )
        weights = len(self.task_names) * torch.softmax(ratios / self.temperature, dim=0)
        self._weight_list = dict(zip(self.task_names, weights.float().tolist(), strict=True))

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        unknown = [n for n in mean_losses if n not in self.history]
        if unknown:
            raise KeyError(f"dwa: unknown task {unknown[0]!r}; known {self.task_names}")
        for name, value in mean_losses.items():
            value = float(value)
            if not math.isfinite(value) or value <= 0:
                warnings.warn(
                    f"dwa: mean loss {value} of task {name!r} is not finite and positive; "
                    "its history is left unchanged",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            self.history[name] = [*self.history[name], value][-2:]
        self._refresh()

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        return torch.tensor([self._weight_list[n] for n in names])

    def state_dict(self) -> dict[str, Any]:
        return {"history": {n: list(h) for n, h in self.history.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        history = state["history"]
        if sorted(history) != sorted(self.task_names):
            raise ValueError(f"state is for tasks {sorted(history)}, not {self.task_names}")
        self.history = {n: [float(v) for v in history[n]][-2:] for n in self.task_names}
        self._refresh()
