"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import TaskIndex, check_positive, scaled, select, stack_losses
from polytask.balancers.base import Balancer, ScaledLosses, register_balancer


@register_balancer("dwa")
class DynamicWeightAverage(Balancer):
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
        self._index = TaskIndex(self.task_names)
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the epoch's weights from the loss history."""
        ratios = torch.tensor(
            [h[-1] / h[-2] if len(h) >= 2 else 1.0 for h in self.history.values()],
            dtype=torch.float64,
        )
        weights = len(self.task_names) * torch.softmax(ratios / self.temperature, dim=0)
        self.weights = weights.float()
        self._weight_list = dict(zip(self.task_names, self.weights.tolist(), strict=True))

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
        if self.weights.device != values.device:
            self.weights = self.weights.to(values.device)
        w = select(self.weights, self._index(names, values.device))
        torch.dot(w.to(values.dtype), values).backward()
        return {n: self._weight_list[n] for n in names}

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        stacked = stack_losses(self, losses)
        if stacked is None:
            return None
        names, values = stacked
        return scaled(names, values, torch.tensor([self._weight_list[n] for n in names]))

    def state_dict(self) -> dict[str, Any]:
        return {"history": {n: list(h) for n, h in self.history.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        history = state["history"]
        if sorted(history) != sorted(self.task_names):
            raise ValueError(f"state is for tasks {sorted(history)}, not {self.task_names}")
        self.history = {n: [float(v) for v in history[n]][-2:] for n in self.task_names}
        self._refresh()
