"""Cross-stitch networks: per-task columns mixed by learned T×T units after every block.

Misra, Shrivastava, Gupta & Hebert 2016, "Cross-stitch Networks for Multi-task Learning" (CVPR).
After block ``k`` every column's activation becomes ``x̃_t = Σ_s α_k[t, s] x_s``; ``α_k`` starts
near the identity (``self_weight`` on the diagonal, the rest spread evenly over the other tasks,
rows summing to 1), so training starts close to independent columns.

Requirement: the factory must build an ``nn.Sequential`` of blocks (its first block receives the
raw input, e.g. a tabular encoder); a cross-stitch unit follows each block. Every column feeds
every task through the units, so the columns and the units are the shared parameters, and the
heads are the task parameters. The representation is the output of the last unit,
``(N, T, width)``; task ``t``'s head reads slice ``[:, t]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from polytask.models.base import MultiTaskModel
from polytask.models.parts import Factory, HeadFactory, check_output_sizes, make_heads


class CrossStitchUnit(nn.Module):
    """Learned linear mixing of T same-shaped activations: ``(T, N, ...) -> (T, N, ...)``."""

    def __init__(self, num_tasks: int, self_weight: float = 0.9) -> None:
        super().__init__()
        if not math.isfinite(self_weight):
            raise ValueError(f"self_weight must be finite, got {self_weight}")
        if num_tasks == 1:
            alpha = torch.ones(1, 1)
        else:
            alpha = torch.full((num_tasks, num_tasks), (1.0 - self_weight) / (num_tasks - 1))
            alpha.fill_diagonal_(self_weight)
        self.alpha = nn.Parameter(alpha)

    def forward(self, activations: Tensor) -> Tensor:
        return torch.einsum("ts,s...->t...", self.alpha, activations)


class CrossStitch(MultiTaskModel):
    """One column per task (``nn.Sequential`` blocks) with a cross-stitch unit after each block."""

    per_task_representation = True  # each head reads its own column

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        self_weight: float = 0.9,
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        columns = {name: encoder_factory() for name in self.task_names}
        for column in columns.values():
            if not isinstance(column, nn.Sequential) or len(column) == 0:
                raise TypeError(
                    "cross_stitch needs encoder_factory to build a non-empty nn.Sequential of "
                    f"blocks (a unit is placed after each block), got {type(column).__name__}"
                )
        self.columns = nn.ModuleDict(columns)
        n_blocks = len(columns[self.task_names[0]])
        if any(len(column) != n_blocks for column in columns.values()):
            raise ValueError("cross_stitch: every column must have the same number of blocks")
        self.units = nn.ModuleList(
            CrossStitchUnit(len(self.task_names), self_weight) for _ in range(n_blocks)
        )
        self.heads = make_heads(output_sizes, encoder_width, head_factory)

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        columns = [self.columns[name] for name in self.task_names]
        hidden: list[Any] = [x] * len(columns)
        for k, unit in enumerate(self.units):
            blocks = [column[k](h) for column, h in zip(columns, hidden, strict=True)]
            mixed = unit(torch.stack(blocks))
            hidden = list(mixed.unbind(0))
        z = torch.stack(hidden, dim=1)
        outputs = {name: self.heads[name](z[:, i]) for i, name in enumerate(self.task_names)}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return itertools.chain(self.columns.parameters(), self.units.parameters())

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return self.heads[task].parameters()
