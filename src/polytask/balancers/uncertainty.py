"""Uncertainty weighting (Kendall et al. 2018) and the learned-scale base it shares with IMTL-L."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import reorder
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer


class LearnedScaleBalancer(LossWeighting):
    """Base of methods with one trainable scalar ``s_i`` per task, trained by the trainer's
    optimizer through :meth:`parameters` together with the model, by the objective
    ``Σᵢ loss_term(Lᵢ, sᵢ)`` with the losses detached; the model gets ``Σᵢ weight(sᵢ)·∇Lᵢ``.

    Each ``s_i`` is its own 0-d parameter, so a task absent from a batch gets no gradient at all
    (``.grad`` stays ``None``) and optimizers with momentum leave it untouched.
    """

    def __init__(self, task_names: Sequence[str], init: float = 0.0) -> None:
        super().__init__(task_names)
        self.scales = [torch.nn.Parameter(torch.tensor(float(init))) for _ in self.task_names]
        self._position = {n: i for i, n in enumerate(self.task_names)}

    @abstractmethod
    def loss_term(self, losses: Tensor, s: Tensor) -> Tensor:
        """Per-task terms of the objective of ``s``."""

    @abstractmethod
    def weight(self, s: Tensor) -> Tensor:
        """The factor multiplying each task loss."""

    def _s(self, names: Sequence[str], device: torch.device) -> Tensor:
        return torch.stack([self.scales[self._position[n]] for n in names]).to(device)

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        return self.weight(self._s(names, values.device).detach())

    def objective(self, names: Sequence[str], values: Tensor) -> Tensor:
        return self.loss_term(values, self._s(names, values.device)).sum()

    def parameters(self) -> list[Tensor]:
        return list(self.scales)

    def state_dict(self) -> dict[str, Any]:
        s = torch.stack([p.detach() for p in self.scales]).cpu()
        return {"task_names": list(self.task_names), "s": s}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        values = reorder(state, self.task_names, "s")
        with torch.no_grad():
            for p, v in zip(self.scales, values, strict=True):
                p.copy_(v)


@register_balancer("uncertainty", "uw")
class UncertaintyWeighting(LearnedScaleBalancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-task
    learning using uncertainty to weigh losses for scene geometry and semantics").

    With learnable log-variances ``s_i = log σ_i²`` the loss is ``Σ exp(-s_i)·L_i + s_i``: the
    common form used by most implementations (the paper's regression form is
    ``½exp(-s_i)·L_i + ½s_i``, the same up to a factor ½ on everything and a rescaled
    learning rate). Returned weights are ``exp(-s_i)``; at the optimum for a fixed loss
    ``exp(-s_i) = 1/L_i``, so weighted losses are driven to a common scale.
    """

    def loss_term(self, losses: Tensor, s: Tensor) -> Tensor:
        return torch.exp(-s) * losses + s

    def weight(self, s: Tensor) -> Tensor:
        return torch.exp(-s)
