"""Shared pieces of the weighting balancers: subset indexing, state reordering by task name and
a masked, vectorised Adam step."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

#: Added to losses before taking their logarithm (gls, famo, db_mtl) so a zero loss stays finite.
LOG_EPS = 1e-8


class TaskIndex:
    """Positions of a subset of tasks, cached per subset; ``None`` means 'all tasks'."""

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = tuple(task_names)
        self._position = {n: i for i, n in enumerate(self.task_names)}
        self._cache: dict[tuple[str, ...], Tensor | None] = {}

    def __call__(self, names: Sequence[str], device: torch.device | None = None) -> Tensor | None:
        key = tuple(names)
        if key not in self._cache:
            full = key == self.task_names
            self._cache[key] = (
                None if full else torch.tensor([self._position[n] for n in key], dtype=torch.long)
            )
        index = self._cache[key]
        if index is not None and device is not None and index.device != device:
            index = index.to(device)
            self._cache[key] = index
        return index

    def mask(self, names: Iterable[str]) -> Tensor:
        """Boolean mask over all tasks, true for ``names``."""
        mask = torch.zeros(len(self.task_names), dtype=torch.bool)
        for n in names:
            mask[self._position[n]] = True
        return mask


def select(values: Tensor, index: Tensor | None) -> Tensor:
    """``values[index]`` along the task dimension, or ``values`` itself for all tasks."""
    return values if index is None else values.index_select(0, index)


def reorder(state: Mapping[str, Any], task_names: Sequence[str], key: str) -> Tensor:
    """``state[key]`` (task dimension first) permuted from ``state['task_names']`` order to ours."""
    saved = list(state.get("task_names", task_names))
    if sorted(saved) != sorted(task_names):
        raise ValueError(f"state is for tasks {saved}, balancer has {list(task_names)}")
    value = torch.as_tensor(state[key])
    if saved == list(task_names):
        return value.clone()
    return value[[saved.index(n) for n in task_names]].clone()


class MaskedAdam:
    """Adam (with coupled L2 weight decay, as ``torch.optim.Adam``) on a vector of per-task values,
    stepping only the tasks in a mask: absent tasks keep their value, moments and step count."""

    def __init__(
        self,
        size: int,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = torch.zeros(size)
        self.exp_avg_sq = torch.zeros(size)
        self.steps = torch.zeros(size)

    def step(self, value: Tensor, grad: Tensor, mask: Tensor | None = None) -> None:
        """Update ``value`` in place from ``grad`` on the tasks in ``mask`` (all when ``None``)."""
        b1, b2 = self.betas
        with torch.no_grad():
            if self.exp_avg.device != value.device:
                self._to(value.device)
            grad = grad + self.weight_decay * value
            on = torch.ones_like(value) if mask is None else mask.to(value.dtype)
            steps = self.steps + on
            self.exp_avg.copy_(torch.lerp(self.exp_avg, grad, (1 - b1) * on))
            self.exp_avg_sq.copy_(torch.lerp(self.exp_avg_sq, grad * grad, (1 - b2) * on))
            safe = steps.clamp_min(1)
            m_hat = self.exp_avg / (1 - b1**safe)
            v_hat = self.exp_avg_sq / (1 - b2**safe)
            value.sub_(on * self.lr * m_hat / (v_hat.sqrt() + self.eps))
            self.steps.copy_(steps)

    def _to(self, device: torch.device) -> None:
        self.exp_avg = self.exp_avg.to(device)
        self.exp_avg_sq = self.exp_avg_sq.to(device)
        self.steps = self.steps.to(device)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k).clone() for k in ("exp_avg", "exp_avg_sq", "steps")}

    def load_state_dict(
        self, state: Mapping[str, Any], task_names: Sequence[str], prefix: str = "adam_"
    ) -> None:
        """Restore from ``state[prefix + key]``, reordered by ``state['task_names']``."""
        for key in ("exp_avg", "exp_avg_sq", "steps"):
            value = reorder(state, task_names, prefix + key).to(self.exp_avg.device)
            setattr(self, key, value)


def check_positive(**values: float) -> None:
    """Raise ``ValueError`` unless every named option is a finite positive number."""
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a positive number, got {value}")
