"""Optimizers with one parameter group per task head (per-task learning-rate multipliers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.models.base import MultiTaskModel


def parameter_groups(
    model: MultiTaskModel,
    lr: float,
    lr_multipliers: Mapping[str, float] | None = None,
    extra: Sequence[Tensor] = (),
) -> list[dict]:
    """Shared parameters at ``lr``; each task's own parameters at ``lr × multiplier``; ``extra``
    (a balancer's parameters) at ``lr``. Every parameter lands in exactly one group."""
    multipliers = dict(lr_multipliers or {})
    seen: set[int] = set()
    groups = []
    for task in model.task_names:
        params = [p for p in model.task_parameters(task) if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * multipliers.get(task, 1.0), "name": task})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.insert(0, {"params": rest, "lr": lr, "name": "shared"})
    if extra:
        groups.append({"params": list(extra), "lr": lr, "weight_decay": 0.0, "name": "balancer"})
    return groups


def build_optimizer(
    name: str, groups: list[dict], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` over the given parameter groups."""
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}")
