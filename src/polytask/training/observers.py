"""Step observers: read-only measurements the :class:`~polytask.training.trainer.Trainer` runs
at every step (task affinity, for one), without the trainer knowing what they measure.

The trainer calls :meth:`StepObserver.before_backward` once the task losses of a step are
computed (the graph is alive, the parameters are still those the losses were computed with),
:meth:`StepObserver.after_backward` once the balancer has written the gradients (before the
optimizer step), and :meth:`StepObserver.epoch_end` after each epoch; what that returns is kept
in :attr:`EpochLog.observations` under the observer's ``name``. An observer must not change the
parameters, their gradients, the optimizer's state or the random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from polytask.balancers import Balancer
from polytask.data.dataset import Batch
from polytask.models.base import MultiTaskModel
from polytask.tasks import Task


class StepView(NamedTuple):
    """What an observer sees of one step: the batch, the present tasks' losses (task weights
    applied), the shared parameters, the shared representation (or ``None``), and the model,
    tasks, optimizer and balancer of the trainer."""

    batch: Batch
    losses: dict[str, Tensor]
    shared_params: list[Tensor]
    features: Tensor | None
    model: MultiTaskModel
    tasks: Sequence[Task]
    optimizer: torch.optim.Optimizer
    balancer: Balancer


class StepObserver:
    """Base class of step observers; every hook is optional."""

    name: str = "observer"

    def before_backward(self, view: StepView) -> None:
        """Called with the step's graph alive, before the balancer's backward."""

    def after_backward(self, view: StepView) -> None:
        """Called after the balancer's backward, before the optimizer step."""

    def epoch_end(self, epoch: int) -> Any:
        """What to record for the epoch (JSON-ready; ``None`` records nothing)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to observe the same steps (JSON-ready; saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
