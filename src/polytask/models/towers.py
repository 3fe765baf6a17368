"""Per-task towers: one body and one head per task, nothing shared.

The base of the architectures that couple separate task networks by a penalty instead of sharing
parameters (:mod:`~polytask.models.soft`, :mod:`~polytask.models.mtrl`). The representation is
the stack of the tower outputs, ``(N, T, width)``; task ``t`` reads slice ``[:, t]`` only, and
:meth:`shared_parameters` is empty, so ``params``-mode balancers are refused.
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
    HeadFactory,
    check_output_sizes,
    check_same_structure,
    make_heads,
)


class TaskTowers(MultiTaskModel):
    """``heads[t](towers[t](x))`` per task, with towers of identical structure (their parameter
    names, in order, are :attr:`layer_names`)."""

    per_task_representation = True

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        head_factory: HeadFactory | None = None,
        what: str,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        self.towers = nn.ModuleDict({name: encoder_factory() for name in self.task_names})
        self.layer_names = check_same_structure(list(self.towers.values()), what)
        self.heads = make_heads(output_sizes, encoder_width, head_factory)

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = torch.stack([self.towers[name](x) for name in self.task_names], dim=1)
        outputs = {name: self.heads[name](z[:, i]) for i, name in enumerate(self.task_names)}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return iter(())

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return itertools.chain(self.towers[task].parameters(), self.heads[task].parameters())
