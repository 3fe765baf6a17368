"""Hard parameter sharing: one trunk for all tasks, one head per task (Caruana 1997)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from polytask.models.base import MultiTaskModel


class HardSharing(MultiTaskModel):
    """``heads[t](trunk(x))`` for each task ``t``; the trunk's output is the shared representation.

    ``trunk`` is any module; ``heads`` maps task names to modules reading the trunk's output.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__(list(heads))
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = self.trunk(x)
        return {name: head(z) for name, head in self.heads.items()}, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return self.heads[task].parameters()
