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

    def scaled(
        self, names: Sequence[str], losses: Sequence[Tensor], host: Tensor | None = None
    ) -> ScaledLosses:
        """Terms ``cᵢ·Lᵢ`` (``cᵢ`` detached), the factors and the objective, for the finite
        ``losses`` of ``names`` (``host``: their values on the host, when copied there
        already); advances the state."""
        values = torch.stack([loss.reshape(()) for loss in losses])
        read = values.detach() if host is None else host
        factors = self.factors(names, read).detach()
        objective = self.objective(names, read)
        on_device = _on(factors, values)
        terms = {n: values[k] * on_device[k] for k, n in enumerate(names)}
        return ScaledLosses(terms, dict(zip(names, factors.tolist(), strict=True)), objective)

    def step(self, step: Step) -> Tensor:
        """``Σ cᵢLᵢ`` backpropagated with the factors from the host copy of the losses (no
        device synchronisation beyond the loss check's), and the objective of the method's own
        parameters, which live on the host too, backpropagated on its own."""
        values = step.values
        read = values.detach() if step.host_values is None else step.host_values
        factors = self.factors(step.names, read)
        roots = [torch.dot(_on(factors, values), values)]
        objective = self.objective(step.names, read)
        if objective is not None:  # of detached losses: scaled here like the rest (base.Step)
            roots.append(objective * step.scale)
        torch.autograd.backward([r for r in roots if r.requires_grad] or roots)
        return factors


def _on(factors: Tensor, like: Tensor) -> Tensor:
    """Host factors on ``like``'s device and dtype, copied without waiting for the device."""
    return factors.to(device=like.device, non_blocking=True).to(like.dtype)
