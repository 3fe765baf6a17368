"""Toy problems shared by the loss-weighting balancer tests (not a test module)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.balancers import Balancer, build_balancer
from polytask.models.hard import HardSharing

TASKS = ("a", "b", "c")

#: name -> options; every loss-weighting method, db_mtl in both modes.
METHODS: dict[str, dict[str, Any]] = {
    "uw": {},
    "imtl_l": {},
    "dwa": {},
    "rlw": {"seed": 3},
    "gls": {},
    "famo": {},
    "db_mtl": {},
    "db_mtl_features": {"mode": "features"},
    "gradnorm": {},
}


def make(method: str, tasks: Sequence[str] = TASKS) -> Balancer:
    name = "db_mtl" if method == "db_mtl_features" else method
    return build_balancer(name, list(tasks), **METHODS[method])


def toy_model(tasks: Sequence[str] = TASKS, seed: int = 0) -> HardSharing:
    """Two-layer trunk, one linear head per task, float64 for exact gradient comparisons."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
    heads = {t: nn.Linear(5, 1) for t in sorted(tasks)}  # same init whatever the task order
    return HardSharing(trunk, {t: heads[t] for t in tasks}).double()


def toy_batch(seed: int = 0, n: int = 16) -> tuple[Tensor, dict[str, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    ys = {
        t: torch.randn(n, 1, generator=g, dtype=torch.float64) * (i + 1)
        for i, t in enumerate(TASKS)
    }
    return x, ys


LossFn = Callable[[HardSharing, int], tuple[dict[str, Tensor], Tensor]]


def toy_losses(
    model: HardSharing, step: int = 0, tasks: Sequence[str] | None = None
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-task MSE on batch ``step`` (task ``t`` scaled differently), and the representation."""
    x, ys = toy_batch(step)
    out, rep = model.forward_with_representation(x)
    names = tasks if tasks is not None else model.task_names
    return {t: ((out[t] - ys[t]) ** 2).mean() for t in names}, rep


def step(
    balancer: Balancer, model: HardSharing, k: int, tasks: Sequence[str] | None = None, lr=0.05
) -> dict[str, float]:
    """One training step with plain SGD on the model and the balancer's own parameters."""
    for p in [*model.parameters(), *balancer.parameters()]:
        p.grad = None
    losses, rep = toy_losses(model, k, tasks)
    weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=rep)
    with torch.no_grad():
        for p in [*model.parameters(), *balancer.parameters()]:
            if p.grad is not None:
                p.sub_(lr * p.grad)
    return weights


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """Save with torch.save, load with weights_only=True, as checkpoints do."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
