"""Uncertainty weighting (Kendall et al. 2018) and the learned-scale base it shares with IMTL-L."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import reorder, scaled, stack_losses
from polytask.balancers.base import Balancer, ScaledLosses, register_balancer


class LearnedScaleBalancer(Balancer):
    """Base of methods with one trainable scalar ``s_i`` per task, trained by the trainer's
    optimizer through :meth:`parameters` together with the model.

    Each ``s_i`` is its own 0-d parameter, so a task absent from a batch gets no gradient at all
    (``.grad`` stays ``None``) and optimizers with momentum leave it untouched.
    """

    def __init__(self, task_names: Sequence[str], init: float = 0.0) -> None:
        super().__init__(task_names)
        self.scales = [torch.nn.Parameter(torch.tensor(float(init))) for _ in self.task_names]
        self._position = {n: i for i, n in enumerate(self.task_names)}

    def objective(self, losses: Tensor, s: Tensor) -> Tensor:
        """Per-task terms of the balanced loss (summed, then backpropagated)."""
        raise NotImplementedError

    def weights_of(self, s: Tensor) -> Tensor:
        """The factor multiplying each task loss."""
        raise NotImplementedError

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        stacked = stack_losses(self, losses)
        if stacked is None:
            return {}
        names, values = stacked
        s = torch.stack([self.scales[self._position[n]] for n in names]).to(values.device)
        self.objective(values, s).sum().backward()
        return dict(zip(names, self.weights_of(s.detach()).tolist(), strict=True))

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        """Terms ``weights_of(s)·Lᵢ`` (``s`` detached); the objective is :meth:`objective` on the
        detached losses, so ``s`` is trained by its own loss, not by a gradient method's weights."""
        stacked = stack_losses(self, losses)
        if stacked is None:
            return None
        names, values = stacked
        s = torch.stack([self.scales[self._position[n]] for n in names]).to(values.device)
        objective = self.objective(values.detach(), s).sum()
        return scaled(names, values, self.weights_of(s.detach().to(values.dtype)), objective)

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

    def objective(self, losses: Tensor, s: Tensor) -> Tensor:
        return torch.exp(-s) * losses + s

    def weights_of(self, s: Tensor) -> Tensor:
        return torch.exp(-s)
