"""Multi-gate Mixture-of-Experts (MMoE).

Ma, Zhao, Yi, Chen, Hong & Chi 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts" (KDD). ``E`` experts read the input; each task has its own softmax
gate on the input and a tower on the gated mixture: ``y_t = tower_t(Σ_e g_t(x)_e · f_e(x))``.

Shared parameters: the experts. Task parameters: the task's gate and tower. The representation is
the stack of expert outputs, ``(N, E, width)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from polytask.models.base import MultiTaskModel
from polytask.models.parts import (
    Factory,
    GateFactory,
    HeadFactory,
    check_output_sizes,
    encoder_gate_factory,
    make_heads,
    mix,
    positive_int,
)


class MMoE(MultiTaskModel):
    """``experts`` bodies from ``expert_factory``; one gate and one tower per task.

    ``gate_factory(E)`` builds a module mapping the input to ``(N, E)`` logits; by default a fresh
    ``expert_factory()`` body followed by a linear layer (works for any input; pass
    :func:`~polytask.models.parts.linear_gate_factory` for the paper's linear gates on a tensor
    input). ``head_factory(width, out)`` builds the towers (linear by default).
    """

    def __init__(
        self,
        expert_factory: Factory,
        expert_width: int,
        output_sizes: Mapping[str, int],
        *,
        experts: int = 4,
        gate_factory: GateFactory | None = None,
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        n = positive_int("experts", experts)
        gates = gate_factory or encoder_gate_factory(expert_factory, expert_width)
        self.experts = nn.ModuleList(expert_factory() for _ in range(n))
        self.gates = nn.ModuleDict({name: gates(n) for name in self.task_names})
        self.heads = make_heads(output_sizes, expert_width, head_factory)

    def gate_weights(self, x: Any) -> dict[str, Tensor]:
        """Each task's mixture weights over the experts, ``(N, E)``, rows summing to 1."""
        return {name: torch.softmax(gate(x), dim=-1) for name, gate in self.gates.items()}

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = torch.stack([expert(x) for expert in self.experts], dim=1)
        weights = self.gate_weights(x)
        outputs = {name: self.heads[name](mix(weights[name], z)) for name in self.task_names}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.experts.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return itertools.chain(self.gates[task].parameters(), self.heads[task].parameters())
