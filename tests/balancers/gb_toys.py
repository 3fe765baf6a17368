"""Small float64 models and random Jacobians for the gradient-balancing tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask.balancers import Balancer
from polytask.models.hard import HardSharing

GRAMIAN_METHODS = (
    "mgda",
    "pcgrad",
    "cagrad",
    "nash_mtl",
    "imtl_g",
    "aligned_mtl",
    "upgrad",
    "gradvac",
)


def random_jacobian(seed: int, tasks: int, dim: int = 12) -> Tensor:
    """Rows with varied norms and some conflict (float64)."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn(tasks, dim, generator=gen, dtype=torch.float64)
    return rows * torch.exp(torch.randn(tasks, 1, generator=gen, dtype=torch.float64))


def toy_model(tasks: Sequence[str], seed: int = 0) -> HardSharing:
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
    heads = {t: nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 1)) for t in tasks}
    return HardSharing(trunk, heads).double()


def toy_losses(
    model: HardSharing, seed: int = 0, batch: int = 7
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-task regression losses with different targets (so gradients conflict) and scales."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 5, generator=gen, dtype=torch.float64)
    outputs, features = model.forward_with_representation(x)
    losses = {}
    for k, (name, out) in enumerate(outputs.items()):
        target = torch.randn(batch, 1, generator=gen, dtype=torch.float64) * (k + 1)
        losses[name] = ((out - target) ** 2).mean() * (1 + k)
    return losses, features


def naive_jacobian(losses: Sequence[Tensor], inputs: Sequence[Tensor]) -> Tensor:
    """T×P Jacobian, one full backward per task, flattened and concatenated."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(x)).flatten()
                    for g, x in zip(grads, inputs, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def run_step(
    balancer: Balancer, model: HardSharing, seed: int, lr: float = 0.05
) -> tuple[dict[str, float], torch.Tensor]:
    """One SGD step on the model and the balancer's parameters; the weights and the shared
    parameters' gradient (flattened) of that step."""
    for p in [*model.parameters(), *balancer.parameters()]:
        p.grad = None
    losses, features = toy_losses(model, seed)
    weights = balancer.backward(losses, shared_params=model.shared_parameters(), features=features)
    grad = torch.cat([p.grad.flatten() for p in model.shared_parameters()])
    with torch.no_grad():
        for p in [*model.parameters(), *balancer.parameters()]:
            if p.grad is not None:
                p.sub_(lr * p.grad)
    return weights, grad
