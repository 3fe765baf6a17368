"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE).

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys). An extraction level has shared experts and
task-specific experts; task ``t``'s gate mixes its own experts with the shared ones. PLE stacks
``levels`` extraction levels: at every level below the top, a shared gate also mixes *all* experts
into the input of the next level's shared experts. CGC is PLE with one level.

Level 1 reads the raw input (experts from ``expert_factory``, gates from ``gate_factory``);
level ``k > 1`` reads the previous level's fused ``(N, width)`` outputs (experts from
``inner_expert_factory``, linear gates).

Partition (by use): task ``t`` alone uses its top-level experts and gate, its gate at level
``levels-1`` (whose output only feeds task ``t``'s top level) and its tower; everything else is
shared. The representation is what the task parts read apart from the raw input: the top level's
shared-expert outputs ``(N, S, width)``, followed for ``levels > 1`` by each task's fused input to
the top level, giving ``(N, S + T, width)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.models.base import MultiTaskModel
from polytask.models.heads import mlp
from polytask.models.parts import (
    Factory,
    GateFactory,
    HeadFactory,
    check_output_sizes,
    encoder_gate_factory,
    linear_gate_factory,
    make_heads,
    mix,
    positive_int,
)


def _run(experts: nn.ModuleList, x: Any) -> Tensor:
    return torch.stack([expert(x) for expert in experts], dim=1)


class ExtractionLevel(nn.Module):
    """One CGC level: shared experts, per-task experts, per-task gates, optional shared gate."""

    def __init__(
        self,
        task_names: Sequence[str],
        expert_factory: Factory,
        gate_factory: GateFactory,
        *,
        shared_experts: int,
        task_experts: int,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.task_names = tuple(task_names)
        self.shared = nn.ModuleList(expert_factory() for _ in range(shared_experts))
        self.specific = nn.ModuleDict(
            {t: nn.ModuleList(expert_factory() for _ in range(task_experts)) for t in task_names}
        )
        self.gates = nn.ModuleDict(
            {t: gate_factory(task_experts + shared_experts) for t in task_names}
        )
        n_all = len(task_names) * task_experts + shared_experts
        self.shared_gate = gate_factory(n_all) if shared_gate else None

    def task_output(self, task: str, task_input: Any, shared_out: Tensor) -> Tensor:
        """Task ``task``'s gated mixture of its own experts and the shared experts' outputs."""
        own = _run(self.specific[task], task_input)
        weights = torch.softmax(self.gates[task](task_input), dim=-1)
        return mix(weights, torch.cat([own, shared_out], dim=1))

    def forward(
        self, task_inputs: Mapping[str, Any], shared_input: Any
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Fused per-task outputs and the shared gate's fused output (intermediate levels)."""
        if self.shared_gate is None:
            raise RuntimeError("only intermediate levels (with a shared gate) run as a whole")
        shared_out = _run(self.shared, shared_input)
        own = [_run(self.specific[t], task_inputs[t]) for t in self.task_names]
        fused = {}
        for t, own_t in zip(self.task_names, own, strict=True):
            weights = torch.softmax(self.gates[t](task_inputs[t]), dim=-1)
            fused[t] = mix(weights, torch.cat([own_t, shared_out], dim=1))
        shared_weights = torch.softmax(self.shared_gate(shared_input), dim=-1)
        return fused, mix(shared_weights, torch.cat([*own, shared_out], dim=1))


class PLE(MultiTaskModel):
    """``levels`` stacked extraction levels, then one tower per task on its fused output."""

    def __init__(
        self,
        expert_factory: Factory,
        expert_width: int,
        output_sizes: Mapping[str, int],
        *,
        levels: int = 2,
        shared_experts: int = 1,
        task_experts: int = 1,
        gate_factory: GateFactory | None = None,
        inner_expert_factory: Factory | None = None,
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        n_levels = positive_int("levels", levels)
        counts = {
            "shared_experts": positive_int("shared_experts", shared_experts),
            "task_experts": positive_int("task_experts", task_experts),
        }
        first_gates = gate_factory or encoder_gate_factory(expert_factory, expert_width)
        inner = inner_expert_factory or (lambda: mlp(expert_width, [expert_width]))
        self.levels = nn.ModuleList(
            ExtractionLevel(
                self.task_names,
                expert_factory if k == 0 else inner,
                first_gates if k == 0 else linear_gate_factory(expert_width),
                shared_gate=k < n_levels - 1,
                **counts,
            )
            for k in range(n_levels)
        )
        self.heads = make_heads(output_sizes, expert_width, head_factory)

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        task_inputs: dict[str, Any] = dict.fromkeys(self.task_names, x)
        shared_input: Any = x
        for level in self.levels[:-1]:
            task_inputs, shared_input = level(task_inputs, shared_input)
        top: ExtractionLevel = self.levels[-1]
        z = _run(top.shared, shared_input)
        n_shared = z.shape[1]
        if len(self.levels) > 1:
            z = torch.cat([z, torch.stack([task_inputs[t] for t in self.task_names], 1)], dim=1)
            task_inputs = {t: z[:, n_shared + i] for i, t in enumerate(self.task_names)}
        outputs = {
            t: self.heads[t](top.task_output(t, task_inputs[t], z[:, :n_shared]))
            for t in self.task_names
        }
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        own = {id(p) for t in self.task_names for p in self.task_parameters(t)}
        return (p for p in self.parameters() if id(p) not in own)

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        top: ExtractionLevel = self.levels[-1]
        parts: list[nn.Module] = [top.specific[task], top.gates[task], self.heads[task]]
        if len(self.levels) > 1:
            parts.append(self.levels[-2].gates[task])
        return itertools.chain.from_iterable(part.parameters() for part in parts)


class CGC(PLE):
    """Customized Gate Control: a single extraction level (PLE with ``levels=1``)."""

    def __init__(
        self,
        expert_factory: Factory,
        expert_width: int,
        output_sizes: Mapping[str, int],
        *,
        shared_experts: int = 1,
        task_experts: int = 1,
        gate_factory: GateFactory | None = None,
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(
            expert_factory,
            expert_width,
            output_sizes,
            levels=1,
            shared_experts=shared_experts,
            task_experts=task_experts,
            gate_factory=gate_factory,
            head_factory=head_factory,
        )
