"""A custom trunk in a plain PyTorch loop: polytask supplies tasks (masked losses, metrics),
the model wrapper and a balancer; the loop, optimizer and data are yours.

Run: python examples/custom_trunk.py
"""

from __future__ import annotations

import torch
from torch import nn

from polytask import BinaryTask, HardSharing, RegressionTask, build_balancer, delta_m


class ResidualTrunk(nn.Module):
    """Any nn.Module works as the shared trunk; this one is a small residual MLP."""

    def __init__(self, in_features: int, width: int = 64) -> None:
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return h + self.block(h)


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, dict, dict]:
    """Two related tasks on 8 features; a third of the 'churn' labels are missing."""
    x = torch.randn(n, 8, generator=generator)
    spend = x[:, :4].sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=generator)
    churn = (x[:, :4].sum(1) - x[:, 4] > 0).float()
    churn_mask = torch.rand(n, generator=generator) > 0.33
    targets = {"spend": spend, "churn": churn}
    masks = {"spend": torch.ones(n, 1, dtype=torch.bool), "churn": churn_mask}
    return x, targets, masks


def train(tasks: list, x, targets, masks, epochs: int = 30) -> nn.Module:
    torch.manual_seed(0)
    model = HardSharing(ResidualTrunk(8), {t.name: nn.Linear(64, t.output_size) for t in tasks})
    balancer = build_balancer("equal", [t.name for t in tasks])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(128):
            outputs, representation = model.forward_with_representation(x[rows])
            losses = {}
            for t in tasks:
                loss = t.loss_value(outputs[t.name], targets[t.name][rows], masks[t.name][rows])
                if loss is not None:  # no label for this task in the batch: no loss
                    losses[t.name] = loss
            optimizer.zero_grad()
            balancer.backward(
                losses, shared_params=list(model.shared_parameters()), features=representation
            )
            optimizer.step()
    return model


def evaluate(model: nn.Module, tasks: list, x, targets, masks) -> dict:
    model.eval()
    with torch.no_grad():
        outputs = model(x)
    return {t.name: t.evaluate(outputs[t.name], targets[t.name], masks[t.name]) for t in tasks}


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    train_data, test_data = make_data(2000, generator), make_data(1000, generator)
    spend = RegressionTask(name="spend", mean=(0.0,), std=(1.0,))
    churn = BinaryTask(name="churn", classes=("stay", "leave"))
    tasks = [spend, churn]

    multi = evaluate(train(tasks, *train_data), tasks, *test_data)
    single = {}
    for task in tasks:
        single.update(evaluate(train([task], *train_data), [task], *test_data))
    directions = {t.name: {m: t.direction(m) for m in t.metrics} for t in tasks}
    print("single-task:", single)
    print("multi-task: ", multi)
    print(f"Δm% = {delta_m(multi, single, directions):+.2f}")


if __name__ == "__main__":
    main()
