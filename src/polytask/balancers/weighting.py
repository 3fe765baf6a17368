"""Gramian weightings: the rule from the T×T Gramian of the task gradients to task weights, and
the balancer that runs one on the Gramian engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polytask.balancers._qp import single_blas_thread
from polytask.balancers.base import Balancer, Kind, Step, check_finite
from polytask.balancers.engine import GramianEngine


class Weighting(ABC):
    """A rule: the float64 Gramian of the present tasks ``names`` in, their weights out.

    It knows nothing of modes, caching or skipped steps; state of its own (random generators,
    targets) goes in :meth:`state_dict`. ``build_balancer`` runs it in a :class:`GramianBalancer`
    with the engine options ``mode``, ``reuse_jacobian``, ``update_every`` and ``losses_from``.
    """

    name: str = "weighting"
    kind: ClassVar[Kind] = "gramian"
    #: Whether the weights depend on random draws (from a generator kept in the state).
    randomized: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = tuple(task_names)

    @abstractmethod
    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        """Weights (float64, length T) for the tasks ``names`` given their float64 Gramian."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore :meth:`state_dict` output."""


class GramianBalancer(Balancer):
    """The update ``Σᵢ wᵢ∇Lᵢ`` with ``w`` from a :class:`Weighting` of the engine's Gramian.

    Modes ``features`` (default) and ``params``, and ``reuse_jacobian``: see
    :class:`~polytask.balancers.engine.GramianEngine`. A non-finite Gramian diagonal or weight
    skips the step (:meth:`Balancer.backward`).

    A task whose gradient over what is shared is exactly zero (it does not reach the shared
    parameters, e.g. a task alone in its group under ``groups``, whose own trunk is not shared)
    conflicts with no task: it gets weight 1, as it would if trained alone, and the rule weighs
    the others among themselves. Left in, it would be the min-norm point of MGDA, IMTL-G and
    others, which would then stop training every other task without a word.
    """

    kind: ClassVar[Kind] = "gramian"

    def __init__(
        self, weighting: Weighting, mode: str = "features", reuse_jacobian: bool = True
    ) -> None:
        super().__init__(weighting.task_names)
        self.weighting = weighting
        self.engine = GramianEngine(mode, reuse_jacobian)
        self.name = weighting.name
        self.randomized = weighting.randomized
        #: The present tasks and their Gramian at the last step that computed one (read by
        #: observers, e.g. the gradient-cosine affinity, at no extra cost); ``None`` before.
        self.last_gramian: tuple[list[str], Tensor] | None = None

    @property
    def mode(self) -> str:  # type: ignore[override]
        return self.engine.mode

    #: The losses are checked here, on the host copy made with the Gramian's (below).
    defers_loss_check: ClassVar[bool] = True
    #: Handed each process's own loss values under data-parallel training, it sums them in
    #: the engine's collective, before its loss check (the same on every process).
    needs_global_losses: ClassVar[bool] = False

    def step(self, step: Step) -> Tensor:
        values = step.values.detach().clone()  # each process's own: summed by the engine
        gramian, held = self.engine.gramian(
            step.losses,
            step.shared_params,
            step.features,
            step.scale,
            summed_with=None if step.summed else values,
        )  # per-task gradients by autograd.grad: nothing written yet, whatever the losses
        count = len(step.names)
        # the step's one host synchronisation: the losses and the T×T Gramian, together
        host = torch.cat([values.to(gramian).reshape(-1), gramian.reshape(-1)])
        host = host.cpu()
        check_finite("loss", step.names, host[:count])
        gramian = host[count:].reshape(count, count)
        diagonal = torch.diagonal(gramian)
        check_finite("gradient", step.names, diagonal)
        live = diagonal > 0
        weights = torch.ones(len(step.names), dtype=torch.float64)
        if bool(live.any()):
            index = live.nonzero().flatten()
            names = [step.names[i] for i in index.tolist()]
            sub = gramian if bool(live.all()) else gramian[index][:, index]
            with single_blas_thread():
                rule = self.weighting.weights(sub, names).detach().to(torch.float64).cpu()
            weights[index] = rule
        check_finite("weight", step.names, weights)
        self.last_gramian = (list(step.names), gramian.detach())
        self.engine.write(step.values, weights, held)
        return weights

    def state_dict(self) -> dict[str, Any]:
        return self.weighting.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weighting.load_state_dict(state)
