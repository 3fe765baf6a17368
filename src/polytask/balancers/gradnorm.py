"""GradNorm: gradient normalisation for adaptive loss balancing (Chen et al., ICML 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polytask.balancers._common import (
    MaskedAdam,
    TaskIndex,
    check_positive,
    reorder,
    select,
)
from polytask.balancers.base import Balancer, Kind, Step, check_finite, unscaled
from polytask.balancers.engine import task_jacobians
from polytask.balancers.registry import register_balancer
from polytask.distributed import all_reduce_blocks


def last_layer(params: Sequence[Tensor], count: int | None) -> list[Tensor]:
    """The last ``count`` tensors of ``params``; by default, from the last tensor with two or more
    dimensions (the last layer's weight) to the end (its bias, any trailing norm parameters)."""
    if not params:
        raise ValueError("gradnorm needs at least one shared parameter")
    if count is not None:
        return list(params[-count:])
    start = max((i for i, p in enumerate(params) if p.dim() >= 2), default=len(params) - 1)
    return list(params[start:])


@register_balancer("gradnorm")
class GradNorm(Balancer):
    """GradNorm from "GradNorm: Gradient normalization for adaptive loss balancing in deep
    multitask networks" (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    The model gets ``∇Σ w_i·L_i``. The weights then take one Adam step (their own optimizer,
    ``lr``) on ``Σ_i |G_i − Ḡ·r_i^α|`` where ``G_i = ‖∇_W w_i·L_i‖`` on the last shared layer
    ``W``, ``Ḡ`` the mean of the ``G_i``, ``r_i = L̃_i / mean(L̃)`` the relative inverse training
    rate with ``L̃_i = L_i(t)/L_i(0)`` and the target ``Ḡ·r_i^α`` held constant; afterwards they are
    renormalised to sum to ``T``. ``W`` is taken from ``shared_params`` (see :func:`last_layer`;
    ``last_params`` picks a count instead). Since ``G_i = w_i·‖∇_W L_i‖``, the weight gradient is
    exact without second-order autograd: one ``autograd.grad`` per task on ``W`` only.

    ``L_i(0)`` is the task's loss the first time it is present. Only present tasks are updated,
    and renormalisation rescales them to keep their previous sum, so absent tasks keep their
    weight and the total stays ``T``.
    """

    kind: ClassVar[Kind] = "jacobian"
    needs_shared_params = True  # gradient norms over the last shared layer
    #: The losses are checked with the norms, on one host copy of both (below).
    defers_loss_check: ClassVar[bool] = True

    def __init__(
        self,
        task_names: Sequence[str],
        alpha: float = 1.5,
        lr: float = 0.025,
        last_params: int | None = None,
    ) -> None:
        super().__init__(task_names)
        check_positive(lr=lr)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if last_params is not None and last_params < 1:
            raise ValueError(f"last_params must be >= 1, got {last_params}")
        self.alpha, self.lr, self.last_params = float(alpha), float(lr), last_params
        size = len(self.task_names)
        self.weights = torch.ones(size)
        self.initial_losses = torch.zeros(size)
        self.seen = torch.zeros(size, dtype=torch.bool)
        self.adam = MaskedAdam(size, lr=self.lr)
        self._index = TaskIndex(self.task_names)

    def step(self, step: Step) -> Tensor:
        names, losses, values, shared_params = step[:4]
        if shared_params is None:
            raise ValueError("gradnorm needs shared_params (its last layer is W)")
        layer = last_layer([p for p in shared_params if p.requires_grad], self.last_params)
        index = self._index(names)
        w = select(self.weights, index).clone()
        # ‖∇_W Lᵢ‖ per task, of the true gradients (of the global batch under torchrun)
        blocks = all_reduce_blocks(task_jacobians(losses, layer))
        squares = [unscaled(block, step.scale).pow(2).flatten(1).sum(1) for block in blocks]
        norms = torch.stack(squares).sum(0).sqrt()
        # the step's one host synchronisation: the losses and the norms, together
        host = torch.cat([values.detach().float().reshape(-1), norms.float()]).cpu()
        count = len(names)
        check_finite("loss", names, host[:count])
        check_finite("gradient", names, host[count:])  # before the weights' own Adam step
        on_device = w.to(device=values.device, non_blocking=True).to(values.dtype)
        torch.dot(on_device, values).backward()
        self._update(names, index, w, host[count:], host[:count])
        return w

    def _update(
        self, names: list[str], index: Tensor | None, w: Tensor, norms: Tensor, values: Tensor
    ) -> None:
        """One step of the weights on the GradNorm loss, then renormalisation."""
        mask = self._index.mask(names)
        first = mask & ~self.seen
        if bool(first.any()):
            self.initial_losses[first] = values[first[mask]]
            self.seen |= first
        gnorm = w * norms
        ratio = values / select(self.initial_losses, index).clamp_min(1e-12)
        target = gnorm.mean() * (ratio / ratio.mean()).pow(self.alpha)
        grad_sub = torch.sign(gnorm - target) * norms  # d|w_i n_i − target_i| / dw_i
        grad = torch.zeros_like(self.weights)
        grad[mask] = grad_sub
        self.adam.step(self.weights, grad, mask)
        with torch.no_grad():
            self.weights.clamp_(min=1e-8)
            total = w.sum()
            self.weights[mask] *= total / self.weights[mask].sum()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "task_names": list(self.task_names),
            "weights": self.weights.clone(),
            "initial_losses": self.initial_losses.clone(),
            "seen": self.seen.clone(),
        }
        state.update({f"adam_{k}": v for k, v in self.adam.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weights = reorder(state, self.task_names, "weights").float()
        self.initial_losses = reorder(state, self.task_names, "initial_losses").float()
        self.seen = reorder(state, self.task_names, "seen").bool()
        self.adam.load_state_dict(state, self.task_names)
