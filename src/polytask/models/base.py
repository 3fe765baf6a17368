"""The model contract every architecture follows, so that every balancer works with every model.

A :class:`MultiTaskModel` maps an input to ``{task_name: output}``. It also returns the shared
representation (the tensor all task heads read from) and names its shared parameters; gradient
balancers use the first in ``features`` mode and the second in ``params`` mode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from torch import Tensor, nn


class MultiTaskModel(nn.Module, ABC):
    """Base class of the architectures: shared part, one output per task."""

    #: True when each task reads its own slice of the representation (per-task towers or
    #: columns): representation gradients of different tasks are then disjoint by construction.
    per_task_representation: bool = False

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        if len(set(task_names)) != len(task_names) or not task_names:
            raise ValueError(f"task names must be unique and non-empty, got {list(task_names)}")
        self.task_names = tuple(task_names)

    @abstractmethod
    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        """Return ``(outputs, representation)``; every output depends on the input only
        through ``representation`` plus task-specific parameters."""

    def forward(self, x: Any) -> dict[str, Tensor]:
        return self.forward_with_representation(x)[0]

    @abstractmethod
    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters used by more than one task (those gradient balancers reconcile)."""

    @abstractmethod
    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters used by ``task`` alone (its head or tower)."""

    def regularization(self) -> Tensor | None:
        """An extra loss term the architecture needs (e.g. soft sharing's penalty), or None.

        Trainers backpropagate it next to the balanced task losses."""
        return None

    def relationships(self) -> tuple[tuple[str, ...], Tensor] | None:
        """The task names and a learned task-by-task relationship matrix (e.g. MTRL's task
        correlations), or None; a run writes it to ``task_relationships.csv`` / ``.png``."""
        return None
