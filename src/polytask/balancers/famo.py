"""FAMO: fast adaptive multitask optimisation (Liu, Liu, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from polytask.balancers._common import (
    LOG_EPS,
    MaskedAdam,
    TaskIndex,
    check_positive,
    reorder,
    select,
)
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer


@register_balancer("famo")
class FAMO(LossWeighting):
    """FAMO from "FAMO: Fast Adaptive Multitask Optimization" (Liu et al. 2023).

    Task logits ``ξ`` give ``z = softmax(ξ)``; the model gradient is ``Σ c·z_i·∇log L_i`` with
    ``c = (Σ z_i/L_i)^{-1}``, i.e. loss weights ``w_i = c·z_i/L_i`` (returned). ``ξ`` then moves to
    favour the tasks whose log-loss fell least: with ``Δ_i = log L_i(t) − log L_i(t+1)``,
    ``ξ ← ξ − β·(J_z(ξ)ᵀΔ + γ·ξ)``, applied with Adam (learning rate ``β = lr``, coupled weight
    decay ``γ``), as in the authors' code; ``update='sgd'`` gives the plain step of Algorithm 1.

    The paper evaluates ``L(t+1)`` on the same batch after the model update; to need nothing but
    :meth:`backward`, the losses passed to the next call stand in for ``L(t+1)`` (the common
    one-step-lagged form), so ``ξ`` is updated at the start of each call, before its weights are
    computed. Only tasks present in both calls take part in that update (``z`` is renormalised
    over them); absent tasks keep their logit and Adam moments. Losses are shifted by
    ``ε = 1e-8`` before the log (the paper's lower bound ``L* = 0``) and must be non-negative.
    """

    nonnegative_losses = True

    def __init__(
        self,
        task_names: Sequence[str],
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        update: Literal["adam", "sgd"] = "adam",
    ) -> None:
        super().__init__(task_names)
        check_positive(lr=lr)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if update not in ("adam", "sgd"):
            raise ValueError(f"update must be 'adam' or 'sgd', got {update!r}")
        self.lr, self.weight_decay, self.update = float(lr), float(weight_decay), update
        size = len(self.task_names)
        self.logits = torch.zeros(size)
        self.prev_log_losses = torch.zeros(size)
        self.prev_present: tuple[str, ...] = ()
        self.adam = MaskedAdam(size, lr=self.lr, weight_decay=self.weight_decay)
        self._index = TaskIndex(self.task_names)

    def _update_logits(self, names: Sequence[str], log_losses: Tensor) -> None:
        """One step on ``ξ`` from the previous call's log-losses to this call's."""
        both = [n for n in names if n in self.prev_present]
        if len(both) < 2:  # a softmax over one task has a zero Jacobian: nothing to learn
            return
        index = self._index(both, log_losses.device)
        position = {n: k for k, n in enumerate(names)}
        now = log_losses if len(both) == len(names) else log_losses[[position[n] for n in both]]
        delta = select(self.prev_log_losses, index) - now
        z = torch.softmax(select(self.logits, index), dim=0)
        grad_sub = z * (delta - torch.dot(z, delta))  # J_softmax(ξ)ᵀ Δ, J symmetric
        grad = torch.zeros_like(self.logits)
        mask = torch.zeros_like(self.logits, dtype=torch.bool)
        if index is None:
            grad, mask = grad_sub, None
        else:
            grad.index_copy_(0, index, grad_sub)
            mask.index_fill_(0, index, True)
        if self.update == "adam":
            self.adam.step(self.logits, grad, mask)
        else:
            step = grad + self.weight_decay * self.logits
            self.logits.sub_(self.lr * (step if mask is None else step * mask))

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        """Update ``ξ`` from the previous call's losses, then this call's weights."""
        if self.logits.device != values.device:
            self.logits = self.logits.to(values.device)
            self.prev_log_losses = self.prev_log_losses.to(values.device)
        shifted = values.detach().float() + LOG_EPS
        log_losses = torch.log(shifted)
        self._update_logits(names, log_losses)

        index = self._index(names, values.device)
        z = torch.softmax(select(self.logits, index), dim=0)
        ratio = z / shifted
        weights = ratio / ratio.sum()

        if index is None:
            self.prev_log_losses.copy_(log_losses)
        else:
            self.prev_log_losses.index_copy_(0, index, log_losses)
        self.prev_present = tuple(names)
        return weights

    @property
    def z(self) -> Tensor:
        """Current task distribution ``softmax(ξ)`` over all tasks."""
        return torch.softmax(self.logits, dim=0)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "task_names": list(self.task_names),
            "logits": self.logits.cpu().clone(),
            "prev_log_losses": self.prev_log_losses.cpu().clone(),
            "prev_present": list(self.prev_present),
        }
        state.update({f"adam_{k}": v.cpu() for k, v in self.adam.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        device = self.logits.device
        self.logits = reorder(state, self.task_names, "logits").float().to(device)
        self.prev_log_losses = reorder(state, self.task_names, "prev_log_losses").float().to(device)
        self.prev_present = tuple(n for n in self.task_names if n in state["prev_present"])
        self.adam.load_state_dict(state, self.task_names)
