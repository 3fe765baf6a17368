"""Loss weighting: the update is ``Σᵢ cᵢ∇Lᵢ`` with the factors ``cᵢ`` chosen from the losses
(and the method's state) alone. A method implements :meth:`LossWeighting.factors` and, when it
has parameters of its own, :meth:`LossWeighting.objective`; the base class does the backward."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from polytask.balancers.base import Balancer, Kind, ScaledLosses, Step


class LossWeighting(Balancer):
    """Base of the pure loss-weighting methods; any of them can feed a Gramian method
    (``losses_from``) through :meth:`scaled`."""

    kind: ClassVar[Kind] = "loss_weighting"

    @abstractmethod
    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        """The factor ``cᵢ`` on each present task's loss (``values``: the detached losses of
        ``names``, stacked); advances the method's state as one training step does."""

    def objective(self, names: Sequence[str], values: Tensor) -> Tensor | None:
        """Scalar whose gradient trains :meth:`parameters` (``values`` detached), or ``None``."""
        return None

    def scaled(self, names: Sequence[str], losses: Sequence[Tensor]) -> ScaledLosses:
        """Terms ``cᵢ·Lᵢ`` (``cᵢ`` detached), the factors and the objective, for the finite
        ``losses`` of ``names``; advances the state."""
        values = torch.stack([loss.reshape(()) for loss in losses])
        factors = self.factors(names, values.detach()).detach()
        objective = self.objective(names, values.detach())
        factors = factors.to(device=values.device, dtype=values.dtype)
        terms = {n: values[k] * factors[k] for k, n in enumerate(names)}
        return ScaledLosses(terms, dict(zip(names, factors.tolist(), strict=True)), objective)

    def step(self, step: Step) -> Tensor:
        values = step.values
        factors = self.factors(step.names, values.detach())
        total = torch.dot(factors.to(values), values)
        objective = self.objective(step.names, values.detach())
        if objective is not None:  # of detached losses: scaled here like the rest (base.Step)
            total = total + objective * step.scale
        total.backward()
        return factors
